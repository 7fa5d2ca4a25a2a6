"""JSON Schema of a definitions file, for editor autocompletion and validation.

Generated from the pydantic models, then widened where the models accept shorthands that
their generated schema does not show (pydantic cannot see `mode="before"` validators):
durations as `"7 days"`, `between: [30 days, 90 days]`, `count: ">= 2"` or `count: 2`,
`include_history: true|false|<days>`, `session: "1 hour"`, and operator aliases (`>=`, `one_of`, ...). `kind` is
required, as the loader requires it.

`schemas/definitions.schema.json` is this schema, and `schemas/journey.schema.json` the
one of `*.journey` files (`journey_json_schema`, with the same widening and the re-entry
shorthand `reentry: "30 days"`), both written by `engage-stream schema` (`write_schema`);
a test fails when a committed file is out of date. To use one in VS Code with the YAML
extension, start a file with:

    # yaml-language-server: $schema=../schemas/definitions.schema.json
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from engage_stream.definitions.models import OP_ALIASES, DefinitionFile, Op

SCHEMA_FILE = "definitions.schema.json"
SCHEMA_ID = "urn:engage-stream:schemas:definitions"
JOURNEY_SCHEMA_FILE = "journey.schema.json"
JOURNEY_SCHEMA_ID = "urn:engage-stream:schemas:journey"
BROADCAST_SCHEMA_FILE = "broadcast.schema.json"
BROADCAST_SCHEMA_ID = "urn:engage-stream:schemas:broadcast"
DURATION_PATTERN = r"^\s*\d+(\.\d+)?\s*(minute|hour|day|week)s?\s*$"
COUNT_PATTERN = r"^\s*(>=|<=|!=|=|>|<)\s*\d+\s*$"

_DESCRIPTIONS = {
    "AudienceDefinition": "An audience: profiles matching `conditions`; membership changes go "
    "to `destinations` as Identify (traits.<key>: true|false) and/or Track (Audience "
    "Entered / Audience Exited).",
    "ComputedTraitDefinition": "A computed trait: a per-profile value aggregated over events "
    "(counter, sum, avg, min, max, most_frequent, first, last, unique_list, unique_count) "
    "over a window (within, between, or the current session); value changes go to `destinations` as Identify (traits.<key>) and/or Track (Trait "
    "Computed).",
}


def json_schema() -> dict[str, Any]:
    """The schema of one definitions file: a definition mapping or a list of them."""
    base = DefinitionFile.model_json_schema()
    defs: dict[str, Any] = copy.deepcopy(base["$defs"])
    defs["Definition"] = base["items"]  # oneOf audience | computed_trait, by `kind`

    for name, text in _DESCRIPTIONS.items():
        defs[name]["description"] = text
        required = defs[name].setdefault("required", [])
        if "kind" not in required:
            required.insert(0, "kind")
    _widen(defs)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "engage-stream definitions file",
        "description": "Audiences and computed traits for engage-stream (a real-time Segment "
        "Engage): one definition (a mapping with `kind: audience` or `kind: computed_trait`) "
        "or a list of them. Files live under topologies/ and are applied with "
        "`engage-stream apply topologies/`.",
        "anyOf": [
            {"$ref": "#/$defs/Definition"},
            {"type": "array", "items": {"$ref": "#/$defs/Definition"}},
        ],
        "$defs": defs,
    }


def journey_json_schema() -> dict[str, Any]:
    """The schema of one `*.journey` file: a journey mapping or a list of them."""
    from engage_stream.journeys.models import JourneyDefinition

    schema = _document_schema(
        JourneyDefinition,
        JOURNEY_SCHEMA_ID,
        "engage-stream journey file",
        "Journeys for engage-stream: one journey (a mapping with `kind: journey`) or a list "
        "of them, in `*.journey` files (YAML) applied with `engage-stream apply`.",
    )
    defs = schema["$defs"]
    reentry = defs["Reentry"]
    defs["Reentry"] = {
        "description": reentry.pop("description", ""),
        "anyOf": [
            reentry,
            {"type": "string", "enum": ["never", "once", "every_time"]},
            {"type": "string", "pattern": DURATION_PATTERN, "description": "after this long"},
        ],
    }
    return schema


def broadcast_json_schema() -> dict[str, Any]:
    """The schema of one `*.broadcast` file: a broadcast mapping or a list of them."""
    from engage_stream.broadcasts.models import BroadcastDefinition

    return _document_schema(
        BroadcastDefinition,
        BROADCAST_SCHEMA_ID,
        "engage-stream broadcast file",
        "Broadcasts for engage-stream: one broadcast (a mapping with `kind: broadcast`) or a "
        "list of them, in `*.broadcast` files (YAML) published with `engage-stream apply` "
        "or `engage-stream broadcast create`.",
    )


def _document_schema(model: Any, schema_id: str, title: str, description: str) -> dict[str, Any]:
    name = model.__name__
    base = model.model_json_schema(ref_template="#/$defs/{model}")
    defs: dict[str, Any] = copy.deepcopy(base.pop("$defs", {}))
    defs[name] = base
    base.setdefault("required", []).insert(0, "kind")
    _widen(defs)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": schema_id,
        "title": title,
        "description": description,
        "anyOf": [
            {"$ref": f"#/$defs/{name}"},
            {"type": "array", "items": {"$ref": f"#/$defs/{name}"}},
        ],
        "$defs": defs,
    }


def _widen(defs: dict[str, Any]) -> None:
    """The shorthands the models' `mode="before"` validators accept, where present."""
    if "Duration" not in defs:  # a broadcast file: operators only
        _widen_ops(defs)
        return
    duration = defs["Duration"]
    defs["Duration"] = {
        "description": duration.pop("description", ""),
        "anyOf": [
            {
                "type": "string",
                "pattern": DURATION_PATTERN,
                "examples": ["30 minutes", "12 hours", "7 days", "2 weeks"],
            },
            duration,
        ],
    }
    if "Between" not in defs:  # a journey file: durations and operators only
        _widen_ops(defs)
        return
    between = defs["Between"]
    defs["Between"] = {
        "description": between.pop("description", "") + " Shorthand: `[30 days, 90 days]`.",
        "anyOf": [
            between,
            {
                "type": "array",
                "items": {"$ref": "#/$defs/Duration"},
                "minItems": 2,
                "maxItems": 2,
            },
        ],
    }
    session = defs["Session"]
    defs["Session"] = {
        "description": session.pop("description", ""),
        "anyOf": [session, {"$ref": "#/$defs/Duration", "description": "expires_after"}],
    }
    count = defs["Count"]
    defs["Count"] = {
        "description": count.pop("description", ""),
        "anyOf": [
            count,
            {"type": "integer", "minimum": 0, "description": "at least N times"},
            {"type": "string", "pattern": COUNT_PATTERN, "examples": [">= 1", "= 0", "<= 3"]},
        ],
    }
    history = defs["History"]
    defs["History"] = {
        "description": history.pop("description", "")
        + " `true` = 90 days, `false` = only events after the definition was applied, a "
        "number = that many days.",
        "anyOf": [
            history,
            {"type": "boolean"},
            {"type": "number", "exclusiveMinimum": 0, "maximum": 1095},
        ],
    }
    _widen_ops(defs)


