"""Hostile records: each gets its own rejection and the rest of its batch is stored (issue 11).

Every body here is sent as a producer would, to a real `meterflow serve`, and what was stored
is read back through `meterEvents`.
"""

from __future__ import annotations

import gzip
import json
import uuid
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import text

from meterflow.db import SessionFactory, unit_of_work
from meterflow.services import ingestion
from meterflow.services.ingestion import RawRecord
from tests.client import GraphQLClient, TestAccount
from tests.helpers import INGEST, NOW_MS, all_events, create_meter, event

BAD_ID = "hostile"


def good(unique_id: str) -> str:
    return json.dumps(event(unique_id=unique_id, region="eu"))


def hostile(field: str, token: str) -> str:
    """A record whose `field` is the JSON text `token`, exactly as written."""
    fields = {
        "customerId": '"c1"',
        "meterApiName": '"calls"',
        "meterValue": "1",
        "meterTimeInMillis": str(NOW_MS - 60_000),
        "uniqueId": f'"{BAD_ID}"',
        field: token,
    }
    return "{" + ", ".join(f'"{key}": {value}' for key, value in fields.items()) + "}"


HUGE_INTEGER = "1" + "0" * 5000  # past Python's int-from-text limit

CASES: list[tuple[str, str, str]] = [
    # Times past year 9999, unrepresentable, or before 2000.
    ("meterTimeInMillis", "3e14", "INVALID_TIME"),
    ("meterTimeInMillis", "1e400", "INVALID_TIME"),
    ("meterTimeInMillis", "253402300800000", "INVALID_TIME"),
    ("meterTimeInMillis", '"1E+131071"', "INVALID_TIME"),
    ("meterTimeInMillis", "1E+131071", "INVALID_TIME"),
    ("meterTimeInMillis", "1E-131071", "INVALID_TIME"),
    ("meterTimeInMillis", "-1e400", "INVALID_TIME"),
    ("meterTimeInMillis", HUGE_INTEGER, "INVALID_TIME"),
    ("meterTimeInMillis", "946684799999", "INVALID_TIME"),
    # Absurd values: out of range, or more than 12 fractional digits.
    ("meterValue", "1e400", "INVALID_VALUE"),
    ("meterValue", '"1E+131071"', "INVALID_VALUE"),
    ("meterValue", "1e18", "INVALID_VALUE"),
    ("meterValue", "-1e18", "INVALID_VALUE"),
    ("meterValue", "1000000000000000000", "INVALID_VALUE"),
    ("meterValue", HUGE_INTEGER, "INVALID_VALUE"),
    ("meterValue", "1e-400", "INVALID_VALUE"),
    ("meterValue", "-1e-400", "INVALID_VALUE"),
    ("meterValue", "0.0000000000001", "INVALID_VALUE"),
    ("meterValue", '"1E-131071"', "INVALID_VALUE"),
    ("meterValue", "NaN", "NON_FINITE_VALUE"),
    # NUL and unpaired surrogates, in every string a record contributes.
    ("uniqueId", r'"a\u0000b"', "INVALID_UNIQUE_ID"),
    ("uniqueId", r'"\ud800"', "INVALID_UNIQUE_ID"),
    ("customerId", r'"c\u0000"', "INVALID_CUSTOMER_ID"),
    ("customerId", r'"c\ud800"', "INVALID_CUSTOMER_ID"),
    ("customerId", r'"\udc00c"', "INVALID_CUSTOMER_ID"),
    ("meterApiName", r'"calls\u0000"', "MALFORMED_RECORD"),
    ("meterApiName", r'"calls\ud800"', "MALFORMED_RECORD"),
    ("dimensions", r'{"region": "e\u0000u"}', "INVALID_DIMENSIONS"),
    ("dimensions", r'{"region": "\ud800"}', "INVALID_DIMENSIONS"),
    ("dimensions", r'{"reg\u0000ion": "eu"}', "INVALID_DIMENSIONS"),
    ("dimensions", r'{"\udfff": "eu"}', "INVALID_DIMENSIONS"),
    # Fields meterflow does not read are still stored in the payload.
    ("note", r'"\u0000"', "MALFORMED_RECORD"),
    ("note", r'"x\ud800y"', "MALFORMED_RECORD"),
    ("note", r'{"deeper": ["\udbff"]}', "MALFORMED_RECORD"),
    ("note", "NaN", "MALFORMED_RECORD"),
    ("note", "[-Infinity]", "MALFORMED_RECORD"),
]


