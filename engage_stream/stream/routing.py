"""Which worker owns a profile: the profiles consumer group's own assignment.

Each worker joins the group with `client_id = engage-stream@<its base URL>`; the group
description (DescribeGroups) then says which URL holds which partition. Cached briefly and
refreshed on a miss, so a lookup after a rebalance finds the new owner.
"""

from __future__ import annotations

import asyncio
import time

from kafka import KafkaAdminClient

CLIENT_PREFIX = "engage-stream@"


def client_id_for(url: str) -> str:
    return CLIENT_PREFIX + url


class OwnerDirectory:
    def __init__(self, bootstrap: str, group_id: str, topic: str, ttl_s: float = 2.0) -> None:
        self.bootstrap, self.group_id, self.topic, self.ttl_s = bootstrap, group_id, topic, ttl_s
        self._owners: dict[int, str] = {}
        self._at = 0.0
        self._lock = asyncio.Lock()

    async def owner(self, partition: int) -> str | None:
        if partition not in self._owners or time.monotonic() - self._at > self.ttl_s:
            async with self._lock:
                if partition not in self._owners or time.monotonic() - self._at > self.ttl_s:
                    self._owners = await asyncio.to_thread(self._describe)
                    self._at = time.monotonic()
        return self._owners.get(partition)

    async def workers(self) -> set[str]:
        """Every worker URL that currently owns a partition."""
        await self.owner(-1)  # refreshes the directory when stale
        return set(self._owners.values())

    async def assignment(self) -> dict[str, set[int]]:
        """Each worker URL and the partitions it currently owns."""
        await self.owner(-1)  # refreshes the directory when stale
        out: dict[str, set[int]] = {}
        for p, url in self._owners.items():
            out.setdefault(url, set()).add(p)
        return out

    def _describe(self) -> dict[int, str]:
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="engage-routing")
        try:
            group = admin.describe_groups([self.group_id]).get(self.group_id) or {}
        finally:
            admin.close()
        owners: dict[int, str] = {}
        for member in group.get("members", []):
            client_id = member.get("client_id") or ""
            if not client_id.startswith(CLIENT_PREFIX):
                continue
            assignment = member.get("member_assignment") or {}
            for item in assignment.get("assigned_partitions", []):
                if item.get("topic") == self.topic:
                    for p in item.get("partitions", []):
                        owners[p] = client_id[len(CLIENT_PREFIX) :]
        return owners
