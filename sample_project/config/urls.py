from django.contrib import admin
from django.urls import include, path

from django_azure_pg import health

urlpatterns = [
    path("admin/", admin.site.urls),
    # App Service's Health check path: token cache and login state, no connection per call.
    path("healthz", health.view),
    path("", include("restaurants.urls")),
]