@pytest.fixture
async def meter(gql: GraphQLClient) -> str:
    await create_meter(gql, "calls", dimensions=["region", "model"])
    return "calls"


async def post_report(
    http: httpx.AsyncClient, body: str | bytes, key: str, **headers: str
) -> httpx.Response:
    return await http.post(
        "/ingest?format=json", content=body, headers={"X-API-KEY": key, **headers}
    )


def assert_only_the_hostile_rejected(response: httpx.Response, index: int, code: str) -> None:
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["accepted"] == 2, report
    assert report["rejected"] == 1, report
    (rejection,) = report["rejections"]
    assert rejection["index"] == index
    assert rejection["code"] == code, rejection
    assert rejection["message"]


@pytest.mark.parametrize("field,token,code", CASES, ids=[f"{c[0]}={c[1][:24]}" for c in CASES])
async def test_a_hostile_record_is_rejected_alone(
    http: httpx.AsyncClient,
    gql: GraphQLClient,
    account: TestAccount,
    meter: str,
    field: str,
    token: str,
    code: str,
) -> None:
    bad = hostile(field, token)
    # A JSON array, plain and gzipped.
    array = f"[{good('a1')}, {bad}, {good('a2')}]"
    response = await post_report(
        http, array, account.admin_key, **{"Content-Type": "application/json"}
    )
    assert_only_the_hostile_rejected(response, 1, code)
    response = await post_report(
        http,
        gzip.compress(array.replace('"a1"', '"g1"').replace('"a2"', '"g2"').encode()),
        account.admin_key,
        **{"Content-Encoding": "gzip"},
    )
    assert_only_the_hostile_rejected(response, 1, code)
    # NDJSON, with the hostile record first (what the body is sniffed by).
    ndjson = "\n".join([bad, good("n1"), good("n2")])
    response = await post_report(http, ndjson, account.admin_key)
    assert_only_the_hostile_rejected(response, 0, code)
    stored = sorted(e["uniqueId"] for e in await all_events(gql))
    assert stored == ["a1", "a2", "g1", "g2", "n1", "n2"]


async def test_hostile_values_in_csv(
    http: httpx.AsyncClient, gql: GraphQLClient, account: TestAccount, meter: str
) -> None:
    at = NOW_MS - 60_000
    header = "customerId,meterApiName,meterValue,meterTimeInMillis,uniqueId,region\n"
    cases = {
        f"c1,calls,1,{at},big,{'x' * (140 * 1024)}\n": "RECORD_TOO_LARGE",
        f"c1,calls,1,{at},nul\x00id,eu\n": "INVALID_UNIQUE_ID",
        f"c1,calls,1,{at},nul-region,e\x00u\n": "INVALID_DIMENSIONS",
        f"c\x001,calls,1,{at},nul-customer,eu\n": "INVALID_CUSTOMER_ID",
        f"c1,calls,1e400,{at},inf,eu\n": "INVALID_VALUE",
        "c1,calls,1,253402300800000,y10k,eu\n": "INVALID_TIME",
    }
    for n, (row, code) in enumerate(cases.items()):
        body = header + f"c1,calls,1,{at},ok{n}a,eu\n" + row + f"c1,calls,1,{at},ok{n}b,eu\n"
        response = await post_report(http, body, account.admin_key, **{"Content-Type": "text/csv"})
        assert_only_the_hostile_rejected(response, 1, code)
    # A CSV `dimensions` column holding JSON nested far too deep is that record's problem.
    body = (
        "customerId,meterApiName,meterValue,meterTimeInMillis,uniqueId,dimensions\n"
        f'c1,calls,1,{at},deep,"{"[" * 5000}"\n'
        f"c1,calls,1,{at},ok-deep-a,\n"
        f"c1,calls,1,{at},ok-deep-b,\n"
    )
    response = await post_report(http, body, account.admin_key, **{"Content-Type": "text/csv"})
    assert response.status_code == 200, response.text
    assert [r["code"] for r in response.json()["rejections"]] == ["INVALID_DIMENSIONS"]
    stored = {e["uniqueId"] for e in await all_events(gql)}
    expected = {f"ok{n}{s}" for n in range(len(cases)) for s in "ab"}
    assert stored == expected | {"ok-deep-a", "ok-deep-b"}


