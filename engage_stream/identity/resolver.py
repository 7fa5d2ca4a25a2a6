"""The key input records are placed by before identity resolution.

One person's events should reach ingest in order: keying input records by userId, else
anonymousId, keeps each identifier's events on one input partition. It is not the
profile: the identity stage decides that (`identity.stage`), and merges may join what
these keys keep apart.
"""

from __future__ import annotations

from engage_stream.events import ProfileEvent


def input_key(event: ProfileEvent) -> str:
    if event.user_id:
        return f"user_id:{event.user_id}"
    return f"anonymous_id:{event.anonymous_id}"
