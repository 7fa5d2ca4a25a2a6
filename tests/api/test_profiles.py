"""Profile API shapes, pagination, filters and errors (reference §7), without a server."""

from __future__ import annotations

import pytest

from engage_stream.api.errors import ApiError
from engage_stream.api.profiles import handle, profile_id_of
from engage_stream.events import ProfileEvent
from engage_stream.profiles.processor import ProcessorSettings, ProfileProcessor
from engage_stream.profiles.store import ProfileStore
from engage_stream.state.memory import MemoryKV

NOW = 1_800_000_000_000
PID = "user_id:u1"


@pytest.fixture
def store() -> ProfileStore:
    s = ProfileStore(MemoryKV())
    p = ProfileProcessor(None, ProcessorSettings())
    traits = {f"t{i:02d}": i for i in range(25)}
    p.apply(
        s,
        ProfileEvent(
            message_id="id",
            type="identify",
            timestamp=NOW - 10_000,
            received_at=NOW - 10_000,
            profile_id=PID,
            user_id="u1",
            traits={**traits, "email": "u1@x.io"},
        ),
        NOW,
    )
    for i in range(5):
        p.apply(
            s,
            ProfileEvent(
                message_id=f"e{i}",
                type="track",
                event="A" if i % 2 else "B",
                timestamp=NOW - 5000 + i,
                received_at=NOW,
                profile_id=PID,
                user_id="u1",
                properties={"i": i},
            ),
            NOW,
        )
    return s


def get(store: ProfileStore, section: str, **params: str) -> dict:
    return handle(
        store, PID, section, f"/v1/spaces/s/collections/users/profiles/{PID}/{section}", params, NOW
    )


def test_traits_default_page_and_cursor(store: ProfileStore) -> None:
    body = get(store, "traits")
    assert list(body["traits"]) == sorted(body["traits"]) and len(body["traits"]) == 10
    assert body["cursor"]["has_more"] is True
    seen = list(body["traits"])
    while body["cursor"]["has_more"]:
        body = get(store, "traits", next=body["cursor"]["next"])
        seen += list(body["traits"])
    assert len(seen) == len(set(seen)) == 26


def test_traits_include_and_verbose(store: ProfileStore) -> None:
    body = get(store, "traits", include="email,t03", verbose="true")
    assert set(body["traits"]) == {"email", "t03"}
    assert body["traits"]["t03"]["value"] == 3 and body["traits"]["t03"]["updated_at"].endswith("Z")


def test_events_desc_paged_and_filtered(store: ProfileStore) -> None:
    body = get(store, "events", limit="2")
    assert [e["message_id"] for e in body["data"]] == ["e4", "e3"]
    body = get(store, "events", limit="2", next=body["cursor"]["next"])
    assert [e["message_id"] for e in body["data"]] == ["e2", "e1"]
    body = get(store, "events", sort="asc", include="A")
    assert [e["message_id"] for e in body["data"]] == ["e1", "e3"]
    body = get(store, "events", exclude="A,identify", limit="100")
    assert [e["message_id"] for e in body["data"]] == ["e4", "e2", "e0"]
    item = body["data"][0]
    assert item["type"] == "track" and item["event"] == "B" and item["properties"] == {"i": 4}
    assert item["related"] == {"users": PID}


def test_external_ids_and_metadata(store: ProfileStore) -> None:
    ids = get(store, "external_ids")["data"]
    assert [(x["type"], x["id"]) for x in ids] == [("user_id", "u1"), ("email", "u1@x.io")]
    md = get(store, "metadata")["metadata"]
    assert md["first_message_id"] == "id" and md["last_message_id"] == "e4"


@pytest.mark.parametrize(
    ("pid", "section", "params", "status", "code"),
    [
        ("user_id:nobody", "traits", {}, 404, "not_found"),
        (PID, "nonsense", {}, 404, "not_found"),
        (PID, "traits", {"limit": "0"}, 400, "validation_error"),
        (PID, "traits", {"limit": "201"}, 400, "validation_error"),
        (PID, "events", {"limit": "101"}, 400, "validation_error"),
        (PID, "events", {"start": "not-a-date"}, 400, "validation_error"),
        (PID, "events", {"sort": "sideways"}, 400, "validation_error"),
        # cursors that were never issued: a Segment-style 400, not a server error
        (PID, "events", {"next": "YQ"}, 400, "validation_error"),
        (PID, "events", {"next": "!!!"}, 400, "validation_error"),
        (PID, "external_ids", {"next": "YQ"}, 400, "validation_error"),
        (PID, "external_ids", {"next": "!!!"}, 400, "validation_error"),
        (PID, "traits", {"next": "\u00ff\u00fe"}, 400, "validation_error"),
    ],
)
def test_errors(
    store: ProfileStore, pid: str, section: str, params: dict, status: int, code: str
) -> None:
    with pytest.raises(ApiError) as exc:
        handle(store, pid, section, "/p", params, NOW)
    assert (exc.value.status, exc.value.code) == (status, code)
    assert exc.value.body()["error"]["message"]


def test_the_path_names_a_profile_of_this_space_by_any_identifier() -> None:
    known = {("user_id", "u1"): "use_1", ("email", "u1@x.io"): "use_1", ("ios.idfa", "F"): "use_2"}

    def resolve(id_type: str, value: str) -> str | None:
        return known.get((id_type, value))

    assert profile_id_of("s", "s", "users", "user_id:u1", resolve) == "use_1"
    assert profile_id_of("s", "s", "users", "email:u1@x.io", resolve) == "use_1"
    assert profile_id_of("s", "s", "users", "ios.idfa:F", resolve) == "use_2"
    for space, collection, identifier in (
        ("other", "users", "user_id:u1"),
        ("s", "accounts", "user_id:u1"),
        ("s", "users", "nonsense:u1"),
        ("s", "users", "email:"),
        ("s", "users", "email:nobody@x.io"),
    ):
        with pytest.raises(ApiError) as exc:
            profile_id_of("s", space, collection, identifier, resolve)
        assert (exc.value.status, exc.value.code) == (404, "not_found")


def test_merges_lists_the_profiles_merged_in_oldest_first() -> None:
    from engage_stream.profiles.record import Merge, ProfileRecord
    from engage_stream.profiles.store import ProfileStore
    from engage_stream.state.memory import MemoryKV

    store = ProfileStore(MemoryKV())
    rec = ProfileRecord(profile_id="use_1")
    rec.merges = [Merge("use_a", 1_700_000_000_000, "m1"), Merge("use_b", 1_700_000_001_000, "m2")]
    store.put(rec, None)
    body = handle(store, "use_1", "merges", "/p", {"limit": "1"}, 0)
    assert body["data"] == [
        {
            "segment_id": "use_a",
            "canonical_segment_id": "use_1",
            "triggering_event_id": "m1",
            "timestamp": "2023-11-14T22:13:20.000Z",
        }
    ]
    assert body["cursor"]["has_more"]
    more = handle(store, "use_1", "merges", "/p", {"next": body["cursor"]["next"]}, 0)
    assert [m["segment_id"] for m in more["data"]] == ["use_b"]
