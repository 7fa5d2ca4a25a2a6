"""Audience and computed-trait definitions: models, YAML loading, checks, JSON Schema."""

from engage_stream.definitions.loader import (
    canonical_body,
    collect_definitions,
    definition_files,
    definition_from_body,
    definitions_fingerprint,
    load_definitions,
)
from engage_stream.definitions.problems import DefinitionErrors, Problem

__all__ = [
    "DefinitionErrors",
    "Problem",
    "canonical_body",
    "collect_definitions",
    "definition_files",
    "definition_from_body",
    "definitions_fingerprint",
    "load_definitions",
]
