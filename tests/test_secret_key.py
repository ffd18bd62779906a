"""METERFLOW_SECRET_KEY: `serve` and `worker` refuse to start without a usable one and say how
to set one; commands that need no secret run without it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT


def run(*args: str, env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [sys.executable, "-m", "meterflow.cli", *args],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"`meterflow {' '.join(args)}` started instead of refusing") from exc


def without_key(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k != "METERFLOW_SECRET_KEY"}


@pytest.mark.parametrize("command", [["serve", "--host", "127.0.0.1", "--port", "9"], ["worker"]])
def test_serve_and_worker_refuse_to_start_without_a_secret_key(
    command: list[str], server_env: dict[str, str]
) -> None:
    result = run(*command, env=without_key(server_env))
    assert result.returncode == 2, result.stderr
    assert "METERFLOW_SECRET_KEY is not set" in result.stderr
    assert "export METERFLOW_SECRET_KEY=" in result.stderr
    assert "secrets.token_urlsafe(48)" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [["serve", "--host", "127.0.0.1", "--port", "9"], ["worker"]])
def test_serve_and_worker_refuse_a_short_secret_key(
    command: list[str], server_env: dict[str, str]
) -> None:
    short = "x" * 31
    result = run(*command, env={**server_env, "METERFLOW_SECRET_KEY": short})
    assert result.returncode == 2, result.stderr
    assert "is 31 characters long; it must be at least 32" in result.stderr
    assert "export METERFLOW_SECRET_KEY=" in result.stderr
    assert short not in result.stderr  # the (bad) key itself is never echoed
    assert "Traceback" not in result.stderr


def test_migrate_account_and_schema_need_no_secret_key(server_env: dict[str, str]) -> None:
    env = without_key(server_env)
    assert run("migrate", env=env).returncode == 0
    assert run("schema", env=env).returncode == 0
    created = run("account", "create", "No secret needed", "--json", env=env)
    assert created.returncode == 0, created.stderr
