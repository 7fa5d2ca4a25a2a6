"""The chaos comparison finds each kind of failure it reports, and does not count an
at-least-once resend as one."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from bench.chaos.compare import Outputs, compare


def change(
    mid: str,
    profile: str,
    key: str,
    value: Any,
    at: int = 1,
    kind: str = "audience",
    previous: Any = None,
) -> bytes:
    return orjson.dumps(
        {
            "message_id": mid,
            "kind": kind,
            "profile_id": profile,
            "key": key,
            "version": 1,
            "value": value,
            "previous": previous,
            "at_ms": at,
        }
    )


BASELINE = [
    change("m1", "p1", "big", True),
    change("m2", "p2", "big", True),
    change("m3", "p1", "big", False, at=2),
]


def test_identical_outputs_compare_exact() -> None:
    result = compare(Outputs.of(BASELINE), Outputs.of(BASELINE))
    assert result.exact
    assert (result.lost, result.divergent, result.duplicates, result.resends) == (0, 0, 0, 0)


def test_a_byte_identical_resend_is_counted_but_is_no_failure() -> None:
    run = Outputs.of([*BASELINE[:2], BASELINE[1], BASELINE[2]])
    result = compare(run, Outputs.of(BASELINE))
    assert result.exact
    assert result.resends == 1 and result.duplicates == 0


def test_a_missing_last_change_leaves_a_divergent_final_value() -> None:
    result = compare(Outputs.of(BASELINE[:2]), Outputs.of(BASELINE))
    assert result.divergent == 1  # p1 stays in `big` without its exit
    assert result.only_in_baseline == 1
    assert not result.ok


def test_a_final_value_missing_from_the_run_is_lost() -> None:
    result = compare(Outputs.of(BASELINE[:1]), Outputs.of(BASELINE))
    assert result.lost == 1  # p2 never entered
    assert not result.ok


def test_missing_input_events_count_as_lost() -> None:
    result = compare(Outputs.of(BASELINE), Outputs.of(BASELINE), events_missing=3)
    assert result.lost == 3 and not result.ok


def test_a_final_value_only_the_run_has_is_divergent() -> None:
    run = Outputs.of([*BASELINE, change("m4", "p2", "other", 5)])
    result = compare(run, Outputs.of(BASELINE))
    assert result.divergent == 1 and result.only_in_run == 1
    assert result.lost == 0 and not result.ok


def test_the_same_outcome_by_other_records_is_ok_but_not_exact() -> None:
    # p1 entered through another event (another messageId), ending where the baseline ends
    run = Outputs.of([change("m9", "p1", "big", True), *BASELINE[1:]])
    result = compare(run, Outputs.of(BASELINE))
    assert result.ok and not result.exact
    assert (result.only_in_run, result.only_in_baseline) == (1, 1)


def test_another_body_under_the_same_message_id_differs_record_by_record() -> None:
    run = Outputs.of([BASELINE[0], change("m2", "p2", "big", True, at=9), BASELINE[2]])
    result = compare(run, Outputs.of(BASELINE))
    assert result.other_body == 1 and result.ok and not result.exact


def test_two_bodies_under_one_message_id_within_the_run_are_a_duplicate() -> None:
    contradicting = change("m2", "p2", "big", False)
    run = Outputs.of([*BASELINE, contradicting])
    result = compare(run, Outputs.of(BASELINE))
    assert result.duplicates == 1 and not result.ok


def test_entered_and_exited_is_the_outcome_of_never_entered() -> None:
    base = Outputs.of(BASELINE)
    run = Outputs.of([BASELINE[1]])  # p1 never entered
    result = compare(run, base)
    assert result.ok and result.only_in_baseline == 2


def test_a_null_trait_is_no_value_but_a_false_trait_is_one() -> None:
    base = Outputs.of([*BASELINE, change("m5", "p3", "t", None, kind="computed_trait")])
    assert compare(Outputs.of(BASELINE), base).ok
    base = Outputs.of([*BASELINE, change("m6", "p3", "t", False, kind="computed_trait")])
    assert compare(Outputs.of(BASELINE), base).lost == 1


def test_a_reversal_at_one_instant_the_baseline_netted_is_counted_but_exact() -> None:
    # the run's batch ended between the two events; the baseline's held both and netted them
    run = Outputs.of(
        [
            *BASELINE,
            change("m7", "p2", "other", True, at=5),
            change("m8", "p2", "other", False, at=5, previous=True),
            change("m9", "p2", "score", 3, at=5, kind="computed_trait"),
            change("m10", "p2", "score", None, at=5, kind="computed_trait", previous=3),
        ]
    )
    result = compare(run, Outputs.of(BASELINE))
    assert (result.only_in_run, result.same_instant) == (4, 4)
    assert result.exact
    assert compare(Outputs.of(BASELINE), run).same_instant == 4  # the other way round too


@pytest.mark.parametrize(
    "second",
    [
        change("m8", "p2", "other", False, at=6, previous=True),  # another instant
        change("m8", "p3", "other", False, at=5, previous=True),  # another profile
        change("m8", "p2", "else", False, at=5, previous=True),  # another definition
    ],
)
def test_only_a_true_reversal_at_one_instant_is_excused(second: bytes) -> None:
    run = Outputs.of([*BASELINE, change("m7", "p2", "other", True, at=5), second])
    result = compare(run, Outputs.of(BASELINE))
    assert result.same_instant == 0 and not result.exact
