"""Shared set-up for the benchmarks: a bench database, a real server process, an account."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from meterflow.db import create_engine, create_session_factory, unit_of_work  # noqa: E402
from meterflow.migrations import upgrade  # noqa: E402
from meterflow.models import ApiKeyScope  # noqa: E402
from meterflow.services import accounts  # noqa: E402

ADMIN_URL = os.environ.get(
    "METERFLOW_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("METERFLOW_BENCH_REDIS_URL", "redis://127.0.0.1:6379/8")
# `serve` and `worker` refuse to start without a secret key of 32+ characters.
SECRET_KEY = "meterflow-bench-secret-key-0123456789abcdef"  # noqa: S105  (a bench value)


# meter_events' columns in the order the benches COPY rows into it (or into a copy of it).
EVENT_COPY_COLUMNS = [
    "account_id",
    "event_time",
    "seq",
    "meter_id",
    "customer_id",
    "value",
    "unique_id",
    "identity",
    "dimensions",
    "raw",
]


def database_url(name: str) -> str:
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + name


async def fresh_database(name: str) -> str:
    engine = create_engine(ADMIN_URL, pool_size=1).execution_options(isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    await engine.dispose()
    url = database_url(name)
    await asyncio.to_thread(upgrade, url)
    return url


async def new_account(url: str) -> tuple[str, str]:
    engine = create_engine(url, pool_size=1)
    async with unit_of_work(create_session_factory(engine)) as session:
        account = await accounts.create_account(session, name="bench")
        key = await accounts.issue_api_key(
            session, account_id=account.id, name="bench", scope=ApiKeyScope.ADMIN
        )
    await engine.dispose()
    return str(account.id), key.secret


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_env(url: str) -> dict[str, str]:
    """What a bench's `serve` and `worker` run with: its database, Redis and secret key."""
    return {
        **os.environ,
        "METERFLOW_DATABASE_URL": url,
        "METERFLOW_REDIS_URL": REDIS_URL,
        "METERFLOW_SECRET_KEY": SECRET_KEY,
        "METERFLOW_LOG_LEVEL": "warning",
        # The benches' webhook receivers listen on 127.0.0.1.
        "METERFLOW_ALLOW_PRIVATE_WEBHOOK_TARGETS": "true",
    }


def start_worker(url: str) -> subprocess.Popen[bytes]:
    """A `meterflow worker` beside the bench (returns at once; the caller ends it)."""
    return subprocess.Popen(
        [sys.executable, "-m", "meterflow.cli", "worker"], env=service_env(url), cwd=ROOT
    )


# The process of each running server, by base URL (for benches that read its memory).
SERVER_PIDS: dict[str, int] = {}


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and its children (uvicorn's workers), from /proc."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            status = (entry / "status").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if int(entry.name) == pid or parent == pid:
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


@contextmanager
def server(url: str, *, extra_env: dict[str, str] | None = None, workers: int = 1) -> Iterator[str]:
    """One `meterflow serve` process (one uvicorn worker, as the targets specify, unless
    `workers` asks for more)."""
    port = free_port()
    env = {**service_env(url), **(extra_env or {})}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "meterflow.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        env=env,
        cwd=ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    SERVER_PIDS[base] = process.pid
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(10)


async def graphql(
    client: httpx.AsyncClient, key: str, query: str, variables: dict | None = None
) -> dict:  # type: ignore[type-arg]
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers={"X-API-Key": key}
    )
    body = response.json()
    if "errors" in body:
        raise RuntimeError(json.dumps(body["errors"]))
    return body["data"]  # type: ignore[no-any-return]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(latencies_ms: list[float]) -> str:
    return (
        f"p50 {percentile(latencies_ms, 50):7.1f} ms  p99 {percentile(latencies_ms, 99):7.1f}"
        f" ms  mean {statistics.fmean(latencies_ms):7.1f} ms"
    )


def load_events(
    meter: str,
    count: int,
    *,
    customers: int,
    offset: int = 0,
    prefix: str = "load-",
    dimensions: dict[str, str] | None = None,
) -> list[dict]:  # type: ignore[type-arg]
    """A batch of background events, spread over `customers` customers, stamped now."""
    now_ms = int(time.time() * 1000)
    events = []
    for i in range(count):
        event = {
            "customerId": f"{prefix}{(offset + i) % customers}",
            "meterApiName": meter,
            "meterValue": 1,
            "meterTimeInMillis": now_ms,
            "uniqueId": uuid.uuid4().hex,
        }
        if dimensions:
            event["dimensions"] = dimensions
        events.append(event)
    return events


async def paced(interval: float, keep_going: Callable[[float], bool]) -> AsyncIterator[float]:
    """Ticks every `interval` seconds (catching up, never drifting) while keep_going(tick)."""
    tick = time.perf_counter()
    while keep_going(tick):
        yield tick
        tick += interval
        await asyncio.sleep(max(0, tick - time.perf_counter()))


class InFlight:
    """Requests sent without waiting for each other; drain() waits for the stragglers."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        await asyncio.gather(*self._tasks)


def receiver(key_of: Callable[[dict], str | None]) -> tuple[ThreadingHTTPServer, dict[str, float]]:  # type: ignore[type-arg]
    """A local webhook receiver in a thread: `arrivals[key_of(body)]` is when the first POST
    with that key arrived (a key of None is not recorded)."""
    arrivals: dict[str, float] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            key = key_of(body)
            if key is not None:
                arrivals.setdefault(key, time.perf_counter())
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    return http, arrivals


async def ingest_and_bill(
    factory: Any, account_id: uuid.UUID, records: list[Any], now: Any
) -> None:
    """Seed: ingest the records, roll everything up, open every customer's invoice."""
    await ingest_all(factory, account_id, records, now)
    await roll_up_and_open(factory, account_id, now)


async def ingest_all(factory: Any, account_id: uuid.UUID, records: list[Any], now: Any) -> None:
    """Ingest the records in batches of 5,000 (customers they name are created)."""
    from meterflow.services import ingestion

    for start in range(0, len(records), 5000):
        async with unit_of_work(factory) as session:
            await ingestion.ingest(
                session, account_id=account_id, records=records[start : start + 5000], now=now
            )


async def roll_up_and_open(factory: Any, account_id: uuid.UUID, now: Any) -> None:
    """Roll the account up, then open (and rate) every customer's current invoice, as the
    worker and the close would."""
    from meterflow.services import invoice_lifecycle, rollups

    while True:
        async with unit_of_work(factory) as session:
            step = await rollups.rollup_account(session, account_id=account_id)
        if not step.more:
            break
    while True:
        async with unit_of_work(factory) as session:
            opened = await invoice_lifecycle.open_current_periods(
                session, account_id=account_id, now=now
            )
        if opened < invoice_lifecycle.OPEN_AT_MOST:
            break
