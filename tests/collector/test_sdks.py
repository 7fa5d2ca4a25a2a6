"""Segment's own SDKs, unmodified, pointed at the collector: the events reach the worker
over the real broker and change the profile the Profile API shows."""

from __future__ import annotations

import functools
import http.server
import shutil
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from segment.analytics import Client

from engage_stream.collector.messages import SOURCE_HEADER
from tests.collector.conftest import JS_DIR, Stack, require_js
from tests.collector.helpers import (
    names,
    node_sdk,
    python_sdk_calls,
    topic_records,
    wait_events,
)
from tests.conftest import _ports

pytestmark = pytest.mark.broker

SDK_EVENTS = ["identify", "Order Completed", "Page Viewed", "Screen Viewed", "group", "alias"]


def check_profile(
    stack: Stack, user: str, message_ids: list[str], plan: str
) -> list[dict[str, Any]]:
    events = wait_events(stack.worker, f"user_id:{user}", len(message_ids))
    assert sorted(e["message_id"] for e in events) == sorted(message_ids), "each exactly once"
    assert names(events) == SDK_EVENTS
    page = events[2]
    assert page["properties"]["page_name"] == "Pricing" and page["properties"]["section"] == "plans"
    status, body = stack.worker.profile(f"user_id:{user}", "traits")
    assert status == 200 and body["traits"] == {"email": f"{user}@example.com", "plan": plan}
    status, body = stack.worker.profile(f"user_id:{user}", "external_ids")
    assert ("email", f"{user}@example.com") in {(x["type"], x["id"]) for x in body["data"]}
    return events


def test_python_sdk_in_batches_with_gzip(stack: Stack) -> None:
    errors: list[Any] = []
    client = Client(
        "wk_python_7f3a",
        host=stack.collector.url,
        gzip=True,
        upload_size=100,
        upload_interval=0.2,
        on_error=lambda e, batch: errors.append(e),
    )
    sent = python_sdk_calls(client, "py-batch")
    client.flush()
    client.join()
    assert errors == []
    events = check_profile(stack, "py-batch", sent, "pro")
    assert events[0]["context"]["library"]["name"] == "analytics-python"
    # the input records: keyed by profile, from the python-server source, stamped
    records = [
        r
        for r in topic_records(stack.settings, stack.settings.topics.mixed, 6)
        if orjson.loads(r.value).get("userId") == "py-batch"
    ]
    assert len(records) == 6
    for rec in records:
        assert rec.key == b"user_id:py-batch"
        assert (SOURCE_HEADER, b"python-server") in rec.headers
        msg = orjson.loads(rec.value)
        assert "writeKey" not in msg and msg["receivedAt"].endswith("Z") and msg["sentAt"]
    assert {r.partition for r in records} == {records[0].partition}, "one profile, one partition"
    assert (
        stack.collector.metric("engage_collector_events_accepted_total", 'source="python-server"')
        >= 6
    )


def test_python_sdk_one_call_per_request(stack: Stack) -> None:
    client = Client("wk_python_7f3a", host=stack.collector.url, gzip=True, sync_mode=True)
    sent = python_sdk_calls(client, "py-single")  # sync_mode raises on any non-2xx answer
    check_profile(stack, "py-single", sent, "pro")


@pytest.mark.parametrize("flush_at", [15, 1], ids=["batched", "one-by-one"])
def test_node_sdk(stack: Stack, flush_at: int) -> None:
    require_js()
    user = f"node-{flush_at}"
    out = node_sdk(stack.collector.url, "wk_node_19c2", user, flush_at)
    assert out["failed"] == [] and len(out["sent"]) == 6
    events = check_profile(stack, user, out["sent"], "node")
    assert events[0]["context"]["library"]["name"] == "@segment/analytics-node"


@pytest.fixture(scope="module")
def static_site() -> Iterator[str]:
    """The test page and the bundle, served on another port than the collector's: the
    browser's calls are cross-origin, as a website's are."""
    port = next(_ports)
    handler = functools.partial(_QuietHandler, directory=str(JS_DIR))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_browser_sdk_in_headless_chromium(stack: Stack, static_site: str) -> None:
    browser = chromium()
    if browser is None:
        pytest.skip("Chromium is not installed (`apt-get install chromium`; `make test` does)")
    require_js()
    user = "browser-1"
    page = f"{static_site}/browser/page.html?cdn={stack.collector.url}&key=wk_web_a1b2&user={user}"
    proc = subprocess.run(
        ["node", "run_browser.mjs", browser, page],
        cwd=JS_DIR,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = orjson.loads(proc.stdout.strip().splitlines()[-1])
    assert result["ok"], result
    to_collector = [r for r in result["requests"] if r["url"].startswith(stack.collector.url)]
    assert {"GET", "POST"} <= {r["method"] for r in to_collector}, to_collector
    assert all(r["status"] == 200 for r in to_collector if r["method"] != "OPTIONS"), to_collector
    events = wait_events(stack.worker, f"user_id:{user}", 3)
    assert sorted(e["message_id"] for e in events) == sorted(result["messageIds"])
    assert names(events) == ["identify", "Page Viewed", "Signup Clicked"]
    assert events[1]["properties"]["page_name"] == "Pricing"
    assert events[1]["context"]["page"]["path"] == "/browser/page.html"
    assert events[2]["properties"] == {"plan": "pro"}
    status, body = stack.worker.profile(f"user_id:{user}", "external_ids")
    ids = {(x["type"], x["id"]) for x in body["data"]}
    assert ("anonymous_id", result["anonymousId"]) in ids
    assert stack.collector.metric("engage_collector_events_accepted_total", 'source="website"') == 3
