"""Encryption at rest for stored credentials: webhook signing secrets, webhook and Slack URLs.

The Fernet keys are derived from METERFLOW_SECRET_KEY (HKDF-SHA256), so the one secret an
operator keeps covers token signatures and stored credentials, and a copy of the database alone
reveals neither. Old keys (METERFLOW_PREVIOUS_SECRET_KEYS) still decrypt; new values use the
current one. Stored values read `enc:v1:<Fernet token>`; a value without that prefix was written
before encryption and reads as it is, until its next write or `rotate` seals it.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "enc:v1:"
# Binds the derived key to this one use: the same secret also signs session tokens (HMAC).
_HKDF_INFO = b"meterflow/at-rest/v1"


class UnreadableSecretError(Exception):
    """A sealed value none of the configured keys opens."""


def _fernet(secret_key: str) -> Fernet:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
        secret_key.encode()
    )
    return Fernet(base64.urlsafe_b64encode(derived))


def is_sealed(value: str) -> bool:
    return value.startswith(PREFIX)


class SecretBox:
    """Seals with the current key; opens with the current or any previous one."""

    def __init__(self, current_key: str, previous_keys: Sequence[str] = ()) -> None:
        if not current_key:
            raise ValueError("a SecretBox needs a secret key")
        self._keys = MultiFernet([_fernet(k) for k in (current_key, *previous_keys)])

    @classmethod
    def from_keys(cls, keys: Sequence[str]) -> SecretBox:
        """From `Settings.required_secret_keys()`: the current key first."""
        return cls(keys[0], keys[1:])

    def seal(self, value: str) -> str:
        return PREFIX + self._keys.encrypt(value.encode()).decode()

    def open(self, value: str) -> str:
        """The clear value; a legacy unsealed value is returned as it is."""
        if not is_sealed(value):
            return value
        try:
            return self._keys.decrypt(value[len(PREFIX) :].encode()).decode()
        except InvalidToken as exc:
            raise UnreadableSecretError(
                "a stored credential was encrypted with a key that is no longer configured: "
                "list the old key in METERFLOW_PREVIOUS_SECRET_KEYS"
            ) from exc

    def rotate(self, value: str) -> str:
        """The value sealed under the current key (legacy clear values get sealed too)."""
        if not is_sealed(value):
            return self.seal(value)
        try:
            return PREFIX + self._keys.rotate(value[len(PREFIX) :].encode()).decode()
        except InvalidToken as exc:
            raise UnreadableSecretError(
                "cannot re-encrypt a stored credential: none of the configured keys opens it"
            ) from exc
