"""`kind: broadcast` YAML files (`*.broadcast`), read beside the definitions of a path."""

from __future__ import annotations

from collections.abc import Sequence

from engage_stream.broadcasts.models import BroadcastDefinition
from engage_stream.definitions.documents import DocumentKind
from engage_stream.definitions.problems import Problem, Source

BROADCASTS: DocumentKind[BroadcastDefinition] = DocumentKind(
    "broadcast",
    ".broadcast",
    BroadcastDefinition,
    tagged_lists={"recipients": {"trait", "audience"}},
)


def broadcast_problems(
    broadcasts: Sequence[tuple[BroadcastDefinition, Source]], audiences: set[str]
) -> list[Problem]:
    """A broadcast selecting by an audience that is not defined would reach no one."""
    out: list[Problem] = []
    for b, src in broadcasts:
        for i, row in enumerate(b.recipients):
            key = getattr(row, "audience", None)
            if isinstance(key, str) and key not in audiences:
                out.append(src.problem(("recipients", i, "audience"), f"no audience '{key}'"))
    return out
