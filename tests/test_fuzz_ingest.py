"""Hypothesis-generated /ingest bodies (JSON array, NDJSON, CSV; plain or gzip) against a real
`meterflow serve`.

Each example is a fresh account with three meters and a few batches that mix well-formed records
with hostile ones (NUL and unpaired surrogates, 1e400, NaN, times past year 9999, wrong types,
huge strings, deep nesting, duplicates within and across batches). The property:

- never a 5xx, and /healthz stays 200;
- every record gets an outcome: accepted + duplicates + rejected = records sent; well-formed
  records are never rejected and the hostile ones the issue names always are; a 400 only for a
  body that cannot be read (or has nothing usable);
- the events stored for the account are exactly the records reported ACCEPTED, as sent (a value
  silently rounded, or a record lost with a failed neighbour, is a failure).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text

from meterflow.db import SessionFactory, unit_of_work
from meterflow.models import MeterType
from meterflow.services import meters
from tests.conftest import make_account
from tests.fuzz_support import REQUEST_TIMEOUT_SECONDS, FuzzServer, fuzz_settings, summary

pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(180)]

EXAMPLES_PER_FORMAT = 40

NOW_MS = int(time.time() * 1000)
DAY_MS = 86_400_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A few fixed old months: the first batch into a month creates its partition, so a failed
# batch there is where a partition cache that outlives a rollback would show.
OLD_TIMES = (
    int((datetime(2001, 1, 15, tzinfo=UTC) - EPOCH).total_seconds()) * 1000,
    int((datetime(2010, 6, 15, 12, tzinfo=UTC) - EPOCH).total_seconds()) * 1000,
    int((datetime(2000, 1, 2, tzinfo=UTC) - EPOCH).total_seconds()) * 1000,
)

SUM_METER = "calls"  # SUM, dimensions region and model
OPEN_METER = "tokens"  # SUM, any dimension keys
DEPRECATED_METER = "legacy"
CSV_COLUMNS = ("customerId", "meterApiName", "meterValue", "meterTimeInMillis", "uniqueId")
CSV_DIMENSIONS = ("region", "model")

Expect = Literal["valid", "reject", "any"]
Format = Literal["json", "ndjson", "csv"]


class Raw(str):
    """JSON text sent verbatim: numbers no float can hold (1e400), NaN, deep nesting, bad JSON."""

    __slots__ = ()


@dataclass
class Rec:
    """One record to send, and what the server may do with it."""

    fields: Any  # the record (usually a dict); Raw values go on the wire as they are
    expect: Expect
    note: str
    # The record may make the whole body unreadable: a 400 for the batch is then allowed.
    body_level: bool = False
    # Filled in when the batches are assembled: a fresh uniqueId, or a copy of an earlier record.
    uid: Literal["fresh", "none", "empty", "keep"] = "fresh"
    duplicate_of: int | None = None

    def __repr__(self) -> str:  # what Hypothesis prints for a failing example
        shown = to_json(self.fields)
        shown = shown if len(shown) <= 200 else shown[:200] + f"...({len(shown)} chars)"
        return f"<{self.expect}: {self.note}: {shown}>"


@dataclass
class Batch:
    records: list[Rec]
    gzipped: bool


@dataclass
class Model:
    """What the account must hold: the identity → event of every record reported ACCEPTED."""

    stored: dict[tuple[Any, ...], tuple[Any, ...]] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Wire encodings


def to_json(value: Any) -> str:
    """json.dumps, except that Raw text goes out verbatim (and surrogates as \\ud800 escapes)."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{to_json(str(k))}:{to_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(to_json(v) for v in value) + "]"
    if isinstance(value, Decimal):
        return str(value)
    return json.dumps(value)  # ensure_ascii: a lone surrogate becomes the escape "\ud800"


def csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def encode(fmt: Format, records: list[Any]) -> tuple[bytes, str]:
    if fmt == "json":
        return ("[" + ",".join(to_json(r) for r in records) + "]").encode(), "application/json"
    if fmt == "ndjson":
        lines = [to_json(r) for r in records]
        return ("\n".join(lines) + "\n").encode(), "application/x-ndjson"
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS + CSV_DIMENSIONS)
    for record in records:
        dims = record.get("dimensions") or {}
        writer.writerow(
            [csv_cell(record.get(c)) for c in CSV_COLUMNS]
            + [csv_cell(dims.get(d)) for d in CSV_DIMENSIONS]
        )
    # A lone surrogate cannot be UTF-8: such a CSV body is unreadable as a whole (body_level).
    return out.getvalue().encode("utf-8", "surrogatepass"), "text/csv"


