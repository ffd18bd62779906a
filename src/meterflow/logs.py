"""Logging for meterflow's processes: the text format people read, or one JSON object a line
(`METERFLOW_LOG_FORMAT=json`) for log pipelines, with the request id and account each line
belongs to.

A request's id is taken from its `X-Request-Id` header (or made), answered in the same header,
and carried into the jobs the request enqueues, so one id follows an event from the API into
the worker that rolled it up."""

from __future__ import annotations

import json
import logging
import re
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

request_id: ContextVar[str | None] = ContextVar("meterflow_request_id", default=None)
account: ContextVar[str | None] = ContextVar("meterflow_account", default=None)

# What a client may send as its request id: printable, short, nothing a log parser trips on.
ACCEPTABLE_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")


def request_id_from(header: str | None) -> str:
    """The client's id if it is a plain one, else a new one."""
    if header and ACCEPTABLE_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


def bind_job(account_id: str, carried_request_id: str | None) -> None:
    """A job's log lines name its account and the request that asked for it (each arq job
    runs in its own task, so this lasts as long as the job)."""
    account.set(account_id)
    request_id.set(carried_request_id)


class JsonLines(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, account and
    request id when known, and the traceback of an exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "account": account.get(),
            "request_id": request_id.get(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(level: str, log_format: str) -> None:
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonLines())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
