"""JWT-shaped tokens with the claims Entra puts in database tokens.

The signature is random bytes: nothing here verifies it, the emulator
recognises its own tokens by value.
"""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint(claims: dict[str, Any]) -> str:
    header = {"typ": "JWT", "alg": "RS256", "kid": "emulator"}
    return ".".join(
        (
            _b64(json.dumps(header, separators=(",", ":")).encode()),
            _b64(json.dumps(claims, separators=(",", ":")).encode()),
            _b64(secrets.token_bytes(256)),
        )
    )
