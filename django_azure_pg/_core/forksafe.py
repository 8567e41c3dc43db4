"""Fork safety for credential objects we did not build.

A credential we build is rebuilt in a forked child (token_source.py). An object the
settings hand us (or a dotted path to an instance) cannot be rebuilt, so in the
child every ``requests.Session`` inside it gets new connection pools: the child
never reads or writes the parent's keep-alive socket to the identity endpoint.
What a child replaces (credential objects, connection pools) is kept alive,
untouched, in one list (:func:`retire`), so no finalizer takes a lock a parent
thread may have held at fork time. A transport we do not know how to renew is
reported once, at runtime.

The package has one at-fork handler, here: it renews those transports, then
runs what other modules asked for with :func:`on_fork` — a new lock where a
parent thread may have held one (redaction, registry), and every token source
starting afresh with its own place in the refresh window (tokens). No Django
import here.
"""

from __future__ import annotations

import logging
import os
import socket
import types
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

_explicit_objects: dict[int, Any] = {}
_retired: list[Any] = []
_warned: set[str] = set()
_MAX_NODES = 5000


def retire(obj: Any) -> None:
    """Keep ``obj``, inherited from the parent, alive and untouched in a forked child."""
    _retired.append(obj)


def watch(credential: Any) -> None:
    """Renew ``credential``'s connections in every forked child of this process."""
    _explicit_objects.setdefault(id(credential), credential)


def _transports(root: Any) -> tuple[list[Any], list[str]]:
    """The requests sessions inside ``root``, and names of transports we cannot renew."""
    try:
        import requests
    except ImportError:  # pragma: no cover — azure-core depends on requests
        requests = None  # type: ignore[assignment]
    import http.client

    sessions: list[Any] = []
    unknown: list[str] = []
    seen: set[int] = set()
    stack: list[tuple[Any, int]] = [(root, 0)]
    leaves = (str, bytes, int, float, complex, bool, type(None), type, types.ModuleType,
              types.FunctionType, types.BuiltinFunctionType, types.MethodType)  # fmt: skip
    while stack and len(seen) < _MAX_NODES:
        obj, depth = stack.pop()
        if id(obj) in seen or isinstance(obj, leaves) or depth > 10:
            continue
        seen.add(id(obj))
        if requests is not None and isinstance(obj, requests.Session):
            sessions.append(obj)
            continue
        module = type(obj).__module__ or ""
        if isinstance(obj, (socket.socket, http.client.HTTPConnection)) or module.split(".")[0] in (
            "httpx",
            "aiohttp",
            "urllib3",
            "httpcore",
        ):
            unknown.append(f"{module}.{type(obj).__qualname__}")
            continue
        if isinstance(obj, dict):
            children: Any = obj.values()
        elif isinstance(obj, (list, tuple, set, frozenset)):
            children = obj
        else:
            try:
                children = vars(obj).values()
            except TypeError:
                continue
        stack.extend((child, depth + 1) for child in list(children))
    return sessions, unknown


def _renew(session: Any) -> None:
    for adapter in list(session.adapters.values()):
        if not hasattr(adapter, "init_poolmanager"):
            continue
        retire((adapter.poolmanager, adapter.proxy_manager))
        adapter.proxy_manager = {}
        adapter.init_poolmanager(
            adapter._pool_connections, adapter._pool_maxsize, block=adapter._pool_block
        )


def make_fork_safe(credential: Any) -> bool:
    """In a forked child: give ``credential`` connections of its own; False if we cannot."""
    sessions, unknown = _transports(credential)
    for session in sessions:
        _renew(session)
    return not unknown


def after_fork_in_child() -> None:
    """Renew the transports of the credential objects :func:`watch` was given."""
    for credential in list(_explicit_objects.values()):
        try:
            safe = make_fork_safe(credential)
        except Exception:  # never break the child over this
            safe = False
        name = type(credential).__qualname__
        if not safe and name not in _warned:
            _warned.add(name)
            logger.warning(
                "After fork(), the credential object %s in OPTIONS['credential'] may share its "
                "parent's connection to the identity endpoint: it holds a transport "
                "django-azure-pg cannot renew. Pass its class, a factory or a dotted path to "
                "one instead, so each process builds its own.",
                name,
            )


_before: list[Callable[[], None]] = []
_in_child: list[Callable[[], None]] = []
_in_child_last: list[Callable[[], None]] = []


def on_fork(
    *,
    before: Callable[[], None] | None = None,
    child: Callable[[], None] | None = None,
    last: bool = False,
) -> None:
    """Run ``before`` in the parent just before ``fork()``, ``child`` in the child after it
    (in the order modules registered them, after the transports are renewed). ``last``:
    after every other child hook, whenever its module was imported — for work that needs
    the child's state settled (the warm start begins the child's own fetch)."""
    if before is not None:
        _before.append(before)
    if child is not None:
        (_in_child_last if last else _in_child).append(child)


def _before_fork() -> None:
    for hook in _before:
        hook()


def _after_fork_in_child() -> None:
    """The package's one at-fork handler: every lock, fetch and transport a child inherits."""
    after_fork_in_child()
    for hook in (*_in_child, *_in_child_last):
        hook()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
