import os
from typing import Any

from django.db import connection

from .celery_app import app


@app.task(name="workers_app.query")
def query(i: int) -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid(), current_user")
        backend, user = cursor.fetchone()
    return {"i": i, "backend": backend, "user": user, "worker": os.getpid()}
