"""Amberflo's usage API: POST /usage and /usage/, answering Amberflo's response shape."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from meterflow.db import TIMEOUT_MESSAGE, is_timeout, is_transient
from meterflow.errors import AuthenticationError, MeterflowError, ValidationError
from meterflow.http.auth import presented_key
from meterflow.http.jsonbody import BadJson, loads
from meterflow.models import MeterType
from meterflow.services import accounts, meters, usage
from meterflow.services.timebuckets import Grouping

# Amberflo lets the caller pick the aggregation; for meters whose own kind is not one of these
# (UNIQUE_COUNT, DURATION, LATEST, RUNNING_TOTAL) the meter's kind decides.
OVERRIDES = {"SUM": MeterType.SUM, "COUNT": MeterType.COUNT, "MAX": MeterType.MAX}
ADDITIVE = {MeterType.SUM, MeterType.COUNT, MeterType.MAX}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


INT64 = 2**63


def number(value: Decimal) -> int | orjson.Fragment:
    """A Decimal as an exact JSON number (float() would turn 9007199254740993 into
    9007199254740992 and 0.1 into 0.1000000000000000055...). Integers within 64 bits, the
    usual case, go to orjson as ints; every other value as its own digits."""
    if value == value.to_integral_value() and -INT64 <= value < INT64:
        return int(value)
    return orjson.Fragment(format(value, "f"))


def _seconds(moment: datetime) -> int:
    return int(moment.timestamp())


def _whole_number(value: Any, name: str, *, low: int, high: int) -> int:
    """A JSON number that is a whole number in [low, high] (1.7e9 is fine; 1.5, "5", true
    are not), compared as a number before anything is built from it."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(f"{name} must be a number, got {type(value).__name__}", field=name)
    if isinstance(value, float) and not value.is_integer():
        raise ValidationError(f"{name} must be a whole number, got {value}", field=name)
    if not low <= value <= high:
        raise ValidationError(f"{name} must be between {low} and {high}, got {value}", field=name)
    return int(value)


def _moment(time_range: dict[str, Any], key: str) -> datetime:
    seconds = _whole_number(
        time_range[key], f"timeRange.{key}", low=0, high=int(usage.LATEST.timestamp())
    )
    return datetime.fromtimestamp(seconds, UTC)


def _strings(value: Any, name: str) -> list[str]:
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(v, str) for v in values):
        raise ValidationError(f"{name} must be a string or a list of strings", field=name)
    return values


def parse_request(body: Any) -> tuple[usage.UsageQuery, str | None]:
    """Amberflo's request → a UsageQuery (enums are case-insensitive, as Amberflo's are).
    Every field is checked for its type and range here; the service checks the rest."""
    if not isinstance(body, dict):
        raise ValidationError("the body must be a JSON object")
    meter = body.get("meterApiName")
    if not isinstance(meter, str) or not meter:
        raise ValidationError("meterApiName is required: a string", field="meterApiName")
    interval = body.get("timeGroupingInterval")
    if not isinstance(interval, str) or interval.upper() not in Grouping.__members__:
        raise ValidationError(
            f"timeGroupingInterval must be one of {', '.join(Grouping)}, got {interval!r}",
            field="timeGroupingInterval",
        )
    time_range = body.get("timeRange")
    if not isinstance(time_range, dict) or "startTimeInSeconds" not in time_range:
        raise ValidationError(
            "timeRange is required: {startTimeInSeconds, endTimeInSeconds?}", field="timeRange"
        )
    start = _moment(time_range, "startTimeInSeconds")
    end = (
        _moment(time_range, "endTimeInSeconds")
        if time_range.get("endTimeInSeconds") is not None
        else datetime.now(UTC)
    )
    aggregation = body.get("aggregation")
    if aggregation is not None and (
        not isinstance(aggregation, str) or aggregation.upper() not in OVERRIDES
    ):
        raise ValidationError(
            f"aggregation {aggregation!r} is not supported (SUM, COUNT, MAX)", field="aggregation"
        )
    take = body.get("take") or {}
    if not isinstance(take, dict):
        raise ValidationError("take must be an object {limit?, isAscending?}", field="take")
    limit = take.get("limit")
    if limit is not None:
        limit = _whole_number(limit, "take.limit", low=1, high=usage.MAX_LIMIT)
    ascending = take.get("isAscending", False)
    if not isinstance(ascending, bool):
        raise ValidationError("take.isAscending must be true or false", field="take.isAscending")
    filter_ = body.get("filter") or {}
    if not isinstance(filter_, dict):
        raise ValidationError("filter must be an object {key: value or [values]}", field="filter")
    group_by = body.get("groupBy") or []
    if not isinstance(group_by, list) or not all(isinstance(g, str) for g in group_by):
        raise ValidationError("groupBy must be a list of strings", field="groupBy")
    return (
        usage.UsageQuery(
            meter_api_name=meter,
            grouping=Grouping(interval.upper()),
            start=start,
            end=end,
            group_by=tuple(group_by),
            filter={k: _strings(v, f"filter.{k}") for k, v in filter_.items()},
            limit=limit,
            ascending=ascending,
        ),
        aggregation.upper() if aggregation else None,
    )


def render(answer: usage.UsageAnswer, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {
            "meterApiName": answer.meter.meter_api_name,
            "meterType": answer.meter.meter_type.value,
            **{
                k: body[k]
                for k in (
                    "aggregation",
                    "timeGroupingInterval",
                    "timeRange",
                    "groupBy",
                    "filter",
                    "take",
                )
                if k in body
            },
        },
        "secondsSinceEpochIntervals": [_seconds(b) for b in answer.intervals],
        "clientMeters": [
            {
                "group": {"groupInfo": group.group} if group.group else None,
                "groupValue": number(group.total),
                "values": [
                    {
                        "value": number(point.value),
                        "secondsSinceEpochUtc": _seconds(point.start),
                        "percentageFromPrevious": number(point.percentage_from_previous)
                        if point.percentage_from_previous is not None
                        else 0,
                    }
                    for point in group.values
                ],
            }
            for group in answer.groups
        ],
    }


async def usage_endpoint(request: Request) -> Response:
    state = request.app.state
    secret = presented_key(request.headers)
    if secret is None:
        return _error(401, "missing API key: send it in the X-API-KEY header")
    try:
        async with state.session_factory() as session:
            principal = await accounts.authenticate(session, secret=secret)
            if not principal.is_admin:
                return _error(403, "this API key may only write meter events")
            try:
                body = loads(await request.body())
                query, aggregation = parse_request(body)
                meter = await meters.get_meter(
                    session, account_id=principal.account_id, meter_api_name=query.meter_api_name
                )
                if aggregation and meter is not None and meter.meter_type in ADDITIVE:
                    query = replace(query, aggregation=OVERRIDES[aggregation])
                answer = await usage.query_usage(
                    session, account_id=principal.account_id, query=query, now=datetime.now(UTC)
                )
            except BadJson as exc:
                return _error(400, str(exc))
            except MeterflowError as exc:
                return _error(404 if exc.code == "NOT_FOUND" else 400, exc.message)
    except AuthenticationError:
        return _error(401, "invalid or revoked API key")
    except Exception as exc:
        if is_timeout(exc):
            return _error(504, TIMEOUT_MESSAGE)
        if is_transient(exc):
            return _error(503, "the database is unavailable; retry shortly")
        raise
    # Up to MAX_VALUES values to render and encode: kept off the event loop.
    content = await asyncio.to_thread(lambda: orjson.dumps(render(answer, body)))
    return Response(content, media_type="application/json")