# ---------------------------------------------------------------------------------------------
# What a record means once stored


def as_decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, Decimal)):
        return Decimal(value)
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


def canonical(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


def identity_and_event(
    record: Any,
) -> tuple[tuple[Any, ...], tuple[Any, ...]] | None:
    """The dedup identity and the stored event a record would give, or None if it cannot be
    stored at all (so reporting it as anything but REJECTED is itself a failure)."""
    if not isinstance(record, dict):
        return None
    meter, customer = record.get("meterApiName"), record.get("customerId")
    value = as_decimal(record.get("meterValue"))
    millis = as_decimal(record.get("meterTimeInMillis"))
    dims = record.get("dimensions") or {}
    unique_id = record.get("uniqueId") or None
    if not isinstance(meter, str) or not isinstance(customer, str) or value is None:
        return None
    if millis is None or millis != millis.to_integral_value() or not isinstance(dims, dict):
        return None
    if not all(isinstance(v, str) for v in dims.values()):
        return None
    if unique_id is not None and not isinstance(unique_id, str):
        return None
    dim_items = tuple(sorted(dims.items()))
    event = (meter, unique_id, customer, canonical(value), int(millis), dim_items)
    if unique_id is not None:
        return ("u", meter, unique_id), event
    return ("h", meter, customer, canonical(value), int(millis), dim_items), event


# ---------------------------------------------------------------------------------------------
# Strategies

SAFE_TEXT = st.characters(codec="utf-8", categories=["L", "N", "P", "S"], exclude_characters="\\")
customer_ids = st.one_of(
    st.sampled_from(["acme", "globex", "c-1", "Ünïcødé 客户", 'quote"comma,', "x" * 200]),
    st.text(SAFE_TEXT, min_size=1, max_size=30),
)
dimension_values = st.one_of(
    st.sampled_from(["eu", "us-east-1", 'a,"b"', "comma, and space", "ü" * 200]),
    st.text(SAFE_TEXT, min_size=1, max_size=40),
)
valid_values = st.one_of(
    st.integers(-(10**9), 10**9),
    st.decimals(min_value=-(10**12), max_value=10**12, places=6).map(Decimal.normalize),
    # The edges of the documented range: |value| < 10^18, at most 12 fractional digits.
    st.sampled_from(
        [0, Raw("999999999999999999"), Raw("-999999999999999999"), Raw("0.000000000001")]
    ),
)
valid_times = st.one_of(
    st.integers(NOW_MS - 60 * DAY_MS, NOW_MS - 1000),
    st.sampled_from(OLD_TIMES),
    st.just(NOW_MS + 60_000),  # a minute ahead: inside the allowed clock skew
)


@st.composite
def valid_records(draw: st.DrawFn, fmt: Format) -> Rec:
    meter = draw(st.sampled_from([SUM_METER, OPEN_METER]))
    record: dict[str, Any] = {
        "customerId": draw(customer_ids),
        "meterApiName": meter,
        "meterValue": draw(valid_values),
        "meterTimeInMillis": draw(valid_times),
    }
    keys = st.sampled_from(CSV_DIMENSIONS)
    if meter == OPEN_METER and fmt != "csv":
        keys = st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=20)
    dims = draw(st.dictionaries(keys, dimension_values, max_size=2))
    if dims:
        record["dimensions"] = dims
    if fmt != "csv" and draw(st.booleans()):
        record["note"] = draw(st.text(SAFE_TEXT, max_size=20))  # extra fields are ignored
    if fmt == "csv":
        record = {k: csv_cell(v) if k != "dimensions" else v for k, v in record.items()}
    uid = draw(st.sampled_from(["fresh", "fresh", "fresh", "none", "empty"]))
    return Rec(record, "valid", "well-formed", uid=uid)


def _base(fmt: Format) -> dict[str, Any]:
    record: dict[str, Any] = {
        "customerId": "acme",
        "meterApiName": SUM_METER,
        "meterValue": 1,
        "meterTimeInMillis": NOW_MS - 5000,
    }
    if fmt == "csv":
        record = {k: csv_cell(v) for k, v in record.items()}
    return record


