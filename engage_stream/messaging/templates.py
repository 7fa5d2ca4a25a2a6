"""Template variables of message requests, rendered here so a connector gets plain text.

`{{traits.<path>}}` (the profile's traits, audiences and computed traits),
`{{context.<event or alias>.<path>}}` (a journey's context), `{{profile_id}}`, and any
name given in `extra` (e.g. `{{journey}}`, `{{broadcast}}`). A missing value renders as
empty text; a non-string value as its JSON.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from engage_stream.engine.operators import get_path, split_path

_VAR = re.compile(r"\{\{\s*([^}]+?)\s*\}\}")


def trait_value(traits: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    v = traits.get(path[0])
    return get_path(v, path[1:]) if len(path) > 1 else v


def render(
    template: str,
    traits: Mapping[str, Any],
    profile_id: str,
    context: Mapping[str, Any] | None = None,
    extra: Mapping[str, str] | None = None,
) -> str:
    def value(m: re.Match[str]) -> str:
        expr = m.group(1)
        v: Any = None
        if expr == "profile_id":
            v = profile_id
        elif extra is not None and expr in extra:
            v = extra[expr]
        elif expr.startswith("traits."):
            v = trait_value(traits, split_path(expr[7:]))
        elif expr.startswith("context.") and context:
            rest = expr[8:]
            for name in sorted(context, key=len, reverse=True):  # the longest alias first
                if rest == name:
                    v = context[name]
                    break
                if rest.startswith(name + "."):
                    v = get_path(context[name], split_path(rest[len(name) + 1 :]))
                    break
        if v is None:
            return ""
        return v if isinstance(v, str) else orjson.dumps(v).decode()

    return _VAR.sub(value, template)
