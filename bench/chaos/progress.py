"""Whether a run has applied its whole input: every stage's committed offsets against the
ends of the topic it reads.

The profiles stage's input never ends (every worker appends a tick per partition each
second), so "done" is: ingest and identity have committed their inputs' ends, and the
profiles group has committed past the ends `profile-events` had once they had — everything
they routed there is applied.
"""

from __future__ import annotations

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from engage_stream.config import Settings
from engage_stream.worker_process import wait_until


class Progress:
    """One admin client and one consumer for the whole run: a new client per poll walks
    the ephemeral ports (see tests/stream/test_broadcasts.py)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.admin = KafkaAdminClient(bootstrap_servers=settings.broker)
        self.consumer = KafkaConsumer(bootstrap_servers=settings.broker, enable_auto_commit=False)

    def close(self) -> None:
        self.admin.close()
        self.consumer.close()

    def _tps(self, topic: str) -> list[TopicPartition]:
        parts = self.consumer.partitions_for_topic(topic) or set()
        return [TopicPartition(topic, p) for p in sorted(parts)]

    def ends(self, topic: str) -> dict[int, int]:
        return {
            tp.partition: off for tp, off in self.consumer.end_offsets(self._tps(topic)).items()
        }

    def committed(self, group: str, topic: str) -> dict[int, int]:
        offsets = self.admin.list_group_offsets(group).get(group, {})
        return {tp.partition: m.offset for tp, m in offsets.items() if tp.topic == topic}

    def caught_up(self, group: str, topic: str, ends: dict[int, int] | None = None) -> bool:
        """False while the broker is unreachable (a bounce): the clients reconnect."""
        try:
            ends = self.ends(topic) if ends is None else ends
            done = self.committed(group, topic)
        except KafkaError:
            return False
        return all(done.get(p, 0) >= end for p, end in ends.items())

    def routed(self) -> bool:
        """Ingest and identity have committed all of their input."""
        s = self.settings
        return self.caught_up(f"{s.app_id}-ingest", s.topics.mixed) and self.caught_up(
            f"{s.app_id}-identity", s.topics.identity_requests
        )

    def applied_fraction(self, events: int) -> float:
        """How much of the input ingest has committed (for the progress line; NaN while
        the broker is unreachable)."""
        try:
            done = self.committed(f"{self.settings.app_id}-ingest", self.settings.topics.mixed)
        except KafkaError:
            return float("nan")
        return sum(done.values()) / max(1, events)

    def wait_applied(self, timeout: float) -> None:
        s = self.settings
        while True:
            wait_until(self.routed, timeout, "ingest and identity caught up", interval=1.0)
            try:
                ends = self.ends(s.topics.profile_events)
            except KafkaError:
                continue
            wait_until(
                lambda ends=ends: self.caught_up(s.app_id, s.topics.profile_events, ends),
                timeout,
                "the profiles stage caught up",
                interval=1.0,
            )
            if self.routed():  # nothing new was routed meanwhile (a merge's transfer)
                return
