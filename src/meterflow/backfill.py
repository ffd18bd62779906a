"""`meterflow ingest FILE…`: load history from files through the same REST endpoint producers
use — NDJSON, JSON arrays or CSV, plain or gzip, or `-` for stdin.

Batches of `batch_size` records go out with `concurrency` requests in flight. A record without
a uniqueId gets one made from its text (`bf-` + SHA-256), so running the same file again stores
nothing new: every record answers as a duplicate. Rejections are written to `rejects` as NDJSON
(file, line, code, message and the record). 503, 429 and connection errors are retried with
backoff; Ctrl-C stops reading and lets the batches in flight finish.
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import hashlib
import io
import json
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx

RETRIED = {429, 502, 503, 504}
MAX_ATTEMPTS = 10


@dataclass
class Line:
    """One record as read: where it came from, and its text as it will be sent."""

    source: str
    number: int
    text: str


@dataclass
class Batch:
    content_type: str
    body: bytes | None  # None: records refused here, unsent (not UTF-8 text)
    lines: list[Line]


@dataclass
class Totals:
    read: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def rate(self) -> float:
        return (self.accepted + self.duplicates + self.rejected) / max(
            time.monotonic() - self.started, 1e-9
        )


class Refused(Exception):
    """The server refused the work for a reason retrying cannot fix (a bad key, say)."""


def unique_id_for(text: str) -> str:
    return "bf-" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def with_unique_id(text: str) -> str:
    """The record's text with a deterministic uniqueId when it has none; anything that is not
    a JSON object is sent as it is, for the server to reject with its reason."""
    stripped = text.strip()
    try:
        record = json.loads(stripped)
    except ValueError:
        return stripped
    if not isinstance(record, dict) or record.get("uniqueId") not in (None, ""):
        return stripped
    made = json.dumps(unique_id_for(stripped))
    body = stripped[:-1].rstrip()  # the text up to its closing brace, numbers as written
    joiner = "" if body.endswith("{") else ","
    return f'{body}{joiner}"uniqueId":{made}}}'


def _open(path: str) -> io.BufferedIOBase:
    raw = sys.stdin.buffer if path == "-" else Path(path).open("rb")  # noqa: SIM115
    buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)  # type: ignore[type-var]
    if buffered.peek(2)[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=buffered)
    return buffered


def read_lines(path: str) -> Iterator[tuple[str, Line]]:
    """(content type, line) for every record of a file: NDJSON and JSON arrays become NDJSON
    lines; CSV rows stay CSV (with the header once per batch, see batches())."""
    source = "stdin" if path == "-" else path
    text: TextIO = io.TextIOWrapper(_open(path), encoding="utf-8", errors="surrogateescape")  # type: ignore[type-var]
    first = ""
    while not first.strip():
        first = text.readline()
        if not first:
            return
    head = first.lstrip()[:1]
    if head == "[":
        from meterflow.http.wire import decode_json_array

        whole = first + text.read()
        for number, record in enumerate(decode_json_array(whole), 1):
            # A raw newline cannot sit inside a JSON string: outside one it is only spacing.
            one_line = record.raw.replace("\r", " ").replace("\n", " ")
            yield "application/x-ndjson", Line(source, number, with_unique_id(one_line))
    elif head == "{":
        for number, line in enumerate((first, *text), 1):
            if line.strip():
                yield "application/x-ndjson", Line(source, number, with_unique_id(line))
    else:
        rows = csv.reader((first, *text))
        header = next(rows)
        has_id = "uniqueId" in header
        columns = header if has_id else [*header, "uniqueId"]
        position = header.index("uniqueId") if has_id else len(header)
        yield "text/csv", Line(source, 0, _csv_row(columns))
        for number, row in enumerate(rows, 2):
            if not any(cell.strip() for cell in row):
                continue
            cells = list(row) + [""] * (len(columns) - len(row))
            if not cells[position]:
                cells[position] = unique_id_for(_csv_row(row))
            yield "text/csv", Line(source, number, _csv_row(cells))


def _csv_row(cells: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(cells)
    return out.getvalue()


NOT_UTF8 = "the line is not UTF-8 text"


def _is_text(line: Line) -> bool:
    try:
        line.text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def batches(paths: list[str], size: int) -> Iterator[Batch]:
    for path in paths:
        pending: list[Line] = []
        header: Line | None = None
        kind = "application/x-ndjson"
        for kind, line in read_lines(path):
            if kind == "text/csv" and line.number == 0:
                header = line
                continue
            if not _is_text(line):  # one bad line must not make the server refuse its batch
                yield Batch(kind, None, [line])
                continue
            pending.append(line)
            if len(pending) >= size:
                yield _batch(kind, header, pending)
                pending = []
        if pending:
            yield _batch(kind, header, pending)


def _batch(kind: str, header: Line | None, lines: list[Line]) -> Batch:
    texts = [line.text for line in lines]
    if header is not None:
        texts.insert(0, header.text)
    body = "\n".join(texts).encode("utf-8", "surrogateescape")
    return Batch(kind, body, lines)


async def send(client: httpx.AsyncClient, key: str, batch: Batch) -> dict[str, Any]:
    """The server's report on one batch, after retrying what is worth retrying."""
    assert batch.body is not None
    delay = 0.5
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            response = await client.post(
                "/ingest?format=json",
                content=batch.body,
                headers={"X-API-Key": key, "Content-Type": batch.content_type},
            )
        except httpx.TransportError as exc:
            if attempt == MAX_ATTEMPTS:
                raise Refused(f"the server cannot be reached: {exc}") from exc
        else:
            if response.status_code in RETRIED and attempt < MAX_ATTEMPTS:
                retry_after = response.headers.get("retry-after", "")
                delay = max(delay, float(retry_after)) if retry_after.isdigit() else delay
            elif response.status_code == 401:
                raise Refused(f"the API key was refused: {response.text.strip()}")
            elif response.status_code in (200, 400):
                report = response.json()
                if "accepted" in report:
                    return report
                raise Refused(f"the server refused the batch: {report.get('error', report)}")
            else:
                raise Refused(f"the server answered {response.status_code}: {response.text[:300]}")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 30)
    raise Refused("the server kept answering 'retry later'")


