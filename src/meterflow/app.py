"""The Starlette application: /graphql, /healthz, /metrics; request limits and CORS around them."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Route, WebSocketRoute

from meterflow.config import Settings
from meterflow.db import create_engine, create_session_factory
from meterflow.graphql_api import build_schema
from meterflow.http.auth import RequireApiKey
from meterflow.http.console import routes as console_routes
from meterflow.http.credential_watch import CredentialWatch
from meterflow.http.embed import DemoPage
from meterflow.http.embed import routes as embed_routes
from meterflow.http.favicon import favicon
from meterflow.http.graphql import GraphQLView
from meterflow.http.health import healthz
from meterflow.http.ingest import Ingest
from meterflow.http.limits import BodySizeLimit
from meterflow.http.metrics import Metrics, MetricsMiddleware, metrics_endpoint
from meterflow.http.request_id import RequestId
from meterflow.http.session import PortalSession
from meterflow.http.stripe_webhook import StripeWebhook
from meterflow.http.usage import usage_endpoint
from meterflow.jobs import JobQueue
from meterflow.pubsub import Broker
from meterflow.secretbox import SecretBox

log = logging.getLogger("meterflow.app")

INGEST_PATHS = ("/ingest", "/ingest/", "/")


def create_app(settings: Settings) -> Starlette:
    # First: without a usable secret key (SecretKeyError says how to set one) nothing starts.
    secret_keys = settings.required_secret_keys()
    engine = create_engine(
        settings.database_url, statement_timeout_ms=settings.statement_timeout_ms
    )
    session_factory = create_session_factory(engine)
    redis = Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=2)
    metrics = Metrics()
    jobs = JobQueue(settings.redis_url)

    schema = build_schema(
        max_depth=settings.max_query_depth,
        max_tokens=settings.max_query_tokens,
        max_aliases=settings.max_aliases,
        max_cost=settings.max_query_cost,
        max_page_size=settings.max_page_size,
    )
    broker = Broker(settings.redis_url)
    credential_watch = CredentialWatch(session_factory, broker)
    graphql = GraphQLView(
        schema,
        session_factory=session_factory,
        max_page_size=settings.max_page_size,
        credential_watch=credential_watch,
        max_message_bytes=settings.max_request_bytes,
        jobs=jobs,
        broker=broker,
        redis=redis,
        secret_keys=secret_keys,
        secret_box=SecretBox.from_keys(secret_keys),
        allowed_origins=settings.cors_origins,
        allow_private_webhook_targets=settings.allow_private_webhook_targets,
    )

    # Routes get what they need from here: only entry points read settings.
    ingest = Ingest(
        session_factory=session_factory,
        jobs=jobs,
        redis=redis,
        max_request_bytes=settings.max_request_bytes,
    )
    stripe_webhook = StripeWebhook(
        session_factory=session_factory,
        box=SecretBox.from_keys(secret_keys),
        redis=redis,
        jobs=jobs,
    )
    portal_session = PortalSession(session_factory=session_factory, secret_key=secret_keys[0])
    demo_page = DemoPage(
        session_factory=session_factory,
        secret_key=secret_keys[0],
        mint_tokens=settings.demo_embed,
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # What start-up built lives as long as the process: keep it out of the collector's
        # full passes, which a large answer triggers and which hold the event loop meanwhile.
        gc.freeze()
        try:
            yield
        finally:
            await credential_watch.close()
            await broker.close()
            await jobs.close()
            await redis.aclose()
            await engine.dispose()

    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/favicon.ico", favicon, methods=["GET", "HEAD"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            # Amberflo's SDKs post to /ingest/ (Python), /ingest (TypeScript, Go), / (LiteLLM).
            *(Route(path, ingest.endpoint, methods=["POST"]) for path in INGEST_PATHS),
            Route("/usage", usage_endpoint, methods=["POST"]),
            Route("/session", portal_session.endpoint, methods=["POST"]),
            Route("/usage/", usage_endpoint, methods=["POST"]),
            Route("/webhooks/stripe/{account_id}", stripe_webhook.endpoint, methods=["POST"]),
            Route(
                "/graphql",
                RequireApiKey(graphql, session_factory=session_factory, secret_keys=secret_keys),
            ),
            WebSocketRoute("/graphql", graphql),
            *embed_routes(demo_page),
            *console_routes(),
        ],
        middleware=[
            Middleware(RequestId),
            Middleware(MetricsMiddleware, metrics=metrics),
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origins,
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=["authorization", "x-api-key", "content-type", "content-encoding"],
                max_age=600,
            ),
            Middleware(BodySizeLimit, max_bytes=settings.max_request_bytes),
        ],
        lifespan=lifespan,
    )
    app.state.secret_keys = secret_keys
    app.state.engine = engine
    app.state.session_factory = session_factory
    app.state.redis = redis
    app.state.metrics = metrics
    app.state.jobs = jobs
    app.state.broker = broker
    return app


def create_app_from_environment() -> Starlette:
    """The app of one `meterflow serve --workers N` process: uvicorn starts each worker
    process from an import string, and each reads its settings from the environment, as the
    parent did."""
    return create_app(Settings())
