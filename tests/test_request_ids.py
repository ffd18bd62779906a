"""Structured logs: with METERFLOW_LOG_FORMAT=json a real `meterflow serve` writes one JSON
object a line, and a request's lines carry its X-Request-Id (taken from the request or made,
answered in the response) and its account; the jobs it enqueues carry the id to the worker."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from pathlib import Path

import httpx
from arq import create_pool
from arq.jobs import Job

from meterflow import logs
from meterflow.jobs import redis_settings, rollup_job_id
from tests.client import GraphQLClient, TestAccount
from tests.conftest import running_server
from tests.helpers import create_meter, event


def json_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def test_json_logs_carry_the_request_id_and_account_into_jobs(
    server_env: dict[str, str], account: TestAccount, redis_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "serve.log"
    env = {**server_env, "METERFLOW_LOG_FORMAT": "json", "METERFLOW_LOG_LEVEL": "info"}
    with running_server(env, output=log) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            gql = GraphQLClient(http, account.admin_key)
            await create_meter(gql, "calls")
            meter_id = uuid.UUID((await gql("{ meters { id } }"))["meters"][0]["id"])
            refused = await http.post(
                "/graphql",
                json={"query": "query Broken { meters { nope } }", "operationName": "Broken"},
                headers={"X-API-Key": account.admin_key, "X-Request-Id": "req-abc-123"},
            )
            assert refused.headers["x-request-id"] == "req-abc-123"
            made = await http.get("/healthz")
            assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
            hostile = await http.get("/healthz", headers={"X-Request-Id": "a b\tc" + "x" * 200})
            assert re.fullmatch(r"[0-9a-f]{32}", hostile.headers["x-request-id"])
            ingested = await http.post(
                "/ingest",
                json=[event(unique_id="rid-1")],
                headers={"X-API-Key": account.admin_key, "X-Request-Id": "req-ingest-7"},
            )
            assert ingested.status_code == 200, ingested.text
        deadline = time.monotonic() + 10
        while not any(line.get("request_id") == "req-abc-123" for line in json_lines(log)):
            assert time.monotonic() < deadline, log.read_text()
            await asyncio.sleep(0.1)
    lines = json_lines(log)  # every line parses: uvicorn's own too
    assert {"time", "level", "logger", "message", "account", "request_id"} <= set(lines[0])
    broken = [line for line in lines if line.get("request_id") == "req-abc-123"]
    assert broken[0]["level"] == "WARNING" and "Broken" in str(broken[0]["message"])
    assert broken[0]["account"] == str(account.account_id)
    # The rollup job the ingest enqueued carries the request's id to the worker.
    pool = await create_pool(redis_settings(redis_url))
    try:
        info = await Job(rollup_job_id(account.account_id, meter_id), pool).info()
    finally:
        await pool.aclose()
    assert info is not None and info.kwargs == {"request_id": "req-ingest-7"}, info
    assert info.args == (str(account.account_id), str(meter_id))  # the meter's own rollup


def test_a_jobs_lines_name_its_account_and_request() -> None:
    logs.bind_job("acct-1", "req-9")
    record = logging.LogRecord(
        "meterflow.worker", logging.INFO, __file__, 1, "rolled %d", (5,), None
    )
    line = json.loads(logs.JsonLines().format(record))
    assert (line["account"], line["request_id"], line["message"]) == ("acct-1", "req-9", "rolled 5")
    logs.bind_job("acct-2", None)
    assert json.loads(logs.JsonLines().format(record))["request_id"] is None
