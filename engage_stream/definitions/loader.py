"""Load audience / computed-trait definitions from YAML files, reporting every problem.

`load_definitions(path)` takes a file or a directory (recursively `*.yaml` / `*.yml`, in
sorted order). A file holds one definition mapping or a list of them (several YAML
documents separated by `---` also work). Problems from all files are collected — YAML
syntax errors, duplicate fields, validation errors of the models (with the line of the
offending YAML node) and the cross-definition checks of `checks.py`, which cover the
definitions that failed their own validation too — and raised together as
`DefinitionErrors`:

    topologies/cart.yaml:9: cart_abandoners.conditions[0].then_not.within: window out of
    range: at most 3 years (1095 days)

`canonical_body` / `definitions_fingerprint` give the stable form `apply` publishes and
compares, so re-applying unchanged files bumps no version.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson
import yaml
from pydantic import BaseModel, ValidationError

from engage_stream.definitions import models
from engage_stream.definitions.catalog import definition_body, parse_body
from engage_stream.definitions.checks import Item, check_items
from engage_stream.definitions.models import AudienceDefinition, ComputedTraitDefinition
from engage_stream.definitions.problems import (
    DefinitionErrors,
    Path_,
    Problem,
    Source,
)

AnyDefinition = AudienceDefinition | ComputedTraitDefinition

KINDS: dict[str, type[AudienceDefinition] | type[ComputedTraitDefinition]] = {
    "audience": AudienceDefinition,
    "computed_trait": ComputedTraitDefinition,
}
SUFFIXES = (".yaml", ".yml")

# pydantic puts the chosen tag of a tagged union in the error location, after the index
# of the list the union items are in: skip it when mapping a location to the YAML.
_CONDITION_LISTS = frozenset({"conditions", "group"})
_CONDITION_TAGS = frozenset({"event", "trait", "audience", "group"})
_TYPE_LABELS = {"str": "a string", "int": "a number", "float": "a number", "bool": "a boolean"}
_LABEL_ORDER = ["a string", "a number", "a boolean", "a list", "a duration (e.g. '7 days')"]


def _all_field_names() -> frozenset[str]:
    names: set[str] = set()
    for obj in vars(models).values():
        if isinstance(obj, type) and issubclass(obj, BaseModel):
            names.update(obj.model_fields)
    return frozenset(names)


_FIELD_NAMES = _all_field_names()


# -- public API ------------------------------------------------------------------------------
def definition_files(path: Path | str) -> list[Path]:
    """The YAML files `load_definitions(path)` reads, in order."""
    p = Path(path)
    if p.is_dir():
        return sorted(f for f in p.rglob("*") if f.suffix in SUFFIXES and f.is_file())
    return [p]


def load_definitions(path: Path | str) -> list[AnyDefinition]:
    """Every definition under `path` (file or directory), validated and cross-checked.

    Raises `DefinitionErrors` listing every problem in every file."""
    definitions, problems = collect_definitions(path)
    if problems:
        raise DefinitionErrors(problems)
    return definitions


def collect_definitions(path: Path | str) -> tuple[list[AnyDefinition], list[Problem]]:
    """Like `load_definitions` but returns the valid definitions and the problems."""
    items, problems = collect_items(path)
    problems = ordered([*problems, *check_items(items)], path)
    return [i.definition for i in items if i.definition is not None], problems


def collect_items(path: Path | str) -> tuple[list[Item], list[Problem]]:
    """Every definition under `path` (valid or not, in file order) and the problems each
    has on its own; no cross-definition checks."""
    p = Path(path)
    if not p.exists():
        return [], [Problem(str(p), "", None, "no such file or directory")]
    files = definition_files(p)
    if p.is_dir() and not files:
        return [], [Problem(str(p), "", None, "no *.yaml or *.yml files found")]
    items: list[Item] = []
    problems: list[Problem] = []
    for f in files:
        try:
            text = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            problems.append(Problem(str(f), "", None, f"cannot read: {e}"))
            continue
        found, probs = parse_items(text, str(f))
        items.extend(found)
        problems.extend(probs)
    return items, ordered(problems, p)


def union(in_force: Iterable[Item], items: Sequence[Item]) -> list[Item]:
    """What is in force once `items` are applied: the ones they do not replace, then them."""
    replaced = {(i.kind, i.key) for i in items}
    return [i for i in in_force if (i.kind, i.key) not in replaced] + list(items)


def ordered(problems: Iterable[Problem], path: Path | str) -> list[Problem]:
    """By file (in the order the files under `path` are read; others first), then line."""
    order = {str(f): i for i, f in enumerate(definition_files(path))}
    return sorted(problems, key=lambda p: (order.get(p.file, -1), p.line or 0))


def parse_text(
    text: str, file: str = "<string>"
) -> tuple[list[tuple[AnyDefinition, Source]], list[Problem]]:
    """The valid definitions of one YAML text, each with its `Source`, and the problems
    each has on its own."""
    items, problems = parse_items(text, file)
    return [(i.definition, i.source) for i in items if i.definition is not None], problems


def parse_items(text: str, file: str = "<string>") -> tuple[list[Item], list[Problem]]:
    """Every definition of one YAML text (invalid ones as drafts) and their own problems."""
    problems: list[Problem] = []
    out: list[Item] = []
    try:
        documents = _compose(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        msg = " ".join(str(x) for x in (e.context, e.problem) if x) or str(e)
        line = mark.line + 1 if mark is not None else None
        return [], [Problem(file, "", line, f"YAML syntax error: {msg}")]
    except yaml.YAMLError as e:
        return [], [Problem(file, "", None, f"YAML error: {e}")]

    for node, data in documents:
        problems.extend(_duplicate_fields(node, file))
        if data is None:
            continue
        if isinstance(data, dict):
            items = [(data, node, None)]
        elif isinstance(data, list) and isinstance(node, yaml.SequenceNode):
            items = [(d, n, i) for i, (d, n) in enumerate(zip(data, node.value, strict=True))]
        else:
            problems.append(
                Problem(
                    file,
                    "",
                    node.start_mark.line + 1,
                    "a definitions file holds one definition (a mapping) or a list of them, "
                    f"not {_type_name(data)}",
                )
            )
            continue
        for item, item_node, index in items:
            checked, probs = _validate_item(item, item_node, index, file)
            problems.extend(probs)
            if checked is not None:
                out.append(checked)
    return out, problems


def canonical_body(defn: AnyDefinition) -> dict[str, Any]:
    """The JSON body `apply` publishes (`catalog.definition_body`: shorthands expanded,
    defaults left out), so `within: 7 days` and `within: {days: 7}` are the same body."""
    return definition_body(defn)


def definitions_fingerprint(defn: AnyDefinition) -> str:
    """Stable hash of the canonical body (sorted keys): equal iff the bodies are equal."""
    raw = orjson.dumps(canonical_body(defn), option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def definition_from_body(body: dict[str, Any]) -> AnyDefinition:
    """Rebuild a definition from its canonical body (e.g. read back from the topic)."""
    return parse_body(body)


# -- YAML ------------------------------------------------------------------------------------
def _compose(text: str) -> list[tuple[yaml.Node, Any]]:
    """(node, data) per YAML document, from one parse (nodes carry the line marks)."""
    loader = yaml.SafeLoader(text)
    try:
        docs: list[tuple[yaml.Node, Any]] = []
        while loader.check_node():
            node = loader.get_node()
            docs.append((node, loader.construct_document(node)))
        return docs
    finally:
        loader.dispose()


def _duplicate_fields(node: yaml.Node, file: str) -> list[Problem]:
    """YAML silently keeps the last of two equal keys; a definition file must not."""
    out: list[Problem] = []
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, yaml.MappingNode):
            seen: set[str] = set()
            for k, v in n.value:
                if isinstance(k, yaml.ScalarNode):
                    if k.value in seen:
                        out.append(
                            Problem(
                                file,
                                "",
                                k.start_mark.line + 1,
                                f"field '{k.value}' is given twice in the same mapping",
                            )
                        )
                    seen.add(k.value)
                stack.append(v)
        elif isinstance(n, yaml.SequenceNode):
            stack.extend(n.value)
    return sorted(out, key=lambda p: p.line or 0)


# -- validation ---------------------------------------------------------------------------------
def _validate_item(
    item: Any, node: yaml.Node, index: int | None, file: str
) -> tuple[Item | None, list[Problem]]:
    key = item.get("key") if isinstance(item, dict) else None
    label = key if isinstance(key, str) and key else ("" if index is None else f"[{index}]")
    src = Source(file, label, node)
    if not isinstance(item, dict):
        return None, [src.problem((), f"a definition is a mapping, not {_type_name(item)}")]
    kind = item.get("kind")
    model = KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        if "kind" not in item:
            msg = "missing field 'kind': audience or computed_trait"
        else:
            msg = f"unknown kind {kind!r}: expected audience or computed_trait" + _did_you_mean(
                kind, list(KINDS)
            )
        return None, [src.problem(("kind",), msg)]
    try:
        defn = model.model_validate(item)
    except ValidationError as e:
        return Item.draft(item, src), _problems_from(e, item, src)
    return Item.parsed(defn, src), []


def _problems_from(err: ValidationError, item: Any, src: Source) -> list[Problem]:
    """One problem per error; the branch errors of one untagged union become one problem."""
    entries: list[Problem | Path_] = []
    unions: dict[Path_, list[str]] = {}
    for e in err.errors(include_url=False):
        path, label = _data_path(e["loc"], e["type"])
        if label is None:
            entries.append(src.problem(path, _message(e, item, path)))
        elif path in unions:
            unions[path].append(label)
        else:
            unions[path] = [label]
            entries.append(path)
    out: list[Problem] = []
    for entry in entries:
        if isinstance(entry, Problem):
            out.append(entry)
            continue
        labels = {_union_label(lbl) for lbl in unions[entry]}
        kinds = [k for k in _LABEL_ORDER if k in labels] + sorted(labels - set(_LABEL_ORDER))
        got = _type_name(_lookup(item, entry))
        out.append(src.problem(entry, f"expected {', '.join(kinds)}; got {got}"))
    return out


def _data_path(loc: tuple[Any, ...], err_type: str) -> tuple[Path_, str | None]:
    """The path into the YAML data of a pydantic error location, without union tags; and
    the union-branch label when the error is one branch of an untagged union."""
    path: list[str | int] = []
    i = 0
    while i < len(loc):
        seg = loc[i]
        last = i == len(loc) - 1
        if (
            isinstance(seg, str)
            and _is_type_label(seg)
            and not (last and err_type in ("extra_forbidden", "missing"))
        ):
            return tuple(path), seg
        path.append(seg)
        i += 1
        if (
            isinstance(seg, int)
            and len(path) >= 2
            and path[-2] in _CONDITION_LISTS
            and i < len(loc)
            and loc[i] in _CONDITION_TAGS
        ):
            i += 1  # the tag pydantic adds after the index of a tagged-union item
    return tuple(path), None


def _is_type_label(seg: str) -> bool:
    return seg in _TYPE_LABELS or "[" in seg or seg[:1].isupper() or seg == "none"


def _union_label(label: str) -> str:
    if label in _TYPE_LABELS:
        return _TYPE_LABELS[label]
    if label.startswith("list["):
        return "a list"
    if "Duration" in label:
        return "a duration (e.g. '7 days')"
    return label


def _message(e: Any, item: Any, path: Path_) -> str:
    typ, msg = e["type"], e["msg"]
    if typ == "value_error":
        return msg.removeprefix("Value error, ")
    if typ == "assertion_error":
        return msg.removeprefix("Assertion failed, ")
    if typ == "missing":
        return f"missing required field '{path[-1]}'" if path else "missing required field"
    if typ == "extra_forbidden":
        name = path[-1] if path else "?"
        return f"unknown field '{name}'" + _did_you_mean(str(name), sorted(_FIELD_NAMES))
    if typ == "enum":
        got = e.get("input")
        expected = (e.get("ctx") or {}).get("expected", "")
        what = "operator" if path and path[-1] == "operator" else "value"
        hint = _did_you_mean(
            str(got), [x.strip(" '") for x in expected.replace(" or ", ", ").split(",")]
        )
        return f"unknown {what} {got!r}{hint}; expected one of {expected}"
    if typ == "literal_error":
        got = e.get("input")
        return f"{got!r} is not allowed; expected {(e.get('ctx') or {}).get('expected', '')}"
    if typ in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping; got {_type_name(_lookup(item, path))}"
    if typ in ("too_short", "too_long"):
        ctx = e.get("ctx") or {}
        if typ == "too_short":
            n = ctx.get("min_length", 1)
            return f"needs at least {n} item{'s' if n != 1 else ''}"
        n = ctx.get("max_length", 0)
        return f"at most {n} item{'s' if n != 1 else ''} allowed"
    if typ == "list_type":
        return f"expected a list; got {_type_name(_lookup(item, path))}"
    if typ == "string_pattern_mismatch" and path and path[-1] in ("key", "audience"):
        return (
            f"{e.get('input')!r} is not a valid key: lowercase letters, digits and _, "
            "starting with a letter"
        )
    if typ == "string_pattern_mismatch" and path and path[-1] == "name":
        return (
            f"{e.get('input')!r} is not a valid destination name: lowercase letters, digits, "
            "'_', '.', '-'"
        )
    return msg


def _did_you_mean(got: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(got, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _lookup(data: Any, path: Path_) -> Any:
    for seg in path:
        if (
            isinstance(data, dict)
            and seg in data
            or isinstance(data, list)
            and isinstance(seg, int)
            and 0 <= seg < len(data)
        ):
            data = data[seg]
        else:
            return None
    return data


def _type_name(v: Any) -> str:
    if v is None:
        return "nothing (null)"
    if isinstance(v, bool):
        return f"a boolean ({str(v).lower()})"
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, str):
        return f"a string ({v!r})"
    if isinstance(v, int | float):
        return f"a number ({v})"
    return type(v).__name__
