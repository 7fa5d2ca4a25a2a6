"""The `engage_journey_*` metrics: counters from the stage's journey outputs (what the worker
counts once a batch is durable, `stream.worker._count_profiles`), gauges from the
partitions' journey counts (`export_journey_gauges`), over the journeys scenario the real
profiles stage ran (`journey_scenario`)."""

from __future__ import annotations

from engage_stream import metrics
from engage_stream.journeys import counts as journey_counts
from engage_stream.stream import worker
from tests.api import journey_scenario as scenario
from tests.api.journey_scenario import DAY, T0

COUNTERS: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {
    ("engage_journey_entered_total", (("journey", "trial"),)): 7,
    ("engage_journey_entered_total", (("journey", "welcome"),)): 1,
    ("engage_journey_completed_total", (("journey", "trial"),)): 4,
    ("engage_journey_exited_total", (("journey", "trial"), ("reason", "exit_event"))): 1,
    ("engage_journey_steps_total", (("journey", "trial"), ("step", "wait_for_upgrade"))): 7,
    ("engage_journey_steps_total", (("journey", "trial"), ("step", "thanks"))): 1,
    ("engage_journey_steps_total", (("journey", "trial"), ("step", "nudge"))): 3,
    ("engage_journey_steps_total", (("journey", "welcome"), ("step", "cool_off"))): 1,
}
for _step, _outcome in (
    ("thanks", "requested"),
    ("nudge", "skipped_unsubscribed"),
    ("nudge", "skipped_none"),
    ("nudge", "skipped_no_address"),
):
    COUNTERS[
        "engage_journey_messages_total",
        (("journey", "trial"), ("step", _step), ("outcome", _outcome)),
    ] = 1


def sample(name: str, labels: tuple[tuple[str, str], ...]) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, dict(labels))


def test_counters_count_each_output_once_per_durable_batch() -> None:
    sc = scenario.run()
    before = {k: sample(*k) or 0.0 for k in COUNTERS}
    for p in sc.partitions:
        for result in p.results:
            worker._count_profiles(p.number, result)
    moved = {k: (sample(*k) or 0.0) - before[k] for k in COUNTERS}
    assert moved == {k: float(n) for k, n in COUNTERS.items()}
    # the counters agree with what the partitions stored in the same transactions
    totals: journey_counts.Counts = {}
    for p in sc.partitions:
        journey_counts.add(totals, journey_counts.read(p.db))
    assert (totals["trial"]["entered"], totals["trial"]["reached:nudge"]) == (7, 3)


def test_an_entry_skipped_is_counted_by_reason() -> None:
    """An event-triggered entry without its unique identifier is skipped, not entered."""
    sc = scenario.run()
    p = sc.partitions[0]
    key = ("engage_journey_entries_skipped_total", (("journey", "trial"),))
    labels = (*key[1], ("reason", "missing_identifier"))
    before = sample(key[0], labels) or 0.0
    entered = sample("engage_journey_entered_total", key[1]) or 0.0
    result = p.event(sc.users["subscribed"], T0 + 30_000, "Trial Started", properties={})
    worker._count_profiles(p.number, result)
    assert sample(key[0], labels) == before + 1
    assert sample("engage_journey_entered_total", key[1]) == entered


def in_step(journey: str, step: str) -> float | None:
    return sample("engage_journey_in_step", (("journey", journey), ("step", step)))


def active(journey: str) -> float | None:
    return sample("engage_journey_active", (("journey", journey),))


def test_gauges_follow_the_partition_counts_and_leave_no_stale_series() -> None:
    sc = scenario.run()

    worker.export_journey_gauges(sc.catalog.journeys, _totals(sc))
    assert (in_step("trial", "wait_for_upgrade"), active("trial")) == (2, 2)
    assert (in_step("welcome", "cool_off"), active("welcome")) == (1, 1)
    # every step of every known version is exported, 0 while empty
    assert in_step("trial", "thanks") == 0 and in_step("trial", "legacy_sms") == 0
    assert (in_step("sunset", "done"), active("sunset")) == (0, 0)
    assert active("broken") is None, "a body this worker cannot use runs nowhere"
    text = metrics.render().decode()
    assert 'engage_journey_in_step{journey="trial",step="wait_for_upgrade"} 2.0' in text

    # the holds time out and the welcome wait ends: the steps drain to 0, series kept
    sc.partitions[0].tick(T0 + 3 * DAY)
    sc.partitions[1].tick(T0 + 3 * DAY)
    worker.export_journey_gauges(sc.catalog.journeys, _totals(sc))
    assert (in_step("trial", "wait_for_upgrade"), active("trial")) == (0, 0)
    assert (in_step("welcome", "cool_off"), active("welcome")) == (0, 0)

    # welcome deleted: nothing moves its counts any more, its series go
    rest = scenario.catalog(2).journeys
    del rest.entries["welcome"]
    worker.export_journey_gauges(rest, _totals(sc))
    assert in_step("welcome", "cool_off") is None and active("welcome") is None
    assert active("trial") == 0


def _totals(sc: scenario.Scenario) -> journey_counts.Counts:
    totals: journey_counts.Counts = {}
    for p in sc.partitions:
        journey_counts.add(totals, journey_counts.read(p.db))
    return totals
