from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import strawberry


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None

    @classmethod
    def of(cls, edges: Sequence[Any], has_next_page: bool) -> PageInfo:
        """Relay's page info for a page of edges (each with a `cursor`)."""
        return cls(has_next_page=has_next_page, end_cursor=edges[-1].cursor if edges else None)