def nested(depth: int, inner: str = "1") -> str:
    """JSON text `depth` containers deep, alternating arrays and objects."""
    opened = "".join('{"a":' if level % 2 else "[" for level in range(depth))
    closed = "".join("}" if level % 2 else "]" for level in reversed(range(depth)))
    return opened + inner + closed


async def test_bodies_nested_deeper_than_64_levels_are_400(
    http: httpx.AsyncClient, gql: GraphQLClient, account: TestAccount, meter: str
) -> None:
    def body(note_depth: int) -> str:
        # The array is level 1, the record level 2: the note adds the rest.
        return f"[{good(str(uuid.uuid4()))}, {hostile('note', nested(note_depth))}]"

    response = await post_report(http, body(62), account.admin_key)
    assert response.status_code == 200, response.text  # 64 levels: fine
    assert response.json()["accepted"] == 2
    for deep in (body(63), body(200), body(998), nested(1000), nested(5000), body(5000)):
        response = await post_report(
            http, deep, account.admin_key, **{"Content-Type": "application/json"}
        )
        assert response.status_code == 400, response.text
        assert response.json() == {"error": "the body is nested deeper than 64 levels"}
        response = await http.post(
            "/ingest", content=deep, headers={"X-API-KEY": account.admin_key}
        )
        assert response.status_code == 400, response.text
        assert response.text == "the body is nested deeper than 64 levels"
    # One record object nested too deep, as the whole body.
    response = await post_report(http, hostile("note", nested(1000)), account.admin_key)
    assert response.status_code == 400, response.text
    assert len(await all_events(gql)) == 2


async def test_an_ndjson_line_nested_too_deep_is_that_records_rejection(
    http: httpx.AsyncClient, gql: GraphQLClient, account: TestAccount, meter: str
) -> None:
    for depth in (64, 1000, 5000):
        body = "\n".join([good(f"x{depth}"), hostile("note", nested(depth)), good(f"y{depth}")])
        response = await post_report(
            http, body, account.admin_key, **{"Content-Type": "application/x-ndjson"}
        )
        assert_only_the_hostile_rejected(response, 1, "MALFORMED_RECORD")
        assert "nested deeper than 64 levels" in response.json()["rejections"][0]["message"]
    # 63 levels inside a line's record is 64 in all: fine.
    response = await post_report(http, hostile("note", nested(63)), account.admin_key)
    assert response.json()["accepted"] == 1, response.text
    assert len(await all_events(gql)) == 7


