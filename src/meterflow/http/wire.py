"""Decoding Amberflo-format ingest bodies: JSON object or array, NDJSON, CSV; plain or gzip.

Numbers are read as Decimal (never float) and each record keeps its exact JSON text.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zlib
from collections.abc import Iterator
from decimal import Decimal
from itertools import repeat
from operator import add
from typing import Any

import orjson

from meterflow.http.jsonbody import MAX_DEPTH, deeper_than
from meterflow.services.ingestion import InvalidJson, RawRecord

# 16 or more digits in a row (a dot may sit among them): a number a double might not carry
# exactly. Where there is none, orjson's floats round-trip to the very decimal that was sent
# (any decimal of ≤ 15 significant digits does). Numbers in fields other than meterValue are
# kept in the stored payload as orjson renders them.
LONG_NUMBER = re.compile(rb"\d[\d.]{15,}")
# An exponent of -100 or below: where a double may have flushed a tiny number to 0.
TINY_EXPONENT = re.compile(rb"[eE]-\d{3}")

KNOWN_FIELDS = ("customerId", "meterApiName", "meterValue", "meterTimeInMillis", "uniqueId")
TOO_DEEP = f"the body is nested deeper than {MAX_DEPTH} levels"
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=Decimal)
# For the rare integer past Python's int-from-text limit (4300 digits), which int() refuses.
_BIG_INT_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=Decimal, parse_int=Decimal)

# A field may be as large as the body (itself bounded by max_request_bytes): a too-large record
# is that record's rejection (RECORD_TOO_LARGE), not a csv.Error for the whole batch.
csv.field_size_limit(2**31 - 1)


class WireFormatError(ValueError):
    """The body as a whole cannot be read: a 400, nothing is ingested."""


class BodyTooLarge(ValueError):
    pass


class TooDeep(ValueError):
    """JSON nested deeper than MAX_DEPTH (or than Python's recursion allows)."""


def check_depth(value: Any, text: str | bytes, limit: int) -> None:
    """Raise TooDeep if decoded JSON nests past `limit`. The count of `{` and `[` in its text
    bounds its depth from above (brackets in strings only add to it), so two C-speed counts
    clear a usual document without walking it."""
    if isinstance(text, bytes):
        openers = text.count(b"{") + text.count(b"[")
    else:
        openers = text.count("{") + text.count("[")
    if openers > limit and deeper_than(value, limit):
        raise TooDeep(TOO_DEEP)


_JSON_PIECE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)


def check_text_depth(text: str, limit: int) -> None:
    """Raise TooDeep if this JSON text nests past `limit`, judged on the text itself: what is
    stored is the text, and a repeated key can hide a deep value from the decoded object."""
    if text.count("{") + text.count("[") <= limit:
        return
    depth = 0
    for match in _JSON_PIECE.finditer(text):  # a string is one piece: its brackets count not
        piece = match.group()
        if piece == "[" or piece == "{":
            depth += 1
            if depth > limit:
                raise TooDeep(TOO_DEEP)
        elif piece == "]" or piece == "}":
            depth -= 1


def _raw_decode(text: str, position: int) -> tuple[Any, int]:
    """One JSON value from `position`; TooDeep instead of RecursionError."""
    try:
        return _DECODER.raw_decode(text, position)
    except json.JSONDecodeError:
        raise
    except RecursionError as exc:
        raise TooDeep(TOO_DEEP) from exc
    except ValueError:  # an integer too long for int(): read integers as Decimal instead
        try:
            return _BIG_INT_DECODER.raw_decode(text, position)
        except RecursionError as exc:
            raise TooDeep(TOO_DEEP) from exc


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
        document = orjson.loads(body)  # refuses lone surrogates, NaN, ±inf, > 1024 levels
    except orjson.JSONDecodeError:
        return None
    items = document if isinstance(document, list) else [document]
    if not all(isinstance(item, dict) for item in items):
        return None
    # Only a fractional meterValue can have lost digits to a double (orjson reads integers
    # past 64 bits as doubles too; they are long). Most usage is counted in integers, so the
    # body scan is usually skipped. A double that is 0 may have been 1e-400: then the exact
    # path must see the number as written.
    floats = [value for item in items if type(value := item.get("meterValue")) is float]
    if floats and (LONG_NUMBER.search(body) or (0.0 in floats and TINY_EXPONENT.search(body))):
        return None
    try:
        texts = [orjson.dumps(item) for item in items]
    except orjson.JSONEncodeError as exc:  # orjson writes at most 255 levels
        raise WireFormatError(TOO_DEEP) from exc
    # Depth: a record whose text has few `{` and `[` cannot be deep (counted in C, no Python
    # per record); only one with many is walked.
    limit = MAX_DEPTH - 1 if isinstance(document, list) else MAX_DEPTH
    openers = map(add, map(bytes.count, texts, repeat(b"{")), map(bytes.count, texts, repeat(b"[")))
    if max(openers, default=0) > limit and any(deeper_than(item, limit) for item in items):
        raise WireFormatError(TOO_DEEP)
    return [RawRecord(item, text.decode()) for item, text in zip(items, texts, strict=True)]


