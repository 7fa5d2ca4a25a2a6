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

from engage_stream.definitions.documents import DocumentKind
from engage_stream.definitions.problems import DefinitionErrors, Problem, Source
from engage_stream.journeys.models import STEP_TYPES, JourneyDefinition

SUFFIX = ".journey"
JOURNEYS: DocumentKind[JourneyDefinition] = DocumentKind(
    "journey",
    SUFFIX,
    JourneyDefinition,
    tagged_lists={"steps": STEP_TYPES, "condition": {"trait", "audience", "context_event"}},
    tagged_fields={"entry": {"event", "audience"}},
)


def journey_files(path: Path | str) -> list[Path]:
    return JOURNEYS.files(path)


def load_journeys(path: Path | str) -> list[JourneyDefinition]:
    """Every journey under `path`; raises `DefinitionErrors` with every problem."""
    found, problems = JOURNEYS.collect(path)
    if problems:
        raise DefinitionErrors(problems)
    return [j for j, _ in found]


def collect_journeys(
    path: Path | str,
) -> tuple[list[tuple[JourneyDefinition, Source]], list[Problem]]:
    return JOURNEYS.collect(path)


def parse_journeys(
    text: str, file: str = "<string>"
) -> tuple[list[JourneyDefinition], list[Problem]]:
    """The valid journeys of one YAML text (a mapping, a list, or `---` documents)."""
    found, problems = JOURNEYS.parse(text, file)
    return [j for j, _ in found], problems


def parse_journey_items(
    text: str, file: str = "<string>"
) -> tuple[list[tuple[JourneyDefinition, Source]], list[Problem]]:
    return JOURNEYS.parse(text, file)


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
