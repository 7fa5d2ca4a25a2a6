"""The chaos run's table: one row per baseline with every column the issue asks for."""

from __future__ import annotations

from bench.chaos.__main__ import details, table
from bench.chaos.cluster import FaultCounts
from bench.chaos.compare import Comparison
from bench.chaos.faults import Fault, Step
from bench.chaos.run import ChaosConfig, ChaosResult


def test_the_table_has_a_row_per_baseline_and_every_figure() -> None:
    vs_ref = Comparison(
        lost=0,
        divergent=2,
        duplicates=0,
        resends=7,
        only_in_baseline=3,
        only_in_run=4,
        other_body=5,
        same_instant=2,
    )
    vs_replay = Comparison(
        lost=1,
        divergent=0,
        duplicates=6,
        resends=7,
        only_in_baseline=0,
        only_in_run=0,
        other_body=0,
    )
    result = ChaosResult(
        config=ChaosConfig(events=1234),
        events=1234,
        steps=[Step(Fault.CRASH, 1.0)],
        counts=FaultCounts(kills=21, recoveries=20),
        vs_reference=vs_ref,
        vs_replay=vs_replay,
        control=None,
        reference_changes=10,
        chaos_changes=17,
    )
    lines = table(result).splitlines()
    assert [c.strip() for c in lines[0].strip("|").split("|")] == [
        "against",
        "events",
        "kills",
        "recoveries",
        "lost",
        "divergent",
        "duplicates",
        "resends",
        "records differing",
        "of them same-instant reversals",
    ]
    assert [c.strip() for c in lines[2].strip("|").split("|")] == [
        "uninterrupted run",
        "1,234",
        "21",
        "20",
        "0",
        "2",
        "0",
        "7",
        "12",
        "2",
    ]
    assert [c.strip() for c in lines[3].strip("|").split("|")] == [
        "replay",
        "1,234",
        "21",
        "20",
        "1",
        "0",
        "6",
        "7",
        "0",
        "0",
    ]
    assert not result.ok
    assert "only in the chaos run 4" in details(result)
