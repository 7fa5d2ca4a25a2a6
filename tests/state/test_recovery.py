"""The recovery rule: which changelog records apply, and where processing resumes."""

from __future__ import annotations

import pytest

from engage_stream.state.recovery import SOURCE_HEADER, resume_from, should_apply, tag_of


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