DEEP = Raw("[" * 1000 + "]" * 1000)
_DROP = object()  # in hostile_cases: leave the field out
BAD_VALUES: list[tuple[Any, str]] = [
    (Raw("1e400"), "meterValue 1e400"),
    (Raw("-1e400"), "meterValue -1e400"),
    (Raw("1e-400"), "meterValue 1e-400 (must not be rounded to 0)"),
    ("1E+131071", 'meterValue "1E+131071"'),
    (Raw("1E+131071"), "meterValue 1E+131071"),
    (Raw("1e18"), "meterValue 1e18 (|value| must be < 10^18)"),
    (Raw("0.0000000000001"), "meterValue with 13 fractional digits"),
    (Raw("NaN"), "meterValue NaN"),
    (Raw("Infinity"), "meterValue Infinity"),
    (Raw("-Infinity"), "meterValue -Infinity"),
    ("NaN", 'meterValue "NaN"'),
    ("abc", 'meterValue "abc"'),
    (True, "meterValue true"),
    ([1], "meterValue [1]"),
    ({"n": 1}, "meterValue {}"),
]
BAD_TIMES: list[tuple[Any, str]] = [
    (Raw("3e14"), "meterTimeInMillis 3e14 (past year 9999)"),
    (253402300800000, "meterTimeInMillis 253402300800000 (year 10000)"),
    (-1, "meterTimeInMillis -1"),
    (Raw("1e400"), "meterTimeInMillis 1e400"),
    (Raw("-1e400"), "meterTimeInMillis -1e400"),
    ("1e400", 'meterTimeInMillis "1e400"'),
    ("soon", 'meterTimeInMillis "soon"'),
    (NOW_MS - 0.5, "meterTimeInMillis with a fraction"),
    (946_684_799_999, "meterTimeInMillis before 2000"),
    (NOW_MS + 3_600_000, "meterTimeInMillis an hour in the future"),
    (Raw("NaN"), "meterTimeInMillis NaN"),
    (False, "meterTimeInMillis false"),
]
BAD_TEXT = ["\x00", "a\x00b", "\ud800", "x\udfffy"]
ANY_CHOICES = [
    ("meterValue", "12.5", "a numeric string value"),
    ("meterTimeInMillis", str(NOW_MS - 7000), "a numeric string time"),
    ("meterTimeInMillis", Raw("1.5e12"), "a whole time as a float literal"),
    ("dimensions", {"region": "line1\nline2"}, "a newline in a dimension"),
    ("dimensions", {"region": "eu\x7f"}, "DEL in a dimension"),
    ("customerId", "acme\x85x", "a C1 control character in customerId"),
]
ANY_JSON_ONLY = [
    ("note", "\x00", "NUL in an extra field"),
    ("note", "\ud800", "a lone surrogate in an extra field"),
    ("note", Raw("[" * 50 + "]" * 50), "an extra field nested 50 deep"),
]


