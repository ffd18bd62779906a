"""Webhook and Slack targets, end to end: no SSRF at creation or at delivery, nothing of a
target's answer reflected back, and customer session tokens never see deliveries.

Workers here are started per test (one at a time, so the test knows which switch the worker that
delivers has), with their log captured."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from meterflow.db import create_engine
from meterflow.migrations import upgrade
from tests.client import GraphQLClient, TestAccount
from tests.conftest import ROOT, _admin_execute, running_server
from tests.helpers import create_meter, ingest, until
from tests.services import TestServices
from tests.test_alerts import CREATE, SECRET, hours
from tests.ws import connect

SWITCH = "METERFLOW_ALLOW_PRIVATE_WEBHOOK_TARGETS"
MARKER = "M4RKER-from-the-target-body"
SLACK_SECRET = "xoxSLACKSECRETPATH0123456789"
EVENTS = """query($c: String) { alertEvents(customerId: $c) { id customerId value message
    deliveries { channel target status attempts lastStatusCode lastError } } }"""


@pytest.fixture(scope="module")
def strict_server(server_env: dict[str, str]) -> Iterator[str]:
    """A `meterflow serve` without the development switch, as in production."""
    with running_server({**server_env, SWITCH: "false"}) as base_url:
        yield base_url


@pytest.fixture
async def strict_gql(strict_server: str, account: TestAccount) -> Any:
    async with httpx.AsyncClient(base_url=strict_server, timeout=30) as client:
        yield GraphQLClient(client, account.admin_key)


@contextmanager
def running_worker(env: dict[str, str], log: Path) -> Iterator[Path]:
    """A real `meterflow worker` logging at DEBUG into `log`."""
    env = {
        **env,
        "METERFLOW_LOG_LEVEL": "debug",
        "METERFLOW_ALERT_RETRY_BASE_SECONDS": "0.2",
        "METERFLOW_ALERT_MAX_ATTEMPTS": "2",
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "meterflow.cli", "worker"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            yield log
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


class Answering:
    """An HTTP endpoint that answers every POST with a fixed status, headers and body."""

    def __init__(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None):
        self.requests: list[tuple[str, dict[str, str]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append((self.path, dict(self.headers)))
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Listener:
    """A bare TCP port that counts the connections it gets: proof that nothing connected."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


def rule(name: str, *channels: dict[str, Any]) -> dict[str, Any]:
    return {
        "input": {
            "name": name,
            "subject": "USAGE",
            "meterApiName": "usage-hours",
            "condition": "GREATER_THAN",
            "threshold": "0",
            "range": "DAY",
            "channels": list(channels),
        }
    }


async def settled(gql: GraphQLClient, customer: str, within: float = 40) -> dict[str, Any]:
    """The customer's one alert once none of its deliveries is PENDING any more."""

    async def check() -> Any:
        events = (await gql(EVENTS, {"c": customer}))["alertEvents"]
        states = {d["status"] for e in events for d in e["deliveries"]}
        return events[0] if events and "PENDING" not in states else None

    return await until(check, within=within)  # type: ignore[no-any-return]


def test_serve_and_worker_warn_when_the_switch_is_on(
    server_env: dict[str, str], tmp_path: Path
) -> None:
    warning = f"{SWITCH} is on"
    log = tmp_path / "serve.log"
    with running_server(server_env, output=log):
        pass
    assert "WARNING" in log.read_text() and warning in log.read_text()
    with running_worker(server_env, tmp_path / "worker.log") as worker_log:
        deadline = time.monotonic() + 20
        while warning not in worker_log.read_text():
            assert time.monotonic() < deadline, worker_log.read_text()
            time.sleep(0.1)


# ---------------------------------------------------------------- at creation

