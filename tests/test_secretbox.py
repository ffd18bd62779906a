"""Encryption at rest: sealed values, legacy clear values, and key rotation."""

from __future__ import annotations

import pytest

from meterflow.secretbox import PREFIX, SecretBox, UnreadableSecretError, is_sealed

KEY_A = "key-a-0123456789abcdef0123456789abcdef"
KEY_B = "key-b-0123456789abcdef0123456789abcdef"
SLACK = "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXX"


def test_sealed_values_hide_the_clear_text_and_open_again() -> None:
    box = SecretBox(KEY_A)
    sealed = box.seal(SLACK)
    assert sealed.startswith(PREFIX) and is_sealed(sealed)
    assert "hooks.slack.com" not in sealed and "XXXXXXXX" not in sealed
    assert box.seal(SLACK) != sealed  # a fresh IV each time: equal secrets do not show
    assert box.open(sealed) == SLACK


def test_a_legacy_clear_value_reads_as_it_is() -> None:
    assert SecretBox(KEY_A).open("whsec_written_before_encryption") == (
        "whsec_written_before_encryption"
    )


def test_another_key_cannot_open_it() -> None:
    sealed = SecretBox(KEY_A).seal("whsec_x")
    with pytest.raises(UnreadableSecretError, match="METERFLOW_PREVIOUS_SECRET_KEYS"):
        SecretBox(KEY_B).open(sealed)


def test_rotation_previous_keys_still_open_and_rotate_moves_to_the_current_key() -> None:
    old = SecretBox(KEY_A).seal("whsec_rotating")
    rotated_box = SecretBox(KEY_B, [KEY_A])
    assert rotated_box.open(old) == "whsec_rotating"
    new = rotated_box.rotate(old)
    assert new != old and is_sealed(new)
    # Once rotated, the old key can be dropped.
    assert SecretBox(KEY_B).open(new) == "whsec_rotating"
    with pytest.raises(UnreadableSecretError):
        SecretBox(KEY_A).open(new)
    # New values use the current key only.
    assert SecretBox(KEY_B).open(rotated_box.seal("fresh")) == "fresh"
    # A legacy clear value gets sealed by rotate.
    assert SecretBox(KEY_B).open(rotated_box.rotate("clear")) == "clear"
    assert is_sealed(rotated_box.rotate("clear"))


def test_the_derived_key_is_not_the_secret_itself() -> None:
    """The stored ciphertext's key comes from HKDF, so a Fernet key made straight from the
    secret's bytes does not open it."""
    import base64

    from cryptography.fernet import Fernet, InvalidToken

    sealed = SecretBox(KEY_A).seal("whsec_x")
    naive = Fernet(base64.urlsafe_b64encode(KEY_A.encode()[:32]))
    with pytest.raises(InvalidToken):
        naive.decrypt(sealed[len(PREFIX) :].encode())
