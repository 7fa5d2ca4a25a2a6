"""Loading `kind: journey` YAML with file:line problems, like the definitions loader.

Journey files end in `.journey` (YAML inside): the definitions loader reads every `*.yaml`
under a path as audiences and computed traits, these are read beside them by `validate`,
`apply` and `replay` on the same path. `load_journeys` reads them (a file, or a directory
recursively) and reports every problem at once; `journey_problems` checks what a journey
refers to (audiences, traits) against the definitions in force with it.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    found, problems = collect_journeys(path)
    if problems:
        raise DefinitionErrors(problems)
    return [j for j, _ in found]


def collect_journeys(
    path: Path | str,
) -> tuple[list[tuple[JourneyDefinition, Source]], list[Problem]]:
    """The valid journeys under `path` with where each was written, and every problem
    (none found is not one: a path may hold only audiences)."""
    p = Path(path)
    out: list[tuple[JourneyDefinition, Source]] = []
    problems: list[Problem] = []
    if not p.exists():
        return [], []
    for f in journey_files(p):
        if f.suffix != SUFFIX:
            continue
        try:
            text = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            problems.append(Problem(str(f), "", None, f"cannot read: {e}"))
            continue
        found, probs = parse_journey_items(text, str(f))
        out.extend(found)
        problems.extend(probs)
    seen: set[str] = set()
    for j, src in out:
        if j.key in seen:
            problems.append(src.problem(("key",), f"duplicate journey key '{j.key}'"))
        seen.add(j.key)
    return out, problems


def parse_journeys(
    text: str, file: str = "<string>"
) -> tuple[list[JourneyDefinition], list[Problem]]:
    """The valid journeys of one YAML text (a mapping, a list, or `---` documents)."""
    found, problems = parse_journey_items(text, file)
    return [j for j, _ in found], problems


def parse_journey_items(
    text: str, file: str = "<string>"
) -> tuple[list[tuple[JourneyDefinition, Source]], list[Problem]]:
    try:
        documents = _compose(text)
    except yaml.YAMLError as e:
        return [], [Problem(file, "", None, f"YAML error: {e}")]
    out: list[tuple[JourneyDefinition, Source]] = []
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
                out.append((defn, src))
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


def journey_problems(
    journeys: Sequence[tuple[JourneyDefinition, Source]],
    audiences: set[str],
) -> list[Problem]:
    """A journey reading an audience that is not defined (in the files or in force) never
    moves anyone: an error, with where it is read. (Trait conditions may read custom
    traits, which need no definition.)"""
    out: list[Problem] = []
    for j, src in journeys:
        entry = j.entry
        audience = getattr(entry, "audience", None)
        if audience and audience not in audiences:
            out.append(src.problem(("entry", "audience"), f"no audience '{audience}'"))
        for i, step in enumerate(j.steps):
            for path, row in _condition_rows(step):
                key = getattr(row, "audience", None)
                if isinstance(key, str) and key not in audiences:
                    out.append(src.problem(("steps", i, *path), f"no audience '{key}'"))
    return out


def _condition_rows(step: object) -> list[tuple[tuple[str | int, ...], object]]:
    rows: list[tuple[tuple[str | int, ...], object]] = []
    for n, row in enumerate(getattr(step, "condition", None) or []):
        rows.append((("condition", n, "audience"), row))
    for b, branch in enumerate(getattr(step, "branches", None) or []):
        for n, row in enumerate(getattr(branch, "condition", None) or []):
            rows.append((("branches", b, "condition", n, "audience"), row))
    return rows
