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
from decimal import Decimal
from itertools import chain, compress, repeat
from operator import is_
from typing import Any

import orjson

from meterflow.services.record_decoding import LONG_NUMBER

MAX_DEPTH = 64


class ExactFloat(float):
    """A JSON fraction a double cannot hold exactly, with the text it was written as."""

    __slots__ = ("text",)
    text: str


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
    else:
        # Only a fraction can be inexact, and orjson reads every fraction as a float: a body
        # without one needs no search (the regex scan cost 3.8 ms a 1,000-event body).
        if _holds_float(value, max_depth) and LONG_NUMBER.search(
            data if isinstance(data, bytes) else data.encode()
        ):
            value = _exact_numbers(data, what, value)
    if deeper_than(value, max_depth):
        raise BadJson(f"{what} is nested deeper than {max_depth} levels")
    return value


def _exact_float(text: str) -> float:
    number = _finite_float(text)
    if Decimal(repr(number)) == Decimal(text):
        return number
    exact = ExactFloat(number)
    exact.text = text
    return exact


def _exact_numbers(data: bytes | str, what: str, fast: Any) -> Any:
    """The body again, numbers exact. Only its depth is at stake: orjson already accepted it
    (within 1,024 levels), but the stdlib recurses, so a deep body keeps orjson's reading."""
    if deeper_than(fast, MAX_DEPTH):
        return fast
    try:
        return json.loads(data, parse_constant=_refuse_constant, parse_float=_exact_float)
    except ValueError as exc:  # e.g. an integer past Python's 4,300-digit int() limit
        raise _invalid(what, exc) from exc


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
        return json.loads(data, parse_constant=_refuse_constant, parse_float=_exact_float)
    except RecursionError as exc:
        raise BadJson(f"{what} is nested deeper than {MAX_DEPTH} levels") from exc
    except ValueError as exc:  # includes JSONDecodeError and invalid UTF-8
        raise _invalid(what, exc) from exc


_CONTAINER = frozenset((dict, list)).__contains__


def _children(level: list[Any]) -> list[Any]:
    """Every value directly inside the objects and arrays of `level`, by C iterators."""
    kinds = list(map(type, level))
    dicts = compress(level, map(is_, kinds, repeat(dict)))
    lists = compress(level, map(is_, kinds, repeat(list)))
    return list(chain(chain.from_iterable(map(dict.values, dicts)), chain.from_iterable(lists)))


def _holds_float(value: Any, limit: int) -> bool:
    """Whether decoded JSON holds a float within `limit` levels (deeper, the depth rule
    refuses it anyway), level by level as deeper_than walks."""
    level: list[Any] = [value]
    for _ in range(limit + 1):
        kinds = set(map(type, level))
        if float in kinds:
            return True
        if dict not in kinds and list not in kinds:
            return False
        level = _children(level)
    return False


def deeper_than(value: Any, limit: int) -> bool:
    """Whether decoded JSON nests more than `limit` objects and arrays deep (a scalar: 0).

    The one depth rule of every JSON reader (request bodies, ingest bodies, WebSocket messages).
    Level by level, with no recursion; a level is split by type and expanded by C iterators (no
    Python per value): a 1,000-event GraphQL body takes about half a ms.
    """
    if type(value) is not dict and type(value) is not list:
        return False
    level: list[Any] = [value]
    for _ in range(limit):
        children = _children(level)
        level = list(compress(children, map(_CONTAINER, map(type, children))))
        if not level:
            return False
    return True
