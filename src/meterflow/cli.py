"""The `meterflow` command. Its sub-command names are a contract (DESIGN.md §6)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from pydantic import SecretStr
from sqlalchemy import select
from sqlmodel import col

from meterflow import logs, redaction
from meterflow.config import SecretKeyError, Settings
from meterflow.db import create_engine, create_session_factory, unit_of_work
from meterflow.models import ApiKeyScope

log = logging.getLogger("meterflow")


def _configure_logging(level: str, log_format: str = "text") -> None:
    logs.configure(level, log_format)
    # The embedded servers narrate every start-up step at INFO; Alembic lists its plugins and
    # every migration; arq logs each job as it starts and ends (several a second). Warnings
    # and errors still show; METERFLOW_LOG_LEVEL=debug shows everything.
    quiet = logging.DEBUG if level.lower() == "debug" else logging.WARNING
    for noisy in ("pgserver", "alembic", "arq.worker"):
        logging.getLogger(noisy).setLevel(quiet)
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR is not set.*")
    redaction.install()


# ---------------------------------------------------------------- migrate, account


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from meterflow.migrations import upgrade

    upgrade(settings.database_url, args.revision)
    print(f"database migrated to {args.revision}")
    return 0


async def _create_account(settings: Settings, name: str, scope: ApiKeyScope) -> tuple[str, str]:
    from meterflow.services import accounts

    engine = create_engine(settings.database_url, pool_size=1)
    try:
        async with unit_of_work(create_session_factory(engine)) as session:
            account = await accounts.create_account(session, name=name)
            issued = await accounts.issue_api_key(
                session, account_id=account.id, name=f"{name} {scope.value}", scope=scope
            )
    finally:
        await engine.dispose()
    return str(account.id), issued.secret


def cmd_account_create(args: argparse.Namespace, settings: Settings) -> int:
    account_id, key = asyncio.run(_create_account(settings, args.name, ApiKeyScope(args.scope)))
    if args.json:
        print(json.dumps({"accountId": account_id, "apiKey": key}))
    else:
        print(f"account {args.name!r} created\n  account id: {account_id}\n  API key:    {key}")
        print("  (the key is shown once: store it now)")
    return 0


async def _reseal(settings: Settings, secret_keys: tuple[str, ...]) -> int:
    from meterflow.secretbox import SecretBox
    from meterflow.services import alerts, stripe_connections, webhook_endpoints

    box = SecretBox.from_keys(secret_keys)
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        async with unit_of_work(create_session_factory(engine)) as session:
            rewritten = await alerts.reseal_all(session, box=box)
            rewritten += await webhook_endpoints.reseal_all(session, box=box)
            return rewritten + await stripe_connections.reseal_all(session, box=box)
    finally:
        await engine.dispose()


def cmd_rotate_secrets(args: argparse.Namespace, settings: Settings) -> int:
    secret_keys = settings.required_secret_keys()
    rewritten = asyncio.run(_reseal(settings, secret_keys))
    print(
        f"re-encrypted the credentials of {rewritten} alert rules, deliveries, webhook "
        "endpoints and Stripe connections under the "
        "current METERFLOW_SECRET_KEY; keep the previous keys listed until the session tokens "
        "they signed have expired (30 days at most)"
    )
    return 0


# ---------------------------------------------------------------- serve, worker


def _warn_if_private_targets(settings: Settings) -> None:
    if settings.allow_private_webhook_targets:
        log.warning(
            "METERFLOW_ALLOW_PRIVATE_WEBHOOK_TARGETS is on: alert webhooks may target plain http "
            "and private, loopback and cloud-metadata addresses; for development and tests only"
        )


def _ready(command: str, settings: Settings) -> bool:
    from meterflow import preflight

    try:
        down = preflight.check(settings.database_url, settings.redis_url)
    except preflight.NotReady as exc:
        print(f"meterflow {command}: {exc}", file=sys.stderr)
        return False
    for problem in down:  # it starts anyway: 503s until the service is back, then serves
        log.warning("%s; starting anyway, and retrying", problem)
    return True


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    settings.required_secret_keys()  # before anything else: SecretKeyError says how to set one
    from meterflow.app import create_app

    if not _ready("serve", settings):
        return 2

    _warn_if_private_targets(settings)
    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "log_level": settings.log_level,
        "proxy_headers": True,
        "timeout_graceful_shutdown": 10,
        # WebSocket messages have the HTTP body limit; the frame reader stops a larger one early.
        "ws_max_size": settings.max_request_bytes,
    }
    if settings.log_format == "json":
        options["log_config"] = None  # uvicorn's lines go through the JSON handler too
    if args.workers > 1:
        # N processes accept on the one socket uvicorn's supervisor binds; it restarts one that
        # dies, and on SIGINT/SIGTERM lets each finish its requests (graceful shutdown).
        uvicorn.run(
            "meterflow.app:create_app_from_environment",
            factory=True,
            workers=args.workers,
            **options,
        )
    else:
        uvicorn.run(create_app(settings), **options)
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    settings.required_secret_keys()  # before anything else: SecretKeyError says how to set one
    from meterflow.workers.settings import build_worker

    if not _ready("worker", settings):
        return 2

    _warn_if_private_targets(settings)
    worker = build_worker(settings, burst=args.burst)
    worker.run()
    return 0


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from meterflow import backfill

    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request is noise here
    key = args.api_key or os.environ.get("METERFLOW_API_KEY")
    if not key:
        print(
            "meterflow ingest: no API key: pass --api-key or set METERFLOW_API_KEY",
            file=sys.stderr,
        )
        return 2
    try:
        totals, interrupted = asyncio.run(
            backfill.run(
                api_url=args.api_url,
                api_key=key,
                paths=args.files,
                batch_size=args.batch_size,
                concurrency=args.concurrency,
                rejects=args.rejects,
                show_progress=sys.stderr.isatty(),
            )
        )
    except backfill.Refused as exc:
        print(f"meterflow ingest: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"meterflow ingest: {exc}", file=sys.stderr)
        return 2
    elapsed = max(time.monotonic() - totals.started, 1e-9)
    where = f" (written to {args.rejects})" if totals.rejected and args.rejects else ""
    print(
        f"{'interrupted: ' if interrupted else ''}{totals.read:,} records sent: "
        f"{totals.accepted:,} accepted, {totals.duplicates:,} duplicates, "
        f"{totals.rejected:,} rejected{where}; {elapsed:.1f} s, "
        f"{totals.read / elapsed:,.0f} records/s"
    )
    if interrupted:
        return 130
    return 1 if totals.rejected and not args.allow_rejects else 0


def cmd_schema(args: argparse.Namespace, settings: Settings) -> int:
    from meterflow.graphql_api import schema

    sdl = schema.as_str() + "\n"
    if args.output == "-":
        sys.stdout.write(sdl)
    else:
        Path(args.output).write_text(sdl)
        print(f"wrote {args.output}")
    return 0


# ---------------------------------------------------------------- dev


def _private_file(path: Path, make: str | None = None) -> str | None:
    """Read a secret kept in the data dir; create it (mode 0600) when `make` is given."""
    if path.exists():
        path.chmod(0o600)  # a copy made with looser permissions is tightened
        return path.read_text().strip()
    if make is None:
        return None
    path.touch(mode=0o600)
    path.write_text(make + "\n")
    return make


async def _demo_traffic(settings: Settings) -> None:
    """A trickle of events for the demo account, so dashboards and widgets visibly move."""
    import random
    import time

    from meterflow.jobs import JobQueue
    from meterflow.models import Account
    from meterflow.services import demo, ingestion

    engine = create_engine(settings.database_url, pool_size=1)
    factory = create_session_factory(engine)
    jobs = JobQueue(settings.redis_url)
    rng = random.Random()
    try:
        async with factory() as session:
            account = await session.scalar(
                select(Account).where(col(Account.name) == "Demo").limit(1)
            )
        if account is None:
            return
        while True:
            records = [
                ingestion.RawRecord(r, orjson.dumps(r).decode())
                for r in demo.demo_events(int(time.time() * 1000), rng)
            ]
            try:
                async with unit_of_work(factory) as session:
                    await ingestion.ingest(
                        session, account_id=account.id, records=records, now=datetime.now(UTC)
                    )
                await jobs.request_rollup(account.id)
            except Exception:  # a demo nicety: never let it take `dev` down
                log.warning("demo traffic skipped a beat", exc_info=True)
            await asyncio.sleep(1)
    finally:
        await jobs.close()
        await engine.dispose()


class _QuietSignalsServer(uvicorn.Server):
    """uvicorn re-raises SIGINT/SIGTERM after serving, which would skip `dev`'s clean-up
    (embedded PostgreSQL and Redis left running). `dev` owns the signals instead."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def request_exit(self) -> None:
        self.should_exit = True


