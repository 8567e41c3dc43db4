from django.urls import path

from . import views

app_name = "restaurants"
urlpatterns = [
    path("", views.index, name="index"),
    path("restaurants/<int:pk>/", views.detail, name="detail"),
    path("health/", views.health, name="health"),
    path("api/restaurants/", views.api_restaurants, name="api-restaurants"),
    path("api/restaurants/<int:pk>/", views.api_restaurant, name="api-restaurant"),
    path("api/restaurants/<int:pk>/reviews/", views.api_reviews, name="api-reviews"),
]
