"""Warm start: begin the imports and the token fetch when a process that will log in starts.

A new worker's first request used to pay azure-identity's, MSAL's and psycopg's
imports and a token fetch (issue 30: +0.56 s fresh, +0.74 s forked). Now the
app's ``ready()`` (and, where the app is not in INSTALLED_APPS, the first
token login a DatabaseWrapper builds) starts a daemon thread that imports them,
builds each token alias's login and starts its token source's fetch in the
background (``TokenSource.warm``). Start-up is not delayed and never fails
because of it: every error is logged at DEBUG and forgotten; the first request
then fetches as before.

Where: only in processes that serve requests or use the database, by an
explicit rule on ``sys.argv`` (Django has no other record of the running
command; ``ManagementUtility`` reads ``argv[1]``):

* a server or worker by its program's name (``argv[0]``, or the package of
  ``python -m <name>``): :data:`SERVERS`;
* ``manage.py`` / ``django-admin`` / ``python -m django`` with a command that
  uses the database: :data:`COMMANDS`;
* nowhere else — ``check``, ``collectstatic``, ``makemigrations``, test
  runners, type checkers, a Docker build stay quiet and cheap.

And only for an alias that logs in with tokens (no ``PASSWORD``) through a
credential something names: ``OPTIONS["credential"]``, a client id, a service
principal, workload identity or a managed-identity endpoint variable
(``IDENTITY_ENDPOINT``, ``MSI_ENDPOINT``...). Never where the choice falls to
``DefaultAzureCredential`` or to the Instance Metadata Service only because the
host looks like an Azure VM: nothing probes IMDS where nothing says there is
an identity (the first login still does, as before).

Switches: ``DJANGO_AZURE_PG_WARM_START`` = ``off`` (never) / ``on`` (in any
process, whatever the command) / unset or ``auto`` (the rule above);
``OPTIONS["warm_start"]`` = ``False`` turns it off for one alias, ``True``
warms that alias in any process (the credential rule still applies).

Forks: a child forked after the fetch finished inherits the token (nothing to
do); one forked while the fetch was in flight gets its own, started at once in
the child (the parent's fetch thread and locks are not the child's: see
``TokenSource._after_fork``). The parent waits, before ``fork()``, for the warm
thread (bounded by :data:`IMPORT_WAIT`) and, once, for its fetch (bounded by
:data:`FETCH_WAIT`), so no child inherits an import lock held by a thread it does
not have — and the first children (gunicorn ``--preload`` forks them right after
loading the app) get the modules imported and the token fetched.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import PurePath
from typing import Any

from ._core import forksafe
from ._core.options import FALSE_WORDS, TRUE_WORDS

logger = logging.getLogger(__name__)

ENV_VAR = "DJANGO_AZURE_PG_WARM_START"
OPTION = "warm_start"

SERVERS = frozenset(
    {
        "gunicorn", "uvicorn", "daphne", "hypercorn", "uwsgi", "granian",
        "waitress-serve", "mod_wsgi", "mod_wsgi-express", "celery",
    }
)  # fmt: skip
"""Programs (``sys.argv[0]``'s name) that load a WSGI/ASGI application or run workers."""

COMMANDS = frozenset(
    {
        "runserver", "migrate", "dbshell", "createsuperuser", "changepassword",
        "loaddata", "dumpdata", "flush", "showmigrations", "inspectdb", "createcachetable",
        "clearsessions", "remove_stale_contenttypes", "testserver",
        "grant_aad_privileges", "create_aad_principal",
    }
)  # fmt: skip
"""Management commands that connect to the database. Not ``shell`` (a script run with
``shell -c`` or a session may never touch the database, and may set things up first —
an OpenTelemetry provider, say — that a fetch should see), nor ``azure_pg_doctor`` (it
fetches step by step, to say which step fails)."""

MANAGE_SCRIPTS = frozenset({"manage.py", "django-admin", "django-admin.py"})

IMPORT_WAIT = 10.0
"""Longest ``fork()`` waits for the warm thread (its imports: a few hundred ms here)."""

FETCH_WAIT = 1.0
"""Longest ``fork()`` then waits, once, for the warm fetch in flight, so the first workers
inherit its token; a slower one is left to each child, which starts its own. A second:
an identity endpoint answers in a fraction of one (0.3 s in issue 30's measurements), and
a thread past it waits on the network, not inside an import a child would inherit."""

_state_lock = threading.Lock()
_started = False
_thread: threading.Thread | None = None
_aliases: list[str] = []
_unfinished = False  # the warm thread was still running when this process forked
_fetch_waited = False  # fork() has waited for the warm fetches once
_imports_done = threading.Event()
_warmed: list[Any] = []  # the token sources warmed in this process


def mode(environ: Mapping[str, str] = os.environ) -> str:
    """``"on"``, ``"off"`` or ``"auto"`` from :data:`ENV_VAR`."""
    value = environ.get(ENV_VAR, "").strip().lower()
    if value in TRUE_WORDS:
        return "on"
    if value in FALSE_WORDS:
        return "off"
    return "auto"


def program(argv: Sequence[str]) -> str:
    """The running program's name: ``gunicorn`` for ``/venv/bin/gunicorn`` and for
    ``python -m gunicorn`` (``argv[0]`` is then ``.../gunicorn/__main__.py``)."""
    if not argv or not argv[0]:
        return ""
    path = PurePath(argv[0])
    name = path.parent.name if path.name == "__main__.py" else path.name
    for suffix in (".exe",):
        name = name.removesuffix(suffix)
    return name


def serves(argv: Sequence[str]) -> bool:
    """Whether this process will log in, by the rule in the module docstring."""
    name = program(argv)
    if name in SERVERS:
        return True
    if name in MANAGE_SCRIPTS or name == "django":
        return len(argv) > 1 and argv[1] in COMMANDS
    return False


def _flag(options: Mapping[str, Any]) -> bool | None:
    value = options.get(OPTION)
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    return True if word in TRUE_WORDS else False if word in FALSE_WORDS else None


def candidates(
    databases: Mapping[str, Mapping[str, Any]],
    argv: Sequence[str],
    environ: Mapping[str, str] = os.environ,
) -> list[str]:
    """The aliases to warm in this process (cheap: no import, no credential built)."""
    switch = mode(environ)
    if switch == "off":
        return []
    anywhere = switch == "on" or serves(argv)
    found = []
    for alias, entry in databases.items():
        if entry.get("PASSWORD"):
            continue
        flag = _flag(entry.get("OPTIONS") or {})
        if flag is False or not (anywhere or flag):
            continue
        found.append(alias)
    return found


def evident(choice: Any, environ: Mapping[str, str] = os.environ) -> bool:
    """Whether something names the identity (so a fetch now is no probe of a guess)."""
    from ._core import credentials

    if choice.kind == "default":
        return False
    if choice.kind != "managed_identity" or choice.client_id:
        return True
    return any(environ.get(var) for var in credentials.MANAGED_IDENTITY_ENDPOINTS)


def on_ready() -> None:
    """The app's ``ready()``: warm the token aliases of a process that will log in."""
    try:
        from django.conf import settings

        aliases = candidates(settings.DATABASES, getattr(sys, "argv", []))
    except Exception:  # never fail start-up
        logger.debug("Warm start skipped", exc_info=True)
        return
    if aliases:
        _start(aliases)


def on_login(made: Any, options: Mapping[str, Any]) -> None:
    """A DatabaseWrapper built its token login (``TokenLoginMixin.azure_login``): where the
    app's ``ready()`` did not run (not in INSTALLED_APPS), the process is warmed now — the
    other token aliases; this one's login fetches next, inside its own span."""
    if not _started and mode() != "off" and _flag(options) is not False:
        on_ready()


def _start(aliases: Iterable[str]) -> None:
    global _started
    with _state_lock:
        if _started:
            return
        _started = True
        _aliases[:] = aliases
        _spawn()


def _spawn() -> None:
    global _thread
    _thread = threading.Thread(
        target=_warm, args=(list(_aliases),), name="django-azure-pg-warm", daemon=True
    )
    _thread.start()


def _warm(aliases: list[str]) -> None:
    """In the warm thread: the imports, then each alias's login and its background fetch."""
    try:
        from django.conf import settings
        from django.db.utils import ConnectionHandler, load_backend

        from ._core import login  # azure-identity, MSAL (through it), psycopg

        entries = ConnectionHandler().configure_settings(
            {a: dict(settings.DATABASES[a]) for a in aliases}
        )
        backends = {a: load_backend(entries[a]["ENGINE"]) for a in aliases}  # their imports too
    except Exception:
        logger.debug("Warm start: imports failed", exc_info=True)
        return
    finally:
        _imports_done.set()
    for alias in aliases:
        entry = entries[alias]
        try:
            # A wrapper with the token login (mixin.has_token_login, without importing the
            # mixin here: it calls this module).
            wrapper = backends[alias].DatabaseWrapper
            if not hasattr(wrapper, "azure_login"):
                continue
            made = login.TokenLogin.from_settings(
                alias, entry["OPTIONS"], entry.get("USER"), host=entry.get("HOST")
            )
            if not evident(made.choice):
                logger.debug("Warm start: no identity named for %r; not fetching", alias)
                continue
            made.source.warm()
            _warmed.append(made.source)
            logger.debug("Warm start: fetching a token for %r in the background", alias)
        except Exception:
            logger.debug("Warm start skipped for %r", alias, exc_info=True)


def _before_fork() -> None:
    """No child inherits a lock (an import's, a fetch's) that a warm thread holds."""
    global _unfinished, _fetch_waited
    thread = _thread
    if thread is not None and thread.is_alive() and thread is not threading.current_thread():
        thread.join(IMPORT_WAIT)
    _unfinished = thread is not None and thread.is_alive()
    if not _fetch_waited and _warmed:
        _fetch_waited = True
        deadline = time.monotonic() + FETCH_WAIT
        for source in list(_warmed):
            source.wait_for_fetch(max(deadline - time.monotonic(), 0.0))


def _in_child() -> None:
    """A fetch the parent had in flight is not the child's: the child starts its own
    (and its own warm thread, if the parent's had not finished: threads do not fork)."""
    global _state_lock
    _state_lock = threading.Lock()
    try:
        if _unfinished:
            _warmed.clear()
            _spawn()
            return
        for source in _warmed:
            source.warm()  # no-op where the inherited token is usable
    except Exception:
        logger.debug("Warm start in a forked child skipped", exc_info=True)


forksafe.on_fork(before=_before_fork)
forksafe.on_fork(child=_in_child, last=True)  # after the token sources start afresh
