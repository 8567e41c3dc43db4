"""Scrub access tokens out of text before it reaches a log or an exception.

A token is a password. Credential errors sometimes quote the identity
endpoint's response, which may hold one (see the fork notes in
``tokens.py``), so every message built from foreign text goes through here.
"""

from __future__ import annotations

import re

# JWTs: three base64url segments, the first two starting with '{"' encoded.
_JWT = re.compile(r"eyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*")
# "access_token": "..." style fragments of JSON bodies, whatever the token shape.
_FIELD = re.compile(
    r"""(?P<key>["']?(?:access_token|refresh_token|id_token|password)["']?\s*[:=]\s*["']?)"""
    r"""(?P<value>[^"'\s,}&]+)""",
    re.IGNORECASE,
)

MASK = "[redacted]"


def redact(text: str) -> str:
    text = _JWT.sub(MASK, text)
    return _FIELD.sub(lambda m: m.group("key") + MASK, text)
