"""What goes wrong in definition files, reported all at once with file, line and location.

`Problem` is one finding; `DefinitionErrors` carries every finding of a run, so a user
fixes all of them in one go instead of one per `validate`. `Source` remembers where a
definition came from (file + its YAML node) so later checks can point at a line too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import yaml

Path_ = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    location: str  # e.g. cart_abandoners.conditions[0].then_not.within ("" = the file)
    line: int | None  # 1-based
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        if self.location:
            return f"{where}: {self.location}: {self.message}"
        return f"{where}: {self.message}"


class DefinitionErrors(Exception):
    """Every problem found across all files (never just the first)."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        n = len(self.problems)
        head = f"{n} problem{'s' if n != 1 else ''} in definitions"
        super().__init__(head + ":\n" + "\n".join(f"  {p}" for p in self.problems))


def format_location(label: str, path: Path_) -> str:
    """`label` + `.field` / `[index]` for each path segment."""
    out = label
    for seg in path:
        if isinstance(seg, int):
            out += f"[{seg}]"
        else:
            out += f".{seg}" if out else seg
    return out


@dataclass(slots=True)
class Source:
    """Where one definition was written: its file, its label (key, or `[i]` in a list
    without a usable key) and its YAML node (for line numbers)."""

    file: str
    label: str = ""
    node: yaml.Node | None = field(default=None, repr=False)

    def line(self, path: Path_ = ()) -> int | None:
        """1-based line of the deepest node of `path` that exists (the key's line for a
        mapping entry, so `then_not:` points at the key rather than the block below)."""
        return node_line(self.node, path)

    def problem(self, path: Path_, message: str) -> Problem:
        return Problem(self.file, format_location(self.label, path), self.line(path), message)


def node_line(node: yaml.Node | None, path: Path_) -> int | None:
    if node is None:
        return None
    line = node.start_mark.line + 1
    for seg in path:
        if isinstance(node, yaml.MappingNode) and isinstance(seg, str):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == seg:
                    line, node = k.start_mark.line + 1, v
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(seg, int):
            if not 0 <= seg < len(node.value):
                return line
            node = node.value[seg]
            line = node.start_mark.line + 1
        else:
            return line
    return line
