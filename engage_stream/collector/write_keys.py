"""Write keys: which source a request comes from.

Segment gives every source its own write key; events carry the source's id, never the
key. Keys are read from a YAML or JSON file (and/or inline from the environment) and are
never logged or forwarded: `WriteKeys` shows only how many it holds, and the collector
strips `writeKey` from every body before it reaches Kafka.

    # write-keys.yaml
    wk_web_2f9c1b: web                       # key: source id
    wk_backend_77aa01:
      source_id: backend
      rate_limit: 500                        # requests/s for this key (default: collector's)
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from engage_stream.collector.settings import CollectorSettings


class Source(BaseModel):
    model_config = ConfigDict(frozen=True)

    source_id: str = Field(min_length=1, max_length=200)
    rate_limit: float | None = Field(
        None, ge=0, description="requests/s for this key; None: the collector's default"
    )

    @field_validator("source_id")
    @classmethod
    def _printable(cls, v: str) -> str:
        if not v.isprintable() or v != v.strip():
            raise ValueError("must be printable, without surrounding spaces")
        return v


class WriteKeyError(ValueError):
    """A write-key file or setting that cannot be used; says where, never the key."""


class WriteKeys:
    def __init__(self, sources: Mapping[str, Source]) -> None:
        self._sources = dict(sources)

    def __len__(self) -> int:
        return len(self._sources)

    def __repr__(self) -> str:
        return f"WriteKeys({len(self._sources)} keys, sources={self.source_ids()})"

    def source_ids(self) -> list[str]:
        return sorted({s.source_id for s in self._sources.values()})

    def lookup(self, key: str | None) -> Source | None:
        """The key's source. Compared with every key in constant time (`hmac.compare_digest`),
        so how long a wrong guess takes says nothing of how close it was."""
        if not key:
            return None
        given = key.encode()
        found = None
        for known, source in self._sources.items():
            if hmac.compare_digest(known.encode(), given):
                found = source
        return found

    @classmethod
    def parse(cls, data: Any, where: str) -> WriteKeys:
        """{key: source_id | {source_id, rate_limit}} → WriteKeys; errors name the entry by
        position, not by its key."""
        if not isinstance(data, Mapping):
            raise WriteKeyError(f"{where}: expected a mapping of write key to source id")
        sources: dict[str, Source] = {}
        for i, (key, value) in enumerate(data.items(), start=1):
            if not isinstance(key, str) or not key or not key.isprintable() or ":" in key:
                raise WriteKeyError(
                    f"{where}: entry {i}: a write key is a non-empty printable string without ':'"
                )
            try:
                sources[key] = (
                    Source(source_id=value)
                    if isinstance(value, str)
                    else Source.model_validate(value)
                )
            except ValidationError as exc:
                first = exc.errors(include_url=False)[0]
                loc = ".".join(str(p) for p in first["loc"]) or "value"
                raise WriteKeyError(f"{where}: entry {i}: {loc}: {first['msg']}") from None
        return cls(sources)

    @classmethod
    def load_file(cls, path: Path) -> WriteKeys:
        try:
            text = path.read_text()
        except OSError as exc:
            raise WriteKeyError(
                f"{path}: cannot read the write-key file ({exc.strerror})"
            ) from None
        try:
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except json.JSONDecodeError as exc:
            raise WriteKeyError(f"{path}: not valid JSON: {exc}") from None
        except yaml.YAMLError as exc:
            # PyYAML quotes the offending line, which may hold a key: position only.
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise WriteKeyError(f"{path}: not valid YAML{at}") from None
        return cls.parse(data or {}, str(path))

    @classmethod
    def parse_inline(cls, text: str, where: str = "ENGAGE_COLLECTOR_WRITE_KEYS") -> WriteKeys:
        data: dict[str, str] = {}
        for i, part in enumerate((p.strip() for p in text.split(",") if p.strip()), start=1):
            key, sep, source = part.partition("=")
            if not sep or not key.strip() or not source.strip():
                raise WriteKeyError(f"{where}: entry {i}: expected key=source_id")
            data[key.strip()] = source.strip()
        return cls.parse(data, where)

    @classmethod
    def from_settings(cls, config: CollectorSettings) -> WriteKeys:
        """The file's keys plus the inline ones (inline wins on a repeated key)."""
        sources: dict[str, Source] = {}
        if config.write_keys_file is not None:
            sources.update(cls.load_file(config.write_keys_file)._sources)
        inline = config.write_keys.get_secret_value()
        if inline:
            sources.update(cls.parse_inline(inline)._sources)
        return cls(sources)
