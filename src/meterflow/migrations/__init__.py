"""Alembic migrations, configured in code so `meterflow migrate` works from an installed wheel."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from meterflow.config import to_async_database_url

HERE = Path(__file__).resolve().parent


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    # `%` is alembic's interpolation character; URLs may carry it (escaped passwords).
    cfg.set_main_option("sqlalchemy.url", to_async_database_url(database_url).replace("%", "%%"))
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)