def _widen_ops(defs: dict[str, Any]) -> None:
    if "Op" not in defs:
        return
    canonical = [op.value for op in Op]
    aliases = sorted(set(OP_ALIASES) | {c.replace("_", " ") for c in canonical if "_" in c})
    defs["Op"] = {
        "description": defs["Op"].get("description", ""),
        "anyOf": [
            {"type": "string", "enum": canonical},
            {
                "type": "string",
                "enum": aliases,
                "description": "aliases (query-language names, symbols, words with spaces)",
            },
        ],
    }


def render_schema(journeys: bool = False, broadcasts: bool = False) -> str:
    """The exact text of `schemas/definitions.schema.json` (or `journey.schema.json`,
    `broadcast.schema.json`)."""
    if broadcasts:
        schema = broadcast_json_schema()
    else:
        schema = journey_json_schema() if journeys else json_schema()
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_schema(directory: Path | str) -> Path:
    """Write `<directory>/definitions.schema.json`, `journey.schema.json` and
    `broadcast.schema.json`; returns the first's path."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    (d / JOURNEY_SCHEMA_FILE).write_text(render_schema(journeys=True), encoding="utf-8")
    (d / BROADCAST_SCHEMA_FILE).write_text(render_schema(broadcasts=True), encoding="utf-8")
    path = d / SCHEMA_FILE
    path.write_text(render_schema(), encoding="utf-8")
    return path
