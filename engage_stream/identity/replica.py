"""Every worker's read-only copy of the identity graph's id → profile map.

Fed from the compacted `identity` topic (which only the identity stage writes), it lets
ingest route most events without the serialized identity stage: when every usable
identifier of an event is known and all point to one profile, nothing is linked, so
nothing can race. Anything else — an unknown identifier, identifiers of two profiles, a
replica that is behind — goes to the identity stage, which decides with the real graph.
A replica that is behind only costs that detour: an event it sends to a profile merged
away meanwhile is forwarded by that profile's partition (`profiles.stage`).

Memory: one dict entry per identifier (175–190 bytes each, measured: bench/README.md).
"""

from __future__ import annotations

from engage_stream.events import ProfileEvent
from engage_stream.identity.rules import IdentityRules
from engage_stream.identity.stage import user_identifiers


class IdentityReplica:
    def __init__(self, rules: IdentityRules | None = None) -> None:
        self.rules = rules or IdentityRules()
        self._ids: dict[str, str] = {}

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        k = key.decode()
        if value is None:
            self._ids.pop(k, None)
        else:
            self._ids[k] = value.decode()

    def lookup(self, id_type: str, value: str) -> str | None:
        return self._ids.get(f"{id_type}:{value}")

    def route(self, event: ProfileEvent) -> str | None:
        """The profile the event belongs to if that needs no linking, else None."""
        owner: str | None = None
        blocked = self.rules.is_blocked
        for t, v in user_identifiers(event, self.rules):  # no priority order needed here
            if blocked(v):
                continue
            pid = self._ids.get(f"{t}:{v}")
            if pid is None or (owner is not None and pid != owner):
                return None
            owner = pid
        return owner

    def __len__(self) -> int:
        return len(self._ids)
