"""Canonical profile ids.

For now a profile is keyed by userId, else anonymousId. Full identity resolution (email,
externalIds, merges with Segment's limits and priorities) replaces only this module: every
later stage already works on `ProfileEvent.profile_id` and never derives it itself.
"""

from __future__ import annotations

from engage_stream.events import ProfileEvent


def canonical_profile_id(event: ProfileEvent) -> str:
    if event.user_id:
        return f"user_id:{event.user_id}"
    return f"anonymous_id:{event.anonymous_id}"


def profile_id_for_lookup(id_type: str, value: str) -> str | None:
    """The profile key a Profile API identifier addresses, or None if it cannot be resolved yet."""
    if id_type in ("user_id", "anonymous_id"):
        return f"{id_type}:{value}"
    return None
