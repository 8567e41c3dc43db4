"""Scrub access tokens out of text before it reaches a log, an exception or an error tracker.

A token is a password. Credential errors sometimes quote the identity
endpoint's response, which may hold one: azure-identity logs
``get_token failed: JSON is invalid … Content: {"access_token": …}`` at
WARNING when the body has trailing junk. So every message built from foreign
text goes through :func:`redact`, and while the package is in use a
:class:`RedactingFilter` sits on azure-identity's, azure-core's and msal's
loggers, and a redacting handler on their parents ``azure`` and ``msal``
covers the loggers they create later (opt out: ``DJANGO_AZURE_PG_LOG_REDACTION=off`` in the environment, or
:func:`uninstall_log_redaction`).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections import OrderedDict
from typing import Any, TypeVar

from ._core import forksafe

__all__ = [
    "OPT_OUT_VARIABLE",
    "RedactingFilter",
    "detach_connections",
    "protect_error_trackers",
    "remember",
    "scrub",
    "uninstall_log_redaction",
]

T = TypeVar("T")

# JWTs: three base64url segments, the first two starting with '{"' encoded.
_JWT = re.compile(r"eyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*")
# "access_token": "..." style fragments of JSON bodies, whatever the token shape.
_FIELD = re.compile(
    r"""(?P<key>["']?(?:access_token|refresh_token|id_token|password)["']?\s*[:=]\s*["']?)"""
    r"""(?P<value>[^"'\s,}&]+)""",
    re.IGNORECASE,
)

MASK = "[redacted]"
LOGGER_PREFIXES = ("azure.identity", "azure.core", "msal")
"""Loggers (and their children) that get a :class:`RedactingFilter`."""
_KEEP_EXCEPTIONS = ("azure.core",)
"""Shared by every Azure SDK client in the process: their exceptions stay attached to the
record (error trackers want them) unless the traceback's text held a token."""
OPT_OUT_VARIABLE = "DJANGO_AZURE_PG_LOG_REDACTION"


def redact(text: str) -> str:
    text = _JWT.sub(MASK, text)
    return _FIELD.sub(lambda m: m.group("key") + MASK, text)


# -- secrets this process sent: scrubbed from anything an error tracker sends ------------

_FRAGMENT = 16
"""The shortest run of a remembered secret that :func:`scrub` treats as a piece of it: long
enough never to match by chance (16 base64url characters are 96 bits)."""
_REMEMBERED_MAX = 32
_RUN = re.compile(r"[A-Za-z0-9_\-.~+/=]{" + str(_FRAGMENT) + ",}")
_SECRET_KEY = re.compile(r"(?:password|passwd|pwd|secret|token)['\"]?$", re.IGNORECASE)
"""Dictionary keys whose values are secrets wherever they sit (``password``,
``PGPASSWORD``, ``client_secret``, ``access_token``, a variable named ``token``...)."""
_remembered: OrderedDict[str, None] = OrderedDict()
_whole: tuple[str, ...] = ()  # what _scrub_text replaces whole (a snapshot: readers never lock)
_fragments: frozenset[str] = frozenset()
_secrets_lock = threading.Lock()
_tracker_hooked = False


def remember(secret: str) -> None:
    """Have :func:`scrub` mask ``secret`` (and any piece of it) from now on.

    Called with every token the package logs in with (and a static PASSWORD); the
    newest 32 are kept, more than the tokens alive at once. A secret shorter than
    :data:`_FRAGMENT` characters (a static password such as ``postgres``) is not
    replaced wherever it appears in text — it would garble paths and words, and the
    gaps would spell it out — only where it stands as a password: under a
    password-like key, or in a ``password=`` field. Also hooks the error trackers
    present in the process (:func:`protect_error_trackers`).
    """
    global _fragments, _whole
    if len(secret) >= _FRAGMENT and secret not in _remembered:
        with _secrets_lock:
            _remembered[secret] = None
            while len(_remembered) > _REMEMBERED_MAX:
                _remembered.popitem(last=False)
            _whole = tuple(_remembered)
            _fragments = frozenset(
                known[i : i + _FRAGMENT]
                for known in _remembered
                for i in range(len(known) - _FRAGMENT + 1)
            )
    if not _tracker_hooked:
        protect_error_trackers()


def scrub(obj: T) -> T:
    """``obj`` with secrets masked: every remembered secret, whole or any piece of it
    (:data:`_FRAGMENT` characters or more: a value an error tracker cut short),
    JWT-shaped strings, ``password=``/``access_token`` fields in text (conninfo
    strings), and the values under password-like keys of dictionaries at any depth.

    Strings, dicts, lists and tuples are walked (new ones are returned; a structure
    that contains itself is walked once); anything else is returned as it is. The hook
    for an error tracker other than Sentry::

        before_send=lambda event, hint: django_azure_pg.redaction.scrub(event)
    """
    return _scrub(obj, set())  # type: ignore[no-any-return]


def _scrub(obj: Any, walking: set[int]) -> Any:
    if isinstance(obj, str):
        return _scrub_text(obj)
    if not isinstance(obj, (dict, list, tuple)):
        return obj
    if id(obj) in walking:
        return MASK  # a cycle: its contents are being scrubbed further up
    walking.add(id(obj))
    try:
        if isinstance(obj, dict):
            return {k: MASK if _secret_value(k, v) else _scrub(v, walking) for k, v in obj.items()}
        walked = [_scrub(v, walking) for v in obj]
        return walked if isinstance(obj, list) else tuple(walked)
    finally:
        walking.discard(id(obj))


def _secret_value(key: Any, value: Any) -> bool:
    if not isinstance(key, str) or _SECRET_KEY.search(key) is None:
        return False
    if value is None or isinstance(value, (bool, int, float)):
        return False
    return not (isinstance(value, str) and value in ("", "''", '""', MASK))


def _scrub_text(text: str) -> str:
    whole, fragments = _whole, _fragments
    for secret in whole:
        if secret in text:
            text = text.replace(secret, MASK)
    if fragments and len(text) >= _FRAGMENT:
        text = _RUN.sub(lambda m: MASK if _has_fragment(m.group(), fragments) else m.group(), text)
    return redact(text)


def _has_fragment(run: str, fragments: frozenset[str]) -> bool:
    return any(run[i : i + _FRAGMENT] in fragments for i in range(len(run) - _FRAGMENT + 1))


def protect_error_trackers() -> None:
    """Register :func:`scrub` with the error trackers imported in this process (Sentry:
    a global event processor, which sees every event, its frames' local variables and
    its breadcrumbs before ``before_send``). Cheap to call again."""
    global _tracker_hooked
    if _tracker_hooked or "sentry_sdk" not in sys.modules:
        return
    try:
        from sentry_sdk.scope import add_global_event_processor
    except ImportError:  # pragma: no cover - an sentry-sdk without it
        return
    with _secrets_lock:
        if not _tracker_hooked:
            add_global_event_processor(_sentry_event)
            _tracker_hooked = True


def _sentry_event(event: Any, hint: Any) -> Any:
    """Sentry's global event processor: the event scrubbed, or ``None`` (Sentry drops
    the event) if scrubbing failed — sentry-sdk 2 would send the event unscrubbed after
    an exception in a processor."""
    try:
        return scrub(event)
    except Exception:
        return None


def detach_connections(exc: BaseException) -> None:
    """``exc`` and its chain without the connections psycopg keeps on its errors.

    A failed login's ``psycopg.OperationalError`` holds ``pgconn``, whose
    ``password`` field (and ``repr``) carry the password sent: any code that walks
    or serializes the chain would find the token there.
    """
    pending: list[BaseException | None] = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if getattr(current, "_pgconn", None) is not None:
            current._pgconn = None  # type: ignore[attr-defined]
        pending += [current.__cause__, current.__context__]


class RedactingFilter(logging.Filter):
    """Rewrites a record's message (and traceback text) with tokens masked; drops nothing.

    The traceback is rendered to redacted text and ``exc_info`` removed, so no
    handler can print the frames' locals either — always for azure-identity's and
    msal's records (their frames hold the endpoint's response), and for others only
    when the traceback's text held a token. Usable on any handler in ``LOGGING``
    too: ``"()": "django_azure_pg.redaction.RedactingFilter"``.
    """

    def __init__(self, name: str = "", *, keep_clean_exceptions: bool = False) -> None:
        super().__init__(name)
        self.keep_clean_exceptions = keep_clean_exceptions

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: let logging report it as usual
            return True
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            cleaned = redact(record.exc_text)
            if record.exc_info and (cleaned != record.exc_text or not self.keep_clean_exceptions):
                record.exc_info = None
            record.exc_text = cleaned
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FILTER = RedactingFilter()
_CORE_FILTER = RedactingFilter(keep_clean_exceptions=True)


def _filter_for(logger_name: str) -> RedactingFilter:
    return _CORE_FILTER if logger_name.startswith(_KEEP_EXCEPTIONS) else _FILTER


class _RedactingHandler(logging.Handler):
    """Sits on the ``azure`` and ``msal`` parent loggers and redacts every record that
    propagates through them — those of loggers created later too.

    A logger's filters see only records logged on that very logger, but a record
    reaches every handler up the hierarchy as the same object: redacting it here,
    before the root logger's handlers, covers loggers azure-identity and msal create
    on first use (``azure.identity._internal.msal_managed_identity_client`` logs an
    endpoint's body, token included, on a malformed answer). It emits nothing itself,
    except what logging's last-resort handler would have printed had it not been here.
    """

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)

    def handle(self, record: logging.LogRecord) -> bool:
        _filter_for(record.name).filter(record)
        last = logging.lastResort
        if (
            last is not None
            and record.levelno >= last.level
            and not _other_handlers(logging.getLogger(record.name), self)
        ):
            last.handle(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:  # pragma: no cover - handle() does it
        pass


def _other_handlers(logger: logging.Logger, mine: logging.Handler) -> bool:
    """Whether a record logged on ``logger`` reaches a handler other than ``mine``."""
    current: logging.Logger | None = logger
    while current is not None:
        if any(h is not mine for h in current.handlers):
            return True
        current = current.parent if current.propagate else None
    return False


_HANDLER = _RedactingHandler()
PARENT_LOGGERS = ("azure", "msal")
"""Loggers that carry :data:`_HANDLER`: every azure-identity, azure-core and msal logger,
present or future, is below one of them."""

_lock = threading.Lock()
_seen_loggers = -1
_disabled = False


def install_log_redaction() -> None:
    """Put the filter on every matching logger that exists now (cheap when nothing is new).

    Called before each token fetch: azure-identity creates some of its loggers
    on first use, and a filter on a parent logger does not see its children's
    records.
    """
    global _seen_loggers
    if _disabled or os.environ.get(OPT_OUT_VARIABLE, "").lower() in {"off", "0", "false", "no"}:
        return
    manager = logging.Logger.manager
    if len(manager.loggerDict) == _seen_loggers:
        return
    with _lock:
        for name in PARENT_LOGGERS:
            parent = logging.getLogger(name)
            if _HANDLER not in parent.handlers:
                parent.addHandler(_HANDLER)
        names = list(manager.loggerDict)
        for name in [*names, *LOGGER_PREFIXES]:  # the roots too, even before they log
            if name.startswith(LOGGER_PREFIXES):
                logger, wanted = logging.getLogger(name), _filter_for(name)
                if wanted not in logger.filters:
                    logger.addFilter(wanted)
        _seen_loggers = len(manager.loggerDict)


def after_fork_in_child() -> None:
    """A new lock in a forked child (run by forksafe's at-fork handler).

    ``install_log_redaction`` runs in the token thread; a fork while that
    thread held the lock would leave it held forever in the child.
    """
    global _lock, _secrets_lock
    _lock = threading.Lock()
    _secrets_lock = threading.Lock()


def uninstall_log_redaction() -> None:
    """Remove the filter and stop installing it (the documented opt-out, from code)."""
    global _disabled, _seen_loggers
    with _lock:
        _disabled = True
        _seen_loggers = -1
        for name in PARENT_LOGGERS:
            logging.getLogger(name).removeHandler(_HANDLER)
        for name in list(logging.Logger.manager.loggerDict):
            logger = logging.getLogger(name)
            for installed in (_FILTER, _CORE_FILTER):
                if installed in logger.filters:
                    logger.removeFilter(installed)


forksafe.on_fork(child=after_fork_in_child)
