"""Segment's identity-resolution rules (reference §6), as one frozen value.

- Blocked values are never used as identifiers (they stay on the event).
- A limit per id type, optionally within a time frame: how many distinct values of that
  type one profile may hold (`user_id` 1 ever, others 5 by default). Attaching an event
  whose ids would break a limit drops the event's lowest-priority identifier and matches
  again — which may create a new profile — so two userIds never share a profile.
- Priority: `user_id` 1, `email` 2, every other type after them in alphabetical order.
- At most `max_merges` merges into one profile and `max_mappings` identifiers on it; past
  those nothing more is merged or added, and events still resolve.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

_UNITS = {"h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}

DEFAULT_BLOCKED = (r"^[0-]*$", r"^-1$", r"^null$", r"^anonymous$", r"^undefined$", r"^none$")


@dataclass(frozen=True, slots=True)
class Limit:
    values: int  # distinct values of the type a profile may hold
    within_ms: int | None = None  # ... added within this time frame; None: ever


@dataclass(frozen=True)
class IdentityRules:
    # Values matching any of these (case-insensitive, whole value) are never identifiers.
    blocked: tuple[str, ...] = DEFAULT_BLOCKED
    # Per id type; a type not listed gets `default_limit`.
    limits: Mapping[str, Limit] = field(default_factory=lambda: {"user_id": Limit(1)})
    default_limit: Limit = Limit(5)
    # Highest first; types not listed follow in alphabetical order.
    priority: tuple[str, ...] = ("user_id", "email")
    max_merges: int = 100
    max_mappings: int = 1000
    # Segment does not merge profiles on `alias` calls; opt in to treat previousId → userId
    # as a link between the two user ids' profiles.
    merge_on_alias: bool = False
    _blocked: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        pattern = "|".join(f"(?:{p})" for p in self.blocked) or r"(?!)"
        object.__setattr__(self, "_blocked", re.compile(pattern, re.IGNORECASE))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> IdentityRules:
        """From `ENGAGE_IDENTITY_*` (unset: Segment's defaults):
        - `BLOCKED`: regular expressions, comma-separated (replace the defaults);
        - `LIMITS`: `type=N` or `type=N/<n>h|d|w`, comma-separated, e.g.
          `user_id=1,email=5,ios.id=2/7d` (a limit within a time frame);
        - `DEFAULT_LIMIT`: the same for every type not listed (`5`);
        - `PRIORITY`: types, highest first (`user_id,email`);
        - `MERGE_ON_ALIAS`: `true` to link an alias's previousId;
        - `MAX_MERGES`, `MAX_MAPPINGS`."""
        env = os.environ if environ is None else environ
        get = lambda name: env.get("ENGAGE_IDENTITY_" + name)  # noqa: E731
        kw: dict[str, object] = {}
        if (v := get("BLOCKED")) is not None:
            kw["blocked"] = tuple(p.strip() for p in v.split(",") if p.strip())
        if (v := get("LIMITS")) is not None:
            limits = {"user_id": Limit(1)}
            for item in filter(None, (x.strip() for x in v.split(","))):
                id_type, _, spec = item.partition("=")
                limits[id_type.strip().lower()] = _limit(spec, item)
            kw["limits"] = limits
        if (v := get("DEFAULT_LIMIT")) is not None:
            kw["default_limit"] = _limit(v, v)
        if (v := get("PRIORITY")) is not None:
            kw["priority"] = tuple(t.strip().lower() for t in v.split(",") if t.strip())
        if (v := get("MERGE_ON_ALIAS")) is not None:
            kw["merge_on_alias"] = v.strip().lower() in ("1", "true", "yes")
        for name, attr in (("MAX_MERGES", "max_merges"), ("MAX_MAPPINGS", "max_mappings")):
            if (v := get(name)) is not None:
                kw[attr] = int(v)
        return cls(**kw)  # type: ignore[arg-type]

    def is_blocked(self, value: str) -> bool:
        return not value.strip() or self._blocked.match(value) is not None

    def limit(self, id_type: str) -> Limit:
        return self.limits.get(id_type, self.default_limit)

    def rank(self, id_type: str) -> tuple[int, str]:
        """Sort key: lower is higher priority."""
        try:
            return (self.priority.index(id_type), "")
        except ValueError:
            return (len(self.priority), id_type)


def _limit(spec: str, where: str) -> Limit:
    """`N` or `N/<n><h|d|w>`."""
    count, _, frame = spec.strip().partition("/")
    try:
        values = int(count)
        if not frame:
            return Limit(values)
        n, unit = frame[:-1], frame[-1]
        return Limit(values, int(float(n) * _UNITS[unit]))
    except (ValueError, KeyError, IndexError):
        raise ValueError(
            f"identity limit {where!r}: expected N or N/<number><h|d|w>, e.g. 5/7d"
        ) from None
