"""Identity resolution on the real broker with two workers: anonymous profiles merged by a
login or a shared email end up one person, whichever partitions they lived on, also when a
worker is SIGKILLed while the merges are under way — the final people equal `replay`'s."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from engage_stream.commands import apply_definitions
from engage_stream.config import Settings
from engage_stream.definitions.catalog import Catalog
from engage_stream.definitions.loader import parse_text
from engage_stream.replay import Replay
from engage_stream.stream.producing import partition_for
from engage_stream.stream.topics import ensure_topics
from engage_stream.worker_process import WorkerProcess
from tests.stream.helpers import now_iso, produce, read_topic, wait_for

pytestmark = pytest.mark.broker

DEFINITIONS = """
- kind: audience
  key: repeat_viewers
  include_anonymous: true
  conditions:
    - event: Product Viewed
      count: ">= 2"
  destinations: [{name: crm, identify: true}]
- kind: computed_trait
  key: view_count
  type: counter
  event: Product Viewed
"""


def _inputs(users: list[str]) -> list[dict[str, Any]]:
    """Each user browses on two devices anonymously, then logs in on both."""
    out: list[dict[str, Any]] = []
    for u in users:
        for device in ("d1", "d2"):
            out.append(
                {
                    "type": "track",
                    "event": "Product Viewed",
                    "anonymousId": f"{u}-{device}",
                    "timestamp": now_iso(-60),
                    "messageId": f"{u}-{device}-view",
                }
            )
    for u in users:
        for device in ("d1", "d2"):
            out.append(
                {
                    "type": "identify",
                    "anonymousId": f"{u}-{device}",
                    "userId": u,
                    "traits": {"email": f"{u}@example.com"},
                    "timestamp": now_iso(-30),
                    "messageId": f"{u}-{device}-login",
                }
            )
    return out


def _person(w: WorkerProcess, identifier: str) -> tuple[int, Any] | None:
    status, traits = w.profile(identifier, "traits")
    if status != 200:
        return None
    return traits["traits"].get("view_count"), traits["traits"].get("repeat_viewers")


def test_anonymous_devices_merge_into_one_person_across_partitions_and_a_kill(
    worker_settings: Settings, tmp_path: Path
) -> None:
    s1 = worker_settings.model_copy(update={"partitions": 4})
    s2 = s1.model_copy(update={"web_port": s1.web_port + 50, "data_dir": tmp_path / "state2"})
    ensure_topics(s1)
    defs, problems = parse_text(DEFINITIONS, "identity.yaml")
    assert not problems
    apply_definitions(s1, [d for d, _ in defs])
    users = [f"p{i}" for i in range(12)]
    # the two devices of most users start on different partitions
    split = sum(
        partition_for(f"{u}-d1".encode(), 4) != partition_for(f"{u}-d2".encode(), 4) for u in users
    )
    assert split >= 3
    a = WorkerProcess(s1, tmp_path / "a.log")
    b = WorkerProcess(s2, tmp_path / "b.log")
    a.start(timeout=90)
    b.start(timeout=90)
    try:
        messages = _inputs(users)
        produce(s1, messages)
        time.sleep(0.5)
        a.kill()  # mid-way: merges in flight between partitions
        a = WorkerProcess(s1, tmp_path / "a2.log")
        a.start(timeout=90)
        merged = 0
        for u in users:
            person = wait_for(
                lambda u=u: (
                    _person(b, f"email:{u}@example.com") == (2, True)
                    and _person(b, f"email:{u}@example.com")
                ),
                timeout=90,
                what=f"{u}: one person with both devices' views",
            )
            assert person == (2, True)
            ids = {
                identifier: b.profile(identifier, "metadata")[1]
                for identifier in (f"user_id:{u}", f"anonymous_id:{u}-d1", f"anonymous_id:{u}-d2")
            }
            assert len({orjson.dumps(m) for m in ids.values()}) == 1, "every id, one profile"
            status, merges = b.profile(f"user_id:{u}", "merges")
            # one merge — or none, when the login from the second device was resolved
            # before that device's first view (they are on different input partitions)
            assert status == 200 and len(merges["data"]) <= 1
            merged += len(merges["data"])
        assert merged >= 1, "merges across partitions happened"
    finally:
        a.stop()
        b.stop()

    # what an uninterrupted run gives: the same people, the same values
    replay = Replay(Catalog.from_definitions(d for d, _ in defs), s1)
    list(replay.run(orjson.dumps(m) for m in messages))
    want = {
        frozenset((x.type, x.id) for x in p.external_ids): (
            p.computed_traits["view_count"].value,
            p.audiences["repeat_viewers"].value,
        )
        for pid in replay.profiles.profile_ids()
        if (p := replay.profiles.get(pid)) is not None
    }
    assert len(want) == len(users) and set(want.values()) == {(2, True)}
    # nothing contradictory reached a destination: one body per messageId
    bodies: dict[str, bytes] = {}
    for rec in read_topic(s1, s1.topics.output("crm")):
        mid = orjson.loads(rec.value)["messageId"]
        assert bodies.setdefault(mid, rec.value) == rec.value


def test_the_worker_runs_the_collector_and_keeps_the_source(
    worker_settings: Settings, tmp_path: Path
) -> None:
    """ENGAGE_COLLECTOR_IN_WORKER: one process takes HTTP events (Segment's Tracking API)
    and the profile records the write key's source."""
    import base64
    import urllib.request

    # beside the test's own web port (a random free port could be another test's next one)
    port = worker_settings.web_port + 1000
    ensure_topics(worker_settings)
    env = {
        "ENGAGE_COLLECTOR_IN_WORKER": "true",
        "ENGAGE_COLLECTOR_PORT": str(port),
        "ENGAGE_COLLECTOR_WRITE_KEYS": "wk-test=web-source",
    }
    w = WorkerProcess(worker_settings, tmp_path / "w.log", env=env)
    w.start(timeout=90)
    try:
        body = orjson.dumps(
            {"userId": "http-1", "event": "Signed Up", "messageId": "h1", "timestamp": now_iso()}
        )
        auth = base64.b64encode(b"wk-test:").decode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/track",
            data=body,
            headers={"Content-Type": "application/json", "Authorization": f"Basic {auth}"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200 and orjson.loads(resp.read()) == {"success": True}
        metadata = wait_for(
            lambda: (r := w.profile("user_id:http-1", "metadata"))[0] == 200 and r[1],
            what="the HTTP event on the profile",
        )
        assert metadata["metadata"]["first_source_id"] == "web-source"
    finally:
        w.stop()


ACCOUNTS = """
- kind: audience
  key: active_accounts
  collection: accounts
  conditions:
    - users: any
      conditions:
        - event: Signed In
          within: 30 days
  destinations: [{name: crm}]
"""


def test_an_account_audience_follows_its_users_on_the_worker(worker) -> None:  # type: ignore[no-untyped-def]
    s = worker.settings
    defs, problems = parse_text(ACCOUNTS, "accounts.yaml")
    assert not problems
    apply_definitions(s, [d for d, _ in defs])
    calls = [
        {
            "type": "group",
            "userId": u,
            "groupId": "acme",
            "traits": {"plan": "pro"},
            "timestamp": now_iso(-20),
            "messageId": f"{u}-group",
        }
        for u in ("w1", "w2", "w3")
    ]
    calls.append(
        {
            "type": "track",
            "userId": "w3",
            "event": "Signed In",
            "timestamp": now_iso(-10),
            "messageId": "w3-in",
        }
    )
    produce(s, calls)

    def account() -> Any:
        status, body = worker.request(
            f"/v1/spaces/{s.space_id}/collections/accounts/profiles/group_id:acme/traits",
            token=s.api_token,
        )
        return body["traits"] if status == 200 else None

    traits = wait_for(
        lambda: (t := account()) is not None and t.get("active_accounts") is True and t,
        timeout=60,
        what="the account in its audience",
    )
    assert traits["plan"] == "pro"
    status, links = worker.request(
        f"/v1/spaces/{s.space_id}/collections/accounts/profiles/group_id:acme/links",
        token=s.api_token,
    )
    assert status == 200 and sorted(d["external_ids"][0]["id"] for d in links["data"]) == [
        "w1",
        "w2",
        "w3",
    ]
    crm = [orjson.loads(r.value) for r in read_topic(s, s.topics.output("crm"))]
    assert [(c["type"], c["groupId"], c["traits"]) for c in crm] == [
        ("group", "acme", {"active_accounts": True})
    ]