async def _dev_async(args: argparse.Namespace, settings: Settings, data_dir: Path) -> None:
    from meterflow.app import create_app
    from meterflow.services import demo
    from meterflow.workers.settings import build_worker

    engine = create_engine(settings.database_url, pool_size=1)
    try:
        async with unit_of_work(create_session_factory(engine)) as session:
            if not args.no_seed and await demo.is_empty(session):
                seeded = await demo.seed(session, now=datetime.now(UTC))
                _private_file(data_dir / "demo-api-key", make=seeded.admin_key)
                log.info("seeded the demo account (meters, customers)")
    finally:
        await engine.dispose()

    server = _QuietSignalsServer(
        uvicorn.Config(
            create_app(settings),
            host=args.host,
            port=args.port,
            log_level=settings.log_level,
            timeout_graceful_shutdown=5,
            ws_max_size=settings.max_request_bytes,
        )
    )
    worker = build_worker(settings, handle_signals=False)
    worker_task = asyncio.create_task(worker.async_run(), name="arq-worker")

    async def announce() -> None:
        while not server.started:
            if server.should_exit or worker_task.done():
                return
            await asyncio.sleep(0.05)
        base = f"http://{args.host}:{args.port}"
        key = _private_file(data_dir / "demo-api-key")
        print(
            "\nmeterflow is running (embedded PostgreSQL and Redis in "
            f"{data_dir})\n"
            f"  Console:       {base}/console\n"
            f"  GraphiQL:      {base}/graphql\n"
            f"  Health:        {base}/healthz\n"
            f"  Widgets demo:  {base}/embed/demo\n"
            f"  Admin API key: {key or '(none: this data dir was not seeded by meterflow dev)'}\n"
            f"  Try:  curl -s {base}/graphql -H 'X-API-Key: {key or '<key>'}' "
            "-H 'Content-Type: application/json' "
            '-d \'{"query": "{ meters { meterApiName } }"}\'\n'
            "Press Ctrl-C to stop.\n",
            flush=True,
        )

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, server.request_exit)
    announcer = asyncio.create_task(announce())
    traffic = None if args.no_demo_traffic else asyncio.create_task(_demo_traffic(settings))
    try:
        await server.serve()
    finally:
        announcer.cancel()
        if traffic is not None:
            traffic.cancel()
        worker_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await worker_task
        # A job still running at Ctrl-C was cancelled with the worker; arq's close() gathers it
        # and re-raises its CancelledError. The job is idempotent and re-run by the next start
        # (the sweep re-derives it from the watermark), so a clean exit is the right answer.
        with contextlib.suppress(asyncio.CancelledError):
            await worker.close()


