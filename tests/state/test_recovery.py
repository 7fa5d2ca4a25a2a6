"""The recovery rule: which changelog records apply, and where processing resumes."""

from __future__ import annotations

import pytest

from engage_stream.state.recovery import (
    SOURCE_HEADER,
    must_rebuild,
    resume_from,
    should_apply,
    tag_of,
)


@pytest.mark.parametrize(
    ("committed", "local", "resume"),
    [
        (None, -1, 0),  # nothing committed, nothing local: start from scratch
        (100, -1, 100),  # local state lost: rebuild everything below the commit
        (100, 150, 151),  # local state ahead of the commit (crash before commit)
        (100, 80, 100),  # local behind (another worker advanced it): catch up to the commit
        (0, -1, 0),
    ],
)
def test_resume_point(committed: int | None, local: int, resume: int) -> None:
    assert resume_from(committed, local) == resume


@pytest.mark.parametrize(
    ("tag", "resume", "apply"),
    [(99, 100, True), (100, 100, False), (150, 100, False), (None, 100, False)],
)
def test_records_from_unconfirmed_batches_are_skipped(
    tag: int | None, resume: int, apply: bool
) -> None:
    assert should_apply(tag, resume) is apply


def test_tag_is_read_from_headers() -> None:
    assert tag_of([("other", b"1"), (SOURCE_HEADER, b"42")]) == 42
    assert tag_of(None) is None


@pytest.mark.parametrize(
    ("committed", "local_source", "local_changelog", "end", "rebuild"),
    [
        (100, 150, 40, 41, False),  # ahead of the commit, and the changelog's last writer
        (100, 150, 40, 45, True),  # ahead, and someone wrote the changelog since
        (None, 5, 10, 12, True),  # (nothing committed counts as 0)
        (100, 99, 40, 45, False),  # exactly at the commit: catching up is right
        (100, 80, 40, 45, False),  # behind the commit: catching up is right
        (100, -1, -1, 45, False),  # nothing local: recovered from scratch anyway
    ],
)
def test_a_database_ahead_of_the_commit_is_rebuilt_once_another_worker_wrote(
    committed: int | None, local_source: int, local_changelog: int, end: int, rebuild: bool
) -> None:
    assert must_rebuild(committed, local_source, local_changelog, end) is rebuild