REFUSED_WITHOUT_SWITCH = [
    # plain http, whatever the address
    ("http://127.0.0.1:1/x", "must be https"),
    ("http://0x7f000001/", "must be https"),
    ("http://2130706433/", "must be https"),
    ("http://[::1]/", "must be https"),
    ("http://[::ffff:127.0.0.1]/", "must be https"),
    ("http://localhost/", "must be https"),
    ("http://example.com/hook", "must be https"),
    # https to addresses that are not public, in every spelling
    ("https://127.0.0.1:1/x", "private address 127.0.0.1"),
    ("https://0x7f000001/", "private address 127.0.0.1"),
    ("https://2130706433/", "private address 127.0.0.1"),
    ("https://017700000001/", "private address 127.0.0.1"),
    ("https://127.1/", "private address 127.0.0.1"),
    ("https://localhost/", "private address"),  # 127.0.0.1 or ::1, from /etc/hosts
    ("https://[::1]/", "private address ::1"),
    ("https://[::ffff:127.0.0.1]/", "private address ::ffff:127.0.0.1"),
    ("https://0.0.0.0/", "private address 0.0.0.0"),
    ("https://[::]/", "private address ::"),
    ("https://169.254.169.254/latest/meta-data/", "private address 169.254.169.254"),
    ("https://10.0.0.1/", "private address 10.0.0.1"),
    ("https://192.168.1.1/", "private address 192.168.1.1"),
    ("https://100.64.0.1/", "private address 100.64.0.1"),
    ("https://224.0.0.1/", "private address 224.0.0.1"),
    ("https://[fe80::1]/", "private address fe80::1"),
    ("https://[fd00::1]/", "private address fd00::1"),
    ("https://[2002:a00:1::1]/", "private address 2002:a00:1::1"),  # 6to4 of 10.0.0.1
    ("https://[64:ff9b::7f00:1]/", "private address 64:ff9b::7f00:1"),  # NAT64 of 127.0.0.1
    # not a web URL at all
    ("ftp://example.com/x", "must be https"),
    ("file:///etc/passwd", "must be https"),
    ("gopher://127.0.0.1:6379/_INFO", "must be https"),
    ("https://user:pass@93.184.216.34/", "must not carry a user name or password"),
    ("https:///nohost", "has no host"),
    ("https://a..b/hook", "not a valid name"),
    ("https://93.184.216.34:99999/", "port"),
    ("https://93.184.216.34/a b", "control characters or spaces"),
    ("https://93.184.216.34/" + "a" * 2100, "longer than"),
]


@pytest.mark.parametrize("channel", ["WEBHOOK", "SLACK"])
async def test_creation_refuses_targets_that_are_not_public_https(
    strict_gql: GraphQLClient, channel: str
) -> None:
    await create_meter(strict_gql, "usage-hours")
    for target, why in REFUSED_WITHOUT_SWITCH:
        result = (
            await strict_gql(
                CREATE,
                rule(
                    "guarded",
                    {"type": "EMAIL", "target": "ops@example.com"},
                    {"type": channel, "target": target},
                ),
            )
        )["createAlertRule"]
        assert result["__typename"] == "ValidationError", (target, result)
        assert why in result["message"], (target, result["message"])
        # It names the rule and the channel, never the URL's path (Slack's is a credential).
        assert "'guarded'" in result["message"] and f"channels[1] ({channel})" in result["message"]
        assert "meta-data" not in result["message"] and "user:pass" not in result["message"]
    rules = (await strict_gql("{ alertRules { id } }"))["alertRules"]
    assert rules == []


async def test_creation_accepts_public_https_without_needing_the_network(
    strict_gql: GraphQLClient,
) -> None:
    await create_meter(strict_gql, "usage-hours")
    result = (
        await strict_gql(
            CREATE,
            rule(
                "public",
                {"type": "WEBHOOK", "target": "https://93.184.216.34/hook", "secret": SECRET},
                {"type": "SLACK", "target": "https://[2606:4700:4700::1111]:8443/services/T/B/X"},
            ),
        )
    )["createAlertRule"]
    assert result["__typename"] == "AlertRule", result


async def test_the_switch_lifts_the_address_rule_only(gql: GraphQLClient) -> None:
    """The `server` fixture runs with the development switch on, like `meterflow dev`."""
    await create_meter(gql, "usage-hours")
    ok = await gql(CREATE, rule("local", {"type": "WEBHOOK", "target": "http://127.0.0.1:1/x"}))
    assert ok["createAlertRule"]["__typename"] == "AlertRule", ok
    for target in ("file:///etc/passwd", "ftp://127.0.0.1/", "http://u:p@127.0.0.1/"):
        refused = await gql(CREATE, rule("bad", {"type": "SLACK", "target": target}))
        assert refused["createAlertRule"]["__typename"] == "ValidationError", (target, refused)


