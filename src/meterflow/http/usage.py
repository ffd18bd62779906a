"""Amberflo's usage API: POST /usage and /usage/, answering Amberflo's response shape."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from meterflow.db import is_transient
from meterflow.errors import AuthenticationError, MeterflowError
from meterflow.http.auth import presented_key
from meterflow.models import MeterType
from meterflow.services import accounts, meters, usage
from meterflow.services.timebuckets import Grouping

# Amberflo lets the caller pick the aggregation; for meters whose own kind is not one of these
# (UNIQUE_COUNT, DURATION, LATEST, RUNNING_TOTAL) the meter's kind decides.
OVERRIDES = {"SUM": MeterType.SUM, "COUNT": MeterType.COUNT, "MAX": MeterType.MAX}
ADDITIVE = {MeterType.SUM, MeterType.COUNT, MeterType.MAX}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _seconds(moment: datetime) -> int:
    return int(moment.timestamp())


def parse_request(body: Any) -> tuple[usage.UsageQuery, str | None]:
    """Amberflo's request → a UsageQuery (enums are case-insensitive, as Amberflo's are)."""
    if not isinstance(body, dict):
        raise MeterflowError("the body must be a JSON object")
    try:
        time_range = body["timeRange"]
        start = datetime.fromtimestamp(int(time_range["startTimeInSeconds"]), UTC)
        end_seconds = time_range.get("endTimeInSeconds")
        end = datetime.fromtimestamp(int(end_seconds), UTC) if end_seconds else datetime.now(UTC)
        grouping = Grouping(str(body["timeGroupingInterval"]).upper())
        meter = str(body["meterApiName"])
    except (KeyError, TypeError, ValueError) as exc:
        raise MeterflowError(
            "meterApiName, timeGroupingInterval (HOUR|DAY|WEEK|MONTH) and timeRange "
            "{startTimeInSeconds, endTimeInSeconds} are required"
        ) from exc
    aggregation = str(body.get("aggregation") or "").upper() or None
    if aggregation is not None and aggregation not in OVERRIDES:
        raise MeterflowError(f"aggregation {aggregation!r} is not supported (SUM, COUNT, MAX)")
    take = body.get("take") or {}
    filter_ = body.get("filter") or {}
    group_by = body.get("groupBy") or []
    if not isinstance(filter_, dict) or not isinstance(group_by, list):
        raise MeterflowError("filter must be an object and groupBy a list")
    return (
        usage.UsageQuery(
            meter_api_name=meter,
            grouping=grouping,
            start=start,
            end=end,
            group_by=tuple(str(g) for g in group_by),
            filter={str(k): list(v) if isinstance(v, list) else [v] for k, v in filter_.items()},
            limit=take.get("limit"),
            ascending=bool(take.get("isAscending", False)),
        ),
        aggregation,
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
                "groupValue": float(group.total),
                "values": [
                    {
                        "value": float(point.value),
                        "secondsSinceEpochUtc": _seconds(point.start),
                        "percentageFromPrevious": float(point.percentage_from_previous)
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
                body = await request.json()
                query, aggregation = parse_request(body)
                meter = await meters.get_meter(
                    session, account_id=principal.account_id, meter_api_name=query.meter_api_name
                )
                if aggregation and meter is not None and meter.meter_type in ADDITIVE:
                    query = replace(query, aggregation=OVERRIDES[aggregation])
                answer = await usage.query_usage(
                    session, account_id=principal.account_id, query=query, now=datetime.now(UTC)
                )
            except ValueError:
                return _error(400, "the body is not JSON")
            except MeterflowError as exc:
                return _error(404 if exc.code == "NOT_FOUND" else 400, exc.message)
    except AuthenticationError:
        return _error(401, "invalid or revoked API key")
    except Exception as exc:
        if is_transient(exc):
            return _error(503, "the database is unavailable; retry shortly")
        raise
    return JSONResponse(render(answer, body))
