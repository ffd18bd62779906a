"""`meterflow dev`: embedded PostgreSQL and Redis, no configuration, clean stop, data kept."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from tests.conftest import ROOT, free_port


def start_dev(data_dir: Path, port: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERFLOW_")}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "meterflow.cli",
            "dev",
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def read_until_running(process: subprocess.Popen[str], timeout: float = 90) -> str:
    """The start-up output up to the banner's last line."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise AssertionError("meterflow dev exited early:\n" + "".join(seen))
        seen.append(line)
        if "Press Ctrl-C to stop." in line:
            return "".join(seen)
    raise AssertionError("no banner in time:\n" + "".join(seen))


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=60)
    return out


def embedded_processes(data_dir: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(data_dir) in cmdline and "meterflow.cli" not in cmdline:
            found.append(proc)
    return found


def test_dev_runs_on_embedded_services_and_keeps_its_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    process = start_dev(data_dir, port)
    try:
        banner = read_until_running(process)
        key = re.search(r"Admin API key: (mf_\S+)", banner)
        assert key, banner
        # Redis keeps its socket and files under the data dir too, not in /tmp.
        assert (data_dir / "redis-run" / "redis.socket").exists() or len(str(data_dir)) > 80
        base = f"http://127.0.0.1:{port}"
        assert f"GraphiQL:      {base}/graphql" in banner

        ide = httpx.get(f"{base}/graphql", headers={"Accept": "text/html"})
        assert ide.status_code == 200 and "graphiql" in ide.text.lower()
        demo = httpx.post(
            f"{base}/graphql",
            headers={"X-API-Key": key.group(1)},
            json={
                "query": "{ meters(status: ACTIVE) { meterApiName } "
                "customers { edges { node { customerId } } } }"
            },
        )
        data = demo.json()["data"]
        assert [m["meterApiName"] for m in data["meters"]] == [
            "active-users",
            "api-calls",
            "gb-seconds",
            "storage-gb",
        ]
        assert [e["node"]["customerId"] for e in data["customers"]["edges"]] == [
            "acme",
            "globex",
            "initech",
        ]
        created = httpx.post(
            f"{base}/graphql",
            headers={"X-API-Key": key.group(1)},
            json={
                "query": 'mutation { createCustomer(input: {customerId: "kept"}) { __typename } }'
            },
        )
        assert created.json()["data"]["createCustomer"]["__typename"] == "Customer"
        # Development means local receivers: dev turns METERFLOW_ALLOW_PRIVATE_WEBHOOK_TARGETS on.
        local_hook = httpx.post(
            f"{base}/graphql",
            headers={"X-API-Key": key.group(1)},
            json={
                "query": """mutation { createAlertRule(input: {name: "local", subject: COST,
                condition: GREATER_THAN, threshold: "1", range: DAY,
                channels: [{type: WEBHOOK, target: "http://127.0.0.1:9/hook"}]}) {
                __typename ... on Error { message } } }"""
            },
        )
        assert local_hook.json()["data"]["createAlertRule"]["__typename"] == "AlertRule", (
            local_hook.text
        )
        # A session token signed with this run's secret key, to try in the next run.
        minted = httpx.post(
            f"{base}/graphql",
            headers={"X-API-Key": key.group(1)},
            json={
                "query": 'mutation { createCustomerSession(customerId: "acme") '
                "{ ... on CustomerSession { token } } }"
            },
        )
        token = minted.json()["data"]["createCustomerSession"]["token"]
        assert httpx.get(f"{base}/healthz").json()["status"] == "ok"
        # Demo traffic flows through ingestion and the in-process worker's rollups into usage.
        today = time.strftime("%Y-%m-%dT00:00:00+00:00", time.gmtime())
        usage_query = {
            "query": """query($i: UsageQueryInput!) { usage(input: $i) {
            groups { total } } }""",
            "variables": {
                "i": {
                    "meterApiName": "api-calls",
                    "timeGroupingInterval": "DAY",
                    "startTime": today,
                    "endTime": time.strftime(
                        "%Y-%m-%dT00:00:00+00:00", time.gmtime(time.time() + 86400)
                    ),
                }
            },
        }
        totals = []
        deadline = time.monotonic() + 30
        while len(set(totals)) < 2:
            answer = httpx.post(
                f"{base}/graphql", headers={"X-API-Key": key.group(1)}, json=usage_query
            ).json()
            totals.append(float(answer["data"]["usage"]["groups"][0]["total"]))
            assert time.monotonic() < deadline, f"usage never moved: {totals}"
            time.sleep(0.5)
        assert totals[-1] > totals[0]
        # The worker runs in-process: its heartbeat shows up in the health report.
        deadline = time.monotonic() + 10
        while httpx.get(f"{base}/healthz").json()["workers"] == 0:
            assert time.monotonic() < deadline, "no worker heartbeat from meterflow dev"
            time.sleep(0.2)
    finally:
        out = stop(process)
    assert process.returncode == 0, out
    assert "stopping embedded PostgreSQL and Redis" in out
    # Quiet: the banner is not buried. While usage moved, the worker ran several jobs a second;
    # none of them, and none of Alembic's plugins and migrations, printed a line.
    assert "arq.worker" not in banner + out and "alembic" not in banner + out, banner + out
    assert len((banner + out).splitlines()) < 40, banner + out
    printed = subprocess.run(
        [sys.executable, "-m", "meterflow.cli", "dev", "--data-dir", str(data_dir), "--print-key"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    assert printed.stdout.strip() == key.group(1)
    assert embedded_processes(data_dir) == [], "embedded servers outlived meterflow dev"
    # `dev` generated its secret key (no METERFLOW_SECRET_KEY in its environment), privately.
    secret_file = data_dir / "secret-key"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    secret = secret_file.read_text().strip()
    assert len(secret) >= 32

    # A second run reuses the data: same key, the customer created above, no second demo.
    process = start_dev(data_dir, port)
    try:
        banner = read_until_running(process)
        assert key.group(0) in banner
        again = httpx.post(
            f"http://127.0.0.1:{port}/graphql",
            headers={"X-API-Key": key.group(1)},
            json={
                "query": '{ customer(customerId: "kept") { customerId } '
                "customers { edges { node { customerId } } } }"
            },
        )
        body = again.json()["data"]
        assert body["customer"] == {"customerId": "kept"}
        assert len(body["customers"]["edges"]) == 4
        # Same secret key: the token from the first run still verifies.
        assert secret_file.read_text().strip() == secret
        as_customer = httpx.post(
            f"http://127.0.0.1:{port}/graphql",
            headers={"Authorization": f"Bearer {token}"},
            json={"query": '{ customer(customerId: "acme") { customerId } }'},
        )
        assert as_customer.json() == {"data": {"customer": {"customerId": "acme"}}}
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=60)
    assert process.returncode == 0, out
    assert embedded_processes(data_dir) == []
