"""A pause between failed metadata updates of the Kafka clients while the broker is away.

aiokafka's producer, when a partition it holds records for has no known leader, asks for a
metadata update and waits for it — and an update fails at once when the broker refuses
connections, so its sender loop and the client's metadata task spin: a whole core for as
long as the broker is down (measured: 35.3 CPU s in a 35.9 s outage, with records in flight;
issue #16.2). Here every failed update is followed by a pause before it reports, growing
from the client's `retry_backoff_ms` to `MAX_BACKOFF_S` while updates keep failing, reset
by the first that succeeds; whoever waits on the update waits that long, and nothing else
changes. Installed once per process for every client (the worker's and Faust's).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka.client import AIOKafkaClient

MAX_BACKOFF_S = 2.0

_original: Callable[..., Awaitable[bool]] | None = None


async def _metadata_update_with_backoff(self: Any, cluster_metadata: Any, topics: Any) -> bool:
    assert _original is not None
    ok = await _original(self, cluster_metadata, topics)
    if ok:
        self._engage_md_failures = 0
        return True
    failures = getattr(self, "_engage_md_failures", 0)
    self._engage_md_failures = failures + 1
    first = max(0.05, getattr(self, "_retry_backoff", 0.1))
    await asyncio.sleep(min(MAX_BACKOFF_S, first * 2**failures))
    return False


def install() -> None:
    """Idempotent."""
    global _original
    if _original is None:
        _original = AIOKafkaClient._metadata_update
        AIOKafkaClient._metadata_update = _metadata_update_with_backoff  # type: ignore[method-assign]
