"""Async views using the async ORM API: Django runs each query in its thread-sensitive
executor (sync_to_async), so the ENGINE's connect — token included — runs there too."""

from asgiref.sync import sync_to_async
from django.db import connection
from django.http import HttpRequest, JsonResponse

from .models import Dish


async def menu(request: HttpRequest) -> JsonResponse:
    count = await Dish.objects.acount()
    names = [dish.name async for dish in Dish.objects.order_by("id")[:3]]
    first = await Dish.objects.order_by("id").afirst()
    assert first is not None
    same = await Dish.objects.aget(pk=first.pk)
    return JsonResponse({"count": count, "names": names, "first": same.name})


def _session() -> tuple[int, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid(), current_user")
        backend, user = cursor.fetchone()
    return backend, user


async def session(request: HttpRequest) -> JsonResponse:
    backend, user = await sync_to_async(_session)()  # thread_sensitive=True, the default
    return JsonResponse({"backend": backend, "user": user})
