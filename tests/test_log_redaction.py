"""Tokens, keys and webhook secrets never reach a log line of a real `meterflow serve`."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from meterflow.redaction import REDACTED, redact, redact_url
from tests.client import TestAccount
from tests.conftest import running_server

TOKEN_ID = "SENTINELtokenid0123456789abcdefgh"
SECRETS = (
    TOKEN_ID,
    "SENTINEL-api-key",
    "whsec_SENTINEL_GET",
    "whsec_SENTINEL_POST",
    "whsec_SENTINEL_VARIABLE",
    "SENTINEL-slack-path",
    "SENTINEL-block",
    "SENTINEL-hook",
)


@pytest.fixture
def logged_server(server_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`meterflow serve` with its access log on, everything it prints going to a file."""
    log = tmp_path / "serve.log"
    with running_server({**server_env, "METERFLOW_LOG_LEVEL": "info"}, output=log) as base:
        yield base, log


def test_no_secret_reaches_the_server_log(
    logged_server: tuple[str, Path], account: TestAccount
) -> None:
    base, log = logged_server
    admin = {"X-API-Key": account.admin_key}
    with httpx.Client(base_url=base, timeout=10) as client:
        client.get("/embed/demo", params={"token": f"mfs_{TOKEN_ID}.0123abcd"})
        client.get(
            "/graphql", params={"query": "{ meters { label } }", "apiKey": "SENTINEL-api-key"}
        )
        client.get(
            "/graphql",
            params={
                "query": "mutation { createAlertRule(input: {channels: [{type: WEBHOOK, "
                'target: "https://x.example/SENTINEL-hook", secret: "whsec_SENTINEL_GET"}]}) '
                "{ __typename } }"
            },
            headers=admin,
        )
        # A validation error: Strawberry logs it with the document's lines around it.
        failing = client.post(
            "/graphql",
            headers=admin,
            json={
                "query": 'mutation { createAlertRule(input: {name: "r", subject: USAGE, '
                'condition: GREATER_THAN, threshold: "1", range: DAY, bogus: 1, channels: ['
                '{type: WEBHOOK, target: "https://x.example/SENTINEL-hook", '
                'secret: "whsec_SENTINEL_POST"}, '
                '{type: SLACK, target: "https://hooks.slack.com/SENTINEL-slack-path"}, '
                '{type: WEBHOOK, target: "https://x.example/b", secret: """SENTINEL-block"""}'
                "]}) { __typename } }"
            },
        )
        assert failing.json()["errors"]
        # A variable that fails coercion: its value is quoted in the error.
        failing = client.post(
            "/graphql",
            headers=admin,
            json={
                "query": "mutation($i: CreateAlertRuleInput!) { createAlertRule(input: $i) "
                "{ __typename } }",
                "variables": {
                    "i": {
                        "name": "r",
                        "channels": [
                            {"type": "NOPE", "target": "x", "secret": "whsec_SENTINEL_VARIABLE"}
                        ],
                    }
                },
            },
        )
        assert failing.json()["errors"]
    output = log.read_text()
    assert "GET /embed/demo?token=[REDACTED]" in output, output  # the access log ran, redacted
    assert "bogus" in output, output  # Strawberry's error log ran
    for secret in SECRETS:
        assert secret not in output, f"{secret} leaked:\n{output}"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("/embed/demo?token=mfs_abc.def&x=1", "/embed/demo?token=[REDACTED]&x=1"),
        (
            "/graphql?apiKey=mf_x1234567&api_key=k&key=v&q=1",
            "/graphql?apiKey=[REDACTED]&api_key=[REDACTED]&key=[REDACTED]&q=1",
        ),
        (
            '{ f(secret: "s3", target: "https://h/x", name: "n") }',
            '{ f(secret: "[REDACTED]", target: "[REDACTED]", name: "n") }',
        ),
        ('{ f(webhookSecret: """a\nb""") }', '{ f(webhookSecret: "[REDACTED]") }'),
        ("{'secret': 'whsec_1', 'type': 'X'}", "{'secret': \"[REDACTED]\", 'type': 'X'}"),
        ('{"token": "mfs_abcdefgh.1234"}', '{"token": "[REDACTED]"}'),
        ("key mf_abcdefghijkl leaked", "key mf_[REDACTED] leaked"),
        ("meter api-calls, customer acme", "meter api-calls, customer acme"),
    ],
)
def test_redact(given: str, expected: str) -> None:
    assert redact(given) == expected


def test_redact_url_decodes_first() -> None:
    cleaned = redact_url("/graphql?query=mutation%7Bx(secret%3A%22whsec_enc%22)%7D")
    assert "whsec_enc" not in cleaned and REDACTED in cleaned


def test_exception_text_is_redacted_too() -> None:
    import logging

    from meterflow.redaction import RedactSecrets

    try:
        raise ValueError('bad input {token: "mfs_leakyleaky.sig", secret: "whsec_in_trace"}')
    except ValueError:
        record = logging.LogRecord(
            "meterflow.graphql", logging.ERROR, __file__, 1, "failed: %s", ("x",), sys.exc_info()
        )
    assert RedactSecrets().filter(record)
    text = logging.Formatter().format(record)
    assert "ValueError" in text and REDACTED in text
    assert "mfs_leakyleaky" not in text and "whsec_in_trace" not in text