async def test_repeated_keys_cannot_hide_what_is_stored(
    http: httpx.AsyncClient, gql: GraphQLClient, account: TestAccount, meter: str
) -> None:
    """The payload stored is the text as sent: a later repeated key must not hide from the
    checks an earlier value PostgreSQL would refuse, or one too deep to read back."""
    shadowed = [
        hostile("meterValue", "NaN")[:-1] + ', "meterValue": 1}',
        hostile("note", r'"\ud800"')[:-1] + ', "note": 1}',
        hostile("note", nested(200))[:-1] + ', "note": 1}',
        hostile("note", nested(900))[:-1] + ', "note": 1}',
    ]
    for n, line in enumerate(shadowed):
        body = "\n".join([good(f"s{n}a"), line, good(f"s{n}b")])
        response = await post_report(
            http, body, account.admin_key, **{"Content-Type": "application/x-ndjson"}
        )
        assert_only_the_hostile_rejected(response, 1, "MALFORMED_RECORD")
    # In a JSON array read by the exact decoder (the NaN sends it there).
    array = f"[{good('s-a')}, {shadowed[0]}, {good('s-b')}]"
    response = await post_report(http, array, account.admin_key)
    assert_only_the_hostile_rejected(response, 1, "MALFORMED_RECORD")
    array = f"[{good('s-c')}, {shadowed[0]}, {shadowed[2]}]"
    response = await post_report(http, array, account.admin_key)
    assert response.status_code == 400
    assert response.json() == {"error": "the body is nested deeper than 64 levels"}
    stored = sorted(e["uniqueId"] for e in await all_events(gql))
    assert stored == sorted([f"s{n}{s}" for n in range(4) for s in "ab"] + ["s-a", "s-b"])
    # What was stored reads back: no payload is too deep for the By Event view.
    assert all(e["payload"] for e in await all_events(gql))


async def test_rejection_reports_never_echo_unencodable_text(
    http: httpx.AsyncClient, account: TestAccount, meter: str
) -> None:
    """The text report and the JSON report both survive a lone surrogate in what they quote."""
    long_bad_id = '"' + "x" * 300 + r"\ud800" + '"'
    body = f"[{good('e1')}, {hostile('uniqueId', long_bad_id)}]"
    for path in ("/ingest", "/ingest?format=json"):
        response = await http.post(
            path, content=body.replace("e1", path), headers={"X-API-KEY": account.admin_key}
        )
        assert response.status_code == 200, response.text
        assert "INVALID_UNIQUE_ID" in response.text


# GraphQL: the same records through ingestMeterEvents. Bodies are written by hand, since a
# lone surrogate cannot go through an ordinary JSON encoder.


async def graphql_raw(http: httpx.AsyncClient, key: str, events: str) -> httpx.Response:
    body = '{"query": ' + json.dumps(INGEST) + ', "variables": {"events": [' + events + "]}}"
    return await http.post(
        "/graphql",
        content=body,
        headers={"X-API-Key": key, "Content-Type": "application/json"},
    )


GRAPHQL_CASES = [
    (field, token, code)
    for field, token, code in CASES
    # Fields the GraphQL input has; meterValue and meterTimeInMillis are Floats, so only
    # what a double holds reaches the service (the rest are below).
    if field in ("uniqueId", "customerId", "meterApiName", "dimensions")
] + [
    ("meterTimeInMillis", "3e14", "INVALID_TIME"),
    ("meterTimeInMillis", "253402300800000", "INVALID_TIME"),
    ("meterTimeInMillis", "946684799999", "INVALID_TIME"),
    ("meterValue", "1e18", "INVALID_VALUE"),
    ("meterValue", "-1e18", "INVALID_VALUE"),
    ("meterValue", "1e-13", "INVALID_VALUE"),
    ("meterValue", "1e300", "INVALID_VALUE"),
    ("dimensions", '{"region": ["x"]}', "INVALID_DIMENSIONS"),
    ("dimensions", '{"region": ' + nested(50) + "}", "INVALID_DIMENSIONS"),
]


