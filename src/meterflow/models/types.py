"""Column types SQLAlchemy does not ship."""

from __future__ import annotations

from sqlalchemy.types import UserDefinedType


class XID8(UserDefinedType[int]):
    """PostgreSQL's 64-bit transaction id (PG 13+)."""

    cache_ok = True

    def get_col_spec(self, **kw: object) -> str:
        return "XID8"
