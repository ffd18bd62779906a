"""Rules of the architecture that a grep can keep: services never read the clock, only entry
points read settings, and the schema types never import what assembles them."""

from __future__ import annotations

import re
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "meterflow"

# Wall-clock reads. A monotonic clock for a wait's deadline (period_close's catch-up) is not
# "now": it never reaches a stored or billed figure.
CLOCK = re.compile(r"\b(datetime\.now|datetime\.utcnow|utcnow|date\.today|time\.time)\(")

SETTINGS = re.compile(r"import Settings\b|\bSettings\(|\.settings\b|get_settings")
ENTRY_POINTS = {"cli.py", "app.py", "config.py", "workers/settings.py"}

# app → graphql_api (assembly) → resolvers → schema (types) → services: schema/ points down only.
ABOVE_SCHEMA = re.compile(
    r"\b(from|import)\s+meterflow\.(resolvers|graphql_api)\b"
    r"|\bfrom\s+meterflow\s+import\s+.*\b(resolvers|graphql_api)\b"
)


def _offenders(files: list[Path], pattern: re.Pattern[str]) -> list[str]:
    found = []
    for path in files:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if pattern.search(line):
                found.append(f"{path.relative_to(SRC)}:{number}: {line.strip()}")
    return found


def test_services_take_now_and_never_read_the_clock() -> None:
    services = sorted((SRC / "services").glob("*.py"))
    assert len(services) > 10
    assert _offenders(services, CLOCK) == [], "services read the clock: take `now` instead"


def test_only_entry_points_read_settings() -> None:
    modules = [p for p in sorted(SRC.rglob("*.py")) if str(p.relative_to(SRC)) not in ENTRY_POINTS]
    assert _offenders(modules, SETTINGS) == [], "pass what they need in from the entry point"


def test_schema_types_never_import_the_resolvers_or_the_assembly() -> None:
    types = sorted((SRC / "schema").rglob("*.py"))
    assert len(types) > 10
    assert _offenders(types, ABOVE_SCHEMA) == [], (
        "schema/ is below resolvers/ and graphql_api.py: move the import up, or the code down"
    )


def test_the_guards_see_what_they_guard() -> None:
    """The patterns catch the forms they are meant to (a guard that matches nothing passes)."""
    assert all(
        CLOCK.search(line)
        for line in ("x = utcnow()", "datetime.now(UTC)", "int(time.time())", "date.today()")
    )
    assert not CLOCK.search("now: datetime")
    assert all(
        SETTINGS.search(line)
        for line in ("from meterflow.config import Settings", "request.app.state.settings.x")
    )
    assert not SETTINGS.search("from arq.connections import RedisSettings")
    assert all(
        ABOVE_SCHEMA.search(line)
        for line in (
            "from meterflow.resolvers.customers import CustomerQueries",
            "from meterflow.resolvers import base",
            "import meterflow.resolvers.base",
            "from meterflow.graphql_api import build_schema",
            "import meterflow.graphql_api as api",
            "    from meterflow import graphql_api",
            "from meterflow import errors, resolvers",
        )
    )
    assert not any(
        ABOVE_SCHEMA.search(line)
        for line in (
            "from meterflow.schema.context import Context",
            "from meterflow.services.pagination import page_size",
            "# resolvers map services to these types",
            "from meterflow.graphql_apis import x",
        )
    )
