"""The one place configuration is read. Entry points build a `Settings`; nothing else reads env."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def to_async_database_url(url: str) -> str:
    """Accept the plain `postgresql://` form operators paste, and drive it with asyncpg."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError(
        f"METERFLOW_DATABASE_URL must be a postgresql:// URL, got scheme {url.split(':', 1)[0]!r}"
    )


SECRET_KEY_MIN_LENGTH = 32
HOW_TO_GENERATE = (
    "export METERFLOW_SECRET_KEY=$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
)


class SecretKeyError(ValueError):
    """`serve` and `worker` cannot run without a usable secret key; the message says how to
    set one."""


def _missing_or_short(value: str | None) -> str | None:
    if not value:
        return "METERFLOW_SECRET_KEY is not set"
    if len(value) < SECRET_KEY_MIN_LENGTH:
        return (
            f"METERFLOW_SECRET_KEY is {len(value)} characters long; it must be at least "
            f"{SECRET_KEY_MIN_LENGTH}"
        )
    return None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="METERFLOW_", env_file=None, extra="ignore")

    database_url: str = "postgresql://postgres@127.0.0.1:5432/meterflow"
    redis_url: str = "redis://127.0.0.1:6379/0"

    # Signs customer session tokens and derives the key that encrypts stored credentials.
    # Required by `serve` and `worker` (no default: a public default signs nothing);
    # `meterflow dev` generates one and keeps it in its data dir.
    secret_key: SecretStr | None = None
    # Keys the current one replaced (JSON list): they still verify tokens they signed and
    # decrypt what they encrypted; everything new uses `secret_key`.
    previous_secret_keys: list[SecretStr] = Field(default_factory=list)

    # Request limits. A GraphQL batch of 10,000 events is roughly 2 MB of JSON.
    max_request_bytes: int = 8 * 1024 * 1024
    max_query_depth: int = 12
    max_query_tokens: int = 5_000
    max_aliases: int = 30
    max_page_size: int = 500
    # Lists multiplied by the pages they ask for (query_cost.py), refused above this.
    max_query_cost: int = 100_000

    # PostgreSQL statement_timeout on every connection of the API process: a request's
    # statement that runs (or waits on a lock) longer is cancelled and answered TIMEOUT/504.
    statement_timeout_ms: int = Field(default=15_000, ge=0)
    # The worker's own, larger: a rollup step over a backlog may legitimately run long, but a
    # stuck statement is still cancelled and its job retried. 0 means no timeout.
    worker_statement_timeout_ms: int = Field(default=600_000, ge=0)

    # Alert delivery: retries back off from this many seconds, doubling, up to max attempts.
    alert_retry_base_seconds: float = 2.0
    alert_max_attempts: int = 6
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_from: str = "alerts@meterflow.local"
    # Development and tests only: alert rules may target plain http and private, loopback and
    # link-local addresses (local receivers). Off, webhook and Slack targets are public https.
    allow_private_webhook_targets: bool = False

    # Webhook endpoints: retries back off from this many seconds, doubling (at most 10 h apart),
    # for the window; an endpoint failing for the whole window is disabled.
    webhook_retry_base_seconds: float = Field(default=5.0, gt=0)
    webhook_retry_window_seconds: float = Field(default=3 * 24 * 3600.0, gt=0)

    # Stripe's API base URL: unset for Stripe itself; a local fake in tests, or a proxy.
    stripe_api_base: str | None = None
    # After a failed top-up payment, the next automatic top-up of that wallet waits this long.
    top_up_retry_seconds: float = Field(default=3600.0, ge=0)

    # Events one rollup step reads at most (a step is one transaction).
    rollup_batch_events: int = 50_000

    # Origins allowed to call token-authenticated endpoints from a browser ("*" = any).
    cors_origins: list[str] = ["*"]

    log_level: str = "info"
    # text: for people; json: one object a line (time, level, logger, message, account,
    # request_id) for log pipelines.
    log_format: Literal["text", "json"] = "text"

    # /embed/demo without ?token= mints a 1-hour token for the demo customer (`meterflow dev` only).
    demo_embed: bool = False

    def required_secret_keys(self) -> tuple[str, ...]:
        """The current secret key, then the previous ones; SecretKeyError says what is wrong
        and how to set one."""
        current = self.secret_key.get_secret_value() if self.secret_key else None
        if problem := _missing_or_short(current):
            raise SecretKeyError(
                f"{problem}. It signs customer session tokens and encrypts stored webhook "
                f"secrets; generate one and keep it (every API process and worker needs the "
                f"same one):\n  {HOW_TO_GENERATE}"
            )
        assert current is not None
        previous = tuple(k.get_secret_value() for k in self.previous_secret_keys)
        return (current, *(k for k in previous if k and k != current))

    @field_validator("database_url")
    @classmethod
    def _normalise_database_url(cls, value: str) -> str:
        return to_async_database_url(value)

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("METERFLOW_REDIS_URL must be a redis://, rediss:// or unix:// URL")
        return value
