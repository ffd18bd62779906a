"""What /graphql reads from a WebSocket: one graphql-transport-ws message per text frame, a JSON
object within the HTTP body limit, at most 64 levels deep, shaped as the protocol says.

Anything else is refused before Strawberry sees it, so no message can raise inside the protocol
handler: the socket closes with 4400 and the reason (the protocol's code for a message it cannot
accept), or 1009 for a message larger than the limit (RFC 6455's "message too big", which is also
what the server's frame reader answers when it stops reading one early: see cli.py).
"""

from __future__ import annotations

from typing import Any

import orjson

from meterflow.http.jsonbody import MAX_DEPTH, deeper_than

CLOSE_MALFORMED = 4400
CLOSE_TOO_BIG = 1009
# Decoding and depth-checking cost grows with the number of objects and arrays, not the bytes:
# 8 MiB of `[]` holds 2.7 million of them and ties the event loop up for seconds. A legitimate
# message (10,000 events with dimensions, or any query) has a few tens of thousands at most.
MAX_CONTAINERS = 50_000
MAX_ID_LENGTH = 256

_CLIENT_TYPES = frozenset({"connection_init", "ping", "pong", "subscribe", "complete"})


class MalformedMessage(Exception):
    def __init__(self, reason: str, code: int = CLOSE_MALFORMED) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


def parse(text: str | None, *, max_bytes: int) -> dict[str, Any]:
    """The message in a frame (`text` None for a binary frame), or MalformedMessage saying why."""
    if text is None:
        raise MalformedMessage("WebSocket messages must be text frames")
    # Characters never outnumber bytes, so the cheap length settles most messages.
    if len(text) > max_bytes or (len(text) * 4 > max_bytes and len(text.encode()) > max_bytes):
        raise MalformedMessage(f"message larger than {max_bytes} bytes", CLOSE_TOO_BIG)
    # Counts brackets inside strings too: an upper bound, computed without decoding anything.
    containers = text.count("{") + text.count("[")
    if containers > MAX_CONTAINERS:
        raise MalformedMessage(f"message has more than {MAX_CONTAINERS} objects and arrays")
    try:
        # orjson, not json: it refuses NaN/Infinity, lone surrogates and overflowing numbers.
        message = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc) or "recursion" in str(exc):
            raise MalformedMessage(f"message nested deeper than {MAX_DEPTH} levels") from exc
        raise MalformedMessage("message is not valid JSON") from exc
    if not isinstance(message, dict):
        raise MalformedMessage("a message must be a JSON object")
    if containers > MAX_DEPTH and deeper_than(message, MAX_DEPTH):
        raise MalformedMessage(f"message nested deeper than {MAX_DEPTH} levels")
    _check_shape(message)
    return message


def _check_shape(message: dict[str, Any]) -> None:
    """graphql-transport-ws's client messages (github.com/enisdenjo/graphql-ws PROTOCOL.md)."""
    kind = message.get("type")
    if not isinstance(kind, str):
        raise MalformedMessage('"type" must be a string')
    if kind not in _CLIENT_TYPES:
        raise MalformedMessage(f"unknown message type {kind[:40]!r}")
    payload = message.get("payload")
    if kind == "subscribe":
        _check_id(message)
        if not isinstance(payload, dict):
            raise MalformedMessage('subscribe: "payload" must be an object')
        if not isinstance(payload.get("query"), str):
            raise MalformedMessage('subscribe: "payload.query" must be a string')
        for field, kinds in (
            ("variables", dict),
            ("extensions", dict),
            ("operationName", str),
        ):
            if payload.get(field) is not None and not isinstance(payload[field], kinds):
                raise MalformedMessage(f'subscribe: "payload.{field}" has the wrong type')
    elif kind == "complete":
        _check_id(message)
    elif payload is None:
        # The protocol allows a null payload; Strawberry's connection_init would refuse it.
        message.pop("payload", None)
    elif not isinstance(payload, dict):
        raise MalformedMessage(f'{kind}: "payload" must be an object')


def _check_id(message: dict[str, Any]) -> None:
    id = message.get("id")
    if not isinstance(id, str) or not 0 < len(id) <= MAX_ID_LENGTH:
        raise MalformedMessage(f'{message["type"]}: "id" must be a string of 1 to 256 characters')
