"""Deterministic, realistic Segment traffic for the demo, tests and benchmarks.

A shop: visitors browse pages (~60%), view and add products, some identify (email, plan,
name), some order (revenue), some join accounts (group). Same seed, same events.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from engage_stream.timestamps import iso_ms as iso

CATEGORIES = ["shoes", "shirts", "hats", "bags", "jackets"]
PAGES = ["Home", "Catalog", "Product", "Cart", "Checkout", "Newsletter", "Blog", "Pricing"]
PLANS = ["free", "pro", "enterprise"]
ACCOUNTS = [f"acct_{i:03d}" for i in range(20)]


class Shop:
    def __init__(self, users: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.users = users
        self.products = [
            {
                "product_id": f"prod_{i:03d}",
                "name": f"Item {i}",
                "category": self.rng.choice(CATEGORIES),
                "price": round(self.rng.uniform(5, 300), 2),
            }
            for i in range(60)
        ]
        self.identified: set[int] = set()
        self.seq = 0

    def _ids(self, u: int) -> dict[str, Any]:
        ids: dict[str, Any] = {"anonymousId": f"anon-{u:06d}"}
        if u in self.identified:
            ids["userId"] = f"user-{u:06d}"
        return ids

    def _msg(self, u: int, ts: int, body: dict[str, Any]) -> dict[str, Any]:
        self.seq += 1
        return {
            **body,
            **self._ids(u),
            "messageId": f"msg-{self.seq:09d}",
            "timestamp": iso(ts),
            "context": {
                "library": {"name": "engage-stream-sample", "version": "1"},
                "ip": f"10.0.{u % 250}.{u % 200}",
            },
        }

    def event(self, ts: int) -> dict[str, Any]:
        rng = self.rng
        u = int(rng.paretovariate(1.2)) % self.users  # a few heavy users, a long tail
        r = rng.random()
        if r < 0.60:
            page = rng.choice(PAGES)
            return self._msg(
                u,
                ts,
                {
                    "type": "page",
                    "name": page,
                    "properties": {
                        "url": f"https://shop.example/{page.lower()}",
                        "category": rng.choice(CATEGORIES),
                    },
                },
            )
        if r < 0.75:
            p = rng.choice(self.products)
            return self._msg(
                u, ts, {"type": "track", "event": "Product Viewed", "properties": dict(p)}
            )
        if r < 0.85:
            p = rng.choice(self.products)
            return self._msg(
                u,
                ts,
                {
                    "type": "track",
                    "event": "Product Added",
                    "properties": {**p, "quantity": rng.randint(1, 3)},
                },
            )
        if r < 0.92:
            self.identified.add(u)
            return self._msg(
                u,
                ts,
                {
                    "type": "identify",
                    "traits": {
                        "email": f"user{u}@example.com",
                        "plan": rng.choice(PLANS),
                        "name": f"User {u}",
                    },
                },
            )
        if r < 0.98:
            items = rng.sample(self.products, rng.randint(1, 3))
            revenue = round(sum(p["price"] for p in items), 2)
            return self._msg(
                u,
                ts,
                {
                    "type": "track",
                    "event": "Order Completed",
                    "properties": {
                        "order_id": f"ord-{self.seq:08d}",
                        "revenue": revenue,
                        "currency": "USD",
                        "products": [
                            {"product_id": p["product_id"], "price": p["price"]} for p in items
                        ],
                    },
                },
            )
        self.identified.add(u)
        return self._msg(
            u,
            ts,
            {
                "type": "group",
                "groupId": rng.choice(ACCOUNTS),
                "traits": {"name": "Account", "plan": rng.choice(PLANS)},
            },
        )


def generate(
    events: int, users: int, end_ms: int, span_ms: int, seed: int = 7
) -> Iterator[dict[str, Any]]:
    """`events` messages in time order over [end - span, end]."""
    shop = Shop(users, seed)
    start = end_ms - span_ms
    step = span_ms / max(1, events)
    for i in range(events):
        ts = int(start + i * step + shop.rng.random() * step)
        yield shop.event(ts)


def send_with_sdk(client: Any, message: dict[str, Any]) -> str:
    """Hand one generated message to Segment's Python SDK (`segment.analytics.Client`) as
    the call of its type, with its own messageId, timestamp and context — how an
    application instrumented with Segment would have sent it. Returns the messageId."""
    common: dict[str, Any] = {
        "context": message.get("context"),
        "timestamp": datetime.fromisoformat(message["timestamp"]),
        "message_id": message["messageId"],
    }
    user = message.get("userId")
    anon = {"anonymous_id": message.get("anonymousId")}
    kind = message["type"]
    if kind == "track":
        ok, _ = client.track(user, message["event"], message.get("properties"), **common, **anon)
    elif kind == "page":
        props = message.get("properties")
        ok, _ = client.page(
            user, message.get("category"), message.get("name"), props, **common, **anon
        )
    elif kind == "screen":
        props = message.get("properties")
        ok, _ = client.screen(
            user, message.get("category"), message.get("name"), props, **common, **anon
        )
    elif kind == "identify":
        ok, _ = client.identify(user, message.get("traits"), **common, **anon)
    elif kind == "group":
        ok, _ = client.group(user, message["groupId"], message.get("traits"), **common, **anon)
    elif kind == "alias":
        ok, _ = client.alias(message["previousId"], user, **common)
    else:
        raise ValueError(f"not a Segment call: {kind!r}")
    if not ok:
        raise RuntimeError("the SDK's queue is full; flush before sending more")
    return str(message["messageId"])


def bad_records() -> list[bytes]:
    """Inputs the dead-letter path must catch, one per reason."""
    return [
        b'{"type": "track", "event": "Broken"',  # malformed JSON
        b'{"type": "track", "event": "No Ids"}',  # missing userId/anonymousId
        b'{"type": "track", "userId": 42, "event": "Wrong Type"}',  # wrong type
        b'{"type": "teleport", "userId": "u1"}',  # unknown type
        b'{"type": "track", "userId": "u1", "event": "Big", "properties": {"blob": "'
        + b"x" * 40_000
        + b'"}}',  # oversize
        b'["track", "u1"]',  # not an object
        b'{"type": "track", "userId": "u1", "event": "Long Id", "messageId": "'
        + b"m" * 101
        + b'"}',  # messageId over 100 characters
    ]
