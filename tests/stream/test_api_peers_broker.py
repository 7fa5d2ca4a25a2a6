"""The web API on the real broker (#15.3–4, #16.8): workers that share the internal secret
answer for each other; a process that joins the profiles consumer group without it gets
partitions but neither the client's token nor a say in any answer (its partitions are
503s with Retry-After, never 500s or its forged data); a start logs no ERROR for Faust's
leader topic and warns about the default token."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer

from engage_stream.config import Settings
from engage_stream.stream.routing import OwnerDirectory, client_id_for
from engage_stream.stream.topics import ensure_topics
from engage_stream.worker_process import WorkerProcess
from tests.stream.helpers import identify, now_iso, produce, wait_for

pytestmark = pytest.mark.broker


def test_a_start_logs_no_leader_topic_error_and_warns_about_the_default_token(
    worker: WorkerProcess,
) -> None:
    log = worker.log_path.read_text(errors="replace")
    assert "__assignor-__leader" not in log
    assert "ENGAGE_API_TOKEN is the default 'dev-token'" in log
    assert "ENGAGE_INTERNAL_SECRET is not set" not in log  # the fixture sets one


class Recorder(BaseHTTPRequestHandler):
    """What the stranger serves: every request's headers kept, a forged answer given."""

    seen: list[dict[str, str]] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        Recorder.seen.append(dict(self.headers))
        body = orjson.dumps({"traits": {"forged": True}, "statuses": {}, "sizes": {}})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def stranger(settings: Settings) -> Iterator[str]:
    """A member of the profiles consumer group (same app id) announcing a web server of its
    own, the way a worker does, and staying in the group until the block ends."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stop = threading.Event()

    def member() -> None:
        consumer = KafkaConsumer(
            bootstrap_servers=settings.broker,
            group_id=settings.app_id,
            client_id=client_id_for(url),
            enable_auto_commit=False,
            session_timeout_ms=10_000,
        )
        consumer.subscribe([settings.topics.profile_events])
        try:
            while not stop.is_set():
                consumer.poll(timeout_ms=200)
        finally:
            consumer.close(autocommit=False)

    thread = threading.Thread(target=member, daemon=True)
    thread.start()
    try:
        yield url
    finally:
        stop.set()
        thread.join(30)
        server.shutdown()


def test_peers_answer_for_each_other_and_a_stranger_in_the_group_is_not_believed(
    worker_settings: Settings, tmp_path: Path
) -> None:
    s1 = worker_settings.model_copy(update={"partitions": 4})
    s2 = s1.model_copy(update={"web_port": s1.web_port + 50, "data_dir": tmp_path / "state2"})
    ensure_topics(s1)
    a = WorkerProcess(s1, tmp_path / "a.log")
    b = WorkerProcess(s2, tmp_path / "b.log")
    a.start(timeout=90)
    b.start(timeout=90)
    directory = OwnerDirectory(s1.broker, s1.app_id, s1.topics.profile_events, ttl_s=0)
    try:
        users = [f"x{i}" for i in range(24)]
        produce(s1, [identify(u, now_iso(), f"{u}-m", marker=u) for u in users])

        def split() -> bool:
            owners = asyncio.run(directory.assignment())
            return set(owners) == {a.url, b.url} and sum(map(len, owners.values())) == 4

        wait_for(split, timeout=60, what="both workers to own partitions")
        for w in (a, b):
            for u in users:
                status, body = wait_for(
                    lambda w=w, u=u: (r := w.profile(f"user_id:{u}", "traits"))[0] == 200 and r,
                    what=f"{u} via {w.url}",
                )
                assert body["traits"] == {"marker": u}

        with stranger(s1) as url:

            def stranger_owns() -> set[int] | None:
                owners = asyncio.run(directory.assignment())
                mine = owners.get(url, set())
                return mine if mine and a.url in owners and b.url in owners else None

            theirs = wait_for(stranger_owns, timeout=60, what="the stranger to get partitions")
            seen: list[tuple[str, int, Any]] = []  # every answer while it is in the group

            def on_theirs(body: Any) -> bool:
                message = body["error"]["message"]
                return any(message.startswith(f"Partition {p}'s owner") for p in theirs)

            def settled() -> bool:
                """Both workers have caught up with the rebalance: the stranger was asked
                and not believed (its partitions' profiles are 503s), every other profile
                is answered."""
                answers = {u: a.profile(f"user_id:{u}", "traits") for u in users}
                seen.extend((u, st, body) for u, (st, body) in answers.items())
                statuses = [st for st, _ in answers.values()]
                return (
                    bool(Recorder.seen)
                    and 503 in statuses
                    and all(st == 200 or on_theirs(b) for st, b in answers.values())
                )

            wait_for(settled, timeout=60, what="the workers to route around the stranger")
        for u, status, body in seen:
            assert status in (200, 503), (u, status, body)  # never a 500
            if status == 200:
                assert body["traits"] == {"marker": u}  # never the stranger's forgery
            else:
                assert body["error"]["code"] == "service_unavailable"
        for headers in Recorder.seen:
            assert "Authorization" not in headers
            assert not any(s1.api_token in v or s1.internal_secret in v for v in headers.values())
        # once it has left, every profile is answered again, by either worker
        for u in users:
            wait_for(
                lambda u=u: a.profile(f"user_id:{u}", "traits")[0] == 200,
                timeout=60,
                what=f"{u} after the stranger left",
            )
    finally:
        a.stop()
        b.stop()
