"""Declares every topic the worker reads or writes, with the right partitions and cleanup."""

from __future__ import annotations

import contextlib

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from engage_stream.config import Settings

MAX_RECORD_BYTES = 64 * 1024 * 1024  # changelog records (profile state); see topic_specs


def faust_leader_topic(settings: Settings) -> str:
    """The topic Faust's leader assignor subscribes the web app's consumer to (its only
    topic: without it the consumer has none and Faust crashes). Faust would declare it, but
    the app declares no topics of its own (`topic_allow_declare=False`), so it is created
    here with the others; before, each start logged an ERROR that it did not exist."""
    return f"{settings.app_id}-web-__assignor-__leader"


def topic_specs(
    settings: Settings, destinations: list[str] | None = None
) -> dict[str, tuple[int, dict[str, str]]]:
    t = settings.topics
    n = settings.partitions
    compact = {
        "cleanup.policy": "compact",
        "min.cleanable.dirty.ratio": "0.1",
        "segment.ms": "600000",
        # roll (and so compact) a busy changelog well before 10 minutes: recovery replays
        # what compaction has not removed yet
        "segment.bytes": str(64 * 1024 * 1024),
    }
    # A profile's value holds its window state: a very active profile can outgrow the
    # broker's 1 MB default, and a record the broker refuses would stop the worker.
    changelog = {**compact, "max.message.bytes": str(MAX_RECORD_BYTES)}
    specs: dict[str, tuple[int, dict[str, str]]] = {name: (n, {}) for name in t.inputs()}
    specs[t.dead_letter] = (n, {})
    # a merge moves a whole profile (its history) to the survivor's partition as one record
    specs[t.profile_events] = (n, {"max.message.bytes": str(MAX_RECORD_BYTES)})
    specs[settings.changelog_topic] = (n, changelog)
    specs[t.identity_requests] = (1, {})  # the one writer of the identity graph
    specs[settings.identity_changelog_topic] = (1, changelog)
    specs[t.identity] = (n, compact)
    specs[t.merges] = (n, compact)
    specs[t.definitions] = (1, compact)
    specs[t.changes] = (n, {})
    specs[t.journeys] = (n, {})
    specs[t.messages] = (n, {})
    specs[t.broadcast_progress] = (1, compact)
    specs[faust_leader_topic(settings)] = (1, {})
    for d in destinations or []:
        specs[t.output(d)] = (n, {})
    return specs


def ensure_topics(settings: Settings, destinations: list[str] | None = None) -> list[str]:
    """Create missing topics; returns the names created."""
    admin = KafkaAdminClient(bootstrap_servers=settings.broker, client_id="engage-stream-admin")
    try:
        existing = set(admin.list_topics())
        new = [
            NewTopic(name, num_partitions=parts, replication_factor=1, topic_configs=cfg)
            for name, (parts, cfg) in topic_specs(settings, destinations).items()
            if name not in existing
        ]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(new)
        return [x.name for x in new]
    finally:
        admin.close()