def hostile_cases(fmt: Format) -> list[Rec]:
    """Every hostile record this suite knows, built for one wire format.

    `reject`: the issue says each of these gets its own REJECTED outcome. `any`: either outcome
    is fine, as long as what is stored is what was reported. `body_level`: the record may make
    the whole body unreadable, so a 400 for its batch is allowed.
    """
    csv_format = fmt == "csv"

    def rec(expect: Expect, why: str, body_level: bool = False, **changes: Any) -> Rec:
        record = _base(fmt)
        for key, value in changes.items():
            if value is _DROP:
                record.pop(key, None)
            elif csv_format and key not in ("dimensions",) and not isinstance(value, str):
                record[key] = csv_cell(value)
            else:
                record[key] = value
        uid: Literal["fresh", "keep"] = "keep" if "uniqueId" in changes else "fresh"
        return Rec(record, expect, why, body_level=body_level, uid=uid)

    cases: list[Rec] = []
    for value, note in BAD_VALUES:
        if csv_format and isinstance(value, (list, dict)):
            value = "[1]"
        cases.append(rec("reject", note, meterValue=value))
    cases += [rec("reject", note, meterTimeInMillis=value) for value, note in BAD_TIMES]
    for bad in BAD_TEXT:
        # Over JSON a lone surrogate is an escape the server must reject per record; a CSV body
        # cannot carry one in UTF-8 at all, so that body is unreadable (a 400) as a whole.
        body = csv_format and any("\ud800" <= ch <= "\udfff" for ch in bad)
        for where in ("uniqueId", "customerId", "meterApiName"):
            cases.append(rec("reject", f"{bad!r} in {where}", body, **{where: bad}))
        cases.append(rec("reject", f"{bad!r} in a dimension", body, dimensions={"region": bad}))
        if csv_format:  # CSV columns are fixed: the value of a known column, then
            cases.append(rec("reject", f"{bad!r} in model", body, dimensions={"model": bad}))
        else:
            cases.append(
                rec(
                    "reject",
                    f"{bad!r} in a dimension key",
                    meterApiName=OPEN_METER,
                    dimensions={"k" + bad: "v"},
                )
            )
    for key in ("customerId", "meterApiName", "meterValue", "meterTimeInMillis"):
        cases.append(rec("reject", f"no {key}", **{key: _DROP}))
    cases += [
        rec("reject", "customerId of 201 characters", customerId="c" * 201),
        rec("reject", "uniqueId of 201 characters", uniqueId="u" * 201),
        rec("reject", "a dimension of 201 characters", dimensions={"region": "r" * 201}),
        rec("reject", "an unknown meter", meterApiName="no-such-meter"),
        rec("reject", "a deprecated meter", meterApiName=DEPRECATED_METER),
        rec("reject", "an empty meterApiName", meterApiName=""),
    ]
    if csv_format:
        # Past the csv module's 128 KiB field limit: that record is rejected, no more.
        cases.append(rec("reject", "a CSV field over 128 KiB", dimensions={"model": "m" * 140_000}))
    else:
        cases += [
            rec("reject", f"{key}: {value!r}", **{key: value})
            for key, value in [
                ("customerId", 42),
                ("meterApiName", ["calls"]),
                ("uniqueId", 7),
                ("dimensions", "eu"),
                ("dimensions", ["region", "eu"]),
                ("dimensions", {"region": 5}),
                ("dimensions", {"region": None}),
                ("dimensions", {"region": ""}),
                ("dimensions", {"region": {"nested": "x"}}),
                ("dimensions", {"region": "eu", "colour": "red"}),
            ]
        ]
        cases.append(rec("reject", "a record over 16 KiB", note="n" * 20_000))
        base = _base(fmt)
        for shape, value in [
            ("{}", {}),
            ("5", 5),
            ('"x"', "x"),
            ("null", None),
            ("[{...}]", [base]),
        ]:
            cases.append(Rec(value, "reject", f"a record that is {shape}", uid="keep"))
        for where in ("dimensions", "meterValue"):
            cases.append(rec("reject", f"{where} nested 1000 deep", True, **{where: DEEP}))
        # Not JSON at all: a bad NDJSON line is its record's problem; a bad line in a JSON
        # array makes the body unreadable.
        broken = Raw('{"customerId": "acme", "meterVal')
        cases.append(Rec(broken, "reject", "broken JSON", body_level=fmt == "json", uid="keep"))
    for key, value, note in ANY_CHOICES + ([] if csv_format else ANY_JSON_ONLY):
        cases.append(rec("any", note, **{key: value}))
    return cases


def hostile_records(fmt: Format) -> st.SearchStrategy[Rec]:
    count = len(hostile_cases(fmt))
    # Built afresh for every draw: assembling a batch gives records their uniqueIds in place.
    return st.integers(0, count - 1).map(lambda index: hostile_cases(fmt)[index])


@st.composite
def batches(draw: st.DrawFn, fmt: Format) -> list[Batch]:
    result = []
    for _ in range(draw(st.integers(1, 3))):
        size = draw(st.integers(1, 10))
        records = []
        for _ in range(size):
            roll = draw(st.integers(0, 9))
            if roll < 5:
                rec = draw(valid_records(fmt))
            elif roll < 9:
                rec = draw(hostile_records(fmt))
            else:
                rec = Rec(None, "valid", "duplicate", uid="keep", duplicate_of=draw(st.integers(0)))
            records.append(rec)
        result.append(Batch(records, gzipped=draw(st.booleans())))
    return result


def assemble(fmt: Format, drawn: list[Batch]) -> list[Batch]:
    """Gives records their uniqueIds (unique across the example unless deliberately copied)."""
    earlier: list[Rec] = []
    counter = 0
    for batch in drawn:
        for position, rec in enumerate(batch.records):
            if rec.duplicate_of is not None:
                originals = [r for r in earlier if r.expect == "valid"]
                if not originals:
                    batch.records[position] = rec = Rec(
                        _base(fmt) | {"uniqueId": f"solo-{counter}"}, "valid", "well-formed"
                    )
                    counter += 1
                else:
                    original = originals[rec.duplicate_of % len(originals)]
                    copy = dict(original.fields)
                    if copy.get("uniqueId") and rec.duplicate_of % 2:
                        # Same uniqueId, another value: still the same event (a DUPLICATE).
                        copy["meterValue"] = "77" if fmt == "csv" else 77
                    batch.records[position] = rec = Rec(
                        copy,
                        "valid",
                        f"a copy of an earlier record (uniqueId {copy.get('uniqueId')!r})",
                    )
            elif isinstance(rec.fields, dict) and rec.uid != "keep":
                if rec.uid == "fresh":
                    rec.fields["uniqueId"] = f"{fmt}-{counter}-{uuid.uuid4().hex[:8]}"
                    counter += 1
                elif rec.uid == "empty":
                    rec.fields["uniqueId"] = ""
                elif rec.uid == "none":
                    rec.fields.pop("uniqueId", None)
            earlier.append(rec)
    return drawn


