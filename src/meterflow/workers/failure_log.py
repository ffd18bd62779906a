"""Delivery failures to a target that is down are logged once a minute per target, with how
many more there were, not once per attempt: an unreachable receiver must not drown the log."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("meterflow.deliveries")
EVERY_SECONDS = 60.0
_MAX_TARGETS = 10_000

# target → (when it was last logged, failures not logged since)
_seen: dict[str, tuple[float, int]] = {}


def failing(target: str, message: str, *args: object, now: float | None = None) -> bool:
    """Log `message % args` as a WARNING if this target was not logged in the last minute;
    else count it. Returns whether it was logged."""
    at = time.monotonic() if now is None else now
    last, skipped = _seen.get(target, (None, 0))
    if last is not None and at - last < EVERY_SECONDS:
        _seen[target] = (last, skipped + 1)
        return False
    if len(_seen) >= _MAX_TARGETS:
        _seen.clear()
    _seen[target] = (at, 0)
    more = f" ({skipped} more failures to it in the last minute)" if skipped else ""
    log.warning(message + more, *args)
    return True
