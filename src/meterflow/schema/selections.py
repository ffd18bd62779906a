"""What a query selects below the field being resolved, read before its children resolve, so
a list resolver can read the nested data of its whole page at once (Loaders.prime_*)."""

from __future__ import annotations

from collections.abc import Iterable

import strawberry
from strawberry.types.nodes import FragmentSpread, InlineFragment, SelectedField, Selection


def _fields(selections: Iterable[Selection]) -> Iterable[SelectedField]:
    """Fields, with the fields of fragments (named or inline) in their place."""
    for selection in selections:
        if isinstance(selection, SelectedField):
            yield selection
        elif isinstance(selection, (FragmentSpread, InlineFragment)):
            yield from _fields(selection.selections)


def selected_below(info: strawberry.Info, *path: str) -> list[SelectedField]:
    """The fields selected at `path` below the current field (e.g. "edges", "node"), by
    every alias. @skip and @include are not weighed: a field they drop is merely read early."""
    level = list(_fields(info.selected_fields))  # the current field itself, once per alias
    level = [f for field in level for f in _fields(field.selections)]
    for name in path:
        level = [f for field in level if field.name == name for f in _fields(field.selections)]
    return level