def cmd_dev(args: argparse.Namespace, settings: Settings) -> int:
    from meterflow import embedded
    from meterflow.migrations import upgrade

    data_dir = Path(args.data_dir).resolve()
    if args.print_key:
        key = _private_file(data_dir / "demo-api-key")
        if not key:
            print(
                f"meterflow dev: no demo key in {data_dir}: run `meterflow dev` once first",
                file=sys.stderr,
            )
            return 1
        print(key)
        return 0
    print(f"starting embedded PostgreSQL and Redis in {data_dir} ...", flush=True)
    services = embedded.start(data_dir)
    try:
        secret = _private_file(data_dir / "secret-key", make=secrets.token_urlsafe(32))
        settings = settings.model_copy(
            update={
                "database_url": services.database_url,
                "redis_url": services.redis_url,
                "secret_key": SecretStr(secret or ""),
                "demo_embed": True,
                # Local receivers (a webhook on localhost) are what development needs.
                "allow_private_webhook_targets": True,
            }
        )
        upgrade(settings.database_url)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_dev_async(args, settings, data_dir))
    finally:
        print("stopping embedded PostgreSQL and Redis ...", flush=True)
        services.stop()
    return 0


# ---------------------------------------------------------------- parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("meterflow")
    except PackageNotFoundError:  # run from a source tree without installing
        return "unknown"


