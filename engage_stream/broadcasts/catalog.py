"""The broadcasts a worker knows, as published on the definitions topic (`kind: broadcast`)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from engage_stream.broadcasts.models import BroadcastDefinition

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BroadcastEntry:
    definition: BroadcastDefinition
    version: int  # the evaluated version: what recipients and contents were published as
    published_at: int  # when this record was applied ("send now" starts then)

    @property
    def key(self) -> str:
        return self.definition.key

    @property
    def send_at(self) -> int:
        return self.definition.send_at(self.published_at)


@dataclass
class BroadcastCatalog:
    entries: dict[str, BroadcastEntry] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_definitions(
        cls, broadcasts: Iterable[BroadcastDefinition], published_at: int = 0
    ) -> BroadcastCatalog:
        return cls({b.key: BroadcastEntry(b, 1, published_at) for b in broadcasts})

    @classmethod
    def from_records(
        cls, records: Iterable[tuple[str, int, int, dict[str, Any]]]
    ) -> BroadcastCatalog:
        """(key, evaluated version, applied_at, body) as on the definitions topic."""
        cat = cls()
        for key, version, applied_at, body in records:
            try:
                cat.entries[key] = BroadcastEntry(
                    BroadcastDefinition.model_validate(body), version, applied_at
                )
            except ValidationError as exc:
                cat.failed[key] = f"invalid broadcast body: {exc.errors()[0]['msg']}"
                log.error("broadcast %s not sent: %s", key, cat.failed[key])
        return cat

    def __iter__(self) -> Iterator[BroadcastEntry]:
        return iter(self.entries[k] for k in sorted(self.entries))

    def __bool__(self) -> bool:
        return bool(self.entries)
