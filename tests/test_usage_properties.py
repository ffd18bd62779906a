"""Rollup-based usage equals the same aggregation computed straight from the events.

Random streams for every meter type, with duplicates, late events (after a rollup has run) and
cancellations, over every grouping interval and several group-bys (DESIGN.md §1).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterflow.db import SessionFactory, unit_of_work
from meterflow.models import MeterType
from meterflow.services import accounts, events, ingestion, meters, rollups, usage
from meterflow.services.meters import MeterSpec
from meterflow.services.timebuckets import Grouping
from tests.reference_usage import Ev, reference

T0 = datetime(2026, 3, 30, 22, 0, tzinfo=UTC)  # spans a week and a month boundary
NOW = T0 + timedelta(days=3)

event_strategy = st.fixed_dictionaries(
    {
        "customer": st.sampled_from(["c1", "c2", "c3"]),
        "offset_ms": st.integers(min_value=-6 * 3_600_000, max_value=60 * 3_600_000),
        "value": st.sampled_from([0, 1, 2, 5, Decimal("0.5"), Decimal("2.25"), -1]),
        "region": st.sampled_from(["eu", "us"]),
        "user": st.sampled_from(["u1", "u2", "u3", "u4"]),
        "uid": st.integers(min_value=0, max_value=40),
    }
)

stream = st.lists(
    st.tuples(
        st.lists(event_strategy, min_size=1, max_size=25),  # a batch
        st.booleans(),  # roll up after it (so later batches arrive "late")
        st.lists(st.integers(min_value=0, max_value=40), max_size=3),  # uniqueIds to cancel
    ),
    min_size=1,
    max_size=5,
)


def record(meter: str, e: dict, meter_type: MeterType) -> ingestion.RawRecord:  # type: ignore[type-arg]
    value = e["value"]
    if meter_type is MeterType.DURATION:
        value = 1 if value in (1, 2, 5) else 0
    data = {
        "meterApiName": meter,
        "customerId": e["customer"],
        "meterValue": str(value),
        "meterTimeInMillis": int(T0.timestamp() * 1000) + e["offset_ms"],
        "uniqueId": f"u{e['uid']}",
        "dimensions": {"region": e["region"], "user": e["user"]},
    }
    return ingestion.RawRecord(data, json.dumps(data))


async def run_stream(factory: SessionFactory, meter_type: MeterType, batches: list) -> tuple:  # type: ignore[type-arg]
    async with unit_of_work(factory) as session:
        account = await accounts.create_account(session, name="prop")
        await meters.create_meter(
            session,
            account_id=account.id,
            meter_api_name="m",
            spec=MeterSpec(
                label="m",
                meter_type=meter_type,
                dimensions=("region", "user"),
                aggregation_dimension="user" if meter_type is MeterType.UNIQUE_COUNT else None,
            ),
        )
    accepted: dict[str, Ev] = {}
    order = 0
    for batch, roll, cancel in batches:
        records = [record("m", e, meter_type) for e in batch]
        async with unit_of_work(factory) as session:
            report = await ingestion.ingest(
                session, account_id=account.id, records=records, now=NOW
            )
        for raw, outcome in zip(records, report.outcomes, strict=True):
            assert outcome.status is not ingestion.Status.REJECTED, outcome
            if outcome.status is ingestion.Status.ACCEPTED:
                order += 1
                d = raw.data
                accepted[d["uniqueId"]] = Ev(
                    order,
                    d["customerId"],
                    datetime.fromtimestamp(d["meterTimeInMillis"] / 1000, UTC),
                    Decimal(d["meterValue"]),
                    tuple(sorted(d["dimensions"].items())),
                )
        if cancel:
            async with unit_of_work(factory) as session:
                await events.cancel_events(
                    session,
                    account_id=account.id,
                    meter_api_name="m",
                    unique_ids=[f"u{i}" for i in cancel],
                )
            for i in cancel:
                accepted.pop(f"u{i}", None)
        if roll:
            async with unit_of_work(factory) as session:
                await rollups.rollup_account(session, account_id=account.id, max_events=7)
    # Catch up completely, in small steps (the bounded path).
    while True:
        async with unit_of_work(factory) as session:
            step = await rollups.rollup_account(session, account_id=account.id, max_events=7)
        if not step.more:
            break
    return account.id, list(accepted.values())


def comparable(groups: dict) -> dict:  # type: ignore[type-arg]
    return {k: (t, vs) for k, (t, vs) in groups.items() if t != 0 or any(v != 0 for v in vs)}


async def check(factory: SessionFactory, meter_type: MeterType, batches: list) -> None:  # type: ignore[type-arg]
    account_id, evs = await run_stream(factory, meter_type, batches)
    midnight = T0.replace(hour=0)
    # The first range is hour-aligned (hourly rollups); the second day-aligned, which lets
    # queries without dimensions read the daily rollups.
    for start, end in (
        (T0, T0 + timedelta(days=2, hours=5)),
        (midnight, midnight + timedelta(days=3)),
    ):
        await check_range(factory, meter_type, account_id, evs, start, end)


async def check_range(
    factory: SessionFactory,
    meter_type: MeterType,
    account_id: object,
    evs: list[Ev],
    start: datetime,
    end: datetime,
) -> None:
    for grouping in Grouping:
        for group_by in ((), ("customerId",), ("region",), ("customerId", "region")):
            async with factory() as session:
                answer = await usage.query_usage(
                    session,
                    account_id=account_id,
                    now=NOW,
                    query=usage.UsageQuery("m", grouping, start, end, group_by=group_by),
                )
            intervals, expected = reference(
                evs, meter_type.value, grouping.value, start, end, group_by, "user", NOW
            )
            assert answer.intervals == intervals
            got = {
                tuple(g.group[k] for k in group_by): (g.total, [p.value for p in g.values])
                for g in answer.groups
            }
            assert comparable(got) == comparable(expected), (meter_type, grouping, group_by)


def make_test(meter_type: MeterType):  # type: ignore[no-untyped-def]
    @settings(
        max_examples=20,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(batches=stream)
    async def test(session_factory: SessionFactory, batches: list) -> None:  # type: ignore[type-arg]
        await check(session_factory, meter_type, batches)

    test.__name__ = f"test_rollups_match_raw_events_{meter_type.value.lower()}"
    return test


test_sum = make_test(MeterType.SUM)
test_count = make_test(MeterType.COUNT)
test_max = make_test(MeterType.MAX)
test_latest = make_test(MeterType.LATEST)
test_running_total = make_test(MeterType.RUNNING_TOTAL)
test_unique_count = make_test(MeterType.UNIQUE_COUNT)
test_duration = make_test(MeterType.DURATION)
