"""JSON from clients, decoded strictly and with a depth limit.

orjson refuses what the stdlib lets through (NaN, Infinity, 1e400 as inf, invalid UTF-8, lone
surrogates) and stops at 1,024 levels instead of recursing until RecursionError. The project's
limit is 64 levels, measured level by level afterwards, without recursion.
"""

from __future__ import annotations

from typing import Any

import orjson

MAX_DEPTH = 64


class BadJson(ValueError):
    """The text is not JSON this API accepts; the message says why, for the client."""


def loads(data: bytes | str, *, what: str = "the body", max_depth: int = MAX_DEPTH) -> Any:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):
            raise BadJson(f"{what} is nested deeper than {max_depth} levels") from exc
        raise BadJson(
            f"{what} is not valid JSON (UTF-8; NaN, Infinity and numbers beyond a double's "
            f"range are not JSON): {exc}"
        ) from exc
    if depth_exceeds(value, max_depth):
        raise BadJson(f"{what} is nested deeper than {max_depth} levels")
    return value


def depth_exceeds(value: Any, max_depth: int) -> bool:
    """Whether lists and objects nest deeper than `max_depth` (a scalar is depth 0)."""
    level = [value] if isinstance(value, list | dict) else []
    depth = 0
    while level:
        depth += 1
        if depth > max_depth:
            return True
        below: list[Any] = []
        for container in level:
            items = container.values() if isinstance(container, dict) else container
            below.extend(item for item in items if isinstance(item, list | dict))
        level = below
    return False
