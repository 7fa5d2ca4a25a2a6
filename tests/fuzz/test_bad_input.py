"""Issue #15's bad-input fuzz suite, in process: 1,000 generated bad records of every
category interleaved with valid ones through the worker's ingest, identity and profiles
stages (`tests.fuzz.pipeline`) — each bad one dead-lettered with the reason its category
calls for, each valid one processed, each second body of a messageId dropped as a
duplicate, and nothing raising. The broker test runs a shorter stream through a real
worker; `bench/fuzz.py` a long one."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import orjson
import pytest

from engage_stream.config import Settings
from engage_stream.definitions.catalog import Catalog
from engage_stream.definitions.loader import load_definitions
from engage_stream.ingest.dead_letter import MAX_KEY_BYTES, MAX_VALUE_BYTES, DeadLetter
from tests.fuzz.generate import CATEGORIES, DUPLICATE, PROCESSED, FuzzGenerator
from tests.fuzz.pipeline import Pipeline
from tests.fuzz.tally import Tally

ROOT = Path(__file__).resolve().parents[2]
SEED = 15
BASE_MS = 1_800_000_000_000  # 2027-01-15T08:00:00Z: "now" for the generated event times
PER_CATEGORY = 1_000
VALID = 4_000
IDENTITY_REASONS = {"blocked_identifier"}  # the identity stage's (its value: the event)


def documented_reasons() -> set[str]:
    """The dead-letter reasons README.md lists (its "Dead-letter reasons:" paragraph)."""
    text = (ROOT / "README.md").read_text()
    paragraph = text[text.index("Dead-letter reasons:") :].split("\n\n", 1)[0]
    return set(re.findall(r"`([a-z_]+)`", paragraph))


def pipeline() -> Pipeline:
    return Pipeline(Settings(), Catalog.from_definitions(load_definitions(ROOT / "topologies")))


def test_every_bad_record_is_dead_lettered_with_its_reason_and_every_valid_one_processed() -> None:
    reasons = documented_reasons()
    assert {"malformed_json", "too_deep", "blocked_identifier", "processing_failed"} <= reasons
    stages = pipeline()
    tally = Tally()
    problems: list[str] = []
    cut = 0
    for case in FuzzGenerator(SEED, BASE_MS).stream(PER_CATEGORY, VALID):
        outcome = stages.feed(case.key, case.value, BASE_MS + case.n, case.n)
        tally.add(case, outcome.result)
        if outcome.result != case.expect:
            problems.append(
                f"#{case.n} {case.category}/{case.kind}: expected {case.expect}, got "
                f"{outcome.result} {outcome.detail[:120]!r} for {(case.value or b'')[:120]!r}"
            )
        if not case.bad:
            assert not outcome.dead_letters
            continue
        (record,) = outcome.dead_letters
        dl = DeadLetter.from_headers(record.headers or [])
        assert dl.reason in reasons and dl.detail, case
        if case.key is not None and record.key is not None:
            assert record.key == case.key[:MAX_KEY_BYTES]
        assert (dl.topic, dl.partition, dl.offset) == (Settings().topics.mixed, 0, case.n)
        if dl.reason in IDENTITY_REASONS:  # the validated event (the worker reads it back)
            assert dl.stage_record is not None
            assert orjson.loads(record.value or b"")["message_id"] == case.message_id
            continue
        raw = case.value or b""
        assert record.value == raw[:MAX_VALUE_BYTES], "the original bytes, cut only to fit"
        if len(raw) > MAX_VALUE_BYTES:
            cut += 1
            assert dl.original_bytes == len(raw)
            assert dl.original_sha256 == hashlib.sha256(raw).hexdigest()
        else:
            assert dl.original_bytes is None
    assert not problems, f"{len(problems)} records went astray:\n" + "\n".join(problems[:30])
    print("\n" + tally.markdown())
    for category in CATEGORIES[:-1]:  # the last: duplicate messageIds, dropped not dead
        row = tally.rows[category]
        assert row.bad == PER_CATEGORY == row.dead_lettered, category
    assert tally.rows["valid"].processed == VALID
    dups = tally.rows["duplicate_message_ids"]
    assert dups.duplicates == dups.dropped == PER_CATEGORY
    assert set(tally.reasons) == reasons - {"processing_failed"}, "every reason but the catch-all"
    assert cut >= 2, "records beyond the dead-letter topic's limit were among them"
    assert stages.changes > 0, "the valid events were evaluated against the definitions"


@pytest.mark.parametrize("seed", [1, 20261203, 4_000_000_007])
def test_other_seeds_are_labelled_right_too(seed: int) -> None:
    """The labels must not depend on the seed (ids made from it have other lengths)."""
    stages = pipeline()
    wrong = [
        (case.category, case.kind, case.expect, outcome.result)
        for case in FuzzGenerator(seed, BASE_MS).stream(60, 100)
        if (outcome := stages.feed(case.key, case.value, BASE_MS + case.n, case.n)).result
        != case.expect
    ]
    assert not wrong


def test_the_stream_is_the_same_for_the_same_seed_and_differs_for_another() -> None:
    def digest(seed: int) -> str:
        h = hashlib.sha256()
        for case in FuzzGenerator(seed, BASE_MS).stream(30, 60):
            h.update(f"{case.n}|{case.category}|{case.kind}|{case.expect}|".encode())
            h.update(case.key or b"-")
            h.update(case.value or b"-")
        return h.hexdigest()

    assert digest(1) == digest(1)
    assert digest(1) != digest(2)


def test_every_record_can_be_produced() -> None:
    """Kafka takes a record without a value (or without a key), not one without both."""
    cases = list(FuzzGenerator(SEED, BASE_MS).stream(300, 100))
    assert not [c for c in cases if c.key is None and c.value is None]
    assert any(c.value is None for c in cases)


def test_duplicates_come_after_their_first_body_under_the_same_key() -> None:
    cases = list(FuzzGenerator(SEED, BASE_MS).stream(200, 200))
    first = {
        c.message_id: c
        for c in cases
        if c.category == "duplicate_message_ids" and c.expect == PROCESSED
    }
    seconds = [c for c in cases if c.expect == DUPLICATE]
    assert len(seconds) == len(first) == 200
    for c in seconds:
        f = first[c.message_id]
        assert f.n < c.n and f.key == c.key and f.profile == c.profile and f.value != c.value


@pytest.mark.parametrize("external_ids", [5, 0.5, True, "email", {"id": "a", "type": "email"}])
def test_external_ids_that_are_not_an_array_are_an_invalid_field(external_ids: object) -> None:
    """Found by this suite: a number or boolean in `context.externalIds` passed validation
    and failed routing with a TypeError (dead-lettered as `processing_failed`, the reason
    for failures nothing is known to cause); a string or object was silently ignored."""
    body = {"type": "track", "userId": "x1", "event": "E", "context": {"externalIds": external_ids}}
    outcome = pipeline().feed(b"x1", orjson.dumps(body), BASE_MS, 0)
    assert (outcome.result, outcome.detail.split(":")[0]) == ("invalid_field", "context")
