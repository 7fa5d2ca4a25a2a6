"""Records as they cross a stage boundary, without any Kafka client's types.

A stage reads `SourceRecord`s (aiokafka's `ConsumerRecord` has these attributes, and so
does `replay`'s in-memory record) and asks the checkpoint to produce `OutgoingRecord`s, so
the stages run the same in the worker, in `replay` and in tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

Headers = list[tuple[str, bytes]]

# On input records: the source (write key) an event came in through; the collector sets it.
SOURCE_ID_HEADER = "engage.source_id"
# On internal records (identity requests, profile-events): the input record an event was
# read from, `<topic>/<partition>/<offset>`, so a later stage that dead-letters it names
# where the original bytes are (topic names cannot contain "/").
ORIGIN_HEADER = "engage.origin"


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

    @property
    def headers(self) -> Sequence[tuple[str, bytes]] | None: ...


@dataclass(frozen=True, slots=True)
class InputRecord:
    """A `SourceRecord` built in memory (replay, tests)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()


def origin_header(rec: SourceRecord) -> tuple[str, bytes]:
    """Ingest's header naming the input record `rec` (whatever headers it came with)."""
    return ORIGIN_HEADER, f"{rec.topic}/{rec.partition}/{rec.offset}".encode()


def carried_origin(rec: SourceRecord) -> Headers | None:
    """An internal record's origin header, for what a stage derives from it."""
    for k, v in rec.headers or ():
        if k == ORIGIN_HEADER:
            return [(k, v)]
    return None


def origin_of(rec: SourceRecord) -> tuple[str, int, int] | None:
    """The input record an internal record was derived from, when it says."""
    for k, v in rec.headers or ():
        if k == ORIGIN_HEADER:
            try:
                topic, partition, offset = v.decode().rsplit("/", 2)
                return topic, int(partition), int(offset)
            except ValueError:
                return None
    return None


@dataclass(slots=True)
class OutgoingRecord:
    """A record a stage wants produced; `partition` None: placed by its key (murmur2)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers | None = None
    partition: int | None = None
