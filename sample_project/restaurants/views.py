"""Pages for people, a small JSON API for scripts, and a health check for App Service."""

import json

from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from .forms import RestaurantForm, ReviewForm
from .models import Restaurant


@require_http_methods(["GET", "POST"])
def index(request: HttpRequest) -> HttpResponse:
    form = RestaurantForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        restaurant = form.save()
        return redirect("restaurants:detail", pk=restaurant.pk)
    restaurants = Restaurant.objects.all()
    return render(request, "restaurants/index.html", {"restaurants": restaurants, "form": form})


@require_http_methods(["GET", "POST"])
def detail(request: HttpRequest, pk: int) -> HttpResponse:
    restaurant = get_object_or_404(Restaurant, pk=pk)
    form = ReviewForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        review = form.save(commit=False)
        review.restaurant = restaurant
        review.save()
        return redirect("restaurants:detail", pk=pk)
    return render(request, "restaurants/detail.html", {"restaurant": restaurant, "form": form})


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    """200 when the database answers, 503 otherwise (App Service's health check path)."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        return JsonResponse({"status": "unavailable", "error": type(exc).__name__}, status=503)
    login = getattr(connection, "azure_login", None)
    return JsonResponse(
        {
            "status": "ok",
            "auth": login.choice.name if login else "password",
            "role": connection.settings_dict.get("USER") or "(from token)",
        }
    )


def _json(request: HttpRequest) -> dict:
    try:
        data = json.loads(request.body or b"{}")
    except ValueError:
        data = None
    return data if isinstance(data, dict) else {}


@csrf_exempt  # a JSON API for scripts (the demo and the soak test); no cookies involved
@require_http_methods(["GET", "POST"])
def api_restaurants(request: HttpRequest) -> JsonResponse:
    if request.method == "POST":
        form = RestaurantForm(_json(request))
        if not form.is_valid():
            return JsonResponse({"errors": form.errors}, status=400)
        restaurant = form.save()
        return JsonResponse({"id": restaurant.pk, "name": restaurant.name}, status=201)
    rows = Restaurant.objects.order_by("-id").values("id", "name")[:20]
    return JsonResponse({"count": Restaurant.objects.count(), "latest": list(rows)})


@require_GET
def api_restaurant(request: HttpRequest, pk: int) -> JsonResponse:
    restaurant = get_object_or_404(Restaurant, pk=pk)
    return JsonResponse(
        {
            "id": restaurant.pk,
            "name": restaurant.name,
            "reviews": restaurant.reviews.count(),
            "average_rating": restaurant.average_rating(),
        }
    )


@csrf_exempt
@require_http_methods(["POST"])
def api_reviews(request: HttpRequest, pk: int) -> JsonResponse:
    restaurant = get_object_or_404(Restaurant, pk=pk)
    form = ReviewForm(_json(request))
    if not form.is_valid():
        return JsonResponse({"errors": form.errors}, status=400)
    review = form.save(commit=False)
    review.restaurant = restaurant
    review.save()
    return JsonResponse({"id": review.pk}, status=201)
