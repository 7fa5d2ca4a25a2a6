"""Deterministic, realistic Segment traffic at benchmark scale, to a file or into Kafka.

Why not `engage_stream.sample_data` directly: the benchmark needs a fixed profile
population (N profiles, each keeping one canonical id so "N profiles" really means N keys
of state), a history multiplier (same profiles, k× events each), event times spread over
90 days, and ≥100k events/s of generation so that making the data never dominates a run.
The traffic mix follows sample_data's shop: page ~60 %, Product Viewed 15 %, Product
Added 10 %, identify 7 % (email, plan, name, country, age), Order Completed 6 % with
revenue, group 2 %.

Profiles: a share of them (`known_fraction`) are known users that always send `userId` and
`anonymousId`; the rest stay anonymous. Identify and group calls come only from known users,
so identity resolution never merges two bench profiles and the state has exactly the
profiles the workload names. Who sends an event: half the events pick a profile uniformly
(every profile shows up), half by a heavy-tailed activity weight (a few very active users).

`anonymous_first=True` (`--anonymous-first`) is traffic for identity resolution instead:
every person starts anonymous on one device (anonymousId only, browsing: page, Product
Viewed, Product Added); `identify_fraction` of them (40 %) mean to identify, and do so on a
device (an identify with anonymousId + userId + email) at one of its events after the
first, each with chance IDENTIFY_CHANCE — so ~30 % of the persons seen identify (the others
of the 40 % visit once only, or not often enough) — and from then on that device sends
the whole mix with both ids (orders, group calls, re-identifies). Of those,
`second_device_fraction` also use a second device (its own anonymousId, ~40 % of their
events), which browses anonymously until it identifies with the same userId — the identity
graph then merges that device's anonymous profile into the user's. Same persons, weights
and seed as the default population; the default workload's bytes do not change.

`journey_events=True` (`--journey-events`) is the same traffic with the lifecycle events the
example journeys (topologies/journeys/) react to, in place of some of the known users'
events (drawn from a separate random stream, so every other event keeps its bytes): a known
user's first event becomes an identify that also carries a phone for half of them and
`context.messaging_subscriptions` (email subscribed for 80 %, SMS for the ones with a phone),
its second `Signed Up` (onboarding_welcome); after that, of its events, 1 % become
`Trial Started` (a new `trial_id` each: trial_to_paid), 1.5 % `Feature Used`, 0.5 % `Plan
Upgraded` and 0.2 % `Subscription Cancelled` (each naming the user's latest trial; before
its first trial a user sends the ordinary event instead). Cart abandonment and lapsing
(abandoned_cart, win_back) come from the ordinary mix.

    python -m bench.workload --profiles 100000 --events 1000000 --out var/bench/events.jsonl
    python -m bench.workload --events 200000 --kafka 127.0.0.1:39900 --topic-suffix=-b1
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from engage_stream.config import DAY_MS, Settings
from engage_stream.stream.producing import partition_for
from engage_stream.timestamps import iso_ms

CATEGORIES = ["shoes", "shirts", "hats", "bags", "jackets", "socks", "watches", "belts"]
BRANDS = ["Acme", "Northwind", "Globex", "Initech", "Umbrella"]
PAGES = ["Home", "Catalog", "Product", "Cart", "Checkout", "Newsletter", "Blog", "Pricing"]
PLANS = ["free", "pro", "enterprise"]
COUNTRIES = ["US", "DE", "FR", "GB", "BR", "IN", "JP", "CA"]
INDUSTRIES = ["retail", "software", "finance", "health", "media"]
REFERRERS = ["", "https://www.google.com/", "https://news.example/", "https://t.co/x"]
N_PRODUCTS = 200
N_ACCOUNTS = 500

# Cumulative shares of the traffic mix (page, viewed, added, identify, order, group).
MIX = (0.60, 0.75, 0.85, 0.92, 0.98, 1.0)
# Anonymous-first traffic: chance that an anonymous device of a person who identifies does
# so at one of its events after the first; share of a two-device person's events on the
# second device.
IDENTIFY_CHANCE = 0.5
SECOND_DEVICE_SHARE = 0.4
# Journey traffic (`journey_events`): cumulative shares of a signed-up user's events that
# become Trial Started, Feature Used, Plan Upgraded, Subscription Cancelled.
JOURNEY_MIX = (0.010, 0.025, 0.030, 0.032)
FEATURES = ["reports", "export", "sso", "api", "alerts"]


class Record(NamedTuple):
    """One input record: Segment type (selects the input topic), Kafka key, JSON value."""

    kind: str
    key: bytes
    value: bytes
    profile: int


@dataclass(frozen=True)
class WorkloadSpec:
    profiles: int = 100_000
    events: int = 1_000_000  # at history multiplier 1
    history_multiplier: int = 1
    days: float = 90.0
    end_ms: int | None = None  # default: now, floored to the hour
    seed: int = 7
    known_fraction: float = 0.7
    # Identity-resolution traffic (module docstring); False keeps the default workload.
    anonymous_first: bool = False
    identify_fraction: float = 0.4  # persons who mean to identify (~30 % of the seen do)
    second_device_fraction: float = 0.2  # of those: also a second device that identifies
    # Lifecycle events for the example journeys (module docstring); False: the default bytes.
    journey_events: bool = False

    @property
    def total_events(self) -> int:
        return self.events * self.history_multiplier

    def resolved_end_ms(self) -> int:
        if self.end_ms is not None:
            return self.end_ms
        return int(time.time() // 3600 * 3600 * 1000)


class Population:
    """The fixed set of profiles: ids, keys, input partitions and activity weights."""

    def __init__(
        self, profiles: int, seed: int, known_fraction: float, second_device_fraction: float = 0.0
    ) -> None:
        rng = random.Random(f"population-{seed}")
        self.size = profiles
        self.known = [rng.random() < known_fraction for _ in range(profiles)]
        weights = [min(rng.paretovariate(1.2), 2000.0) for _ in range(profiles)]
        acc, cum = 0.0, []
        for w in weights:
            acc += w
            cum.append(acc)
        self._cum = cum
        self._total = acc
        self.email = [f"user{u}@example.com" for u in range(profiles)]
        self.plan = [PLANS[min(2, int(rng.paretovariate(2.0)) - 1)] for _ in range(profiles)]
        self.country = [rng.choice(COUNTRIES) for _ in range(profiles)]
        self.age = [rng.randint(18, 75) for _ in range(profiles)]
        self.account = [f"acct_{rng.randrange(N_ACCOUNTS):04d}" for _ in range(profiles)]
        # Anonymous-first traffic only: who of the known also identifies a second device.
        self.second: list[bool] = [False] * profiles
        if second_device_fraction > 0:
            drng = random.Random(f"devices-{seed}")
            self.second = [known and drng.random() < second_device_fraction for known in self.known]

    def anonymous_id(self, u: int, device: int = 0) -> str:
        return f"anon-{u:07d}" if device == 0 else f"anon-{u:07d}-d{device}"

    def user_id(self, u: int) -> str | None:
        return f"user-{u:07d}" if self.known[u] else None

    def profile_id(self, u: int) -> str:
        """The bench's name for this profile: `user_id:<userId>`, else `anonymous_id:<…>`
        (the Profile API answers by either; the worker's own ids are opaque `use_…`)."""
        uid = self.user_id(u)
        return f"user_id:{uid}" if uid else f"anonymous_id:{self.anonymous_id(u)}"

    def key(self, u: int) -> bytes:
        return (self.user_id(u) or self.anonymous_id(u)).encode()

    def pick(self, rng: random.Random) -> int:
        if rng.random() < 0.5:
            return rng.randrange(self.size)
        return bisect.bisect_left(self._cum, rng.random() * self._total)


class Workload:
    """Iterates the spec's events in event-time order; same spec, same bytes."""

    def __init__(self, spec: WorkloadSpec) -> None:
        self.spec = spec
        self.end_ms = spec.resolved_end_ms()
        if spec.anonymous_first:
            self.population = Population(
                spec.profiles, spec.seed, spec.identify_fraction, spec.second_device_fraction
            )
        else:
            self.population = Population(spec.profiles, spec.seed, spec.known_fraction)
        prng = random.Random(f"products-{spec.seed}")
        self.products = [
            {
                "product_id": f"prod_{i:04d}",
                "sku": f"SKU-{i:05d}",
                "name": f"Item {i}",
                "category": prng.choice(CATEGORIES),
                "brand": prng.choice(BRANDS),
                "price": round(prng.uniform(5, 300), 2),
            }
            for i in range(N_PRODUCTS)
        ]
        self._ctx = [
            {
                "library": {"name": "analytics.js", "version": "4.1.0"},
                "ip": f"10.{i}.{i * 7 % 250}.{i * 13 % 250}",
                "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120",
                "locale": loc,
            }
            for i, loc in enumerate(["en-US", "de-DE", "fr-FR", "en-GB"])
        ]

    def records(self) -> Iterator[Record]:
        if self.spec.anonymous_first:
            yield from self._anonymous_first()
            return
        spec = self.spec
        rng = random.Random(f"events-{spec.seed}-x{spec.history_multiplier}")
        total = spec.total_events
        span = int(spec.days * DAY_MS)
        start = self.end_ms - span
        step = span / max(1, total)
        prefix = f"b{spec.seed}x{spec.history_multiplier}-"
        pop = self.population
        journeys = _JourneyTraffic(spec.seed, pop) if spec.journey_events else None
        for i in range(total):
            ts = int(start + (i + rng.random()) * step)
            u = pop.pick(rng)
            kind, body = self._body(rng, u, i)
            context = self._ctx[u & 3]
            if journeys is not None and pop.known[u]:
                kind, body, context = journeys.replace(u, i, kind, body, context)
            body["anonymousId"] = pop.anonymous_id(u)
            uid = pop.user_id(u)
            if uid is not None:
                body["userId"] = uid
            body["messageId"] = f"{prefix}{i:010d}"
            body["timestamp"] = iso_ms(ts)
            body["context"] = context
            yield Record(kind, pop.key(u), orjson.dumps(body), u)

    def _anonymous_first(self) -> Iterator[Record]:
        """Anonymous-first sessions (module docstring). Each device is unseen, then
        anonymous (browsing), then identified; a person destined to identify does so on a
        device with chance IDENTIFY_CHANCE at each of its events after its first."""
        spec = self.spec
        rng = random.Random(f"anonymous-first-{spec.seed}-x{spec.history_multiplier}")
        total = spec.total_events
        span = int(spec.days * DAY_MS)
        start = self.end_ms - span
        step = span / max(1, total)
        prefix = f"a{spec.seed}x{spec.history_multiplier}-"
        pop = self.population
        state = [bytearray(pop.size), bytearray(pop.size)]  # per device: 0 new, 1 anon, 2 known
        for i in range(total):
            ts = int(start + (i + rng.random()) * step)
            u = pop.pick(rng)
            device = 1 if pop.second[u] and rng.random() < SECOND_DEVICE_SHARE else 0
            seen = state[device]
            uid = pop.user_id(u)  # None: never identifies
            if seen[u] == 2:
                kind, body = self._body(rng, u, i, identified=True)
            elif seen[u] == 1 and uid is not None and rng.random() < IDENTIFY_CHANCE:
                kind, body = "identify", self._identify(rng, u, i)
                seen[u] = 2
            else:
                kind, body = self._body(rng, u, i, identified=False)  # browsing only
                seen[u] = 1
            anon = pop.anonymous_id(u, device)
            body["anonymousId"] = anon
            if seen[u] == 2:
                body["userId"] = uid
            body["messageId"] = f"{prefix}{i:010d}"
            body["timestamp"] = iso_ms(ts)
            body["context"] = self._ctx[(u + device) & 3]
            key = uid if seen[u] == 2 else anon  # as `engage-stream produce` keys
            yield Record(kind, key.encode(), orjson.dumps(body), u)  # type: ignore[union-attr]

    def lines(self) -> Iterator[bytes]:
        for rec in self.records():
            yield rec.value

    def _body(
        self, rng: random.Random, u: int, i: int, identified: bool | None = None
    ) -> tuple[str, dict[str, Any]]:
        """One event's body; only identified senders (default: the known) go past browsing."""
        r = rng.random()
        pop = self.population
        if identified is None:
            identified = pop.known[u]
        if r >= MIX[2] and not identified:
            r = rng.random() * MIX[2]  # anonymous visitors only browse
        if r < MIX[0]:
            page = PAGES[int(r * 13.33) % len(PAGES)]
            return "page", {
                "type": "page",
                "name": page,
                "properties": {
                    "path": f"/{page.lower()}",
                    "url": f"https://shop.example/{page.lower()}",
                    "title": f"{page} | Shop",
                    "referrer": REFERRERS[i & 3],
                    "category": CATEGORIES[i % len(CATEGORIES)],
                },
            }
        if r < MIX[1]:
            return "track", {
                "type": "track",
                "event": "Product Viewed",
                "properties": self.products[rng.randrange(N_PRODUCTS)],
            }
        if r < MIX[2]:
            p = self.products[rng.randrange(N_PRODUCTS)]
            return "track", {
                "type": "track",
                "event": "Product Added",
                "properties": {**p, "quantity": 1 + (i % 3), "cart_id": f"cart-{u}"},
            }
        if r < MIX[3]:
            return "identify", self._identify(rng, u, i)
        if r < MIX[4]:
            items = [self.products[rng.randrange(N_PRODUCTS)] for _ in range(1 + (i % 3))]
            revenue = round(sum(p["price"] for p in items), 2)
            return "track", {
                "type": "track",
                "event": "Order Completed",
                "properties": {
                    "order_id": f"ord-{i:010d}",
                    "revenue": revenue,
                    "total": revenue,
                    "currency": "USD",
                    "coupon": "SPRING" if i % 11 == 0 else None,
                    "products": [
                        {"product_id": p["product_id"], "price": p["price"], "quantity": 1}
                        for p in items
                    ],
                },
            }
        acct = pop.account[u]
        return "group", {
            "type": "group",
            "groupId": acct,
            "traits": {
                "name": f"Account {acct}",
                "industry": INDUSTRIES[int(acct[5:]) % len(INDUSTRIES)],
                "employees": 10 + (int(acct[5:]) * 37) % 5000,
                "plan": PLANS[int(acct[5:]) % 3],
            },
        }

    def _identify(self, rng: random.Random, u: int, i: int) -> dict[str, Any]:
        pop = self.population
        return {
            "type": "identify",
            "traits": {
                "email": pop.email[u],
                "plan": pop.plan[u] if rng.random() < 0.9 else PLANS[i % 3],
                "name": f"User {u}",
                "country": pop.country[u],
                "age": pop.age[u],
            },
        }


class _JourneyTraffic:
    """Which of a known user's events become lifecycle events (module docstring). Its own
    random stream: the ordinary events around the replaced ones keep their bytes."""

    def __init__(self, seed: int, pop: Population) -> None:
        self.rng = random.Random(f"journeys-{seed}")
        self.pop = pop
        self.stage = bytearray(pop.size)  # 0 unseen, 1 identified, 2 signed up
        self.trials = [0] * pop.size  # trials started so far (the latest is trial-<u>-<n>)

    def replace(
        self, u: int, i: int, kind: str, body: dict[str, Any], context: dict[str, Any]
    ) -> tuple[str, dict[str, Any], dict[str, Any]]:
        pop, rng = self.pop, self.rng
        stage = self.stage[u]
        if stage == 0:
            self.stage[u] = 1
            traits = {
                "email": pop.email[u],
                "plan": pop.plan[u],
                "name": f"User {u}",
                "first_name": f"User{u}",
                "country": pop.country[u],
                "age": pop.age[u],
            }
            subs: list[dict[str, str]] = []
            if rng.random() < 0.8:
                subs.append({"key": pop.email[u], "type": "EMAIL", "status": "SUBSCRIBED"})
            if rng.random() < 0.5:
                traits["phone"] = f"+1555{u:07d}"
                subs.append({"key": traits["phone"], "type": "SMS", "status": "SUBSCRIBED"})
            ctx = {**context, "messaging_subscriptions": subs} if subs else context
            return "identify", {"type": "identify", "traits": traits}, ctx
        if stage == 1:
            self.stage[u] = 2
            props = {"plan": pop.plan[u], "source": REFERRERS[i & 3] or "direct"}
            return "track", {"type": "track", "event": "Signed Up", "properties": props}, context
        r = rng.random()
        if r >= JOURNEY_MIX[-1]:
            return kind, body, context
        if r < JOURNEY_MIX[0] or self.trials[u] == 0:
            if r >= JOURNEY_MIX[0]:
                return kind, body, context  # no trial yet: nothing to use, upgrade or cancel
            self.trials[u] += 1
            props = {"trial_id": f"trial-{u}-{self.trials[u]}", "plan": "pro"}
            return (
                "track",
                {"type": "track", "event": "Trial Started", "properties": props},
                context,
            )
        trial = f"trial-{u}-{self.trials[u]}"
        if r < JOURNEY_MIX[1]:
            props = {"trial_id": trial, "feature": FEATURES[i % len(FEATURES)]}
            return "track", {"type": "track", "event": "Feature Used", "properties": props}, context
        name = "Plan Upgraded" if r < JOURNEY_MIX[2] else "Subscription Cancelled"
        return "track", {"type": "track", "event": name, "properties": {"trial_id": trial}}, context


def write_file(spec: WorkloadSpec, out: Path) -> tuple[int, float]:
    """JSON lines; returns (events, seconds)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    n = 0
    buf: list[bytes] = []
    with out.open("wb") as fh:
        for line in Workload(spec).lines():
            buf.append(line)
            n += 1
            if len(buf) >= 10_000:
                buf.append(b"")
                fh.write(b"\n".join(buf))
                buf = []
        if buf:
            buf.append(b"")
            fh.write(b"\n".join(buf))
    return n, time.perf_counter() - started


# -- producing into Kafka -------------------------------------------------------------------


class BatchProducer:
    """Whole per-partition batches through aiokafka's `send_batch`: about an order of
    magnitude cheaper per record than `send()` for pre-loading millions of records."""

    def __init__(self, bootstrap: str, max_batch_bytes: int = 1024 * 1024) -> None:
        self.bootstrap = bootstrap
        self.max_batch_bytes = max_batch_bytes
        self._producer: Any = None
        self._batches: dict[tuple[str, int], Any] = {}
        self._pending: list[Any] = []
        self.sent = 0

    async def start(self) -> None:
        from aiokafka import AIOKafkaProducer

        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            max_batch_size=self.max_batch_bytes,
            max_request_size=8 * 1024 * 1024,
        )
        await self._producer.start()

    async def wait_for_leaders(
        self, topics: list[str], partitions: int, timeout: float = 30.0
    ) -> None:
        """Fresh topics: wait until each partition has a leader, so nothing is retried."""
        from aiokafka import TopicPartition

        client = self._producer.client
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            await client.force_metadata_update()
            leaders = [
                client.cluster.leader_for_partition(TopicPartition(t, p))
                for t in topics
                for p in range(partitions)
            ]
            if all(x is not None and x >= 0 for x in leaders):
                return
            await asyncio.sleep(0.2)
        raise TimeoutError(f"no partition leaders for {topics} after {timeout}s")

    async def add(
        self,
        topic: str,
        partition: int,
        key: bytes | None,
        value: bytes,
        timestamp_ms: int | None = None,
    ) -> None:
        tp = (topic, partition)
        batch = self._batches.get(tp)
        if batch is None:
            batch = self._batches[tp] = self._producer.create_batch()
        if batch.append(key=key, value=value, timestamp=timestamp_ms, headers=[]) is None:
            await self._submit(tp, batch)
            batch = self._batches[tp] = self._producer.create_batch()
            if batch.append(key=key, value=value, timestamp=timestamp_ms, headers=[]) is None:
                raise ValueError(f"record too large for one batch on {topic}")
        self.sent += 1

    async def _submit(self, tp: tuple[str, int], batch: Any) -> None:
        self._pending.append(await self._producer.send_batch(batch, tp[0], partition=tp[1]))
        if len(self._pending) >= 64:  # bound what is in flight
            await asyncio.gather(*self._pending)
            self._pending.clear()

    async def flush(self) -> None:
        batches, self._batches = self._batches, {}
        for tp, batch in batches.items():
            await self._submit(tp, batch)
        if self._pending:
            await asyncio.gather(*self._pending)
            self._pending.clear()

    async def stop(self) -> None:
        if self._producer is not None:
            await self.flush()
            await self._producer.stop()
            self._producer = None


def topic_for(settings: Settings, kind: str) -> str:
    return getattr(settings.topics, kind)


async def produce_async(
    settings: Settings, records: Iterator[Record], progress_every: int = 0, mixed: bool = False
) -> tuple[int, float]:
    """Produce records to the per-type input topics (keyed like `engage-stream produce`:
    by userId, else anonymousId; Kafka's default murmur2 partition). Returns (n, seconds).
    `mixed`: every record to the one topic carrying any type (`topics.mixed`), so a
    profile's events stay in order across types (per-type topics are read independently:
    draining a backlog, a user's track calls may be applied before its earlier identify)."""
    producer = BatchProducer(settings.broker)
    await producer.start()
    started = time.perf_counter()
    parts: dict[bytes, int] = {}
    kinds = ("track", "identify", "group", "page", "screen")
    topics = {k: settings.topics.mixed if mixed else topic_for(settings, k) for k in kinds}
    try:
        await producer.wait_for_leaders(sorted(set(topics.values())), settings.partitions)
        for rec in records:
            p = parts.get(rec.key)
            if p is None:
                p = parts[rec.key] = partition_for(rec.key, settings.partitions)
            await producer.add(topics[rec.kind], p, rec.key, rec.value)
            if progress_every and producer.sent % progress_every == 0:
                rate = producer.sent / (time.perf_counter() - started)
                print(f"  produced {producer.sent:,} ({rate:,.0f}/s)", file=sys.stderr)
        await producer.flush()
    finally:
        await producer.stop()
    return producer.sent, time.perf_counter() - started


def produce(
    settings: Settings, spec: WorkloadSpec, progress_every: int = 0, mixed: bool = False
) -> tuple[int, float]:
    return asyncio.run(produce_async(settings, Workload(spec).records(), progress_every, mixed))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.workload", description=__doc__.split("\n")[0])
    p.add_argument("--profiles", type=int, default=WorkloadSpec.profiles)
    p.add_argument("--events", type=int, default=WorkloadSpec.events)
    p.add_argument(
        "--history-multiplier",
        type=int,
        default=1,
        help="same profiles, k× the events each (over the same 90 days)",
    )
    p.add_argument("--days", type=float, default=WorkloadSpec.days)
    p.add_argument("--seed", type=int, default=WorkloadSpec.seed)
    p.add_argument("--end-ms", type=int, help="newest event time (default: now, to the hour)")
    p.add_argument(
        "--anonymous-first",
        action="store_true",
        help="identity-resolution traffic: anonymous browsing first, some identify (docstring)",
    )
    p.add_argument("--identify-fraction", type=float, default=WorkloadSpec.identify_fraction)
    p.add_argument(
        "--second-device-fraction", type=float, default=WorkloadSpec.second_device_fraction
    )
    p.add_argument(
        "--journey-events",
        action="store_true",
        help="with the lifecycle events the example journeys react to (docstring)",
    )
    p.add_argument("--out", type=Path, help="write JSON lines here")
    p.add_argument("--kafka", help="produce into this broker's input topics instead")
    p.add_argument("--topic-suffix", default="", help="as Topics.with_suffix (isolated runs)")
    p.add_argument("--partitions", type=int, default=4, help="input topic partitions")
    args = p.parse_args(argv)
    spec = WorkloadSpec(
        profiles=args.profiles,
        events=args.events,
        history_multiplier=args.history_multiplier,
        days=args.days,
        seed=args.seed,
        anonymous_first=args.anonymous_first,
        identify_fraction=args.identify_fraction,
        second_device_fraction=args.second_device_fraction,
        journey_events=args.journey_events,
    )
    spec = replace(spec, end_ms=args.end_ms if args.end_ms is not None else spec.resolved_end_ms())
    if args.kafka:
        base = Settings.from_env(broker=args.kafka, partitions=args.partitions)
        settings = base.model_copy(update={"topics": base.topics.with_suffix(args.topic_suffix)})
        from engage_stream.stream.topics import ensure_topics

        ensure_topics(settings)
        n, secs = produce(settings, spec, progress_every=200_000)
        print(f"produced {n:,} events to {settings.broker} in {secs:.1f}s ({n / secs:,.0f}/s)")
        return 0
    if not args.out:
        p.error("one of --out or --kafka is required")
    n, secs = write_file(spec, args.out)
    print(
        f"wrote {n:,} events for {spec.profiles:,} profiles (end_ms={spec.end_ms}) to "
        f"{args.out} in {secs:.1f}s ({n / secs:,.0f}/s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
