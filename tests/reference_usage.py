"""A deliberately simple reference for usage: computed straight from the events, no rollups.

Written independently of meterflow's services (only the meaning is shared: DESIGN.md §4).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal


@dataclass(frozen=True)
class Ev:
    order: int  # ingestion order
    customer: str
    time: datetime
    value: Decimal
    dims: tuple[tuple[str, str], ...]


def bucket_of(t: datetime, grouping: str) -> datetime:
    t = t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    if grouping == "HOUR":
        return t
    t = t.replace(hour=0)
    if grouping == "DAY":
        return t
    if grouping == "WEEK":
        return t - timedelta(days=t.weekday())
    return t.replace(day=1)


def next_bucket(t: datetime, grouping: str) -> datetime:
    if grouping == "MONTH":
        return t.replace(year=t.year + (t.month == 12), month=t.month % 12 + 1)
    return (
        t
        + {"HOUR": timedelta(hours=1), "DAY": timedelta(days=1), "WEEK": timedelta(days=7)}[
            grouping
        ]
    )


def group_of(ev: Ev, group_by: tuple[str, ...]) -> tuple[str, ...] | None:
    dims = dict(ev.dims)
    key = []
    for k in group_by:
        if k == "customerId":
            key.append(ev.customer)
        elif k in dims:
            key.append(dims[k])
        else:
            return None  # an event without the dimension falls in a null group
    return tuple(key)


def reference(
    events: list[Ev],
    meter_type: str,
    grouping: str,
    start: datetime,
    end: datetime,
    group_by: tuple[str, ...],
    agg_dim: str | None,
    now: datetime,
) -> tuple[list[datetime], dict[tuple[str, ...], tuple[Decimal, list[Decimal]]]]:
    intervals = []
    b = bucket_of(start, grouping)
    while b < end:
        intervals.append(b)
        b = next_bucket(b, grouping)

    def in_range(t: datetime) -> bool:
        return start <= t < end

    out: dict[tuple[str, ...], tuple[Decimal, list[Decimal]]] = {}
    groups: dict[tuple[str, ...], list[Ev]] = defaultdict(list)
    for ev in events:
        key = group_of(ev, group_by)
        if key is not None:
            groups[key].append(ev)

    for key, evs in groups.items():
        per: dict[datetime, list[Ev]] = defaultdict(list)
        for ev in evs:
            if in_range(ev.time):
                per[bucket_of(ev.time, grouping)].append(ev)
        if meter_type == "SUM":
            values = [sum((e.value for e in per[b]), Decimal(0)) for b in intervals]
            total = sum(values, Decimal(0))
        elif meter_type == "COUNT":
            values = [Decimal(len(per[b])) for b in intervals]
            total = sum(values, Decimal(0))
        elif meter_type == "MAX":
            values = [max((e.value for e in per[b]), default=Decimal(0)) for b in intervals]
            total = max((e.value for e in evs if in_range(e.time)), default=Decimal(0))
        elif meter_type == "LATEST":

            def last(items: list[Ev]) -> Decimal:
                return max(items, key=lambda x: (x.time, x.order)).value if items else Decimal(0)

            values = [last(per[b]) for b in intervals]
            total = last([e for e in evs if in_range(e.time)])
        elif meter_type == "RUNNING_TOTAL":
            values = []
            for b in intervals:
                upto = min(next_bucket(b, grouping), end)
                values.append(sum((e.value for e in evs if e.time < upto), Decimal(0)))
            total = values[-1] if values else Decimal(0)
        elif meter_type == "UNIQUE_COUNT":
            values = [Decimal(len({dict(e.dims)[agg_dim] for e in per[b]})) for b in intervals]
            total = Decimal(len({dict(e.dims)[agg_dim] for e in evs if in_range(e.time)}))
        elif meter_type == "DURATION":
            seconds: dict[datetime, Decimal] = defaultdict(Decimal)
            resources: dict[tuple[str, tuple[tuple[str, str], ...]], list[Ev]] = defaultdict(list)
            for e in evs:
                resources[(e.customer, e.dims)].append(e)
            horizon = min(end, max(now, start))
            for items in resources.values():
                on_since = None
                spans = []
                for e in sorted(items, key=lambda e: (e.time, e.order)):
                    if e.value == 1 and on_since is None:
                        on_since = e.time
                    elif e.value == 0 and on_since is not None:
                        spans.append((on_since, e.time))
                        on_since = None
                if on_since is not None:
                    spans.append((on_since, horizon))
                for a, z in spans:
                    a, z = max(a, start), min(z, horizon)
                    t = a
                    while t < z:
                        b = bucket_of(t, grouping)
                        upto = min(next_bucket(b, grouping), z)
                        span = upto - t
                        seconds[b] += Decimal(span // timedelta(microseconds=1)) / 1_000_000
                        t = upto
            values = [seconds.get(b, Decimal(0)) for b in intervals]
            total = sum(values, Decimal(0))
        else:
            raise AssertionError(meter_type)
        if (
            meter_type == "RUNNING_TOTAL"
            or any(per.values())
            or (meter_type == "DURATION" and total)
        ):
            out[key] = (total, values)
    return intervals, out
