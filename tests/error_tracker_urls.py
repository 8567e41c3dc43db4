"""A view whose database login fails: what an error tracker sees of an unhandled 500."""

from __future__ import annotations

from django.db import connections
from django.http import HttpRequest, HttpResponse
from django.urls import path


def login(request: HttpRequest) -> HttpResponse:
    connections[request.GET["alias"]].ensure_connection()
    return HttpResponse("connected")


urlpatterns = [path("login", login)]
