"""The demo's pieces that need no broker (its throughput figure, finding definitions, the
journey part of its output over the worker's own stages in process), and the whole demo
on the real broker."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from engage_stream import demo
from engage_stream.config import Settings
from engage_stream.definitions.catalog import Catalog
from engage_stream.definitions.models import parse_date_ms
from engage_stream.journeys.catalog import JourneyCatalog
from engage_stream.journeys.loading import collect_journeys
from engage_stream.journeys.models import MIN_WAIT_ENV
from engage_stream.replay import Replay


def test_throughput_counts_only_events_seen_between_two_readings() -> None:
    # 165 events were already processed at the first reading: not part of the rate
    samples = [(10.0, 0.0), (10.1, 165.0), (10.6, 2165.0), (11.1, 4000.0)]
    assert demo.throughput(samples) == pytest.approx((3835.0, 1.0))


def test_throughput_is_not_made_up_from_a_single_reading() -> None:
    assert demo.throughput([(1.0, 0.0), (1.1, 4000.0)]) is None
    assert demo.throughput([(1.0, 4000.0), (1.1, 4000.0)]) is None
    assert demo.throughput([]) is None


def test_definitions_default_to_the_checkout_and_can_be_given(tmp_path: Path) -> None:
    assert demo.definitions_dir(None) == demo.TOPOLOGIES and demo.TOPOLOGIES.is_dir()
    assert demo.definitions_dir(tmp_path) == tmp_path


def test_a_missing_definitions_directory_is_a_clear_error_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_broker(*args: object, **kwargs: object) -> None:
        raise AssertionError("the broker must not be started")

    monkeypatch.setattr(demo.broker, "start", no_broker)
    missing = tmp_path / "nope"
    rc = demo.run_demo(Settings(), 10, 2, tmp_path / "kafka", 1, definitions_path=missing)
    assert rc == 2
    assert f"definitions {missing} not found" in capsys.readouterr().err
    monkeypatch.setattr(demo, "TOPOLOGIES", missing)
    assert demo.definitions_dir(None) is None
    err = capsys.readouterr().err
    assert "topologies/ of a source checkout" in err and "--definitions PATH" in err


# -- the live journey -------------------------------------------------------------------------
T0 = 1_796_205_600_000  # 2026-12-02T10:00:00Z


def test_the_demo_journey_needs_the_lowered_minimum_wait_and_stays_out_of_topologies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Second-scale waits validate only with ENGAGE_JOURNEY_MIN_WAIT_MS lowered, so the file
    is not under topologies/ (`validate topologies/` keeps the 5-minute minimum), and the
    lowered minimum does not outlive the demo's own load and apply."""
    monkeypatch.delenv(MIN_WAIT_ENV, raising=False)
    assert demo.DEMO_JOURNEY.is_file()
    assert demo.TOPOLOGIES not in demo.DEMO_JOURNEY.parents
    _, problems = collect_journeys(demo.DEMO_JOURNEY)
    assert [p.message for p in problems] == ["out of range: between 5 minutes and 182 days"]
    found = demo.load_demo_journeys(demo.DEMO_JOURNEY, [])
    assert found is not None and MIN_WAIT_ENV not in os.environ
    ((journey, _),) = found
    assert demo._waits(journey) == "15 s" and journey.event_triggered
    with demo.demo_min_wait():
        assert os.environ[MIN_WAIT_ENV] == str(demo.DEMO_MIN_WAIT_MS)
    assert MIN_WAIT_ENV not in os.environ
    monkeypatch.setenv(MIN_WAIT_ENV, "60000")
    with demo.demo_min_wait():
        pass
    assert os.environ[MIN_WAIT_ENV] == "60000"  # a value set before is put back


def test_the_demo_journey_file_matches_the_editor_schema() -> None:
    import json

    import jsonschema
    import yaml

    schema = json.loads((demo.TOPOLOGIES.parent / "schemas" / "journey.schema.json").read_text())
    jsonschema.validate(yaml.safe_load(demo.DEMO_JOURNEY.read_text()), schema)
    assert demo.DEMO_JOURNEY.read_text().startswith(
        "# yaml-language-server: $schema=../schemas/journey.schema.json"
    )


