"""JSON from clients, decoded strictly and with a depth limit.

orjson refuses what the stdlib lets through (NaN, Infinity, 1e400 as inf, invalid UTF-8) and
stops at 1,024 levels instead of recursing until RecursionError. The project's limit is 64
levels, measured level by level afterwards, without recursion.

A lone surrogate escape ("\\ud800") is valid JSON text that orjson refuses: such a body is read
again by the stdlib, as strictly otherwise, because the surrogate may sit in one event of an
`ingestMeterEvents` batch, which must reject that event alone. Every other string argument
holding one is refused before execution (schema/input_text.py).
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

MAX_DEPTH = 64


class BadJson(ValueError):
    """The text is not JSON this API accepts; the message says why, for the client."""


def loads(data: bytes | str, *, what: str = "the body", max_depth: int = MAX_DEPTH) -> Any:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if "surrogate" in str(exc):
            value = _with_lone_surrogates(data, what)
        elif "depth limit" in str(exc):
            raise BadJson(f"{what} is nested deeper than {max_depth} levels") from exc
        else:
            raise _invalid(what, exc) from exc
    if depth_exceeds(value, max_depth):
        raise BadJson(f"{what} is nested deeper than {max_depth} levels")
    return value


def _invalid(what: str, exc: Exception) -> BadJson:
    return BadJson(
        f"{what} is not valid JSON (UTF-8; NaN, Infinity and numbers beyond a double's "
        f"range are not JSON): {exc}"
    )


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text} is beyond a double's range")
    return number


def _with_lone_surrogates(data: bytes | str, what: str) -> Any:
    try:
        return json.loads(data, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError as exc:
        raise BadJson(f"{what} is nested deeper than {MAX_DEPTH} levels") from exc
    except ValueError as exc:  # includes JSONDecodeError and invalid UTF-8
        raise _invalid(what, exc) from exc


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
