"""Collector settings from `ENGAGE_COLLECTOR_*` environment variables.

Kafka and topic names come from the worker's own `Settings` (`ENGAGE_BROKER`,
`ENGAGE_TOPIC_*`), so a collector and a worker started with the same environment agree on
where events go without repeating it.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator


class CollectorSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(8088, description="0 picks a free port (tests)")
    write_keys_file: Path | None = Field(
        None, description="YAML or JSON: write key -> source id (or {source_id, rate_limit})"
    )
    write_keys: SecretStr = Field(
        SecretStr(""),
        description="inline write keys, `key=source_id` separated by commas (added to the file's)",
    )
    cors_origins: tuple[str, ...] = Field(
        ("*",), description="origins browsers may send from; `*` allows any"
    )
    rate_limit: float = Field(
        0.0, description="requests per second per write key (0: unlimited); a key may override"
    )
    max_inflight_bytes: int = Field(
        64 * 1024 * 1024,
        description="event bytes handed to the producer and not yet acknowledged; past it 429",
    )
    produce_timeout_s: float = Field(
        5.0, description="longest wait for Kafka's acknowledgement before answering 503"
    )
    body_timeout_s: float = Field(10.0, description="longest time to receive a request body")
    retry_after_s: int = Field(5, description="Retry-After on 503 (Kafka unavailable) and 429")
    keepalive_timeout_s: float = 75.0
    in_worker: bool = Field(
        False, description="the worker also runs the collector (one process for the demo)"
    )
    trust_forwarded_for: bool = Field(
        False, description="take the client IP from X-Forwarded-For (behind a proxy)"
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split(cls, v: object) -> object:
        if isinstance(v, str):
            return tuple(o.strip().rstrip("/") for o in v.split(",") if o.strip())
        return v

    @property
    def any_origin(self) -> bool:
        return "*" in self.cors_origins

    @classmethod
    def from_env(cls, **overrides: object) -> CollectorSettings:
        values: dict[str, object] = {}
        for name in cls.model_fields:
            v = os.environ.get("ENGAGE_COLLECTOR_" + name.upper())
            if v is not None:
                values[name] = v
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def env(self) -> dict[str, str]:
        """The environment that makes a child process (a collector) use these settings."""
        out: dict[str, str] = {}
        for name, value in self.model_dump().items():
            if value is None:
                continue
            if isinstance(value, tuple):
                value = ",".join(value)
            elif isinstance(value, SecretStr):
                value = value.get_secret_value()
            out["ENGAGE_COLLECTOR_" + name.upper()] = str(value)
        return out
