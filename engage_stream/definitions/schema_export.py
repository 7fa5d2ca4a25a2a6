"""JSON Schema of a definitions file, for editor autocompletion and validation.

Generated from the pydantic models, then widened where the models accept shorthands that
their generated schema does not show (pydantic cannot see `mode="before"` validators):
durations as `"7 days"`, `between: [30 days, 90 days]`, `count: ">= 2"` or `count: 2`,
`include_history: true|false|<days>`, `session: "1 hour"`, and operator aliases (`>=`, `one_of`, ...). `kind` is
required, as the loader requires it.

`schemas/definitions.schema.json` is this schema, written by `engage-stream schema`
(`write_schema`); a test fails when the committed file is out of date. To use it in VS
Code with the YAML extension, start a file with:

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


def render_schema() -> str:
    """The exact text of `schemas/definitions.schema.json`."""
    return json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_schema(directory: Path | str) -> Path:
    """Write `<directory>/definitions.schema.json`; returns its path."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    path = d / SCHEMA_FILE
    path.write_text(render_schema(), encoding="utf-8")
    return path
