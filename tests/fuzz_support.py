"""What the fuzz suites share: a `meterflow serve` of their own, its stderr, and the budget.

The fuzz tests get a server process of their own (not the session's `server`) so that a request
that poisons or hangs a process cannot take the rest of the suite down with it, and so that each
failure can quote the traceback the server logged for it. A server found dead or unhealthy
between tests is restarted, so one crash does not hide the failures after it.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from hypothesis import HealthCheck, Phase, settings

from tests.conftest import ROOT, free_port, wait_for_health

# Examples per schemathesis operation and per ingest format; CI runs the default, a deeper run
# sets e.g. METERFLOW_FUZZ_EXAMPLES=500 (and a bigger --timeout).
EXAMPLES = int(os.environ.get("METERFLOW_FUZZ_EXAMPLES", "0") or 0)
# Shrinking a failure to its minimal form costs many more requests than finding it; CI reports
# the failing example as found, METERFLOW_FUZZ_SHRINK=1 minimises it.
SHRINK = os.environ.get("METERFLOW_FUZZ_SHRINK") == "1"
# A fuzz server that grows past this is failing, not working: cap it so a runaway request
# (a multi-gigabyte allocation) fails inside the server instead of starving the machine.
MEMORY_LIMIT_BYTES = 2 * 1024**3
REQUEST_TIMEOUT_SECONDS = 15.0
# The last line of a Python traceback: "SomeError: what went wrong".
ERROR_LINE = re.compile(r"^[\w.]*(Error|Exception)\b.*:", re.MULTILINE)


def fuzz_settings(default_examples: int) -> settings:
    """Reproducible (derandomized, no example database in the repository) and bounded."""
    phases = [Phase.explicit, Phase.generate]
    if SHRINK:
        phases.append(Phase.shrink)
    return settings(
        max_examples=EXAMPLES or default_examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=phases,
        print_blob=False,
        suppress_health_check=list(HealthCheck),
    )


class FuzzServer:
    """One `meterflow serve` whose stderr goes to a file the tests can quote from."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the server
            prefix="meterflow-fuzz-", suffix=".log", delete=False
        )
        self.log_path = Path(self._log.name)
        self.process: subprocess.Popen[bytes] | None = None
        self.base_url = ""
        self.restarts = 0

    def start(self) -> None:
        port = free_port()
        command = [sys.executable, "-m", "meterflow.cli", "serve", "--host", "127.0.0.1"]
        self.process = subprocess.Popen(
            [*command, "--port", str(port)],
            env=self.env,
            cwd=ROOT,
            stdout=self._log,
            stderr=self._log,
        )
        limit = (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES)
        resource.prlimit(self.process.pid, resource.RLIMIT_DATA, limit)
        self.base_url = f"http://127.0.0.1:{port}"
        wait_for_health(self.base_url, self.process)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def close(self) -> None:
        self.stop()
        self._log.close()
        self.log_path.unlink(missing_ok=True)

    def log_offset(self) -> int:
        return self.log_path.stat().st_size

    def log_since(self, offset: int, limit: int = 6_000) -> str:
        """What the server wrote to stderr since `offset`, library frames left out.

        A 500 is sent before its traceback is logged, so this waits a moment for one."""
        deadline = time.monotonic() + 1
        while True:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                raw = log.read().decode("utf-8", "replace")
            finished = ERROR_LINE.search(raw) and raw.endswith("\n")
            if finished or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        text = condense_tracebacks(raw)
        return text if len(text) <= limit else "...\n" + text[-limit:]

    def health_problem(self) -> str | None:
        """None when the process is alive and /healthz answers 200 within a few seconds."""
        if self.process is None or self.process.poll() is not None:
            code = None if self.process is None else self.process.returncode
            return f"the server process exited (code {code})"
        try:
            response = httpx.get(f"{self.base_url}/healthz", timeout=5)
        except httpx.HTTPError as exc:
            return f"/healthz did not answer: {type(exc).__name__}: {exc}"
        if response.status_code != 200:
            return f"/healthz answered {response.status_code}: {response.text[:500]}"
        return None

    def ensure_running(self) -> None:
        """Restart a server that an earlier test killed or wedged (that test already failed)."""
        if self.process is not None and self.health_problem() is None:
            return
        self.stop()
        self.restarts += 1
        self.start()


def condense_tracebacks(text: str) -> str:
    """Drops the frames of installed libraries (and their source lines) from tracebacks: what
    is left is meterflow's own frames and the exception, which is what a failure report needs."""
    kept: list[str] = []
    skipping = False
    for line in text.splitlines():
        if line.startswith('  File "'):
            skipping = "site-packages" in line or "/lib/python3" in line
            if skipping:
                continue
        elif skipping and line.startswith("    "):
            continue
        else:
            skipping = False
        kept.append(line)
    return "\n".join(kept)


def summary(failure: AssertionError) -> str:
    """The gist of one failure: what was wrong, the answer, and the server's exception."""
    lines = [line.strip() for line in str(failure).splitlines()]  # pytest indents them
    answer = next((line for line in lines if line.startswith("answer ")), "")
    errors = [line for line in lines if ERROR_LINE.match(line)]
    return " | ".join(part[:240] for part in (lines[0], answer, errors[-1] if errors else ""))


def wait_briefly_for_health(server: FuzzServer, seconds: float = 5.0) -> str | None:
    """The server's health problem, if it still has one after `seconds`."""
    deadline = time.monotonic() + seconds
    problem = server.health_problem()
    while problem is not None and time.monotonic() < deadline:
        time.sleep(0.2)
        problem = server.health_problem()
    return problem
