"""The dead-letter record: the original bytes as the value, why and where-from as headers.

Keeping the value byte-for-byte lets an operator fix and re-produce it unchanged; headers
follow the Kafka Connect `__connect.errors.*` convention under an `engage.dlq.` prefix.

Except when it cannot be produced at all: an input topic accepts records up to its
`max.message.bytes` (about 1 MB by default), and the same bytes plus these headers no
longer fit a dead-letter topic with the same default — producing would fail on every
retry and stop the stream. A value (or key) beyond `MAX_VALUE_BYTES` / `MAX_KEY_BYTES` is
cut there, with `engage.dlq.original_bytes` giving its full length and
`engage.dlq.original_sha256` its digest; the whole original is still at the topic,
partition and offset the headers name.
"""

from __future__ import annotations

import hashlib

from pydantic import BaseModel

from engage_stream.records import OutgoingRecord, SourceRecord, origin_of

HEADER_PREFIX = "engage.dlq."
MAX_VALUE_BYTES = 1_000_000  # under the broker's default max.message.bytes (1,048,588)
MAX_KEY_BYTES = 16_384


class DeadLetter(BaseModel):
    reason: str
    detail: str
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None
    original_bytes: int | None = None  # set when the value was cut
    original_sha256: str | None = None
    # Set when a stage after ingest dead-letters an internal record: its coordinates
    # `<topic>/<partition>/<offset>`; topic / partition / offset name the input record
    # with the original bytes, which `stream.originals` reads back for the value.
    stage_record: str | None = None

    @classmethod
    def of(cls, rec: SourceRecord, reason: str, detail: str, internal: bool = True) -> DeadLetter:
        """Why `rec` is dead-lettered, and where its original is. An input record
        (`internal=False`, ingest) is its own original, whatever headers it came with."""
        origin = origin_of(rec) if internal else None
        if origin is None:
            return cls(
                reason=reason,
                detail=detail[:1000],
                topic=rec.topic,
                partition=rec.partition,
                offset=rec.offset,
                timestamp_ms=rec.timestamp,
            )
        return cls(
            reason=reason,
            detail=detail[:1000],
            topic=origin[0],
            partition=origin[1],
            offset=origin[2],
            timestamp_ms=rec.timestamp,
            stage_record=f"{rec.topic}/{rec.partition}/{rec.offset}",
        )

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            (HEADER_PREFIX + name, str(value).encode())
            for name, value in self.model_dump().items()
            if value is not None
        ]

    def record(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        extra: list[tuple[str, bytes]] | None = None,
    ) -> OutgoingRecord:
        """The record to produce to the dead-letter `topic`, the original cut to size."""
        value = value or b""
        if key is not None and len(key) > MAX_KEY_BYTES:
            key = key[:MAX_KEY_BYTES]
        dl = self
        if len(value) > MAX_VALUE_BYTES:
            dl = self.model_copy(
                update={
                    "original_bytes": len(value),
                    "original_sha256": hashlib.sha256(value).hexdigest(),
                }
            )
            value = value[:MAX_VALUE_BYTES]
        return OutgoingRecord(topic, key, value, [*dl.headers(), *(extra or [])])

    @classmethod
    def from_headers(
        cls, headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...]
    ) -> DeadLetter:
        fields = {
            k[len(HEADER_PREFIX) :]: v.decode() for k, v in headers if k.startswith(HEADER_PREFIX)
        }
        return cls.model_validate(fields)
