"""Small SQL building helpers shared by services."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Text, any_, bindparam
from sqlalchemy.dialects.postgresql import ARRAY


def any_text(values: Iterable[str]) -> Any:
    """`= ANY(one array parameter)`: an IN list would compile and bind one parameter per value,
    and a batch or a period close can name thousands (past PostgreSQL's parameter limit)."""
    return any_(bindparam(None, sorted(set(values)), type_=ARRAY(Text)))
