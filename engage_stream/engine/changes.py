"""What the engine emits: one `Change` per audience membership or computed-trait value change.

A change is identified by what caused it, never by when it was processed, so replaying the
same input (or reprocessing after a crash) yields the same `message_id`:
- an event: its messageId;
- a window boundary with no new event: the boundary time (`timer:<ms>`), which is a function
  of the stored events, not of when the tick arrived;
- a new or edited definition evaluated over history: `definition:<version>`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

ChangeKind = Literal["audience", "computed_trait"]


@dataclass(frozen=True, slots=True)
class Change:
    kind: ChangeKind
    key: str  # audience / computed-trait key
    version: int  # definition version that produced it
    profile_id: str
    value: Any  # audience: True (entered) / False (exited); trait: the new value, None = cleared
    previous: Any  # the value before (audience: False when first entering)
    at: int  # event time (ms) the change takes effect: the event's time or the boundary
    cause: str  # "event:<messageId>" | "timer:<ms>" | "definition:<version>"

    @property
    def message_id(self) -> str:
        """Deterministic: same definition version, profile, cause and value → same id."""
        raw = f"{self.kind}\x00{self.key}\x00{self.version}\x00{self.profile_id}\x00{self.cause}\x00{self.value!r}"
        return "engage-" + hashlib.blake2b(raw.encode(), digest_size=16).hexdigest()

    @classmethod
    def event_cause(cls, message_id: str) -> str:
        return "event:" + message_id

    @classmethod
    def timer_cause(cls, due_ms: int) -> str:
        return f"timer:{due_ms}"

    @classmethod
    def definition_cause(cls, version: int) -> str:
        return f"definition:{version}"
