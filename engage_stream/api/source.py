"""What the web API reads from the worker it runs in (`WorkerState`), and the one adapter
that knows where a `stream.worker.Worker` keeps it (`WorkerSource`).

Why not hand the views the worker: they ask a handful of questions (which partition holds
this profile, is it here, who owns it, what is the audiences' progress), not for the
worker's parts (producer, partition manager, consumer group, runtime). Answering them in
one place lets the worker be rearranged without touching a view.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from engage_stream.broadcasts.recipients import Preview
from engage_stream.broadcasts.sending import Progress
from engage_stream.config import Settings
from engage_stream.definitions.catalog import Catalog
from engage_stream.journeys.counts import Counts
from engage_stream.profiles.record import ProfileRecord
from engage_stream.profiles.store import ProfileStore
from engage_stream.state.transaction import Transaction

if TYPE_CHECKING:
    from engage_stream.stream.definitions_topic import DefinitionRecord
    from engage_stream.stream.worker import Worker


@dataclass(frozen=True, slots=True)
class Health:
    ready: bool  # definitions loaded and every owned partition recovered
    roles: set[str]
    owned: set[int]  # assigned to this worker by the consumer group
    open: set[int]  # partitions whose state is open here (owned, or being let go)
    partition_status: dict[int, str]
    definitions_ready: bool


@dataclass(frozen=True, slots=True)
class PartitionRead:
    """One partition's profiles, read as of now, and that partition's clock."""

    store: ProfileStore
    clock: int


class WorkerState(Protocol):
    @property
    def url(self) -> str:
        """This worker's base URL, as its peers see it in the consumer group."""
        ...

    @property
    def catalog(self) -> Catalog:
        """The definitions in force (swapped whole when a new set arrives)."""
        ...

    def health(self) -> Health: ...

    def accepting(self) -> bool:
        """Whether profile lookups can be answered yet: the identity map is loaded (else
        a known identifier would look unknown) and the producer knows partition counts."""
        ...

    def resolve(self, id_type: str, value: str) -> str | None:
        """The canonical profile an identifier belongs to (the identity map), if known."""
        ...

    async def partition_of(self, profile_id: str) -> int:
        """The profile-events partition that holds this profile."""
        ...

    def owns(self, partition: int) -> bool: ...

    async def read(self, partition: int) -> PartitionRead:
        """An owned partition's state (waits for its recovery)."""
        ...

    async def owner(self, partition: int) -> str | None:
        """The URL of the worker that owns `partition`, None while nobody does."""
        ...

    async def assignment(self) -> dict[str, set[int]]:
        """Each worker's URL (this one's included) and the partitions the consumer group
        assigns it: what a peer may answer for."""
        ...

    def statuses(self) -> dict[str, str]:
        """Each definition's compute status as far as this worker's partitions go."""
        ...

    def local_sizes_by_partition(self) -> dict[int, dict[str, int]]:
        """Audience sizes in each of this worker's partitions."""
        ...

    async def local_members(self, key: str) -> list[ProfileRecord]:
        """An audience's members in this worker's partitions."""
        ...

    def local_journey_counts_by_partition(self) -> dict[int, Counts]:
        """Journey counts in each of this worker's partitions (new dicts: the caller adds
        to them)."""
        ...

    def local_broadcast_progress(self) -> list[Progress]:
        """Every broadcast's progress on this worker's partitions."""
        ...

    async def local_broadcast_preview(self, key: str, sample: int) -> Preview:
        """Who would receive a broadcast now, in this worker's partitions."""
        ...

    @property
    def settings(self) -> Settings:
        """The worker's settings (partitions, rates, topics: what an edit is published to)."""
        ...

    def definition_records(self) -> dict[bytes, DefinitionRecord]:
        """The definitions topic as this worker last read it (what an edit is planned on)."""
        ...


class WorkerSource:
    """`WorkerState` of a running `Worker`."""

    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    @property
    def url(self) -> str:
        return self._worker.url

    @property
    def catalog(self) -> Catalog:
        return self._worker.catalog

    def health(self) -> Health:
        w = self._worker
        return Health(
            ready=w.ready(),
            roles=set(w.roles),
            owned=w.owned(),
            open=set(w.partitions.open),
            partition_status=w.partitions.status(),
            definitions_ready=w.definitions_ready.is_set(),
        )

    def accepting(self) -> bool:
        w = self._worker
        return w.producer.ready and w.replica_ready.is_set()

    def resolve(self, id_type: str, value: str) -> str | None:
        return self._worker.replica.lookup(id_type, value)

    async def partition_of(self, profile_id: str) -> int:
        w = self._worker
        return await w.producer.partition_of(w.settings.topics.profile_events, profile_id.encode())

    def owns(self, partition: int) -> bool:
        return partition in self._worker.owned()

    async def read(self, partition: int) -> PartitionRead:
        ps = await self._worker.partitions.get(partition)
        return PartitionRead(ProfileStore(Transaction(ps.store)), ps.clock)

    async def owner(self, partition: int) -> str | None:
        return await self._worker.owners.owner(partition)

    async def assignment(self) -> dict[str, set[int]]:
        return await self._worker.owners.assignment()

    def statuses(self) -> dict[str, str]:
        return self._worker.statuses()

    def local_sizes_by_partition(self) -> dict[int, dict[str, int]]:
        return self._worker.local_sizes_by_partition()

    async def local_members(self, key: str) -> list[ProfileRecord]:
        return await self._worker.local_members(key)

    def local_journey_counts_by_partition(self) -> dict[int, Counts]:
        return self._worker.local_journey_counts_by_partition()

    def local_broadcast_progress(self) -> list[Progress]:
        return self._worker.local_broadcast_progress()

    async def local_broadcast_preview(self, key: str, sample: int) -> Preview:
        return await self._worker.local_broadcast_preview(key, sample)

    @property
    def settings(self) -> Settings:
        return self._worker.settings

    def definition_records(self) -> dict[bytes, DefinitionRecord]:
        return self._worker.definition_records
