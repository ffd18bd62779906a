"""Decoding Amberflo-format ingest bodies: JSON object or array, NDJSON, CSV; plain or gzip.

Numbers are read as Decimal (never float) and each record keeps its exact JSON text.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zlib
from decimal import Decimal
from typing import Any

import orjson

from meterflow.services.ingestion import InvalidJson, RawRecord

# 16 or more digits in a row (a dot may sit among them): a number a double might not carry
# exactly. Where there is none, orjson's floats round-trip to the very decimal that was sent
# (any decimal of ≤ 15 significant digits does). Numbers in fields other than meterValue are
# kept in the stored payload as orjson renders them.
LONG_NUMBER = re.compile(rb"\d[\d.]{15,}")

KNOWN_FIELDS = ("customerId", "meterApiName", "meterValue", "meterTimeInMillis", "uniqueId")
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=Decimal)


class WireFormatError(ValueError):
    """The body as a whole cannot be read: a 400, nothing is ingested."""


class BodyTooLarge(ValueError):
    pass


def decompress(body: bytes, encoding: str | None, max_bytes: int) -> bytes:
    """gzip bodies (by header, or by their magic bytes), bounded against decompression bombs."""
    gzipped = (encoding or "").strip().lower() in ("gzip", "x-gzip") or body[:2] == b"\x1f\x8b"
    if not gzipped:
        return body
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise WireFormatError(f"the body is not valid gzip: {exc}") from exc
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise BodyTooLarge(f"the decompressed body is larger than {max_bytes} bytes")
    return out


def decode(body: bytes, content_type: str | None) -> list[RawRecord]:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise WireFormatError(f"the body is not UTF-8 text: {exc}") from exc
    kind = (content_type or "").split(";")[0].strip().lower()
    if "csv" in kind:
        return decode_csv(text)
    if "json" in kind or body.lstrip()[:1] in (b"[", b"{"):
        fast = decode_json_fast(body)
        if fast is not None:
            return fast
    if "ndjson" in kind or "jsonl" in kind or "json-seq" in kind:
        return decode_ndjson(text)
    start = _WHITESPACE.match(text).end()  # type: ignore[union-attr]
    if start == len(text):
        raise WireFormatError("the body is empty")
    if text[start] == "[":
        return decode_json_array(text, start)
    if text[start] == "{":
        return decode_object_or_ndjson(text, start)
    first_line = text[start:].split("\n", 1)[0]
    if "meterApiName" in first_line or "customerId" in first_line:
        return decode_csv(text)
    raise WireFormatError(
        "the body is not a JSON object or array, NDJSON, or CSV with a header row"
    )


def decode_json_fast(body: bytes) -> list[RawRecord] | None:
    """The common case, in C: one JSON document of plain numbers. None = take the exact path.

    The exact path (stdlib json, Decimal numbers, each record's own text) handles long numbers,
    NaN/Infinity, NDJSON and every error with a precise message.
    """
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    items = document if isinstance(document, list) else [document]
    if not all(isinstance(item, dict) for item in items):
        return None
    # Only a fractional meterValue can have lost digits to a double (integers decode exactly,
    # to 64 bits; beyond that orjson refuses and the exact path runs). Most usage is counted
    # in integers, so the body scan is usually skipped.
    if any(type(item.get("meterValue")) is float for item in items) and LONG_NUMBER.search(body):
        return None
    return [RawRecord(item, orjson.dumps(item).decode()) for item in items]


def _json_error(exc: json.JSONDecodeError) -> WireFormatError:
    return WireFormatError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")


def decode_json_array(text: str, start: int = 0) -> list[RawRecord]:
    records: list[RawRecord] = []
    position = _WHITESPACE.match(text, start + 1).end()  # type: ignore[union-attr]
    if text.startswith("]", position):
        return _expect_end(text, position + 1, records)
    while True:
        try:
            value, end = _DECODER.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            raise _json_error(exc) from exc
        records.append(RawRecord(value, text[position:end]))
        position = _WHITESPACE.match(text, end).end()  # type: ignore[union-attr]
        if text.startswith(",", position):
            position = _WHITESPACE.match(text, position + 1).end()  # type: ignore[union-attr]
        elif text.startswith("]", position):
            return _expect_end(text, position + 1, records)
        else:
            raise WireFormatError(f"invalid JSON: expected ',' or ']' at offset {position}")


def _expect_end(text: str, position: int, records: list[RawRecord]) -> list[RawRecord]:
    if text[position:].strip():
        raise WireFormatError(f"unexpected data after the JSON array at offset {position}")
    return records


def decode_object_or_ndjson(text: str, start: int) -> list[RawRecord]:
    try:
        value, end = _DECODER.raw_decode(text, start)
    except json.JSONDecodeError:
        return decode_ndjson(text)  # a bad first line must not hide the good ones
    if not text[end:].strip():
        return [RawRecord(value, text[start:end])]
    return decode_ndjson(text)


def decode_ndjson(text: str) -> list[RawRecord]:
    """One JSON object per line. A bad line is that record's problem, not the batch's."""
    records: list[RawRecord] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        try:
            records.append(RawRecord(_DECODER.decode(stripped), stripped))
        except json.JSONDecodeError as exc:
            records.append(RawRecord(InvalidJson(f"column {exc.colno}: {exc.msg}"), stripped))
    if not records:
        raise WireFormatError("the body has no records")
    return records


def decode_csv(text: str) -> list[RawRecord]:
    """A header row, then one record per row. Unknown columns become dimensions."""
    reader = csv.DictReader(io.StringIO(text))
    header = [name.strip() for name in reader.fieldnames or []]
    missing = [name for name in ("customerId", "meterApiName", "meterValue") if name not in header]
    if missing:
        raise WireFormatError(f"the CSV header lacks {', '.join(missing)}")
    reader.fieldnames = header
    records: list[RawRecord] = []
    for row in reader:
        record: dict[str, Any] = {}
        dimensions: dict[str, str] = {}
        for key, value in row.items():
            if key is None or value is None or value == "":
                continue  # extra unnamed cells, short rows and empty cells carry nothing
            if key in KNOWN_FIELDS:
                record[key] = value
            elif key == "dimensions":
                try:
                    dimensions.update(json.loads(value))
                except (json.JSONDecodeError, TypeError, ValueError):
                    record["dimensions"] = value  # rejected per record by validation
            else:
                dimensions[key] = value
        if dimensions and "dimensions" not in record:
            record["dimensions"] = dimensions
        records.append(RawRecord(record, json.dumps(row, ensure_ascii=False)))
    if not records:
        raise WireFormatError("the CSV has a header but no rows")
    return records
