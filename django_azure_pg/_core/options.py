"""The OPTIONS keys this backend reads, and their validation; they never reach libpq.

Every problem names the key and never the value (a value may be a secret);
``manage.py check`` reports them all, first use raises the first one.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any, TypeVar

from .names import SERVICE_CONNECTOR_SUFFIXES as SERVICE_CONNECTOR_SUFFIXES

CREDENTIAL_KEYS = ("credential", *SERVICE_CONNECTOR_SUFFIXES)
TOKEN_KEYS = ("token_scope", "token_refresh_margin", "token_timeout", "allow_custom_token_scope")
TRANSPORT_KEYS = ("allow_plaintext_token",)
PROCESS_KEYS = ("warm_start",)  # django_azure_pg/_warm.py
OUR_KEYS = frozenset(CREDENTIAL_KEYS + TOKEN_KEYS + TRANSPORT_KEYS + PROCESS_KEYS)
"""Removed from the connection parameters before psycopg sees them."""

D = TypeVar("D", bound=float | None)

RANGES = {
    "token_refresh_margin": (0.0, 86_400.0),  # up to a day: managed-identity token lifetime
    "token_timeout": (0.0, 600.0),
}
"""Exclusive lower, inclusive upper bound, in seconds."""

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}


class OptionError(ValueError):
    """An OPTIONS value of ours is unusable. The message names the key, never the value."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def strip(params: dict[str, Any]) -> dict[str, Any]:
    """Remove our keys from connection parameters, in place."""
    for key in OUR_KEYS:
        params.pop(key, None)
    return params


def number(options: Mapping[str, Any], key: str, default: D) -> float | D:
    """A finite number of seconds within ``RANGES[key]`` (numeric strings allowed: URLs)."""
    value = options.get(key)
    if value is None:
        return default
    low, high = RANGES[key]
    expected = (
        f"OPTIONS[{key!r}] must be a number of seconds greater than {low:g} and at most {high:g}"
    )
    if isinstance(value, bool):
        raise OptionError(key, f"{expected}, not a bool")
    try:
        result = float(value)
    except (TypeError, ValueError, OverflowError):
        raise OptionError(
            key, f"{expected}; got a {type(value).__name__} that is not a number"
        ) from None
    if not math.isfinite(result) or not low < result <= high:
        raise OptionError(key, f"{expected}; the value given is outside that range")
    return result


def flag(options: Mapping[str, Any], key: str) -> bool:
    """A yes/no option: a bool, or ``"true"``/``"false"`` (and the like) from a URL."""
    value = options.get(key)
    if value is None:  # unset, or None from code that fills every key
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    raise OptionError(key, f"OPTIONS[{key!r}] must be True or False, not a {type(value).__name__}")


def problems(options: Mapping[str, Any]) -> list[OptionError]:
    """Every unusable value among our keys (and the TLS keys we act on)."""
    from . import clouds, credentials, tls

    found: list[OptionError] = []

    def run(check: Any, *args: Any) -> None:
        try:
            check(*args)
        except OptionError as exc:
            found.append(exc)
        except credentials.CredentialConfigError as exc:
            found.append(OptionError("credential", str(exc)))

    for key in RANGES:
        run(number, options, key, 0.0)
    for key in (*TRANSPORT_KEYS, *PROCESS_KEYS, "allow_custom_token_scope"):
        run(flag, options, key)
    for key in SERVICE_CONNECTOR_SUFFIXES:
        if options.get(key) is not None and not isinstance(options[key], str):
            found.append(
                OptionError(
                    key, f"OPTIONS[{key!r}] must be a string, not a {type(options[key]).__name__}"
                )
            )
    scope = options.get("token_scope")
    try:
        custom = flag(options, "allow_custom_token_scope")
    except OptionError:
        custom = False  # reported above
    if scope is not None and not (
        isinstance(scope, str)
        and (
            clouds.is_known_scope(scope)
            or (custom and scope.startswith("https://") and scope.endswith("/.default"))
        )
    ):
        # A token is sent to the database server as a password: a token for another
        # service (Azure Resource Manager, Graph, Key Vault) would hand that server a
        # credential for it.
        names = ", ".join(repr(n) for n in clouds.SCOPES)
        found.append(
            OptionError(
                "token_scope",
                f"OPTIONS['token_scope'] must be one of {names} or a cloud's Azure Database "
                "for PostgreSQL scope (https://ossrdbms-aad.database.<cloud domain>/.default); "
                "any other https://…/.default scope only with "
                "OPTIONS['allow_custom_token_scope'] = True",
            )
        )
    if options.get("credential") is not None:
        run(credential_check, options["credential"])
    sslmode = options.get("sslmode")
    if sslmode is not None and (
        not isinstance(sslmode, str) or sslmode.lower() not in tls.SSLMODES
    ):
        found.append(
            OptionError("sslmode", f"OPTIONS['sslmode'] must be one of {', '.join(tls.SSLMODES)}")
        )
    return found


def check(options: Mapping[str, Any]) -> None:
    """Raise the first problem (first use, when ``manage.py check`` may not have run)."""
    found = problems(options)
    if found:
        raise found[0]


def credential_check(value: Any) -> None:
    """A TokenCredential, a class with ``get_token``, a zero-argument factory, or a path to one."""
    from . import credentials

    resolved = credentials.resolve_explicit(value)
    if credentials.is_credential(resolved):
        return
    where = (
        f"OPTIONS['credential'] {value!r}" if isinstance(value, str) else "OPTIONS['credential']"
    )
    if isinstance(resolved, type):
        if callable(getattr(resolved, "get_token", None)):
            return
        raise OptionError(
            "credential", f"{where} is a class without get_token(): not a TokenCredential"
        )
    if not callable(resolved):
        raise OptionError(
            "credential",
            f"{where} is a {type(resolved).__name__}, neither a TokenCredential nor a callable returning one",
        )
    try:
        required = [
            p.name
            for p in inspect.signature(resolved).parameters.values()
            if p.default is p.empty
            and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
    except (TypeError, ValueError):
        return  # a builtin without a signature: it is checked when first called
    if required:
        raise OptionError(
            "credential",
            f"{where} must be callable without arguments; it requires {', '.join(required)}",
        )
