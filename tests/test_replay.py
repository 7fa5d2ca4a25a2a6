"""`engage-stream replay`: the worker's processing path over a file, no Kafka — the offline
backtest and the end-to-end check of engine + outputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from engage_stream.definitions.catalog import Catalog
from engage_stream.definitions.loader import load_definitions, parse_text
from engage_stream.replay import Replay
from engage_stream.sample_data import generate

ROOT = Path(__file__).resolve().parent.parent

CART = """
- kind: audience
  key: cart_abandoners
  conditions:
    - event: Product Added
      within: 7 days
      then_not:
        event: Order Completed
        within: 1 day
  destinations:
    - name: braze
      identify: true
      track: true
- kind: computed_trait
  key: orders
  type: counter
  event: Order Completed
  destinations:
    - name: braze
"""


def msg(uid: str, event: str, ts: str, mid: str, **props: Any) -> bytes:
    return orjson.dumps(
        {
            "type": "track",
            "userId": uid,
            "event": event,
            "timestamp": ts,
            "messageId": mid,
            "properties": props,
        }
    )


EVENTS = [
    msg("u1", "Product Added", "2026-01-01T10:00:00Z", "a1", product_id="p1"),
    msg("u2", "Product Added", "2026-01-01T11:00:00Z", "a2", product_id="p2"),
    msg("u2", "Order Completed", "2026-01-01T15:00:00Z", "o2", revenue=10),
    b'{"type": "track", "event": "No Ids"}',
]


def catalog(text: str) -> Catalog:
    defs, problems = parse_text(text, "t.yaml")
    assert not problems
    return Catalog.from_definitions(d for d, _ in defs)


def user_of(change: dict[str, Any]) -> str:
    """The userId of the profile an engage.changes record is about."""
    return next(x["id"] for x in change["external_ids"] if x["type"] == "user_id")


def run(text: str, lines: list[bytes], until: int | None) -> list[dict[str, Any]]:
    replay = Replay(catalog(text))
    return [orjson.loads(r.to_json()) for r in replay.run(lines, until)]


def test_window_outcome_fires_when_the_clock_passes_the_boundary() -> None:
    until = 1767312000000  # 2026-01-02T00:00:00Z: u1's day without an order has not passed
    before = run(CART, EVENTS, until)
    assert not [r for r in before if r["value"].get("key") == "cart_abandoners"]
    later = run(CART, EVENTS, until + 86_400_000)
    entered = [
        r
        for r in later
        if r["topic"] == "engage.changes" and r["value"]["key"] == "cart_abandoners"
    ]
    # u1 entered at the boundary: a day after the add, with no order; u2 ordered in time
    assert [(user_of(r["value"]), r["value"]["value"], r["value"]["at"]) for r in entered] == [
        ("u1", True, "2026-01-02T10:00:00.000Z")
    ]
    assert all(r["key"].startswith("use_") for r in entered), "keyed by the canonical profile"
    braze = [r for r in later if r["topic"] == "engage.out.braze"]
    assert {(r["value"]["type"], r["value"].get("event")) for r in braze} >= {
        ("identify", None),
        ("track", "Audience Entered"),
    }
    orders = [r["value"] for r in later if r["value"].get("key") == "orders"]
    assert [(user_of(c), c["value"]) for c in orders] == [("u2", 1)]


def test_replay_is_deterministic() -> None:
    lines = [orjson.dumps(e) for e in generate(3000, 150, 1767225600000, 14 * 86_400_000)]
    definitions = load_definitions(ROOT / "topologies")
    a = [r.to_json() for r in Replay(Catalog.from_definitions(definitions)).run(lines, None)]
    b = [r.to_json() for r in Replay(Catalog.from_definitions(definitions)).run(lines, None)]
    assert a and a == b


def test_cli_prints_json_lines_and_reports_skipped_input(tmp_path: Path) -> None:
    defs = tmp_path / "defs.yaml"
    defs.write_text(CART)
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(EVENTS) + b"\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "engage_stream",
            "replay",
            "--definitions",
            str(defs),
            "--events",
            str(events),
            "--until",
            "2026-01-03T00:00:00Z",
        ],
        capture_output=True,
        check=True,
        cwd=ROOT,
    )
    records = [orjson.loads(line) for line in proc.stdout.splitlines()]
    assert {r["topic"] for r in records} == {"engage.changes", "engage.out.braze"}
    assert "missing_id" in proc.stderr.decode()
    assert "replayed 3 events (1 invalid" in proc.stderr.decode()


def test_cli_validate_reports_file_line_and_location(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: audience\nkey: x\nconditions:\n  - event: A\n    within: 9 years\n")
    proc = subprocess.run(
        [sys.executable, "-m", "engage_stream", "validate", str(bad)],
        capture_output=True,
        cwd=ROOT,
    )
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert f"{bad}:5: x.conditions[0].within" in err
    ok = subprocess.run(
        [sys.executable, "-m", "engage_stream", "validate", "topologies"],
        capture_output=True,
        cwd=ROOT,
    )
    assert ok.returncode == 0, ok.stderr.decode()


RESYNC_DEFS = """
- kind: audience
  key: viewers
  conditions:
    - event: Product Viewed
      within: 7 days
  destinations:
    - {name: braze, identify: true, track: true}
