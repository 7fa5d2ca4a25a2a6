"""Worker and tool settings, from `ENGAGE_*` environment variables with sensible defaults."""

from __future__ import annotations

import dataclasses
import os
import socket
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from engage_stream.engine.engine import EngineSettings
from engage_stream.profiles.processor import ProcessorSettings
from engage_stream.state.options import RocksDBOptions
from engage_stream.stream.options import ConsumerOptions, ProducerOptions, RetryOptions

DAY_MS = 86_400_000


class Topics(BaseModel):
    track: str = "segment.track"
    identify: str = "segment.identify"
    group: str = "segment.group"
    page: str = "segment.page"
    screen: str = "segment.screen"
    alias: str = "segment.alias"
    mixed: str = Field("segment.events", description="one topic carrying any Segment type")
    dead_letter: str = "engage.dlq"
    profile_events: str = Field("engage.profile-events", description="internal, keyed by profile")
    identity_requests: str = Field(
        "engage.identity-requests",
        description="internal, one partition: events that link or introduce identifiers",
    )
    identity: str = Field(
        "engage.identity", description="compacted: identifier -> canonical profile id"
    )
    merges: str = Field("engage.merges", description="compacted: merged-away profile -> survivor")
    definitions: str = "engage.definitions"
    changes: str = Field("engage.changes", description="every audience/trait change")
    journeys: str = Field("engage.journeys", description="every journey step, send, exit")
    messages: str = Field("engage.messages", description="email / SMS send requests")
    broadcast_progress: str = Field(
        "engage.broadcast-progress",
        description="compacted: each partition's progress of each broadcast send",
    )
    output_prefix: str = Field("engage.out.", description="+ destination name")

    def inputs(self) -> list[str]:
        return [
            self.track,
            self.identify,
            self.group,
            self.page,
            self.screen,
            self.alias,
            self.mixed,
        ]

    def output(self, destination: str) -> str:
        return self.output_prefix + destination

    def with_suffix(self, suffix: str) -> Topics:
        """Every topic name with a suffix: isolated runs (demo, tests) on a shared broker."""
        return Topics(
            **{
                k: v + suffix if k != "output_prefix" else v.rstrip(".") + suffix + "."
                for k, v in self.model_dump().items()
            }
        )

    def env(self) -> dict[str, str]:
        return {"ENGAGE_TOPIC_" + k.upper(): v for k, v in self.model_dump().items()}


