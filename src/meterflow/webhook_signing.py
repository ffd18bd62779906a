"""Standard Webhooks signing (https://www.standardwebhooks.com), the scheme Svix, OpenMeter
and others use, so receivers verify with the maintained `standardwebhooks` or `svix` library.

A secret is `whsec_` + base64 of random bytes; the key is those bytes. A message is signed as
`v1,<base64 HMAC-SHA256(key, "<webhook-id>.<webhook-timestamp>.<body>")>`; during a secret
rotation one signature per secret is sent, separated by spaces.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Sequence

PREFIX = "whsec_"
KEY_BYTES = 32
# The spec allows keys of 24 to 64 bytes.
MIN_KEY_BYTES, MAX_KEY_BYTES = 24, 64


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def key_of(secret: str) -> bytes:
    """The key bytes of a `whsec_` secret; ValueError when it is not one."""
    if not secret.startswith(PREFIX):
        raise ValueError("a webhook secret starts with whsec_")
    try:
        key = base64.b64decode(secret[len(PREFIX) :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a webhook secret is whsec_ followed by base64") from exc
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise ValueError(
            f"a webhook secret's key is {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes "
            "(base64 after whsec_)"
        )
    return key


def is_valid_secret(secret: str) -> bool:
    try:
        key_of(secret)
    except ValueError:
        return False
    return True


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(
        key_of(secret), f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256
    ).digest()
    return "v1," + base64.b64encode(mac).decode()


def headers(
    message_id: str, timestamp: int, body: bytes, secrets_: Sequence[str]
) -> dict[str, str]:
    """The three headers of a signed message (one signature per secret, current first)."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(s, message_id, timestamp, body) for s in secrets_),
    }
