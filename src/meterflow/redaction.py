"""Keeps credentials out of log lines: API keys, session tokens, webhook secrets and URLs.

They reach logs by three roads: uvicorn's access log prints each request line with its query
string (`/embed/demo?token=...`, `GET /graphql?query=...`); Strawberry logs every GraphQL error,
whose text quotes the lines of the document around it; and exception messages. One filter,
installed by the entry points, rewrites those records before any handler formats them.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

from graphql import GraphQLError

REDACTED = "[REDACTED]"

# name=value in query strings and form bodies.
_PARAM = re.compile(
    r"(?i)(?<![A-Za-z0-9_])(token|access_token|api_?key|key|secret|password)=[^&\s\"']*"
)
# name: value in GraphQL documents, JSON variables and Python reprs of them. Slack and webhook
# targets are credentials too (the URL is the secret); email targets go along.
_ARGUMENT = re.compile(
    r"""(?ix)
    (?P<name>(?P<quote>["']?)
        (?:secret|secret_?key|webhook_?secret|token|access_?token|api_?key|password|target)
    (?P=quote)\s*:\s*)
    (?:\"\"\"(?:[^"]|"(?!""))*\"\"\"     # GraphQL block string
      |"(?:[^"\\]|\\.)*"
      |'(?:[^'\\]|\\.)*'
      |[^\s,)}\]]+)
    """
)
# Anything that looks like a meterflow API key (mf_...) or session token (mfs_...).
_CREDENTIAL = re.compile(r"(?<![A-Za-z0-9_])(mfs?_)[A-Za-z0-9_\-.]{6,}")


def redact(text: str) -> str:
    text = _PARAM.sub(lambda m: f"{m.group(1)}={REDACTED}", text)
    text = _ARGUMENT.sub(lambda m: f'{m.group("name")}"{REDACTED}"', text)
    return _CREDENTIAL.sub(lambda m: f"{m.group(1)}{REDACTED}", text)


def redact_url(path: str) -> str:
    """A request path with its query string, decoded first so `secret%3A%22...` is caught."""
    return redact(unquote_plus(path))


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.access" and isinstance(record.args, tuple):
            # (client, method, path with query string, HTTP version, status): uvicorn's
            # formatter unpacks these, so they stay a tuple of the same shape.
            record.args = tuple(
                redact_url(arg) if i == 2 and isinstance(arg, str) else arg
                for i, arg in enumerate(record.args)
            )
        elif isinstance(record.msg, GraphQLError):
            # Strawberry logs the error object, whose str() quotes the document around it, cut
            # into 80-character pieces when the document is one long line: a secret argument
            # can be split where no pattern sees it. Log the message and where instead.
            error = record.msg
            where = ", ".join(f"{loc.line}:{loc.column}" for loc in error.locations or ())
            path = ".".join(str(p) for p in error.path or ())
            record.msg = redact(error.message) + "".join(
                f" ({label} {value})" for label, value in (("at", where), ("path", path)) if value
            )
            record.args = ()
        else:
            message = record.getMessage()
            cleaned = redact(message)
            if cleaned != message:
                record.msg, record.args = cleaned, ()
        if record.exc_info and not record.exc_text:
            # Formatters reuse exc_text when it is set, so the traceback goes out redacted.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


_FILTER = RedactSecrets()
# Loggers whose records go to their own handlers (uvicorn's) or are emitted on them directly.
_LOGGERS = ("uvicorn.access", "uvicorn.error", "strawberry.execution", "meterflow")


def install() -> None:
    """Redact every record meterflow, Strawberry and uvicorn log. Idempotent.

    Logger filters do not apply to records propagated from child loggers, so the filter also
    goes on the root logger's handlers (which everything not uvicorn's propagates to). Logger
    filters survive uvicorn's own logging set-up (dictConfig replaces handlers, not filters).
    """
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    for handler in logging.getLogger().handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
