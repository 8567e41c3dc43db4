"""The worker's Celery app: ``celery -A tests.workers_app.celery_app worker``.

With DJANGO_SETTINGS_MODULE set, Celery's Django fixup sets Django up in the worker,
closes inherited connections in each forked child and closes the connections before and
after every task (each task logs in again: a cached token, no identity call)."""

import os

from celery.signals import worker_init

from .celery_conf import make_app

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.workers_app.settings")
app = make_app(os.environ["WORKERS_CELERY_DIR"], include=["tests.workers_app.tasks"])


@worker_init.connect
def read_the_database_before_the_fork(**kwargs: object) -> None:
    """As an app whose start-up reads the database: when the pool forks its children, the
    parent holds a token and a keep-alive connection to the identity endpoint. The children
    must neither share that socket nor wait on a lock held at fork time (the token cache is
    fork-safe); Celery's Django fixup drops the inherited database connection."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    print(f"parent {os.getpid()} read the database before the fork", flush=True)
