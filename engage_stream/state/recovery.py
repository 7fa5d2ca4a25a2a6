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

Trusting a local database that is *ahead* of `C` (it stored a batch whose offset commit
never happened: killed between the checkpoint's STORED and COMMITTED steps) is right only
while this worker is the changelog's last writer. If another worker owned the partition
meanwhile, it reprocessed from `C`, and its records — later in the changelog, but for
source offsets below ours — would overwrite our newer values for the profiles it touched,
while the profiles only we touched would get the batch's events applied a second time
when the stream resumes from the other worker's commit (the 1M-event chaos run found
both). Such a database is rebuilt from the changelog instead (`must_rebuild`).
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


def must_rebuild(
    committed: int | None, local_source_offset: int, local_changelog_offset: int, end: int
) -> bool:
    """The local database holds an unconfirmed batch (source offsets at or beyond the
    committed offset) and the changelog (next offset `end`) has records after the last one
    it holds: another worker wrote the partition since, so the database cannot be
    continued — it must be recovered from scratch."""
    base = committed if committed is not None and committed >= 0 else 0
    ahead = local_source_offset >= 0 and local_source_offset + 1 > base
    return ahead and end > local_changelog_offset + 1
