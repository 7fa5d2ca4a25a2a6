"""Validating a `kind: journey` YAML mapping into problems with file and line.

The definitions loader routes journey documents here (loader._validate_item): they are
validated and reported like audiences, but not returned as definitions, so `apply` and the
worker do not see them until journeys are wired into the profiles stage.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import ValidationError

from engage_stream.definitions.loader import _message
from engage_stream.definitions.problems import Path_, Problem, Source
from engage_stream.journeys.models import STEP_TYPES, JourneyDefinition

# pydantic puts the chosen tag of a tagged union after the list index: skip it
_TAGGED_LISTS = {"steps": STEP_TYPES, "condition": {"trait", "audience", "context_event"}}
_TAGGED_FIELDS = {"entry": {"event", "audience"}}


def validate_journey(
    item: dict[str, Any], node: yaml.Node | None, src: Source
) -> tuple[JourneyDefinition | None, list[Problem]]:
    """The journey, or None and one problem per validation error."""
    try:
        return JourneyDefinition.model_validate(item), []
    except ValidationError as e:
        out: list[Problem] = []
        for err in e.errors(include_url=False):
            path = journey_path(err["loc"])
            out.append(src.problem(path, _message(err, item, path)))
        return None, out


def journey_path(loc: tuple[Any, ...]) -> Path_:
    """The YAML path of a pydantic error location (union tags removed)."""
    path: list[str | int] = []
    i = 0
    while i < len(loc):
        seg = loc[i]
        i += 1
        if isinstance(seg, str) and ("[" in seg or seg[:1].isupper()):
            continue  # a union member label
        path.append(seg)
        if i >= len(loc):
            break
        nxt = loc[i]
        tags: set[str] | frozenset[str] | None = None
        if isinstance(seg, int) and len(path) >= 2:
            tags = _TAGGED_LISTS.get(str(path[-2]))
        elif isinstance(seg, str):
            tags = _TAGGED_FIELDS.get(seg)
        if tags is not None and nxt in tags:
            i += 1  # the tag pydantic adds after a tagged-union item
    return tuple(path)