# ---------------------------------------------------------------- at delivery


async def test_delivery_rechecks_the_address_and_never_connects_to_a_private_one(
    gql: GraphQLClient, server_env: dict[str, str], tmp_path: Path
) -> None:
    """Created while the switch was on (or while DNS answered a public address), delivered by a
    worker without it: refused at delivery, and nothing connects."""
    listener = Listener()
    try:
        await create_meter(gql, "usage-hours")
        created = await gql(
            CREATE,
            rule(
                "rebound",
                {"type": "WEBHOOK", "target": f"https://127.0.0.1:{listener.port}/hook"},
                {"type": "SLACK", "target": f"https://127.0.0.1:{listener.port}/s/{SLACK_SECRET}"},
            ),
        )
        assert created["createAlertRule"]["__typename"] == "AlertRule", created
        with running_worker({**server_env, SWITCH: "false"}, tmp_path / "worker.log") as log:
            await ingest(gql, [hours("rebound", 1, datetime.now(UTC) - timedelta(seconds=5))])
            event = await settled(gql, "rebound")
        deliveries = event["deliveries"]
        assert {d["channel"] for d in deliveries} == {"WEBHOOK", "SLACK"}
        for delivery in deliveries:
            assert delivery["status"] == "FAILED", delivery
            assert delivery["lastError"] == "blocked_address", delivery
            assert delivery["lastStatusCode"] is None
            assert delivery["attempts"] == 2  # retried like any failure: DNS may change back
        assert listener.connections == 0
        assert SLACK_SECRET not in log.read_text()
    finally:
        listener.close()


async def test_nothing_of_the_answer_is_kept_or_logged_and_redirects_are_not_followed(
    gql: GraphQLClient, server_env: dict[str, str], tmp_path: Path
) -> None:
    body = f"<html>{MARKER}: internal admin panel, password=hunter2</html>".encode()
    failing = Answering(500, body)
    elsewhere = Answering(200)
    redirecting = Answering(302, body, {"Location": f"{elsewhere.base}/stolen"})
    try:
        await create_meter(gql, "usage-hours")
        created = await gql(
            CREATE,
            rule(
                "reflect",
                {"type": "WEBHOOK", "target": f"{failing.base}/hook"},
                {"type": "WEBHOOK", "target": f"{redirecting.base}/hook"},
                {"type": "SLACK", "target": f"{failing.base}/services/T0/B0/{SLACK_SECRET}"},
            ),
        )
        assert created["createAlertRule"]["__typename"] == "AlertRule", created
        with running_worker(server_env, tmp_path / "worker.log") as log:
            await ingest(gql, [hours("reflect", 1, datetime.now(UTC) - timedelta(seconds=5))])
            event = await settled(gql, "reflect")
        outcome = sorted(
            (d["channel"], d["status"], d["lastStatusCode"], d["lastError"])
            for d in event["deliveries"]
        )
        assert outcome == [
            ("SLACK", "FAILED", 500, "http_500"),
            ("WEBHOOK", "FAILED", 302, "redirect"),
            ("WEBHOOK", "FAILED", 500, "http_500"),
        ]
        assert len(failing.requests) == 4 and len(redirecting.requests) == 2  # 2 attempts each
        assert elsewhere.requests == []  # the redirect was not followed
        admin_view = json.dumps(await gql(EVENTS, {"c": None}))
        assert MARKER not in admin_view and "hunter2" not in admin_view
        logged = log.read_text()
        assert "alert delivery" in logged and "http_500" in logged  # the log was captured
        assert MARKER not in logged and "hunter2" not in logged
        assert SLACK_SECRET not in logged
    finally:
        for receiver in (failing, elsewhere, redirecting):
            receiver.close()


# ---------------------------------------------------------------- customer tokens