@pytest.mark.parametrize(
    "field,token,code", GRAPHQL_CASES, ids=[f"{c[0]}={c[1][:24]}" for c in GRAPHQL_CASES]
)
async def test_graphql_hostile_event_is_rejected_alone(
    http: httpx.AsyncClient,
    gql: GraphQLClient,
    account: TestAccount,
    meter: str,
    field: str,
    token: str,
    code: str,
) -> None:
    events = f"{good('q1')}, {hostile(field, token)}, {good('q2')}"
    response = await graphql_raw(http, account.admin_key, events)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    result = body["data"]["ingestMeterEvents"]
    assert (result["accepted"], result["rejected"]) == (2, 1), result
    assert result["outcomes"][1]["code"] == code, result["outcomes"][1]
    assert sorted(e["uniqueId"] for e in await all_events(gql)) == ["q1", "q2"]


@pytest.mark.parametrize("token", ["1e400", "-1e400", "NaN", "Infinity"])
async def test_graphql_non_finite_floats_are_a_clear_error_not_a_500(
    http: httpx.AsyncClient, gql: GraphQLClient, account: TestAccount, meter: str, token: str
) -> None:
    for field in ("meterValue", "meterTimeInMillis"):
        events = f"{good('f1')}, {hostile(field, token)}"
        response = await graphql_raw(http, account.admin_key, events)
        # Not JSON at all (RFC 8259 has no NaN, Infinity or numbers past a double): a 400.
        assert response.status_code == 400, response.text
        (error,) = response.json()["errors"]
        assert "NaN, Infinity and numbers beyond a double's range" in error["message"], error
    # Written in the query itself, 1e400 is read exactly (a Decimal, not an infinite double)
    # and rejected, that event alone, as beyond meterValue's range.
    literal = f"""mutation {{ ingestMeterEvents(events: [
        {{meterApiName: "calls", customerId: "c1", meterValue: 1e400, meterTimeInMillis: {NOW_MS}}}
        {{meterApiName: "calls", customerId: "c1", meterValue: 2, meterTimeInMillis: {NOW_MS}}}
      ]) {{ accepted outcomes {{ code }} }} }}"""
    result = (await gql(literal))["ingestMeterEvents"]
    assert result == {"accepted": 1, "outcomes": [{"code": "INVALID_VALUE"}, {"code": None}]}
    assert len(await all_events(gql)) == 1


async def test_graphql_bodies_nested_deeper_than_64_levels_are_400(
    http: httpx.AsyncClient, gql: GraphQLClient, account: TestAccount, meter: str
) -> None:
    # {"variables": {"events": [{"dimensions": {"region": ...}}]}}: 5 levels around the value.
    def events(unique_id: str, depth: int) -> str:
        dimensions = '{"region": ' + nested(depth) + "}"
        return f"{good(unique_id)}, {hostile('dimensions', dimensions)}"

    fine = events("d1", 59)
    response = await graphql_raw(http, account.admin_key, fine)
    assert response.status_code == 200, response.text
    assert response.json()["data"]["ingestMeterEvents"]["accepted"] == 1
    for depth in (60, 1000, 5000):
        response = await graphql_raw(http, account.admin_key, events("d2", depth))
        assert response.status_code == 400, response.text
        assert "nested deeper than 64 levels" in response.text
    assert [e["uniqueId"] for e in await all_events(gql)] == ["d1"]


# The partition cache must never outlive a rollback.


class Abort(Exception):
    pass