- kind: audience
  key: buyers
  conditions:
    - event: Order Completed
      within: 7 days
  destinations:
    - {name: braze}
- kind: computed_trait
  key: views
  type: counter
  event: Product Viewed
  destinations:
    - {name: braze}
"""


def _identify(uid: str, ts: str, mid: str, **traits: Any) -> bytes:
    return orjson.dumps(
        {"type": "identify", "userId": uid, "traits": traits, "timestamp": ts, "messageId": mid}
    )


def test_a_new_identifier_gets_the_current_values_re_sent() -> None:
    """Reference §3.3, re-sync trigger #2: current values go to an identifier added later,
    though they did not change; nothing for audiences the profile is not in."""
    lines = [
        msg("u1", "Product Viewed", "2026-01-01T10:00:00Z", "v1"),
        _identify("u1", "2026-01-01T11:00:00Z", "i1", email="new@x.com"),
        _identify("u1", "2026-01-01T12:00:00Z", "i2", email="new@x.com", plan="pro"),
    ]
    out = run(RESYNC_DEFS, lines, None)
    changes = [r["value"] for r in out if r["topic"] == "engage.changes"]
    assert [(c["key"], c["value"]) for c in changes] == [("views", 1), ("viewers", True)]
    resent = [r for r in out if r["value"].get("timestamp") == "2026-01-01T11:00:00.000Z"]
    assert all(r["topic"] == "engage.out.braze" for r in resent)
    got = sorted(
        (
            (r["value"]["type"], r["value"].get("event"), r["value"].get("traits") or {})
            for r in resent
        ),
        key=repr,
    )
    assert got == sorted(
        [
            ("identify", None, {"viewers": True, "email": "new@x.com"}),
            ("identify", None, {"views": 1, "email": "new@x.com"}),
            ("track", "Audience Entered", {}),
        ],
        key=repr,
    )
    track = next(r["value"] for r in resent if r["value"]["type"] == "track")
    assert track["userId"] == "u1"
    assert track["context"]["traits"] == {"email": "new@x.com"}
    assert track["properties"] == {"audience_key": "viewers", "viewers": True}
    # deterministic, and distinct from the ids of the changes' own calls
    ids = [r["value"]["messageId"] for r in out if r["topic"] == "engage.out.braze"]
    assert len(set(ids)) == len(ids)
    assert run(RESYNC_DEFS, lines, None) == out
    # the same identifier again re-sends nothing
    assert not [r for r in out if r["value"].get("timestamp") == "2026-01-01T12:00:00.000Z"]


LOGINS = """
kind: audience
key: logged_in_since_launch
include_history: false
conditions:
  - event: Login
destinations: [{name: crm}]
"""


def test_cli_backtests_include_history_false_from_an_applied_at(tmp_path: Path) -> None:
    """Replay takes the creation instant: only events received after it count."""
    defs = tmp_path / "defs.yaml"
    defs.write_text(LOGINS)
    events = tmp_path / "events.jsonl"
    events.write_bytes(
        msg("u1", "Login", "2026-01-01T10:00:00Z", "l1")
        + b"\n"
        + msg("u2", "Login", "2026-01-03T10:00:00Z", "l2")
        + b"\n"
    )

    def members(*extra: str) -> set[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "engage_stream", "replay", "--definitions", str(defs)]
            + ["--events", str(events), *extra],
            capture_output=True,
            check=True,
            cwd=ROOT,
        )
        records = [orjson.loads(line) for line in proc.stdout.splitlines()]
        return {user_of(r["value"]) for r in records if r["topic"] == "engage.changes"}

    assert members() == {"u1", "u2"}, "created at the start of the file by default"
    assert members("--applied-at", "2026-01-02T00:00:00Z") == {"u2"}
    assert members("--applied-at", "logged_in_since_launch=2026-01-04T00:00:00Z") == set()
    bad = subprocess.run(
        [sys.executable, "-m", "engage_stream", "replay", "--definitions", str(defs)]
        + ["--events", str(events), "--applied-at", "nope=2026-01-04T00:00:00Z"],
        capture_output=True,
        cwd=ROOT,
    )
    assert bad.returncode == 2 and b"no definition 'nope'" in bad.stderr
