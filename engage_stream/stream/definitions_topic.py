"""Definitions on a compacted Kafka topic: every worker reads all of them, always.

One record per definition key; the value carries the version and the definition body. A
deletion is a record too (`deleted: true`, keeping the last version) rather than a null
tombstone, so compaction keeps it and a re-created key continues at version n + 1: the
messageIds (which hash the version) never repeat those of the deleted definition. Null
tombstones written before are still read as deletions. `apply` bumps the version only
when the body changed, so re-applying the same files is a no-op and an edit triggers
exactly one recompute. Workers read the topic without a consumer group (all partitions,
from the beginning), so each sees every version.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal

import orjson
from kafka import KafkaProducer
from pydantic import BaseModel, Field

from engage_stream.config import Settings
from engage_stream.definitions.catalog import evaluation_body
from engage_stream.journeys.models import MAX_VERSIONS
from engage_stream.stream import compacted

log = logging.getLogger(__name__)

DefinitionKind = Literal["audience", "computed_trait", "destination", "journey", "broadcast"]


class DefinitionRecord(BaseModel):
    key: str
    kind: DefinitionKind
    version: int = Field(ge=1)
    applied_at: int = Field(description="epoch ms when this version was applied")
    created_at: int = Field(
        0,
        description="epoch ms when version 1 was applied: `include_history: false` counts "
        "events from creation, and an edit does not move it (0 = applied_at)",
    )
    body: dict[str, Any] = Field(default_factory=dict)
    deleted: bool = False  # a deletion marker: keeps the last version, body empty
    evaluated_version: int = Field(
        0,
        description="the version whose evaluation this one shares (an edit of only the "
        "name, description or destinations is not recomputed); 0 = version",
    )
    history: list[dict[str, Any]] = Field(
        default_factory=list,
        description="journeys: the earlier evaluated versions, newest first, as "
        "{version, body} — profiles may still be in instances of them (drain)",
    )

    def to_value(self) -> bytes:
        return orjson.dumps(self.model_dump())

    @property
    def topic_key(self) -> bytes:
        return record_key(self.kind, self.key)

    def deletion(self, now_ms: int) -> DefinitionRecord:
        return self.model_copy(update={"deleted": True, "body": {}, "applied_at": now_ms})


def record_key(kind: str, key: str) -> bytes:
    return f"{kind}:{key}".encode()


def read_all(settings: Settings, timeout_s: float = 10.0) -> dict[bytes, DefinitionRecord]:
    """The latest record per key, deletion markers included (they hold the last version);
    `live` gives the definitions in force."""
    current: dict[bytes, DefinitionRecord] = {}
    for key, value in compacted.read_all(settings, settings.topics.definitions, timeout_s):
        _apply(current, key, value)
    return current


def live(current: dict[bytes, DefinitionRecord]) -> dict[bytes, DefinitionRecord]:
    """The definitions in force: deletion markers left out."""
    return {k: r for k, r in current.items() if not r.deleted}


def _apply(current: dict[bytes, DefinitionRecord], key: bytes | None, value: bytes | None) -> None:
    if key is None:
        return
    if value is None:  # a null tombstone (older applies): keep the version read so far
        old = current.get(key)
        if old is not None and not old.deleted:
            current[key] = old.deletion(old.applied_at)
    else:
        current[key] = DefinitionRecord.model_validate_json(value)


class Plan(BaseModel):
    publish: list[DefinitionRecord] = Field(default_factory=list)
    delete: list[DefinitionRecord] = Field(default_factory=list, description="markers")
    unchanged: list[str] = Field(default_factory=list)
    created: list[str] = Field(default_factory=list, description="new or re-created keys")


def plan(
    current: dict[bytes, DefinitionRecord],
    wanted: Iterable[tuple[DefinitionKind, str, dict[str, Any]]],
    prune: bool,
    now_ms: int,
) -> Plan:
    """What `apply` must write: new keys at version 1, changed bodies at version + 1, a
    re-created key at its deleted version + 1 (created anew); with `prune`, a deletion
    marker for every live key not wanted. An edit of only cosmetic fields keeps the
    evaluated version of the one it replaces."""
    out = Plan()
    seen: set[bytes] = set()
    for kind, key, body in wanted:
        k = record_key(kind, key)
        seen.add(k)
        old = current.get(k)
        if old is not None and not old.deleted and old.body == body:
            out.unchanged.append(k.decode())
            continue
        version = old.version + 1 if old is not None else 1
        evaluated = version
        history: list[dict[str, Any]] = []
        if old is None or old.deleted:
            out.created.append(k.decode())
            created = now_ms
        else:
            created = old.created_at or old.applied_at
            before = old.evaluated_version or old.version
            if evaluation_body(old.body) == evaluation_body(body):
                evaluated = before  # nothing to recompute
            history = list(old.history)
            if kind == "journey" and evaluated != before:
                history = [{"version": before, "body": old.body}, *history][: MAX_VERSIONS - 1]
        out.publish.append(
            DefinitionRecord(
                key=key,
                kind=kind,
                version=version,
                applied_at=now_ms,
                created_at=created,
                body=body,
                evaluated_version=evaluated,
                history=history,
            )
        )
    if prune:
        out.delete = [r.deletion(now_ms) for k, r in sorted(live(current).items()) if k not in seen]
    return out


def revise(
    settings: Settings,
    current: dict[bytes, DefinitionRecord],
    kind: DefinitionKind,
    key: str,
    body: dict[str, Any],
    now_ms: int,
) -> Plan:
    """Publish a new body for one live key (a lifecycle edit: pause, schedule, cancel...);
    nothing when it is the body already there."""
    p = plan(current, [(kind, key, body)], False, now_ms)
    if p.publish:
        publish(settings, p)
    return p


def publish(settings: Settings, p: Plan) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.broker, acks="all")
    try:
        for rec in [*p.publish, *p.delete]:
            producer.send(settings.topics.definitions, key=rec.topic_key, value=rec.to_value())
        producer.flush()
    finally:
        producer.close()


OnChange = Callable[[dict[bytes, DefinitionRecord]], Awaitable[None] | None]


async def watch(settings: Settings, on_change: OnChange, ready: asyncio.Event) -> None:
    """Follow the definitions topic forever; call `on_change` with the definitions in force
    (`live`) once caught up at start (then set `ready`) and after every later change."""
    current: dict[bytes, DefinitionRecord] = {}
    await compacted.follow(
        settings,
        settings.topics.definitions,
        lambda key, value: _apply(current, key, value),
        ready,
        on_caught_up=lambda: _notify(on_change, current),
        on_changed=lambda: _notify(on_change, current),
    )


async def _notify(on_change: OnChange, current: dict[bytes, DefinitionRecord]) -> None:
    result = on_change(live(current))
    if result is not None:
        await result
