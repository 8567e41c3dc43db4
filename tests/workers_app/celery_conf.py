"""One Celery configuration for the worker and for the test that sends it tasks.

The broker is kombu's filesystem transport (messages are files in a folder): a real
broker protocol, no network service. Results go to files too. Both write each file
under another name and rename it into place: kombu's and Celery's own writers create the
file first and fill it after, and a poller can read it in between."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

from celery import Celery
from celery.backends.filesystem import FilesystemBackend
from kombu.transport import filesystem
from kombu.utils.json import dumps


class _AtomicChannel(filesystem.Channel):
    """kombu's channel, but a message file appears whole: written under a name the reader
    skips, then renamed. (kombu's own writer creates the ``.msg`` file before writing it,
    and a polling reader can take it while still empty: JSONDecodeError in the worker.)"""

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        name = f"{int(time.monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = os.path.join(self.data_folder_out, f"partial-{name}.tmp")
        with open(partial, "wb") as f:
            f.write(dumps(payload).encode())
        os.replace(partial, final)


class AtomicFilesystemTransport(filesystem.Transport):
    Channel = _AtomicChannel


class AtomicFilesystemBackend(FilesystemBackend):
    """Celery's file result backend, a result file appearing whole (renamed into place),
    so the test polling for it never reads one half written."""

    def set(self, key: bytes, value: Any) -> None:
        final = self._filename(key)
        partial = final + b".partial"
        with open(partial, "wb") as f:
            f.write(value if isinstance(value, bytes) else str(value).encode())
        os.replace(partial, final)


def make_app(folder: str | Path, **kwargs: Any) -> Celery:
    folder = Path(folder)
    app = Celery("workers_app", **kwargs)
    app.conf.update(
        broker_url="filesystem://",
        broker_transport=f"{__name__}:AtomicFilesystemTransport",
        broker_transport_options={
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "control_folder": str(folder / "control"),  # not ./control in the checkout
            "store_processed": False,
            "polling_interval": 0.02,
        },
        result_backend=f"{__name__}:AtomicFilesystemBackend+file://{folder / 'results'}",
        broker_connection_retry_on_startup=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
    )
    return app
