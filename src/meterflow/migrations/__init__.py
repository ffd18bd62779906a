"""Alembic migrations, configured in code so `meterflow migrate` works from an installed wheel."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config

from meterflow.config import to_async_database_url

HERE = Path(__file__).resolve().parent


PARTITION_NAME = re.compile(r"meter_events_\d{4}_\d{2}")


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Monthly partitions are made at run time, not by migrations: leave them out of diffs."""
    table = obj.table.name if type_ == "index" and obj.table is not None else name
    return not (reflected and table is not None and PARTITION_NAME.fullmatch(table))


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    # `%` is alembic's interpolation character; URLs may carry it (escaped passwords).
    cfg.set_main_option("sqlalchemy.url", to_async_database_url(database_url).replace("%", "%%"))
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)
