"""Loading `kind: journey` YAML with file:line problems, like the definitions loader.

Journey files end in `.journey` (YAML inside) so that the definitions loader — which reads
every `*.yaml` under `topologies/` for `validate`, `apply` and the demo, and whose tests
require each such file to hold audiences / traits matching the definitions JSON Schema —
does not see them until journeys are wired into the profiles stage. `load_journeys`
reads them (a file, or a directory recursively) and reports every problem at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from engage_stream.definitions.loader import _compose, _duplicate_fields, _message
from engage_stream.definitions.problems import DefinitionErrors, Path_, Problem, Source
from engage_stream.journeys.models import STEP_TYPES, JourneyDefinition

# pydantic puts the chosen tag of a tagged union after the list index: skip it
_TAGGED_LISTS = {"steps": STEP_TYPES, "condition": {"trait", "audience", "context_event"}}
_TAGGED_FIELDS = {"entry": {"event", "audience"}}


SUFFIX = ".journey"


def journey_files(path: Path | str) -> list[Path]:
    p = Path(path)
    if p.is_dir():
        return sorted(f for f in p.rglob("*") if f.suffix == SUFFIX and f.is_file())
    return [p]


def load_journeys(path: Path | str) -> list[JourneyDefinition]:
    """Every journey under `path`; raises `DefinitionErrors` with every problem."""
    out: list[JourneyDefinition] = []
    problems: list[Problem] = []
    for f in journey_files(path):
        found, probs = parse_journeys(f.read_text(encoding="utf-8"), str(f))
        out.extend(found)
        problems.extend(probs)
    seen: set[str] = set()
    for j in out:
        if j.key in seen:
            problems.append(Problem(str(path), j.key, None, f"duplicate journey key '{j.key}'"))
        seen.add(j.key)
    if problems:
        raise DefinitionErrors(problems)
    return out


def parse_journeys(
    text: str, file: str = "<string>"
) -> tuple[list[JourneyDefinition], list[Problem]]:
    """The valid journeys of one YAML text (a mapping, a list, or `---` documents)."""
    try:
        documents = _compose(text)
    except yaml.YAMLError as e:
        return [], [Problem(file, "", None, f"YAML error: {e}")]
    out: list[JourneyDefinition] = []
    problems: list[Problem] = []
    for node, data in documents:
        problems.extend(_duplicate_fields(node, file))
        if isinstance(data, dict):
            items = [(data, node, None)]
        elif isinstance(data, list) and isinstance(node, yaml.SequenceNode):
            items = [(d, n, i) for i, (d, n) in enumerate(zip(data, node.value, strict=True))]
        else:
            line = node.start_mark.line + 1
            problems.append(Problem(file, "", line, "a journey file holds mappings"))
            continue
        for item, item_node, index in items:
            key = item.get("key") if isinstance(item, dict) else None
            label = key if isinstance(key, str) and key else f"[{index or 0}]"
            src = Source(file, label, item_node)
            if not isinstance(item, dict) or item.get("kind") != "journey":
                problems.append(src.problem(("kind",), "expected kind: journey"))
                continue
            defn, probs = validate_journey(item, item_node, src)
            problems.extend(probs)
            if defn is not None:
                out.append(defn)
    return out, problems


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
