"""The dead-letter record: the original bytes as the value, why and where-from as headers.

Keeping the value byte-for-byte lets an operator fix and re-produce it unchanged; headers
follow the Kafka Connect `__connect.errors.*` convention under an `engage.dlq.` prefix.
"""

from __future__ import annotations

from pydantic import BaseModel

HEADER_PREFIX = "engage.dlq."


class DeadLetter(BaseModel):
    reason: str
    detail: str
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            (HEADER_PREFIX + name, str(value).encode())
            for name, value in self.model_dump().items()
            if value is not None
        ]

    @classmethod
    def from_headers(
        cls, headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...]
    ) -> DeadLetter:
        fields = {
            k[len(HEADER_PREFIX) :]: v.decode() for k, v in headers if k.startswith(HEADER_PREFIX)
        }
        return cls.model_validate(fields)