async def test_a_rolled_back_partition_is_not_remembered(
    session_factory: SessionFactory, gql: GraphQLClient, account: TestAccount, meter: str
) -> None:
    async with session_factory() as session:
        # Months no other test writes into, whose partitions do not exist yet.
        for year in range(2001, 2020):
            exists = await session.scalar(
                text(
                    f"SELECT to_regclass('meter_events_{year}_02') IS NOT NULL "
                    f"OR to_regclass('meter_events_{year}_03') IS NOT NULL"
                )
            )
            if not exists:
                break
        else:
            pytest.skip("every candidate month already has a partition")
    now = datetime.now(UTC)

    def batch(unique_id: str, month: int = 2) -> list[RawRecord]:
        at = int(datetime(year, month, 10, tzinfo=UTC).timestamp() * 1000)
        record = event(unique_id=unique_id, at=at)
        return [RawRecord(record, json.dumps(record))]

    with pytest.raises(Abort):
        async with unit_of_work(session_factory) as session:
            report = await ingestion.ingest(
                session, account_id=account.account_id, records=batch("rolled-back"), now=now
            )
            assert report.accepted == 1
            raise Abort  # anything after the insert fails: the partition goes with it
    assert (year, 2) not in ingestion._known_partitions
    async with unit_of_work(session_factory) as session:
        report = await ingestion.ingest(
            session, account_id=account.account_id, records=batch("kept"), now=now
        )
    assert report.accepted == 1
    assert (year, 2) in ingestion._known_partitions  # remembered once committed

    # A savepoint rolled back inside a transaction that commits takes its partition too.
    async with unit_of_work(session_factory) as session:
        with pytest.raises(Abort):
            async with session.begin_nested():
                await ingestion.ingest(
                    session,
                    account_id=account.account_id,
                    records=batch("in-savepoint", 3),
                    now=now,
                )
                raise Abort
    assert (year, 3) not in ingestion._known_partitions
    async with unit_of_work(session_factory) as session:
        report = await ingestion.ingest(
            session, account_id=account.account_id, records=batch("kept-3", 3), now=now
        )
    assert report.accepted == 1
    assert sorted(e["uniqueId"] for e in await all_events(gql)) == ["kept", "kept-3"]


async def test_the_write_paths_column_separator_in_any_field_is_stored_as_sent(
    http: httpx.AsyncClient, gql: GraphQLClient, account: TestAccount, meter: str
) -> None:
    """The ingest write binds its columns as texts joined by U+001E (services/ingestion.py):
    that character in a uniqueId, a dimension or an ignored field, sent through JSON, CSV and
    GraphQL, is stored as sent and misaligns nothing; in a customer id it is that record's
    INVALID_CUSTOMER_ID."""
    sep = "\u001e"
    at = NOW_MS - 60_000
    records = [
        {**event(unique_id=f"j{sep}1", region=f"e{sep}u"), "note": sep},
        event(unique_id="j2", region="eu"),
        {**event(unique_id="j3"), "customerId": f"c{sep}1"},
    ]
    response = await post_report(
        http, json.dumps(records), account.admin_key, **{"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 2
    assert [r["code"] for r in response.json()["rejections"]] == ["INVALID_CUSTOMER_ID"]
    csv = (
        "customerId,meterApiName,meterValue,meterTimeInMillis,uniqueId,region\n"
        f"c1,calls,2,{at},v{sep}1,e{sep}u\n"
        f"c1,calls,3,{at},v2,eu\n"
    )
    response = await post_report(http, csv, account.admin_key, **{"Content-Type": "text/csv"})
    assert response.status_code == 200 and response.json()["accepted"] == 2, response.text
    answer = await gql(
        "mutation($events: [MeterEventInput!]!) { ingestMeterEvents(events: $events) "
        "{ accepted rejected } }",
        {"events": [event(unique_id=f"g{sep}1", region=f"e{sep}u"), event(unique_id="g2")]},
    )
    assert answer["ingestMeterEvents"] == {"accepted": 2, "rejected": 0}
    stored = {e["uniqueId"]: e for e in await all_events(gql)}
    assert set(stored) == {f"j{sep}1", "j2", f"v{sep}1", "v2", f"g{sep}1", "g2"}
    for unique_id in (f"j{sep}1", f"v{sep}1", f"g{sep}1"):
        assert stored[unique_id]["dimensions"] == {"region": f"e{sep}u"}, stored[unique_id]
        assert stored[unique_id]["customerId"] == "c1"
    assert stored[f"j{sep}1"]["payload"]["note"] == sep
    assert [stored[u]["meterValue"] for u in ("v2", "j2")] == ["3", "1"]
