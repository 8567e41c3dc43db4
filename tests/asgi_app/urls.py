from django.urls import path

from . import views

urlpatterns = [path("menu", views.menu), path("session", views.session)]
