"""Records as they cross a stage boundary, without any Kafka client's types.

A stage reads `SourceRecord`s (aiokafka's `ConsumerRecord` has these attributes, and so
does `replay`'s in-memory record) and asks the checkpoint to produce `OutgoingRecord`s, so
the stages run the same in the worker, in `replay` and in tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

Headers = list[tuple[str, bytes]]

# On input records: the source (write key) an event came in through; the collector sets it.
SOURCE_ID_HEADER = "engage.source_id"


class SourceRecord(Protocol):
    """One consumed record: where it came from and what it holds."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def timestamp(self) -> int: ...

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class InputRecord:
    """A `SourceRecord` built in memory (replay, tests)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


@dataclass(slots=True)
class OutgoingRecord:
    """A record a stage wants produced; `partition` None: placed by its key (murmur2)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers | None = None
    partition: int | None = None
