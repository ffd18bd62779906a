"""Amberflo-compatible REST ingest: POST /ingest, /ingest/ and /.

Answers 200 `N records were ingested` (Amberflo's SDKs treat anything else as failure), 400 for
a body that cannot be read or a batch with nothing usable, 401 for a bad key, 413 for size, and
503 when the database is unavailable so producers retry (dedup makes retries safe).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from meterflow import logs
from meterflow.db import SessionFactory, is_transient, unit_of_work
from meterflow.errors import AuthenticationError
from meterflow.http import wire
from meterflow.http.auth import presented_key
from meterflow.jobs import JobQueue
from meterflow.pubsub import event_channels, publish
from meterflow.services import accounts, ingestion, outbox, record_decoding, webhook_events
from meterflow.services.event_records import EventRecord
from meterflow.services.ingestion import IngestReport, RawRecord, Status

log = logging.getLogger("meterflow.ingest")


def _problem(status: int, message: str, request: Request) -> Response:
    if request.query_params.get("format") == "json":
        return JSONResponse({"error": message}, status_code=status)
    return PlainTextResponse(message, status_code=status)


def _unavailable(request: Request) -> Response:
    response = _problem(503, "the database is unavailable; retry shortly", request)
    response.headers["Retry-After"] = "1"
    return response


def _report_response(report: IngestReport, request: Request) -> Response:
    ingested = report.accepted + report.duplicates
    status = 200 if ingested or not report.outcomes else 400
    rejected = [o for o in report.outcomes if o.status is Status.REJECTED]
    # Amberflo answers text even to its own SDK, which sends Accept: application/json; the
    # structured report is opt-in so nothing that parses Amberflo's answer is surprised.
    if request.query_params.get("format") == "json":
        return JSONResponse(
            {
                "message": f"{ingested} records were ingested",
                "accepted": report.accepted,
                "duplicates": report.duplicates,
                "rejected": report.rejected,
                "rejections": [
                    {
                        "index": o.index,
                        "uniqueId": o.unique_id,
                        "code": o.code,
                        "message": o.message,
                    }
                    for o in rejected
                ],
            },
            status_code=status,
        )
    lines = [f"{ingested} records were ingested"]
    lines += [f"record {o.index} rejected: {o.code}: {o.message}" for o in rejected]
    return PlainTextResponse("\n".join(lines), status_code=status)


@dataclass(frozen=True)
class Ingest:
    """POST /ingest with what it needs, handed in by the app factory."""

    session_factory: SessionFactory
    jobs: JobQueue
    redis: Redis
    max_request_bytes: int

    async def endpoint(self, request: Request) -> Response:
        return await _ingest(self, request)


async def _ingest(deps: Ingest, request: Request) -> Response:
    secret = presented_key(request.headers)
    if secret is None:
        return _problem(401, "missing API key: send it in the X-API-KEY header", request)
    try:
        async with deps.session_factory() as session:
            principal = await accounts.authenticate(session, secret=secret)
    except AuthenticationError:
        return _problem(401, "invalid or revoked API key", request)
    except Exception as exc:
        if is_transient(exc):
            return _unavailable(request)
        raise
    logs.account.set(str(principal.account_id))  # this request's task: its log lines

    max_bytes = deps.max_request_bytes
    now = datetime.now(UTC)
    content_type = request.headers.get("content-type")
    checked: list[EventRecord] | None = None
    records: list[RawRecord] = []
    try:
        body = wire.decompress(
            await request.body(), request.headers.get("content-encoding"), max_bytes
        )
        if "csv" not in (content_type or "").lower():
            # The common case in compiled code; any record it is unsure of sends the whole
            # body down the exact path below, which decides every outcome.
            checked = record_decoding.valid_batch(body, now)
        if checked is None:
            records = wire.decode(body, content_type)
    except wire.BodyTooLarge as exc:
        return _problem(413, str(exc), request)
    except wire.WireFormatError as exc:
        return _problem(400, str(exc), request)
    size = len(records) if checked is None else len(checked)
    if size > ingestion.MAX_BATCH:
        return _problem(413, str(ingestion.BatchTooLarge(size)), request)

    try:
        async with unit_of_work(deps.session_factory) as session:
            if checked is not None:
                report = await ingestion.ingest_checked(
                    session, account_id=principal.account_id, records=checked, now=now
                )
            else:
                report = await ingestion.ingest(
                    session, account_id=principal.account_id, records=records, now=now
                )
    except Exception as exc:
        if is_transient(exc):
            log.warning("ingest failed transiently: %s", type(exc).__name__)
            return _unavailable(request)
        raise
    if report.accepted:
        await deps.jobs.request_rollup(principal.account_id, report.meter_ids)
        await publish(deps.redis, *event_channels(principal.account_id, report.meters))
    if webhook_events.written(session):  # customer.created for customers the batch made
        await deps.jobs.run_outbox(principal.account_id, outbox.DELIVER_WEBHOOK)
    return _report_response(report, request)
