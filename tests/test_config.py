from __future__ import annotations

import pytest
from pydantic import ValidationError

from meterflow.config import SecretKeyError, Settings
from tests.conftest import TEST_SECRET_KEY


@pytest.mark.parametrize(
    "given",
    [
        "postgresql://postgres@db:5432/mf",
        "postgres://postgres@db:5432/mf",
        "postgresql+asyncpg://postgres@db:5432/mf",
    ],
)
def test_database_url_accepts_plain_and_asyncpg_forms(given: str) -> None:
    assert Settings(database_url=given).database_url == "postgresql+asyncpg://postgres@db:5432/mf"


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METERFLOW_REDIS_URL", "redis://cache:6380/2")
    monkeypatch.setenv("METERFLOW_MAX_QUERY_DEPTH", "7")
    settings = Settings()
    assert settings.redis_url == "redis://cache:6380/2"
    assert settings.max_query_depth == 7


def test_bad_urls_are_refused_with_the_reason() -> None:
    with pytest.raises(ValidationError, match="must be a postgresql:// URL"):
        Settings(database_url="mysql://x/y")
    with pytest.raises(ValidationError, match="redis://, rediss:// or unix://"):
        Settings(redis_url="http://cache")


def test_secret_key_is_never_printed() -> None:
    settings = Settings(secret_key="s3cr3t-value")
    assert "s3cr3t-value" not in repr(settings)
    assert "s3cr3t-value" not in str(settings.model_dump())


def test_previous_keys_follow_the_current_one() -> None:
    settings = Settings(
        secret_key=TEST_SECRET_KEY, previous_secret_keys=["old-key", TEST_SECRET_KEY, ""]
    )
    assert settings.required_secret_keys() == (TEST_SECRET_KEY, "old-key")
    with pytest.raises(SecretKeyError, match="not set"):
        Settings(previous_secret_keys=["old-key"]).required_secret_keys()


def test_previous_keys_come_from_the_environment_as_a_json_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("METERFLOW_SECRET_KEY", TEST_SECRET_KEY)
    monkeypatch.setenv("METERFLOW_PREVIOUS_SECRET_KEYS", '["a-retired-key", "an-older-one"]')
    keys = Settings().required_secret_keys()
    assert keys == (TEST_SECRET_KEY, "a-retired-key", "an-older-one")
    assert "a-retired-key" not in repr(Settings())
