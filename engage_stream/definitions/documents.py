"""Definition files of the other kinds (journeys, broadcasts): `*.<suffix>` YAML files
read beside the audiences and computed traits of a path, with file:line problems as the
definitions loader reports them.

One `DocumentKind` says what a kind's files are called, which `kind:` they hold, which
model validates them, and which pydantic union tags to drop when mapping an error's
location back to the YAML (pydantic puts the chosen tag of a tagged union after a list
index or a field name).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from engage_stream.definitions.loader import _compose, _duplicate_fields, _message
from engage_stream.definitions.problems import Path_, Problem, Source

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class DocumentKind(Generic[M]):
    kind: str
    suffix: str
    model: type[M]
    tagged_lists: Mapping[str, frozenset[str] | set[str]] = field(default_factory=dict)
    tagged_fields: Mapping[str, frozenset[str] | set[str]] = field(default_factory=dict)

    def files(self, path: Path | str) -> list[Path]:
        p = Path(path)
        if p.is_dir():
            return sorted(f for f in p.rglob("*") if f.suffix == self.suffix and f.is_file())
        return [p] if p.suffix == self.suffix else []

    def collect(self, path: Path | str) -> tuple[list[tuple[M, Source]], list[Problem]]:
        """The valid documents under `path` with where each was written, and every problem
        (finding none is not one: a path may hold only other kinds)."""
        out: list[tuple[M, Source]] = []
        problems: list[Problem] = []
        for f in self.files(path):
            try:
                text = f.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                problems.append(Problem(str(f), "", None, f"cannot read: {e}"))
                continue
            found, probs = self.parse(text, str(f))
            out.extend(found)
            problems.extend(probs)
        seen: set[str] = set()
        for doc, src in out:
            key = getattr(doc, "key", "")
            if key in seen:
                problems.append(src.problem(("key",), f"duplicate {self.kind} key '{key}'"))
            seen.add(key)
        return out, problems

    def parse(
        self, text: str, file: str = "<string>"
    ) -> tuple[list[tuple[M, Source]], list[Problem]]:
        """The valid documents of one YAML text (a mapping, a list, or `---` documents)."""
        try:
            documents = _compose(text)
        except yaml.YAMLError as e:
            return [], [Problem(file, "", None, f"YAML error: {e}")]
        out: list[tuple[M, Source]] = []
        problems: list[Problem] = []
        for node, data in documents:
            problems.extend(_duplicate_fields(node, file))
            if isinstance(data, dict):
                items = [(data, node, None)]
            elif isinstance(data, list) and isinstance(node, yaml.SequenceNode):
                items = [(d, n, i) for i, (d, n) in enumerate(zip(data, node.value, strict=True))]
            else:
                line = node.start_mark.line + 1
                problems.append(Problem(file, "", line, f"a {self.kind} file holds mappings"))
                continue
            for item, item_node, index in items:
                key = item.get("key") if isinstance(item, dict) else None
                label = key if isinstance(key, str) and key else f"[{index or 0}]"
                src = Source(file, label, item_node)
                if not isinstance(item, dict) or item.get("kind") != self.kind:
                    problems.append(src.problem(("kind",), f"expected kind: {self.kind}"))
                    continue
                doc, probs = self.validate(item, src)
                problems.extend(probs)
                if doc is not None:
                    out.append((doc, src))
        return out, problems

    def validate(self, item: dict[str, Any], src: Source) -> tuple[M | None, list[Problem]]:
        """The document, or None and one problem per validation error."""
        try:
            return self.model.model_validate(item), []
        except ValidationError as e:
            out: list[Problem] = []
            for err in e.errors(include_url=False):
                path = self.yaml_path(err["loc"])
                out.append(src.problem(path, _message(err, item, path)))
            return None, out

    def yaml_path(self, loc: tuple[Any, ...]) -> Path_:
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
            tags: Any = None
            if isinstance(seg, int) and len(path) >= 2:
                tags = self.tagged_lists.get(str(path[-2]))
            elif isinstance(seg, str):
                tags = self.tagged_fields.get(seg)
            if tags is not None and nxt in tags:
                i += 1  # the tag pydantic adds after a tagged-union item
        return tuple(path)