async def run(
    *,
    api_url: str,
    api_key: str,
    paths: list[str],
    batch_size: int,
    concurrency: int,
    rejects: Path | None,
    show_progress: bool,
) -> tuple[Totals, bool]:
    """Send every file; (the totals, whether it was interrupted)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    totals = Totals()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    rejects_out = rejects.open("w", encoding="utf-8") if rejects else None
    in_flight = asyncio.Semaphore(concurrency)
    failures: list[BaseException] = []
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        disable=not show_progress,
    )
    task = progress.add_task("starting")

    def shown() -> str:
        return (
            f"{totals.read:,} read · {totals.accepted:,} accepted · "
            f"{totals.duplicates:,} duplicates · {totals.rejected:,} rejected · "
            f"{totals.rate:,.0f} events/s"
        )

    def refused(line: Line, code: str, message: str, unique_id: str | None) -> None:
        if rejects_out is not None:
            record = line.text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            rejects_out.write(
                json.dumps(
                    {
                        "file": line.source,
                        "line": line.number,
                        "code": code,
                        "message": message,
                        "uniqueId": unique_id,
                        "record": record,
                    }
                )
                + "\n"
            )

    async def one(client: httpx.AsyncClient, batch: Batch) -> None:
        if batch.body is None:
            in_flight.release()
            totals.rejected += len(batch.lines)
            for line in batch.lines:
                refused(line, "MALFORMED_RECORD", NOT_UTF8, None)
            return
        try:
            report = await send(client, api_key, batch)
        except Refused as exc:
            failures.append(exc)
            stop.set()
            return
        finally:
            in_flight.release()
        totals.accepted += report["accepted"]
        totals.duplicates += report["duplicates"]
        totals.rejected += report["rejected"]
        for rejection in report.get("rejections", []):
            refused(
                batch.lines[rejection["index"]],
                rejection["code"],
                rejection["message"],
                rejection.get("uniqueId"),
            )
        progress.update(task, description=shown())

    tasks: set[asyncio.Task[None]] = set()
    try:
        with progress:
            async with httpx.AsyncClient(base_url=api_url.rstrip("/"), timeout=120) as client:
                for batch in batches(paths, batch_size):
                    await in_flight.acquire()
                    if stop.is_set():
                        in_flight.release()
                        break
                    totals.read += len(batch.lines)
                    spawned = asyncio.create_task(one(client, batch))
                    tasks.add(spawned)
                    spawned.add_done_callback(tasks.discard)
                    await asyncio.sleep(0)  # let answers in between reads
                await asyncio.gather(*tasks)
            progress.update(task, description=shown())
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        loop.remove_signal_handler(signal.SIGTERM)
        if rejects_out is not None:
            rejects_out.close()
    if failures:
        raise failures[0]
    return totals, stop.is_set()