def _whole_number(low: int, high: int, why: str = "") -> Callable[[str], int]:
    """An argparse type: a whole number from `low` to `high` (`why` says where the limit is
    from)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high:,}{why}")
        return value

    return parse


_positive_int = _whole_number(1, 64)
_positive_batch = _whole_number(1, 10_000, " (the API's limit)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meterflow",
        description="Usage metering and usage-based billing. Settings come from METERFLOW_* "
        "environment variables (README, Configuration); `meterflow dev` needs none.",
    )
    parser.add_argument("--version", action="version", version=f"meterflow {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help,
            description=help,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )

    dev = command("dev", "run everything on embedded PostgreSQL and Redis, with a demo account")
    dev.add_argument(
        "--data-dir",
        default=os.environ.get("METERFLOW_DATA_DIR", ".meterflow"),
        help="where the embedded databases, the secret key and the demo key live "
        "($METERFLOW_DATA_DIR)",
    )
    dev.add_argument("--host", default="127.0.0.1", help="address to listen on")
    dev.add_argument("--port", type=int, default=8000, help="port to listen on")
    dev.add_argument("--no-seed", action="store_true", help="do not create the demo account")
    dev.add_argument(
        "--no-demo-traffic", action="store_true", help="do not send demo events every second"
    )
    dev.add_argument(
        "--print-key",
        action="store_true",
        help="print the demo account's admin API key (from the data dir) and exit",
    )
    dev.set_defaults(handler=cmd_dev)

    serve = command("serve", "run the API against METERFLOW_DATABASE_URL and METERFLOW_REDIS_URL")
    serve.add_argument(
        "--host",
        default="0.0.0.0",  # noqa: S104  (a server, meant to be reached)
        help="address to listen on",
    )
    serve.add_argument("--port", type=int, default=8000, help="port to listen on")
    serve.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="API processes sharing the port; each keeps its own pool of up to 20 database "
        "connections",
    )
    serve.set_defaults(handler=cmd_serve)

    worker = command("worker", "run a background worker (rollups, re-rating, alerts, deliveries)")
    worker.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    worker.set_defaults(handler=cmd_worker)

    ingest = command(
        "ingest", "backfill meter events from files through the REST API (re-runs are safe)"
    )
    ingest.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="NDJSON, JSON array or CSV, plain or gzip; - is stdin",
    )
    ingest.add_argument("--api-url", default="http://127.0.0.1:8000", help="meterflow's base URL")
    ingest.add_argument(
        "--api-key", default=None, help="an ingest or admin key (default: $METERFLOW_API_KEY)"
    )
    ingest.add_argument(
        "--batch-size", type=_positive_batch, default=1000, help="records a request"
    )
    ingest.add_argument("--concurrency", type=_positive_int, default=4, help="requests in flight")
    ingest.add_argument(
        "--rejects", type=Path, default=None, help="write rejected records here, as NDJSON"
    )
    ingest.add_argument(
        "--allow-rejects", action="store_true", help="exit 0 even if some records were rejected"
    )
    ingest.set_defaults(handler=cmd_ingest)

    migrate = command("migrate", "upgrade the database schema (METERFLOW_DATABASE_URL)")
    migrate.add_argument(
        "--revision", default="head", help="the Alembic revision to upgrade to (head: the latest)"
    )
    migrate.set_defaults(handler=cmd_migrate)

    account = command("account", "manage accounts").add_subparsers(
        dest="account_command", required=True
    )
    create = account.add_parser(
        "create",
        help="create an account and an API key for it",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    create.add_argument("name", help="the account's name")
    create.add_argument("--json", action="store_true", help="print {accountId, apiKey}")
    create.add_argument(
        "--scope",
        choices=[s.value for s in ApiKeyScope],
        default="admin",
        help="what the key may do",
    )
    create.set_defaults(handler=cmd_account_create)

    rotate = command(
        "rotate-secrets",
        "re-encrypt stored credentials under METERFLOW_SECRET_KEY after a key rotation",
    )
    rotate.set_defaults(handler=cmd_rotate_secrets)

    schema = command("schema", "print or write the GraphQL SDL")
    schema.add_argument(
        "output", nargs="?", default="-", help="the file to write (- prints it to stdout)"
    )
    schema.set_defaults(handler=cmd_schema)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings()
    _configure_logging(settings.log_level, settings.log_format)
    try:
        return int(args.handler(args, settings))
    except SecretKeyError as exc:
        print(f"meterflow {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
