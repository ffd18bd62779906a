"""The `meterflow` command's contract: names and output other tools rely on (DESIGN.md §6)."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx

from tests.conftest import ROOT


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meterflow.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_account_create_json_gives_a_working_admin_key(
    server: str, server_env: dict[str, str]
) -> None:
    result = run_cli("account", "create", "From CLI", "--json", env=server_env)
    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    assert set(created) == {"accountId", "apiKey"}
    response = httpx.post(
        f"{server}/graphql",
        json={"query": "{ account { id name } }"},
        headers={"X-API-Key": created["apiKey"]},
    )
    assert response.json() == {
        "data": {"account": {"id": created["accountId"], "name": "From CLI"}}
    }


def test_account_create_ingest_scope(server: str, server_env: dict[str, str]) -> None:
    result = run_cli("account", "create", "Producer", "--json", "--scope", "ingest", env=server_env)
    key = json.loads(result.stdout)["apiKey"]
    response = httpx.post(
        f"{server}/graphql", json={"query": "{ meters { label } }"}, headers={"X-API-Key": key}
    )
    assert response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"


def test_account_create_plain_output_shows_the_key_once(server_env: dict[str, str]) -> None:
    result = run_cli("account", "create", "Plain", env=server_env)
    assert result.returncode == 0
    assert "API key:    mf_" in result.stdout
    assert "shown once" in result.stdout


def test_migrate_is_repeatable(server_env: dict[str, str]) -> None:
    for _ in range(2):
        result = run_cli("migrate", env=server_env)
        assert result.returncode == 0, result.stderr
        assert "migrated to head" in result.stdout


def test_bad_database_url_is_a_clear_error(server_env: dict[str, str]) -> None:
    result = run_cli("migrate", env={**server_env, "METERFLOW_DATABASE_URL": "mysql://x/y"})
    assert result.returncode != 0
    assert "must be a postgresql:// URL" in result.stderr


def test_schema_prints_the_sdl(server_env: dict[str, str]) -> None:
    result = run_cli("schema", env=server_env)
    assert result.returncode == 0
    assert (ROOT / "schema.graphql").read_text() == result.stdout


def test_worker_process_runs_and_stops_cleanly(
    server: str, server_env: dict[str, str], redis_url: str
) -> None:
    """`meterflow worker` against the environment's Redis: its own heartbeat appears, and
    /healthz counts it."""
    import signal
    import socket
    import time

    import redis

    worker = subprocess.Popen(
        [sys.executable, "-m", "meterflow.cli", "worker"],
        env=server_env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    key = f"mf:worker:heartbeat:{socket.gethostname()}:{worker.pid}"
    client = redis.Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + 20
        while not client.exists(key):
            assert worker.poll() is None, worker.communicate()[0]
            assert time.monotonic() < deadline, "the worker never reported a heartbeat"
            time.sleep(0.2)
        assert httpx.get(f"{server}/healthz").json()["workers"] >= 1
    finally:
        worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=30)
        client.close()
    assert worker.returncode == 0, out
    assert "Traceback" not in out