def test_without_the_journey_file_the_phase_is_skipped_not_failed(tmp_path: Path) -> None:
    assert demo.load_demo_journeys(tmp_path / "none.journey", []) == []


def test_a_demo_journey_the_demo_cannot_trigger_is_refused_with_its_location(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "classic.journey"
    path.write_text(
        "kind: journey\nkey: classic\nentry:\n  audience: vip_customers\n"
        "steps:\n  - {type: exit, key: done}\n"
    )
    definitions = demo.load_checked(str(demo.TOPOLOGIES))
    assert definitions is not None
    assert demo.load_demo_journeys(path, definitions) is None
    assert (
        f"{path}:3: classic.entry: the demo sends its journey's trigger" in capsys.readouterr().err
    )


def _journey_run(
    users: tuple[demo.JourneyUser, ...] = demo.JOURNEY_USERS,
) -> tuple[demo.JourneyWatch, list[str], list[tuple[str, dict[str, Any], int]]]:
    """The demo journey's users through the worker's own stages in process (`Replay`):
    identified, then the trigger a second later, the clock past the wait. Returns a watch
    (not yet fed), what it printed, and the records with a broker timestamp 0.3 s after
    each record's instant."""
    found = demo.load_demo_journeys(demo.DEMO_JOURNEY, [])
    assert found
    journey = found[0][0]
    settings = Settings()
    replay = Replay(Catalog({}, journeys=JourneyCatalog.from_definitions([journey])), settings)
    list(replay.run([orjson.dumps(u.identify(T0)) for u in users]))
    profiles = {replay.graph.lookup("user_id", u.user_id): u for u in users}
    printed: list[str] = []
    watch = demo.JourneyWatch(journey, settings, profiles, say=printed.append)
    triggers = [orjson.dumps(e) for e in watch.triggers(T0 + 1000)]
    out = []
    for r in replay.run(triggers, T0 + 60_000):
        at = r.value.get("at") or parse_date_ms(r.value["timestamp"])
        out.append((r.topic, r.value, at + 300))
    return watch, printed, out


def test_the_journey_part_of_the_demo_output_from_the_real_stages() -> None:
    watch, printed, records = _journey_run()
    assert watch.problems() == ["journey-1: no instance_entered", "journey-2: no instance_entered"]
    for topic, value, ts in records:
        watch(topic, value, ts)
    assert watch.problems() == []
    text = "\n".join(printed)
    lines = {_columns(line) for line in printed}
    assert lines >= {
        "journeys journey-1 instance_entered",
        "journeys journey-2 instance_entered",
        "journeys journey-1 step_entered",
        "journeys journey-1 step_exited",
        "journeys journey-1 destination_send",
        "journeys journey-1 message_request",
        "journeys journey-2 message_skipped",
        "journeys journey-1 instance_completed",
        "journeys journey-2 instance_completed",
    }
    assert "on 'Signed Up'" in text
    assert "wait_15s                 10:00:01.000Z  due 10:00:16.000Z (+15 s)" in text
    assert (
        "wait_15s                 10:00:16.000Z  its due instant (entered + 15 s); "
        "step fired 0.3 s after its due instant"
    ) in text
    assert "is_pro -> true" in text and "is_pro -> false" in text
    assert "[out.braze] journey-1  track 'Pro Welcome'" in text
    assert "[messages ] journey-1  email 'welcome' to journey-1@example.com" in text
    assert '"first_name":"Ada"' in text and "idempotency_key jm_" in text
    assert "email to journey-2@example.com not sent: subscription state 'none'" in text
    # immediate steps' entered/exited records are counted, not printed
    assert len(printed) < len(records)
    assert not any("sync_pro   " in line and "step_" in line for line in printed)
    summary = "\n".join(watch.summary())
    assert "2 instances entered and finished" in summary
    assert (
        "wait_15s (15 s) left at exactly its due instant each time, fired 0.3 s, 0.3 s" in summary
    )
    assert "email requested for journey-1 (subscribed), not sent to journey-2" in summary


def test_the_journey_checks_fail_on_what_is_missing_late_or_early() -> None:
    watch, _, records = _journey_run()
    journeys = Settings().topics.journeys

    def fed(keep: Any, change: Any = lambda t, v, ts: (t, v, ts)) -> list[str]:
        w = demo.JourneyWatch(watch.journey, Settings(), watch.users, say=lambda _: None)
        for topic, value, ts in records:
            if keep(topic, value):
                w(*change(topic, dict(value), ts))
        return w.problems()

    assert fed(lambda t, v: True) == []
    assert fed(lambda t, v: t != Settings().topics.messages) == [
        f"journey-1: message request {_one(records, 'message_request')['message_id']} "
        "not on engage.messages"
    ]
    assert fed(lambda t, v: t != Settings().topics.output("braze"))[0].startswith(
        "journey-1: track personas_"
    )
    assert fed(lambda t, v: v.get("type") != "instance_completed") == [
        "journey-1: instance not finished",
        "journey-2: instance not finished",
    ]
    assert fed(lambda t, v: not (v.get("type") == "step_exited" and v["step"] == "wait_15s"))[
        0
    ].startswith("journey-1: still in wait_15s (due 10:00:16.000Z)")

    def wait_exit(shift: int, produced: int) -> Any:
        def change(t: str, v: dict[str, Any], ts: int) -> tuple[str, dict[str, Any], int]:
            if t == journeys and v.get("type") == "step_exited" and v["step"] == "wait_15s":
                v["at"] += shift
                return t, v, v["at"] + produced
            return t, v, ts

        return change

    late = fed(lambda t, v: True, wait_exit(1000, 300))
    assert late[0] == (
        "journey-1: wait_15s left at 10:00:17.000Z (timer:1796205616000), "
        "not at its due instant 10:00:16.000Z"
    )
    early = fed(lambda t, v: True, wait_exit(0, -500))
    assert early[0] == "journey-1: wait_15s fired before its due instant (produced 10:00:15.500Z)"


def test_subscription_gating_is_checked_both_ways() -> None:
    """A subscribed user whose email is skipped, or one without a state whose email is
    requested, fails the demo."""
    swapped = tuple(
        demo.JourneyUser(u.user_id, u.first_name, u.plan, not u.subscribed)
        for u in demo.JOURNEY_USERS
    )
    watch, _, records = _journey_run()
    w = demo.JourneyWatch(
        watch.journey,
        Settings(),
        {pid: swapped[demo.JOURNEY_USERS.index(u)] for pid, u in watch.users.items()},
        say=lambda _: None,
    )
    for record in records:
        w(*record)
    assert w.problems() == [
        "journey-1: no subscription state, but its email was not skipped as 'none'",
        "journey-2: subscribed, but its email was not requested",
    ]


def test_records_of_other_journeys_users_and_audiences_are_ignored() -> None:
    watch, printed, records = _journey_run()
    topics = Settings().topics
    watch(topics.journeys, {**records[0][1], "journey": "win_back"}, T0)
    watch(topics.journeys, {**records[0][1], "profile_id": "use_someone_else"}, T0)
    audience_call = {
        "type": "identify",
        "userId": "journey-1",
        "traits": {"big_spenders": True},
        "context": {"personas": {"computation_class": "audience", "computation_id": "aud_1"}},
    }
    watch(topics.output("braze"), audience_call, T0)
    watch(topics.changes, {"key": "x"}, T0)
    assert watch.records == [] and printed == []


def test_the_demo_users_trigger_the_journeys_entry_event() -> None:
    watch, _, _ = _journey_run()
    events = watch.triggers(T0)
    assert [e["event"] for e in events] == ["Signed Up", "Signed Up"]
    assert [e["userId"] for e in events] == ["journey-1", "journey-2"]
    subscribed, unsubscribed = (u.identify(T0) for u in demo.JOURNEY_USERS)
    assert subscribed["context"]["messaging_subscriptions"][0]["status"] == "SUBSCRIBED"
    assert "messaging_subscriptions" not in unsubscribed["context"]
    assert set(watch.topics) == {
        Settings().topics.journeys,
        Settings().topics.messages,
        Settings().topics.output("braze"),
    }


def test_a_send_arriving_before_its_step_record_is_printed_right_after_it() -> None:
    """Topics interleave as they arrive; the output still reads in causal order."""
    watch, printed, records = _journey_run()
    journeys = Settings().topics.journeys
    for record in sorted(records, key=lambda r: r[0] == journeys):  # the other topics first
        watch(*record)
    kinds = [_columns(line) for line in printed if " journey-1 " in line]
    send = kinds.index("journeys journey-1 destination_send")
    assert kinds[send + 1] == "out.braze journey-1 track"
    request = kinds.index("journeys journey-1 message_request")
    assert kinds[request + 1] == "messages journey-1 email"
    watch.flush()
    assert len(printed) == len(kinds) + 6  # journey-2's lines; nothing left to flush


def test_a_send_whose_step_record_never_arrives_is_printed_at_the_end() -> None:
    watch, printed, records = _journey_run()
    (message,) = [r for r in records if r[0] == Settings().topics.messages]
    watch(*message)
    assert printed == []
    watch.flush()
    assert printed[0].startswith("  [messages ] journey-1  email 'welcome'")
    assert printed[0].endswith("(its step record did not arrive)")


@pytest.mark.broker
def test_the_whole_demo_exits_0_with_its_journey_part_on_the_broker(
    worker_settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`make demo`'s promise, on the session's broker with fewer sample events (the live
    audience window, 60 s, sets the time): exit 0, and the journey's records printed as
    they arrived, each user's in order, the wait at its due instant, the email requested
    for the subscribed user and skipped for the other."""
    monkeypatch.chdir(tmp_path)  # var/demo/: the worker's state, logs, write keys
    monkeypatch.delenv(MIN_WAIT_ENV, raising=False)
    rc = demo.run_demo(worker_settings, 400, 40, tmp_path / "kafka", 1)
    out = capsys.readouterr().out
    assert rc == 0, out[-6000:]
    assert f"using the Kafka broker already on {worker_settings.broker}" in out
    assert f"journey demo_welcome from {demo.DEMO_JOURNEY} ({MIN_WAIT_ENV}=1000" in out
    assert MIN_WAIT_ENV not in os.environ
    part = out[out.index("\njourney: 'demo_welcome'") :]
    lines = [line for line in part.splitlines() if line.startswith("  [")]
    # one topic's records keep their order per profile; a send's record on its own topic
    # comes after the step record that made it (held until then if it arrives first)
    one = [_columns(line) for line in lines if " journey-1 " in line]
    assert [c for c in one if c.startswith("journeys ")] == [
        "journeys journey-1 instance_entered",
        "journeys journey-1 step_entered",
        "journeys journey-1 step_exited",
        "journeys journey-1 step_exited",
        "journeys journey-1 destination_send",
        "journeys journey-1 message_request",
        "journeys journey-1 instance_completed",
    ]
    assert one.index("out.braze journey-1 track") > one.index("journeys journey-1 destination_send")
    assert one.index("messages journey-1 email") > one.index("journeys journey-1 message_request")
    journey_1 = [line for line in lines if line.startswith("  [journeys ] journey-1")]
    assert "wait_15s" in journey_1[2] and "its due instant (entered + 15 s)" in journey_1[2]
    assert "step fired " in journey_1[2] and "is_pro -> true" in journey_1[3]
    two = [line for line in lines if " journey-2 " in line]
    assert [_columns(line) for line in two] == [
        "journeys journey-2 instance_entered",
        "journeys journey-2 step_entered",
        "journeys journey-2 step_exited",
        "journeys journey-2 step_exited",
        "journeys journey-2 message_skipped",
        "journeys journey-2 instance_completed",
    ]
    assert "is_pro -> false" in two[3] and "subscription state 'none'" in two[4]
    assert "wait_15s (15 s) left at exactly its due instant each time" in part
    assert "every journey record there" in out


def _one(records: list[tuple[str, dict[str, Any], int]], kind: str) -> dict[str, Any]:
    (value,) = [v for _, v, _ in records if v.get("type") == kind]
    return value


def _columns(line: str) -> str:
    """`  [journeys ] journey-1  step_exited ...` -> `journeys journey-1 step_exited`."""
    label, rest = line.strip()[1:].split("]", 1)
    return " ".join([label.strip(), *rest.split()[:2]])
