"""Failures to one unreachable target are one WARNING a minute, with a count of the rest."""

from __future__ import annotations

import logging

import pytest

from meterflow.workers import failure_log


def test_one_warning_a_minute_per_target(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="meterflow.deliveries")
    failure_log._seen.clear()
    logged = [
        failure_log.failing("webhook down.example", "deliveries to %s failing", "down", now=t)
        for t in (1000.0, 1001.0, 1030.0, 1059.9)
    ]
    assert logged == [True, False, False, False]
    assert failure_log.failing(
        "webhook other.example", "deliveries to %s failing", "other", now=1002.0
    )
    assert failure_log.failing(
        "webhook down.example", "deliveries to %s failing", "down", now=1060.0
    )
    lines = [r for r in caplog.records if r.name == "meterflow.deliveries"]
    assert [r.levelno for r in lines] == [logging.WARNING] * 3
    assert [r.getMessage() for r in lines] == [
        "deliveries to down failing",
        "deliveries to other failing",
        "deliveries to down failing (3 more failures to it in the last minute)",
    ]