class Settings(BaseModel):
    broker: str = "127.0.0.1:9092"
    app_id: str = "engage-stream"
    partitions: int = 4
    data_dir: Path = Path("var/worker")
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    instance_id: str = Field(
        "auto",
        description="static consumer-group membership (KIP-345): a worker restarted with the "
        "same id takes its partitions back at once instead of waiting for its old session to "
        "expire; 'auto' is <hostname>-<web_port>, unique per host; '' is dynamic membership",
    )
    space_id: str = "spa_local"
    api_token: str = Field("dev-token", description="the Profile API's access token")
    internal_secret: str = Field(
        "",
        description="HMAC key workers of one cluster share to ask each other (api.peer_auth); "
        "required when more than one worker runs",
    )
    metrics_token: str = Field(
        "", description="when set, /metrics (worker and collector) needs Bearer <token>"
    )
    history_days: float = Field(90.0, description="per-profile event history lookback")
    dedup_hours: float = 24.0
    batch_size: int = 1000  # records per fetch; 500 → 1000 measured +10% on a backlog
    batch_within_s: float = 0.05
    tick_interval_s: float = 1.0
    backfill_chunk: int = Field(
        2000, description="profiles re-evaluated per batch after a definition change"
    )
    # Off by default: on the full bench workload (100k profiles, a third of the lookups
    # hit) the worker measured 0.84x the throughput with 8 MB; it pays where few profiles
    # are very active (bench/README, "Decoded profiles kept between events").
    record_cache_mb: float = Field(
        0.0,
        ge=0,
        description="stored size of the profiles each partition keeps decoded between events "
        "(0: decode every time); in memory a decoded profile takes ~2.5x its stored size",
    )
    allowed_lateness_s: float = Field(
        0.0,
        description="0: late events always count by their event time; >0: the engine ignores "
        "events older than the clock minus this",
    )
    commit_interval_s: float = Field(1.0, description="how often consumed offsets are committed")
    broadcast_rate: float = Field(
        1000.0,
        gt=0,
        description="messages per second a broadcast sends across every worker, unless it "
        "sets its own rate",
    )
    topics: Topics = Field(default_factory=Topics)
    # Tuning of the parts below, each a frozen dataclass with commented defaults; from the
    # environment as ENGAGE_<PART>_<FIELD>, e.g. ENGAGE_CONSUMER_SESSION_TIMEOUT_MS.
    consumer: ConsumerOptions = Field(default_factory=ConsumerOptions)
    producer: ProducerOptions = Field(default_factory=ProducerOptions)
    retry: RetryOptions = Field(default_factory=RetryOptions)
    rocksdb: RocksDBOptions = Field(default_factory=RocksDBOptions)

    def processor_settings(self) -> ProcessorSettings:
        return ProcessorSettings(history_ms=self.history_ms, dedup_ms=self.dedup_ms)

    def engine_settings(self) -> EngineSettings:
        return EngineSettings(allowed_lateness_ms=self.allowed_lateness_ms)

    @property
    def history_ms(self) -> int:
        return int(self.history_days * DAY_MS)

    @property
    def allowed_lateness_ms(self) -> int:
        return int(self.allowed_lateness_s * 1000)

    @property
    def dedup_ms(self) -> int:
        return int(self.dedup_hours * 3_600_000)

    @property
    def group_instance_id(self) -> str | None:
        """The consumer groups' `group.instance.id` of this worker (the same in every group:
        it must be unique within a group, not across groups)."""
        if self.instance_id == "auto":
            return f"{socket.gethostname()}-{self.web_port}"
        return self.instance_id or None

    @property
    def changelog_topic(self) -> str:
        return f"{self.app_id}-state-changelog"

    @property
    def identity_changelog_topic(self) -> str:
        return f"{self.app_id}-identity-changelog"

    def env(self) -> dict[str, str]:
        """The environment that makes a child process (a worker) use these settings."""
        out = {
            "ENGAGE_" + k.upper(): str(v)
            for k, v in self.model_dump(exclude={"topics", *_PARTS}).items()
        }
        out.update(self.topics.env())
        for part in _PARTS:
            for f in dataclasses.fields(getattr(self, part)):
                out[f"ENGAGE_{part.upper()}_{f.name.upper()}"] = str(
                    getattr(getattr(self, part), f.name)
                )
        return out

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Settings from `ENGAGE_*` variables (and `overrides`, e.g. command-line flags).
        A value that does not parse is a `SettingsError` naming the variable."""
        try:
            return cls._from_env(overrides)
        except ValidationError as exc:
            problems = []
            for e in exc.errors():
                name = "ENGAGE_" + "_".join(str(x) for x in e["loc"]).upper()
                given = f"={e['input']!r}" if not isinstance(e["input"], dict) else ""
                problems.append(f"{name}{given}: {e['msg']}")
            raise SettingsError("; ".join(problems)) from None

    @classmethod
    def _from_env(cls, overrides: dict[str, object]) -> Settings:
        env: dict[str, object] = {}
        for name, _field in cls.model_fields.items():
            if name == "topics" or name in _PARTS:
                continue
            v = os.environ.get("ENGAGE_" + name.upper())
            if v is not None:
                env[name] = v
        topics: dict[str, str] = {}
        for name in Topics.model_fields:
            v = os.environ.get("ENGAGE_TOPIC_" + name.upper())
            if v is not None:
                topics[name] = v
        env["topics"] = Topics(**topics)
        for part, kind in _PARTS.items():
            values: dict[str, Any] = {}
            for f in dataclasses.fields(kind):
                name = f"ENGAGE_{part.upper()}_{f.name.upper()}"
                v = os.environ.get(name)
                if v is not None:
                    values[f.name] = _parse(name, v, type(getattr(kind(), f.name)))
            try:
                env[part] = kind(**values)
            except ValueError as exc:  # (the options' own checks)
                raise SettingsError(f"ENGAGE_{part.upper()}_*: {exc}") from None
        env.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**env)


class SettingsError(ValueError):
    """An `ENGAGE_*` variable whose value cannot be used: the message names it."""


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _parse(name: str, raw: str, kind: type) -> Any:
    """One part option from its variable, as the type of its default (a bool from its
    spelling: `bool("false")` would be True)."""
    text = raw.strip()
    if kind is bool:
        if text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
        raise SettingsError(f"{name}={raw!r}: expected one of {', '.join(_TRUE + _FALSE)}")
    if kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise SettingsError(f"{name}={raw!r}: expected {what}") from None
    return raw


_PARTS: dict[str, Any] = {
    "consumer": ConsumerOptions,
    "producer": ProducerOptions,
    "retry": RetryOptions,
    "rocksdb": RocksDBOptions,
}
