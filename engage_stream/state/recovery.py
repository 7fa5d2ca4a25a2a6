"""Which changelog records recovery may apply — the rule that makes restarts exact.

Every changelog record carries the source offset of the batch that wrote it. A checkpoint
writes, in order: outputs + changelog (flushed), then the local RocksDB batch; the consumer
offset is committed only after that. So at recovery time, with C the group's committed
offset for the source partition and M the last source offset the local database holds:

- everything below `C` is final: the changelog's records for it must be applied;
- records tagged `>= max(C, M + 1)` came from batches that will be processed again (or
  were never confirmed locally) and must be skipped, or their effects would apply twice.

After recovery the database holds every source offset `< resume_from`, which is stored as
its source marker; the stream then skips records below it.
"""

from __future__ import annotations

SOURCE_HEADER = "engage.src"


def resume_from(committed: int | None, local_source_offset: int) -> int:
    """First source offset whose effects are NOT in state after recovery."""
    return max(
        committed if committed is not None and committed >= 0 else 0, local_source_offset + 1
    )


def tag_of(headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...] | None) -> int | None:
    for k, v in headers or ():
        if k == SOURCE_HEADER:
            return int(v)
    return None


def should_apply(tag: int | None, resume: int) -> bool:
    return tag is not None and tag < resume