# ---------------------------------------------------------------------------------------------
# The test


async def fresh_account(session_factory: SessionFactory) -> tuple[uuid.UUID, str]:
    account = await make_account(session_factory, name="fuzz-ingest")
    async with unit_of_work(session_factory) as session:
        for name, dims in ((SUM_METER, CSV_DIMENSIONS), (OPEN_METER, ()), (DEPRECATED_METER, ())):
            spec = meters.MeterSpec(label=name, meter_type=MeterType.SUM, dimensions=dims)
            await meters.create_meter(
                session, account_id=account.account_id, meter_api_name=name, spec=spec
            )
            await meters.activate_meter(
                session,
                account_id=account.account_id,
                meter_api_name=name,
                now=datetime.now(UTC),
            )
        await meters.deprecate_meter(
            session,
            account_id=account.account_id,
            meter_api_name=DEPRECATED_METER,
            now=datetime.now(UTC),
        )
    return account.account_id, account.admin_key


async def stored_events(session_factory: SessionFactory, account_id: uuid.UUID) -> list[Any]:
    async with session_factory() as session:
        rows = await session.execute(
            text(
                """SELECT m.meter_api_name, e.unique_id, e.customer_id, e.value, e.event_time,
                          e.dimensions
                   FROM meter_events e JOIN meters m ON m.id = e.meter_id
                   WHERE e.account_id = :account"""
            ),
            {"account": account_id},
        )
        return [
            (
                meter,
                unique_id,
                customer,
                canonical(Decimal(value)),
                (event_time - EPOCH) // timedelta(milliseconds=1),
                tuple(sorted(dims.items())),
            )
            for meter, unique_id, customer, value, event_time, dims in rows
        ]


def describe(fmt: Format, batch: Batch) -> str:
    lines = [f"{fmt} batch{' (gzip)' if batch.gzipped else ''}:"]
    for index, rec in enumerate(batch.records):
        shown = to_json(rec.fields) if fmt != "csv" else repr(rec.fields)
        shown = shown if len(shown) <= 300 else shown[:300] + f"... ({len(shown)} chars)"
        lines.append(f"  [{index}] {rec.expect} ({rec.note}): {shown}")
    return "\n".join(lines)