async def test_customer_tokens_see_the_alert_but_no_delivery(
    server: str, gql: GraphQLClient, server_env: dict[str, str], tmp_path: Path
) -> None:
    ok = Answering(200)
    try:
        await create_meter(gql, "usage-hours")
        await gql(
            CREATE,
            rule(
                "token view",
                {"type": "WEBHOOK", "target": f"{ok.base}/hook", "secret": SECRET},
                {"type": "SLACK", "target": f"{ok.base}/services/T0/B0/{SLACK_SECRET}"},
            ),
        )
        with running_worker(server_env, tmp_path / "worker.log"):
            await ingest(gql, [hours("viewer", 1, datetime.now(UTC) - timedelta(seconds=5))])
            admin = await settled(gql, "viewer")
        assert {d["status"] for d in admin["deliveries"]} == {"DELIVERED"}  # admins still see
        minted = await gql(
            """mutation { createCustomerSession(customerId: "viewer") {
                 ... on CustomerSession { token } } }"""
        )
        token = minted["createCustomerSession"]["token"]

        alert_only = await gql("{ alertEvents { id name value message } }", key=token)
        assert [(e["id"], e["name"], e["value"]) for e in alert_only["alertEvents"]] == [
            (admin["id"], "token view", "1")
        ]

        response = await gql.post(
            "{ alertEvents { id name deliveries { target lastError } } }", key=token
        )
        body = response.json()
        assert response.status_code == 200, body
        assert body["data"]["alertEvents"] == [
            {"id": admin["id"], "name": "token view", "deliveries": None}
        ]
        assert [(e["extensions"]["code"], e["path"]) for e in body["errors"]] == [
            ("FORBIDDEN", ["alertEvents", 0, "deliveries"])
        ]
        assert SLACK_SECRET not in response.text and str(ok.base) not in response.text
        assert SECRET not in response.text
        rules = await gql.errors("{ alertRules { channels { target } } }", key=token)
        assert rules[0]["extensions"]["code"] == "FORBIDDEN"

        async with connect(server, {"token": token}) as ws:
            await ws.start("subscription { alertFired { id name deliveries { target } } }")
            message = await ws.message(within=20)
        assert message["type"] == "next", message
        assert message["payload"]["data"]["alertFired"] == {
            "id": admin["id"],
            "name": "token view",
            "deliveries": None,
        }
        assert [e["extensions"]["code"] for e in message["payload"]["errors"]] == ["FORBIDDEN"]
        assert SLACK_SECRET not in json.dumps(message)
    finally:
        ok.close()


# ---------------------------------------------------------------- stored before this fix


async def _rows(url: str, *statements: str) -> list[tuple[Any, ...]]:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.begin() as conn:
            for statement in statements:
                result = await conn.execute(text(statement))
            return [tuple(r) for r in result] if result.returns_rows else []
    finally:
        await engine.dispose()


def test_upgrading_forgets_the_answers_stored_before(test_services: TestServices) -> None:
    admin, name = test_services.admin_database_url, f"meterflow_test_0010_{os.getpid()}"
    drop = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
    asyncio.run(_admin_execute(admin, drop, f'CREATE DATABASE "{name}"'))
    url = test_services.database_url(name)
    try:
        upgrade(url, "0009")
        account, event = uuid.uuid4(), uuid.uuid4()
        stored = [  # (status code, last_error) as the old worker wrote them
            (500, f"HTTP 500: <html>{MARKER}</html>"),
            (302, f"HTTP 302: {MARKER}"),
            (None, f"ConnectError: [Errno 111] {MARKER}"),
            (None, f"ReadTimeout: {MARKER}"),
            (None, f"SMTPRecipientsRefused: {MARKER}"),
            (200, None),
        ]
        asyncio.run(
            _rows(
                url,
                f"INSERT INTO accounts (id, name, auto_create_customers) "
                f"VALUES ('{account}', 'old', true)",
                *(
                    "INSERT INTO alert_deliveries (account_id, id, event_id, channel, target, "
                    f"status, attempts, last_status_code, last_error) VALUES ('{account}', "
                    f"'{uuid.uuid4()}', '{event}', 'WEBHOOK', 'http://x/{i}', 'FAILED', 1, "
                    f"{'NULL' if code is None else code}, "
                    f"{'NULL' if error is None else repr(error)})"
                    for i, (code, error) in enumerate(stored)
                ),
            )
        )
        upgrade(url)
        rows = asyncio.run(
            _rows(url, "SELECT target, last_error FROM alert_deliveries ORDER BY target")
        )
        assert [error for _, error in rows] == [
            "http_500",
            "redirect",
            "connect_error",
            "timeout",
            "error",
            None,
        ]
    finally:
        asyncio.run(_admin_execute(admin, drop))
