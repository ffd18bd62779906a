"""Usage queries over the rollups: per time bucket and group, for every meter type.

Ranges are widened to whole hours (rollups are hourly). Buckets without data are 0, except for
RUNNING_TOTAL, which is the cumulative total as of each bucket's end.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from meterflow.errors import NotFoundError, ValidationError
from meterflow.models import Meter, MeterType
from meterflow.services import meters
from meterflow.services.timebuckets import Grouping, buckets, ceil_hour, floor, following

CUSTOMER = "customerId"
MAX_BUCKETS = 10_000
ZERO = Decimal(0)
HUNDRED = Decimal(100)
CENT = Decimal("0.01")


@dataclass(frozen=True)
class UsageQuery:
    meter_api_name: str
    grouping: Grouping
    start: datetime
    end: datetime
    group_by: tuple[str, ...] = ()
    filter: dict[str, list[str]] = field(default_factory=dict)
    limit: int | None = None
    ascending: bool = False
    # Amberflo's aggregation override (SUM, COUNT, MAX) for rollup-based meters.
    aggregation: MeterType | None = None


@dataclass
class UsagePoint:
    start: datetime
    value: Decimal
    percentage_from_previous: Decimal | None


@dataclass
class UsageGroup:
    group: dict[str, str]
    total: Decimal
    values: list[UsagePoint]


@dataclass
class UsageAnswer:
    meter: Meter
    intervals: list[datetime]
    groups: list[UsageGroup]


def _validate(query: UsageQuery, meter: Meter) -> None:
    if query.end <= query.start:
        raise ValidationError("endTime must be after startTime", field="endTime")
    keys = [*query.group_by, *query.filter]
    for key in keys:
        if key != CUSTOMER and meter.dimensions and key not in meter.dimensions:
            raise ValidationError(
                f"{key!r} is neither customerId nor one of meter {meter.meter_api_name!r}'s "
                f"dimensions {list(meter.dimensions)}",
                field="groupBy" if key in query.group_by else "filter",
            )
    for key, values in query.filter.items():
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ValidationError(f"filter {key!r} must be a list of strings", field="filter")
    if query.limit is not None and query.limit < 1:
        raise ValidationError("limit must be at least 1", field="limit")
    if query.aggregation is not None and query.aggregation not in (
        MeterType.SUM,
        MeterType.COUNT,
        MeterType.MAX,
    ):
        raise ValidationError("aggregation may be SUM, COUNT or MAX", field="aggregation")


class _Sql:
    """Builds the group and filter parts of a query with every value bound."""

    def __init__(
        self,
        query: UsageQuery,
        start: datetime,
        end: datetime,
        account_id: uuid.UUID,
        meter_id: uuid.UUID,
    ) -> None:
        self.params: dict[str, Any] = {
            "account_id": account_id,
            "meter_id": meter_id,
            "start": start,
            "end": end,
            "unit": query.grouping.value.lower(),
        }
        # Daily rows answer exactly when nothing asks for dimensions and buckets are whole
        # days; they are far fewer than hourly rows for month-long, all-customer queries.
        daily = (
            query.grouping is not Grouping.HOUR
            and not any(k != CUSTOMER for k in (*query.group_by, *query.filter))
            and floor(start, Grouping.DAY) == start
            and floor(end, Grouping.DAY) == end
        )
        self.table = "usage_daily" if daily else "usage_rollups"
        self.time = "day" if daily else "hour"
        self.groups: list[str] = []
        for i, key in enumerate(query.group_by):
            self.groups.append(self._column(key, f"g{i}"))
        self.filters: list[str] = []
        for i, (key, values) in enumerate(query.filter.items()):
            self.params[f"fv{i}"] = values
            self.filters.append(f"{self._column(key, f'fk{i}')} = ANY(:fv{i})")

    def _column(self, key: str, name: str) -> str:
        if key == CUSTOMER:
            return "customer_id"
        self.params[name] = key
        return f"(dimensions ->> :{name})"

    def where(self, *extra: str) -> str:
        return " AND ".join(
            ["account_id = :account_id", "meter_id = :meter_id", *extra, *self.filters]
        )

    def group_columns(self) -> str:
        return "".join(f", {g} AS g{i}" for i, g in enumerate(self.groups))

    def group_refs(self) -> str:
        return "".join(f", g{i}" for i in range(len(self.groups)))

    def group_by_groups(self) -> str:
        """GROUP BY the groups alone (no clause at all when there are none)."""
        refs = ", ".join(f"g{i}" for i in range(len(self.groups)))
        return f" GROUP BY {refs}" if refs else ""


def _group_key(row: Any, size: int, offset: int) -> tuple[str, ...]:
    return tuple(row[offset + i] for i in range(size))


async def query_usage(
    session: AsyncSession, *, account_id: uuid.UUID, query: UsageQuery, now: datetime
) -> UsageAnswer:
    meter = await meters.get_meter(
        session, account_id=account_id, meter_api_name=query.meter_api_name
    )
    if meter is None:
        raise NotFoundError(f"no meter {query.meter_api_name!r} in this account")
    _validate(query, meter)
    start, end = floor(query.start, Grouping.HOUR), ceil_hour(query.end)
    intervals = buckets(start, end, query.grouping)
    if len(intervals) > MAX_BUCKETS:
        raise ValidationError(
            f"the range has {len(intervals)} {query.grouping.value} intervals; the limit is "
            f"{MAX_BUCKETS}: use a coarser timeGroupingInterval",
            field="timeGroupingInterval",
        )
    sql = _Sql(query, start, end, account_id, meter.id)
    kind = query.aggregation or meter.meter_type

    if kind is MeterType.UNIQUE_COUNT:
        per_bucket, totals = await _unique(session, sql)
    elif kind is MeterType.DURATION:
        per_bucket, totals = await _duration(session, sql, query, start, end, now)
    elif kind is MeterType.LATEST:
        per_bucket, totals = await _latest(session, sql)
    else:
        per_bucket, totals = await _additive(session, sql, kind)

    if kind is MeterType.RUNNING_TOTAL:
        baseline = await _running_baseline(session, sql)
        groups = set(per_bucket) | set(baseline)
        series = {
            g: _cumulative(intervals, per_bucket.get(g, {}), baseline.get(g, ZERO)) for g in groups
        }
        totals = {g: values[-1] if values else ZERO for g, values in series.items()}
    else:
        series = {g: [per_bucket[g].get(b, ZERO) for b in intervals] for g in per_bucket}

    if not query.group_by and not series:
        series = {(): [ZERO for _ in intervals]}
        totals = {(): ZERO}
    ordered = sorted(series, key=lambda g: (totals.get(g, ZERO), g), reverse=not query.ascending)
    if query.limit is not None:
        ordered = ordered[: query.limit]
    return UsageAnswer(
        meter=meter,
        intervals=intervals,
        groups=[
            UsageGroup(
                group=dict(zip(query.group_by, g, strict=True)),
                total=totals.get(g, ZERO),
                values=_with_change(intervals, series[g]),
            )
            for g in ordered
        ],
    )


Buckets = dict[tuple[str, ...], dict[datetime, Decimal]]
Totals = dict[tuple[str, ...], Decimal]


async def _additive(session: AsyncSession, sql: _Sql, kind: MeterType) -> tuple[Buckets, Totals]:
    rows = (
        await session.execute(
            text(
                f"SELECT date_trunc(:unit, {sql.time}, 'UTC') AS bucket{sql.group_columns()}, "
                f"sum(sum), sum(count), max(max) FROM {sql.table} "
                f"WHERE {sql.where(f'{sql.time} >= :start', f'{sql.time} < :end')} "
                f"GROUP BY bucket{sql.group_refs()}"
            ),
            sql.params,
        )
    ).all()
    size = len(sql.groups)
    per_bucket: Buckets = defaultdict(dict)
    for row in rows:
        total_sum, total_count, top = row[1 + size], row[2 + size], row[3 + size]
        value: Decimal
        if kind is MeterType.COUNT:
            value = Decimal(total_count)
        elif kind is MeterType.MAX:
            value = top
        else:
            value = total_sum
        per_bucket[_group_key(row, size, 1)][row[0]] = value
    totals: Totals = {
        g: (max(b.values()) if kind is MeterType.MAX else sum(b.values(), ZERO))
        for g, b in per_bucket.items()
    }
    return per_bucket, totals


async def _running_baseline(session: AsyncSession, sql: _Sql) -> Totals:
    """Per group, the sum of every delta before the range: where the running total starts."""
    rows = (
        await session.execute(
            text(
                f"SELECT sum(sum){sql.group_columns()} FROM {sql.table} "
                f"WHERE {sql.where(f'{sql.time} < :start')}{sql.group_by_groups()}"
            ),
            sql.params,
        )
    ).all()
    return {_group_key(row, len(sql.groups), 1): row[0] for row in rows if row[0] is not None}


def _cumulative(
    intervals: list[datetime], sums: dict[datetime, Decimal], baseline: Decimal
) -> list[Decimal]:
    running, values = baseline, []
    for bucket in intervals:
        running += sums.get(bucket, ZERO)
        values.append(running)
    return values


async def _latest(session: AsyncSession, sql: _Sql) -> tuple[Buckets, Totals]:
    rows = (
        await session.execute(
            text(
                "SELECT DISTINCT ON (bucket"
                + sql.group_refs()
                + ") bucket"
                + sql.group_refs()
                + ", latest_value, latest_time, latest_seq FROM ("
                f"SELECT date_trunc(:unit, {sql.time}, 'UTC') AS bucket{sql.group_columns()}, "
                f"latest_value, latest_time, latest_seq FROM {sql.table} "
                f"WHERE {sql.where(f'{sql.time} >= :start', f'{sql.time} < :end')}) AS r "
                f"ORDER BY bucket{sql.group_refs()}, latest_time DESC, latest_seq DESC"
            ),
            sql.params,
        )
    ).all()
    size = len(sql.groups)
    per_bucket: Buckets = defaultdict(dict)
    last: dict[tuple[str, ...], tuple[datetime, int, Decimal]] = {}
    for row in rows:
        group = _group_key(row, size, 1)
        value, when, seq = row[1 + size], row[2 + size], row[3 + size]
        per_bucket[group][row[0]] = value
        if group not in last or (when, seq) > last[group][:2]:
            last[group] = (when, seq, value)
    return per_bucket, {g: v[2] for g, v in last.items()}


async def _unique(session: AsyncSession, sql: _Sql) -> tuple[Buckets, Totals]:
    where = sql.where("hour >= :start", "hour < :end")
    rows = (
        await session.execute(
            text(
                f"SELECT date_trunc(:unit, hour, 'UTC') AS bucket{sql.group_columns()}, "
                f"count(DISTINCT value) FROM usage_distinct_values WHERE {where} "
                f"GROUP BY bucket{sql.group_refs()}"
            ),
            sql.params,
        )
    ).all()
    size = len(sql.groups)
    per_bucket: Buckets = defaultdict(dict)
    for row in rows:
        per_bucket[_group_key(row, size, 1)][row[0]] = Decimal(row[1 + size])
    total_rows = (
        await session.execute(
            text(
                f"SELECT count(DISTINCT value){sql.group_columns()} "
                f"FROM usage_distinct_values WHERE {where}{sql.group_by_groups()}"
            ),
            sql.params,
        )
    ).all()
    # Distinct over the whole range, not a sum of per-bucket counts.
    return per_bucket, {_group_key(r, size, 1): Decimal(r[0]) for r in total_rows}


async def _duration(
    session: AsyncSession,
    sql: _Sql,
    query: UsageQuery,
    start: datetime,
    end: datetime,
    now: datetime,
) -> tuple[Buckets, Totals]:
    rows = (
        await session.execute(
            text(
                f"SELECT started_at, stopped_at{sql.group_columns()} "
                "FROM usage_duration_intervals WHERE "
                + sql.where("started_at < :end", "(stopped_at IS NULL OR stopped_at > :start)")
            ),
            sql.params,
        )
    ).all()
    size = len(sql.groups)
    per_bucket: Buckets = defaultdict(lambda: defaultdict(lambda: ZERO))
    # An interval still open runs to now (the running invoice), never past the range end.
    horizon = min(end, max(now, start))
    for row in rows:
        group = _group_key(row, size, 2)
        on, off = max(row[0], start), min(row[1] or horizon, horizon)
        bucket = floor(on, query.grouping)
        while on < off:
            upto = min(following(bucket, query.grouping), off)
            if upto > on:
                per_bucket[group][bucket] += exact_seconds(upto - on)
            on, bucket = upto, following(bucket, query.grouping)
    buckets_ = {g: dict(b) for g, b in per_bucket.items()}
    return buckets_, {g: sum(b.values(), ZERO) for g, b in buckets_.items()}


def exact_seconds(span: timedelta) -> Decimal:
    """A timedelta in seconds without float rounding (event times are exact milliseconds)."""
    whole = span.days * 86_400 + span.seconds
    return Decimal(whole) + Decimal(span.microseconds) / Decimal(1_000_000)


def _with_change(intervals: list[datetime], values: list[Decimal]) -> list[UsagePoint]:
    points = []
    previous: Decimal | None = None
    for start, value in zip(intervals, values, strict=True):
        change = None
        if previous is not None and previous != 0:
            change = ((value - previous) / previous * HUNDRED).quantize(CENT)
        points.append(UsagePoint(start, value, change))
        previous = value
    return points