async def send(
    http: httpx.AsyncClient, server: FuzzServer, key: str, fmt: Format, batch: Batch
) -> tuple[int, Any, str]:
    body, content_type = encode(fmt, [rec.fields for rec in batch.records])
    headers = {"X-API-KEY": key, "Content-Type": content_type}
    if batch.gzipped:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    offset = server.log_offset()
    context = describe(fmt, batch)
    try:
        response = await http.post("/ingest?format=json", content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise AssertionError(
            f"no answer: {type(exc).__name__}: {exc}\n{context}\n"
            f"server stderr:\n{server.log_since(offset)}"
        ) from None
    context += f"\nanswer {response.status_code}: {response.text[:1500]}"
    assert response.status_code < 500, f"{context}\nserver stderr:\n{server.log_since(offset)}"
    try:
        report = response.json()
    except ValueError:
        report = None
    return response.status_code, report, context


def check_report(
    fmt: Format, batch: Batch, status: int, report: Any, context: str, model: Model
) -> None:
    records = batch.records
    readable = not any(rec.body_level for rec in records)
    if status == 400 and isinstance(report, dict) and "rejections" not in report:
        # The body as a whole was refused: only a body that really is unreadable may be.
        assert not readable, f"a readable body was refused as a whole\n{context}"
        return
    assert status in (200, 400), f"unexpected status\n{context}"
    assert isinstance(report, dict), f"?format=json answered no JSON report\n{context}"
    rejected = {r["index"]: r for r in report["rejections"]}
    assert len(rejected) == len(report["rejections"]) == report["rejected"], context
    assert all(0 <= index < len(records) for index in rejected), context
    assert report["accepted"] + report["duplicates"] + report["rejected"] == len(records), (
        f"not every record got an outcome\n{context}"
    )
    if status == 400:
        assert report["accepted"] + report["duplicates"] == 0, context
    new: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    duplicates = 0
    for index, rec in enumerate(records):
        if rec.expect == "valid":
            assert index not in rejected, f"well-formed record {index} was rejected\n{context}"
        elif rec.expect == "reject" or rec.body_level:
            assert index in rejected, f"record {index} ({rec.note}) was not rejected\n{context}"
        if index in rejected:
            continue
        meaning = identity_and_event(rec.fields)
        assert meaning is not None, f"record {index} ({rec.note}) was not rejected\n{context}"
        identity, event = meaning
        if identity in model.stored or identity in new:
            duplicates += 1
        else:
            new[identity] = event
    assert (report["accepted"], report["duplicates"]) == (len(new), duplicates), (
        f"expected {len(new)} accepted and {duplicates} duplicates\n{context}"
    )
    model.stored.update(new)


@pytest.fixture(scope="module")
def fuzz_server(server_env: dict[str, str]) -> Any:
    server = FuzzServer(server_env)
    server.start()
    yield server
    server.close()


@pytest.fixture
async def fuzz_http(fuzz_server: FuzzServer) -> Any:
    fuzz_server.ensure_running()
    async with httpx.AsyncClient(
        base_url=fuzz_server.base_url, timeout=REQUEST_TIMEOUT_SECONDS
    ) as client:
        yield client


async def check_stored(
    session_factory: SessionFactory, account_id: uuid.UUID, model: Model, context: str
) -> None:
    stored = await stored_events(session_factory, account_id)
    expected = list(model.stored.values())
    assert sorted(stored, key=repr) == sorted(expected, key=repr), (
        f"the stored events are not the ones reported ACCEPTED\n{context}"
        f"\nstored only: {[e for e in stored if e not in expected]}"
        f"\nreported only: {[e for e in expected if e not in stored]}"
    )


FORMATS: list[Format] = ["json", "ndjson", "csv"]


@pytest.mark.parametrize("fmt", FORMATS)
async def test_every_known_hostile_record(
    fmt: Format,
    fuzz_server: FuzzServer,
    fuzz_http: httpx.AsyncClient,
    session_factory: SessionFactory,
) -> None:
    """The seed corpus: each hostile record the suite knows, once, between two well-formed ones.

    Random draws cover these only by chance within a small budget; this pass covers all of
    them every run, and lists every failure rather than stopping at the first.
    """
    account_id, key = await fresh_account(session_factory)
    model = Model()
    failures = []
    for hostile in hostile_cases(fmt):
        good = [Rec(_base(fmt), "valid", "well-formed") for _ in range(2)]
        (batch,) = assemble(fmt, [Batch([good[0], hostile, good[1]], gzipped=False)])
        try:
            status, report, context = await send(fuzz_http, fuzz_server, key, fmt, batch)
            check_report(fmt, batch, status, report, context, model)
        except AssertionError as failure:
            failures.append(f"- {hostile.note}: {summary(failure)}")
            fuzz_server.ensure_running()
    assert not failures, f"{len(failures)} hostile {fmt} records failed:\n" + "\n".join(failures)
    await check_stored(session_factory, account_id, model, "")
    health = fuzz_server.health_problem()
    assert health is None, f"the server is unhealthy after the corpus: {health}"


@pytest.mark.parametrize("fmt", FORMATS)
@fuzz_settings(EXAMPLES_PER_FORMAT)
@given(data=st.data())
async def test_random_batches(
    fmt: Format,
    data: st.DataObject,
    fuzz_server: FuzzServer,
    fuzz_http: httpx.AsyncClient,
    session_factory: SessionFactory,
) -> None:
    """Random mixes: several batches, gzip or not, duplicates within and across them."""
    drawn = assemble(fmt, data.draw(batches(fmt), label="batches"))
    account_id, key = await fresh_account(session_factory)
    model = Model()
    for batch in drawn:
        status, report, context = await send(fuzz_http, fuzz_server, key, fmt, batch)
        check_report(fmt, batch, status, report, context, model)
    await check_stored(
        session_factory, account_id, model, "\n".join(describe(fmt, b) for b in drawn)
    )
    health = fuzz_server.health_problem()
    assert health is None, f"the server is unhealthy after these batches: {health}"
