"""`meterflow ingest FILE…` as an operator runs it: a real `meterflow` process sending files
to a real server. 100,000 events from a gzip NDJSON file with 10 bad lines, then the same file
again: the first run stores 99,990 and writes the 10 rejections with their lines and codes; the
second stores nothing new; usage is the file's own sum."""

from __future__ import annotations

import gzip
import json
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.client import GraphQLClient, TestAccount
from tests.conftest import ROOT
from tests.helpers import create_meter, until

EVENTS = 100_000
BAD = {  # line number → what is wrong with it
    7: "not json",
    12_345: "not json",
    33_333: "value",
    50_000: "not json",
    61_001: "value",
    70_707: "customer",
    80_000: "value",
    90_001: "not json",
    99_998: "customer",
    99_999: "not json",
}


def ingest_cli(
    server: str, key: str, *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meterflow.cli", "ingest", "--api-url", server, *args],
        env={"METERFLOW_API_KEY": key, "PATH": "/usr/bin:/bin"},
        cwd=ROOT,
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=300,
    )


def write_history(path: Path) -> Decimal:
    """The file, and the sum of its good events' values (computed here, from the file)."""
    now = datetime.now(UTC)
    start = max(
        now.replace(day=1, hour=0, minute=0, second=0, microsecond=0), now - timedelta(hours=1)
    )
    base = int(start.timestamp() * 1000)
    span = max(1, int((now - start).total_seconds() * 1000) - 1000)
    rng = random.Random(20261205)
    total = Decimal(0)
    lines = []
    for number in range(1, EVENTS + 1):
        problem = BAD.get(number)
        if problem == "not json":
            lines.append('{"meterApiName": "calls", "customerId": ')
            continue
        value = rng.randint(1, 9)
        record: dict[str, Any] = {
            "meterApiName": "calls",
            "customerId": f"h{rng.randint(0, 499)}",
            "meterValue": "lots" if problem == "value" else value,
            "meterTimeInMillis": base + rng.randint(0, span),
        }
        if problem == "customer":
            record["customerId"] = " padded "
        if number % 3:  # a third carry no uniqueId: the command makes one from the text
            record["uniqueId"] = f"e-{number}"
        lines.append(json.dumps(record))
        if problem is None:
            total += value
    assert len(lines) == EVENTS
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return total


def counts(output: str) -> str:
    return output.strip().splitlines()[-1]


async def test_a_backfill_of_100000_events_and_its_rerun(
    server: str, gql: GraphQLClient, account: TestAccount, worker: Any, tmp_path: Path
) -> None:
    await create_meter(gql, "calls")
    history = tmp_path / "history.ndjson.gz"
    expected = write_history(history)
    rejects = tmp_path / "rejects.ndjson"

    first = ingest_cli(server, account.admin_key, "--rejects", str(rejects), str(history))
    assert first.returncode == 1, first.stderr  # rejects, and no --allow-rejects
    assert "100,000 records sent: 99,990 accepted, 0 duplicates, 10 rejected" in counts(
        first.stdout
    ), first.stdout
    written = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert sorted(r["line"] for r in written) == sorted(BAD)
    codes = {r["line"]: r["code"] for r in written}
    for number, problem in BAD.items():
        assert (
            codes[number]
            == {
                "not json": "MALFORMED_RECORD",
                "value": "INVALID_VALUE",
                "customer": "INVALID_CUSTOMER_ID",
            }[problem]
        ), (number, codes[number])
    assert all(r["file"] == str(history) and r["message"] for r in written)

    again = ingest_cli(server, account.admin_key, "--allow-rejects", str(history))
    assert again.returncode == 0, again.stderr
    assert "0 accepted, 99,990 duplicates, 10 rejected" in counts(again.stdout), again.stdout

    now = datetime.now(UTC)

    async def total() -> Decimal | None:
        data = await gql(
            """query($s: DateTime!, $e: DateTime!) { usage(input: {meterApiName: "calls",
            timeGroupingInterval: MONTH, startTime: $s, endTime: $e}) { groups { total } } }""",
            {
                "s": now.replace(day=1, hour=0, minute=0, second=0, microsecond=0).isoformat(),
                "e": (now + timedelta(hours=1)).isoformat(),
            },
        )
        groups = data["usage"]["groups"]
        found = Decimal(groups[0]["total"]) if groups else Decimal(0)
        return found if found == expected else None

    assert await until(total, within=120) == expected


async def test_json_arrays_and_csv_from_files_and_stdin(
    server: str, gql: GraphQLClient, account: TestAccount, tmp_path: Path
) -> None:
    await create_meter(gql, "calls")
    millis = int(datetime.now(UTC).timestamp() * 1000) - 5000
    array = tmp_path / "events.json"
    array.write_text(
        json.dumps(
            [
                {
                    "meterApiName": "calls",
                    "customerId": "a1",
                    "meterValue": 2.50,
                    "meterTimeInMillis": millis,
                },
                {
                    "meterApiName": "calls",
                    "customerId": "a2",
                    "meterValue": 1,
                    "meterTimeInMillis": millis,
                    "uniqueId": "given",
                },
            ],
            indent=2,
        )
    )
    table = (
        "customerId,meterApiName,meterValue,meterTimeInMillis,region\n"
        f"a1,calls,4,{millis},eu\n"
        f"a3,calls,oops,{millis},us\n"
    ).encode()
    first = ingest_cli(server, account.admin_key, "--batch-size", "1", str(array), "-", stdin=table)
    assert first.returncode == 1, first.stderr
    assert "4 records sent: 3 accepted, 0 duplicates, 1 rejected" in counts(first.stdout)
    again = ingest_cli(server, account.admin_key, "--allow-rejects", str(array), "-", stdin=table)
    assert again.returncode == 0, again.stderr
    assert "0 accepted, 3 duplicates, 1 rejected" in counts(again.stdout), again.stdout
    refused = ingest_cli(server, "mf_not_a_key", str(array))
    assert refused.returncode == 2 and "API key was refused" in refused.stderr, refused.stderr
