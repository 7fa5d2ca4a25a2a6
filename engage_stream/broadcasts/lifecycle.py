"""What each lifecycle action does to a broadcast's published body, and when it is refused —
one place for the CLI and the API.

draft → scheduled (at a local time in a zone, or now) → the send (Sending → Sent);
scheduled → draft again until the send starts (unschedule); cancel before or during the
send (what is still queued is dropped); a sent or cancelled broadcast stays so — sending
again is a new broadcast (or a new version of its content).
"""

from __future__ import annotations

from typing import Any, Literal

from engage_stream.broadcasts.models import BroadcastDefinition, Schedule
from engage_stream.broadcasts.status import State

Action = Literal["schedule", "unschedule", "cancel"]


class LifecycleError(ValueError):
    """The action does not apply to the broadcast as it is (a 409 in the API)."""


def revised(
    body: dict[str, Any], action: Action, state: State, schedule: Schedule | None = None
) -> dict[str, Any]:
    """The body to publish for `action` (`schedule` None with action schedule: now)."""
    key = body.get("key", "?")
    if action == "schedule":
        if state in ("Sending", "Sent", "Cancelled"):
            raise LifecycleError(f"broadcast {key} is {state}: it cannot be scheduled")
        new = {
            **body,
            "status": "scheduled",
            "schedule": schedule.model_dump() if schedule is not None else None,
        }
    elif action == "unschedule":
        if state != "Scheduled":
            raise LifecycleError(
                f"broadcast {key} is {state}: only a scheduled one goes back to draft"
            )
        new = {**body, "status": "draft"}
    else:
        if state in ("Sent", "Cancelled"):
            raise LifecycleError(f"broadcast {key} is {state} already")
        new = {**body, "status": "cancelled"}
    BroadcastDefinition.model_validate(new)
    return new
