"""The committed JSON Schema matches the models, and accepts what the loader accepts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engage_stream.definitions.schema_export import (
    SCHEMA_FILE,
    json_schema,
    render_schema,
    write_schema,
)

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "schemas" / SCHEMA_FILE


def test_committed_schema_is_up_to_date() -> None:
    assert COMMITTED.exists(), (
        "schemas/definitions.schema.json is missing: run `engage-stream schema`"
    )
    assert COMMITTED.read_text(encoding="utf-8") == render_schema(), (
        "schemas/definitions.schema.json differs from the definition models: "
        "run `engage-stream schema` and commit the result"
    )


def test_write_schema_format(tmp_path: Path) -> None:
    path = write_schema(tmp_path / "out")
    text = path.read_text(encoding="utf-8")
    assert path.name == "definitions.schema.json"
    assert text.endswith("}\n") and not text.endswith("\n\n")
    assert text.startswith('{\n  "$defs": {')  # sorted keys, 2-space indent
    assert json.loads(text) == json_schema()


def test_schema_root_and_shorthands() -> None:
    s = json_schema()
    assert s["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert s["$id"] and s["title"] and s["description"]
    assert s["anyOf"][0] == {"$ref": "#/$defs/Definition"}
    assert s["anyOf"][1]["type"] == "array"
    defs = s["$defs"]
    assert "kind" in defs["AudienceDefinition"]["required"]
    assert "kind" in defs["ComputedTraitDefinition"]["required"]
    assert defs["Duration"]["anyOf"][0]["type"] == "string"
    assert {"integer", "string", "object"} <= {x["type"] for x in defs["Count"]["anyOf"]}
    ops = [v for x in defs["Op"]["anyOf"] for v in x["enum"]]
    assert {"starts_with", ">=", "one_of", "starts with"} <= set(ops)


def test_topologies_validate_against_the_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    validator = jsonschema.Draft202012Validator(json_schema())
    for f in sorted((ROOT / "topologies").rglob("*.yaml")):
        data = yaml.safe_load(f.read_text())
        errors = list(validator.iter_errors(data))
        assert not errors, f"{f}: {errors[0].message}"


def test_schema_rejects_typos_and_accepts_shorthands() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json_schema())
    good = {
        "kind": "audience",
        "key": "a",
        "include_history": True,
        "conditions": [
            {"event": "X", "within": "7 days", "count": ">= 2"},
            {"event": "Y", "between": ["30 days", "90 days"], "count": 0, "performed": False},
            {"trait": "t", "operator": ">=", "value": 3},
        ],
    }
    assert not list(validator.iter_errors(good))
    assert not list(validator.iter_errors([good, good]))
    typo = {**good, "conditions": [{"event": "X", "withn": "7 days"}]}
    assert list(validator.iter_errors(typo))
    no_kind = {k: v for k, v in good.items() if k != "kind"}
    assert list(validator.iter_errors(no_kind))


def test_schema_knows_session_windows_and_as_string() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json_schema())
    base = {"kind": "computed_trait", "key": "t", "type": "min", "event": "E", "property": "p"}
    for good in (
        {**base, "session": "1 hour"},
        {**base, "session": {"expires_after": "30 minutes"}},
        {**base, "as_string": True},
    ):
        assert not list(validator.iter_errors(good)), good
    for bad in (
        {**base, "session": {"gap": "1 hour"}},
        {**base, "session": "soon"},
        {**base, "as_string": "yes"},
    ):
        assert list(validator.iter_errors(bad)), bad


def test_committed_journey_schema_is_up_to_date_and_fits_the_examples() -> None:
    from engage_stream.definitions.schema_export import JOURNEY_SCHEMA_FILE, journey_json_schema

    committed = ROOT / "schemas" / JOURNEY_SCHEMA_FILE
    assert committed.read_text(encoding="utf-8") == render_schema(journeys=True), (
        "schemas/journey.schema.json differs from the journey models: run `engage-stream schema`"
    )
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    validator = jsonschema.Draft202012Validator(journey_json_schema())
    files = sorted((ROOT / "topologies").rglob("*.journey"))
    assert files
    for f in files:
        for doc in yaml.safe_load_all(f.read_text()):
            errors = list(validator.iter_errors(doc))
            assert not errors, f"{f}: {errors[0].message}"
    typo = {
        "kind": "journey",
        "key": "j",
        "entry": {"audience": "a"},
        "reentry": "30 days",
        "steps": [{"type": "wait", "key": "w", "duraton": "1 day"}],
    }
    assert list(validator.iter_errors(typo))  # the misspelt field is refused
    typo["steps"] = [{"type": "wait", "key": "w", "duration": "1 day"}]
    assert not list(validator.iter_errors(typo))  # and the shorthands accepted


def test_committed_broadcast_schema_is_up_to_date_and_fits_the_examples() -> None:
    from engage_stream.definitions.schema_export import (
        BROADCAST_SCHEMA_FILE,
        broadcast_json_schema,
    )

    committed = ROOT / "schemas" / BROADCAST_SCHEMA_FILE
    assert committed.read_text(encoding="utf-8") == render_schema(broadcasts=True)
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    validator = jsonschema.Draft202012Validator(broadcast_json_schema())
    files = sorted((ROOT / "topologies").rglob("*.broadcast"))
    assert files
    for f in files:
        for doc in yaml.safe_load_all(f.read_text()):
            errors = list(validator.iter_errors(doc))
            assert not errors, f"{f}: {errors[0].message}"
    assert list(validator.iter_errors({"kind": "broadcast", "key": "b", "chanel": "email"}))
