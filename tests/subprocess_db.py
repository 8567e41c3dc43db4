"""The database entry of the small Django projects the suite starts in other processes
(tests/lockapp, tests/workers_app, tests/asgi_app): the suite's server, logged in to with
tokens from the suite's identity emulator (IDENTITY_ENDPOINT/IDENTITY_HEADER in the
environment). The test hands port, database and role over as ``<PREFIX>_PORT``,
``<PREFIX>_DB`` and ``<PREFIX>_USER``."""

from __future__ import annotations

import os
from typing import Any


def database(prefix: str, **more: Any) -> dict[str, Any]:
    return {
        "ENGINE": "django_azure_pg",
        "HOST": "127.0.0.1",
        "PORT": os.environ[f"{prefix}_PORT"],
        "NAME": os.environ[f"{prefix}_DB"],
        "USER": os.environ[f"{prefix}_USER"],
        **more,
    }
