"""The edges a person meets in the first hour: the CLI says its version and its defaults, a
server that cannot work says which setting to change, a client's bad query is a warning (not
our error), and browsers get a favicon."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, TEST_SECRET_KEY, _admin_execute, in_process_app


def meterflow(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meterflow.cli", *args],
        env={**os.environ, "METERFLOW_SECRET_KEY": TEST_SECRET_KEY, **(env or {})},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def shown(*args: str) -> str:
    """A command's help, its line wrapping undone."""
    return " ".join(meterflow(*args).stdout.split())


def test_version_and_defaults_in_help() -> None:
    version = meterflow("--version")
    assert version.returncode == 0 and version.stdout.startswith("meterflow 0."), version
    serve = shown("serve", "--help")
    assert "(default: 8000)" in serve and "(default: 0.0.0.0)" in serve, serve
    dev = shown("dev", "--help")
    assert "(default: .meterflow)" in dev and "--print-key" in dev, dev
    assert "(default: head)" in shown("migrate", "--help")
    assert "(default: -)" in shown("schema", "--help")


def test_serve_names_what_to_fix(test_services: Any, database_url: str, redis_url: str) -> None:
    # Unreachable services are named, and it starts anyway (503 until they are back: the
    # outage tests rely on that); `account create` has no such patience and stops.
    unreachable = meterflow(
        "account",
        "create",
        "x",
        env={"METERFLOW_DATABASE_URL": "postgresql://me:hunter2@127.0.0.1:9/none"},
    )
    assert unreachable.returncode != 0
    assert "hunter2" not in unreachable.stderr + unreachable.stdout  # never echoed

    empty = f"meterflow_empty_{uuid.uuid4().hex[:8]}"
    admin = test_services.admin_database_url
    import asyncio

    asyncio.run(_admin_execute(admin, f'CREATE DATABASE "{empty}"'))
    try:
        unmigrated = meterflow(
            "serve",
            env={
                "METERFLOW_DATABASE_URL": test_services.database_url(empty),
                "METERFLOW_REDIS_URL": redis_url,
            },
        )
        assert unmigrated.returncode == 2
        assert "run `meterflow migrate`" in unmigrated.stderr, unmigrated.stderr
    finally:
        asyncio.run(_admin_execute(admin, f'DROP DATABASE IF EXISTS "{empty}" WITH (FORCE)'))

    from meterflow import preflight

    down = preflight.check("postgresql://me:hunter2@127.0.0.1:9/none", "redis://127.0.0.1:9/0")
    assert len(down) == 2, down
    assert "METERFLOW_DATABASE_URL" in down[0] and "hunter2" not in down[0], down
    assert "METERFLOW_REDIS_URL" in down[1], down


@pytest.fixture
async def app_http(database_url: str, redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process_app(database_url, redis_url) as (http, _):
        yield http


async def test_a_clients_bad_query_is_a_warning_naming_its_operation(
    app_http: httpx.AsyncClient, account: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    response = await app_http.post(
        "/graphql",
        json={"query": "query Broken { meters { nope } }", "operationName": "Broken"},
        headers={"X-API-Key": account.admin_key},
    )
    assert response.status_code == 200 and response.json()["errors"]
    refused = [r for r in caplog.records if "Broken" in r.getMessage()]
    assert refused and all(r.levelno == logging.WARNING for r in refused), caplog.text
    assert "nope" in refused[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert all(r.exc_info is None for r in refused)


async def test_browsers_get_a_favicon(app_http: httpx.AsyncClient) -> None:
    icon = await app_http.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/x-icon"
    body = icon.content
    assert body[:4] == b"\x00\x00\x01\x00"  # an ICO with one image
    assert body[22:30] == b"\x89PNG\r\n\x1a\n"  # which is a PNG