def _json_error(exc: json.JSONDecodeError) -> WireFormatError:
    return WireFormatError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")


def decode_json_array(text: str, start: int = 0) -> list[RawRecord]:
    records: list[RawRecord] = []
    position = _WHITESPACE.match(text, start + 1).end()  # type: ignore[union-attr]
    if text.startswith("]", position):
        return _expect_end(text, position + 1, records)
    while True:
        try:
            value, end = _raw_decode(text, position)
            raw = text[position:end]
            check_text_depth(raw, MAX_DEPTH - 1)  # the array is the first level
        except json.JSONDecodeError as exc:
            raise _json_error(exc) from exc
        except TooDeep as exc:
            raise WireFormatError(str(exc)) from exc
        records.append(RawRecord(value, raw))
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
        value, end = _raw_decode(text, start)
    except json.JSONDecodeError:
        return decode_ndjson(text)  # a bad first line must not hide the good ones
    except TooDeep as exc:
        if "\n" in text.strip():
            return decode_ndjson(text)
        raise WireFormatError(str(exc)) from exc  # one line: the body itself is too deep
    if not text[end:].strip():
        raw = text[start:end]
        try:
            check_text_depth(raw, MAX_DEPTH)
        except TooDeep as exc:
            raise WireFormatError(str(exc)) from exc
        return [RawRecord(value, raw)]
    return decode_ndjson(text)


def decode_ndjson(text: str) -> list[RawRecord]:
    """One JSON object per line. A bad line is that record's problem, not the batch's: a line
    nested too deep too (unlike a JSON body, whose depth is the whole body's problem)."""
    records: list[RawRecord] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        try:
            value, end = _raw_decode(stripped, 0)
            if end != len(stripped):
                raise json.JSONDecodeError("Extra data", stripped, end)
            check_text_depth(stripped, MAX_DEPTH)
            records.append(RawRecord(value, stripped))
        except json.JSONDecodeError as exc:
            records.append(RawRecord(InvalidJson(f"column {exc.colno}: {exc.msg}"), stripped))
        except TooDeep:
            line_too_deep = f"the line is nested deeper than {MAX_DEPTH} levels"
            records.append(RawRecord(InvalidJson(line_too_deep), stripped))
    if not records:
        raise WireFormatError("the body has no records")
    return records


def decode_csv(text: str) -> list[RawRecord]:
    """A header row, then one record per row. Unknown columns become dimensions."""
    reader = csv.DictReader(io.StringIO(text))
    try:
        header = [name.strip() for name in reader.fieldnames or []]
    except csv.Error as exc:
        raise WireFormatError(f"the CSV header cannot be read: {exc}") from exc
    missing = [name for name in ("customerId", "meterApiName", "meterValue") if name not in header]
    if missing:
        raise WireFormatError(f"the CSV header lacks {', '.join(missing)}")
    reader.fieldnames = header
    records: list[RawRecord] = []
    for row in _rows(reader):
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
                except (TypeError, ValueError, RecursionError):
                    record["dimensions"] = value  # rejected per record by validation
            else:
                dimensions[key] = value
        if dimensions and "dimensions" not in record:
            record["dimensions"] = dimensions
        records.append(RawRecord(record, json.dumps(row, ensure_ascii=False)))
    if not records:
        raise WireFormatError("the CSV has a header but no rows")
    return records


def _rows(reader: csv.DictReader[str]) -> Iterator[dict[str | Any, Any]]:
    try:
        yield from reader
    except csv.Error as exc:  # malformed past the last good row: nothing after it can be read
        raise WireFormatError(f"the CSV cannot be read at line {reader.line_num}: {exc}") from exc
