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

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

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
