"""A broadcast's status across every partition: what `broadcast status` and the API show.

Draft, Scheduled and Cancelled are what was published; Sending and Sent are the
partitions' own progress (`sending.Progress`, one per partition, on
`engage.broadcast-progress`): Sent once every partition has finished this version,
Sending as soon as one has started. Counts are the partitions' sums.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel

from engage_stream.broadcasts.catalog import BroadcastEntry
from engage_stream.broadcasts.sending import Progress
from engage_stream.timestamps import iso_ms

State = Literal["Draft", "Scheduled", "Sending", "Sent", "Cancelled"]


class BroadcastStatus(BaseModel):
    key: str
    name: str
    channel: str
    version: int
    status: State
    send_at: str | None  # ISO-8601 UTC; None for a draft without a schedule
    time_zone: str | None
    rate: float  # messages per second across workers
    partitions: int  # partitions expected to report
    reported: int  # partitions that have started (or finished) this version
    profiles: int  # profiles matching the recipient conditions at the snapshot
    recipients: int  # requests to send
    sent: int
    skipped: dict[str, int]  # contact vectors not sent, by reason
    started: str | None
    finished: str | None

    def line(self) -> str:
        """One progress line, for the CLI."""
        pct = f"{100 * self.sent / self.recipients:.0f}%" if self.recipients else "-"
        skipped = ", ".join(f"{k} {v}" for k, v in sorted(self.skipped.items())) or "none"
        return (
            f"{self.key} v{self.version}: {self.status} — {self.sent}/{self.recipients} sent "
            f"({pct}), skipped: {skipped}; partitions {self.reported}/{self.partitions}"
        )


def status_of(
    entry: BroadcastEntry, progress: Iterable[Progress], partitions: int, default_rate: float
) -> BroadcastStatus:
    d = entry.definition
    mine = [p for p in progress if p.broadcast == d.key and p.version == entry.version]
    state: State
    if d.status == "cancelled" or any(p.phase == "cancelled" for p in mine):
        state = "Cancelled"
    elif mine and len(mine) >= partitions and all(p.phase == "sent" for p in mine):
        state = "Sent"
    elif mine:
        state = "Sending"
    elif d.status == "scheduled":
        state = "Scheduled"
    else:
        state = "Draft"
    skipped: dict[str, int] = {}
    for p in mine:
        for k, n in p.skipped.items():
            skipped[k] = skipped.get(k, 0) + n
    started = min((p.started for p in mine), default=None)
    ends = [p.finished for p in mine]
    finished = max(ends) if mine and all(e is not None for e in ends) else None  # type: ignore[type-var]
    scheduled = d.status == "scheduled" or d.schedule is not None or mine
    return BroadcastStatus(
        key=d.key,
        name=d.display_name,
        channel=d.channel,
        version=entry.version,
        status=state,
        send_at=iso_ms(entry.send_at) if scheduled else None,
        time_zone=d.schedule.time_zone if d.schedule else None,
        rate=d.rate or default_rate,
        partitions=partitions,
        reported=len(mine),
        profiles=sum(p.profiles for p in mine),
        recipients=sum(p.total for p in mine),
        sent=sum(p.sent for p in mine),
        skipped=skipped,
        started=iso_ms(started) if started is not None else None,
        finished=iso_ms(finished) if finished is not None else None,  # type: ignore[arg-type]
    )
