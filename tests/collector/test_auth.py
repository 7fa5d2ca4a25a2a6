"""Write key from Basic auth (username, empty password) or from `writeKey` in the body."""

from __future__ import annotations

import base64

import pytest

from engage_stream.collector.auth import authenticate, basic_username, body_write_key
from engage_stream.collector.errors import CollectorError
from engage_stream.collector.write_keys import Source, WriteKeys

KEYS = WriteKeys.parse({"wk1": "web", "wk2": "backend"}, "test")


def basic(user: str, password: str = "") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_basic_auth_username_is_the_write_key() -> None:
    assert basic_username(basic("wk1")) == "wk1"
    assert basic_username(basic("wk1", "ignored")) == "wk1"
    assert basic_username("basic " + base64.b64encode(b"wk1:").decode()) == "wk1"
    assert basic_username(None) is None
    assert basic_username("Bearer some.oauth.token") is None, "OAuth: the key is in the body"
    assert basic_username(basic("")) is None


def test_malformed_basic_header_is_401() -> None:
    with pytest.raises(CollectorError) as exc:
        basic_username("Basic !!!not-base64")
    assert exc.value.status == 401 and exc.value.code == "unauthorized"


def test_header_first_then_body() -> None:
    assert authenticate(KEYS, "wk1", {"writeKey": "wk2"}) == Source(source_id="web")
    assert authenticate(KEYS, None, {"writeKey": "wk2"}) == Source(source_id="backend")
    assert body_write_key({"writeKey": 5}) is None
    assert body_write_key([{"writeKey": "wk1"}]) is None


@pytest.mark.parametrize(
    ("header", "body", "message"),
    [
        (None, {}, "Missing write key"),
        (None, {"writeKey": ""}, "Missing write key"),
        ("nope", {}, "Invalid write key"),
        (None, {"writeKey": "nope"}, "Invalid write key"),
    ],
)
def test_missing_or_unknown_key_is_401_with_segment_error_body(
    header: str | None, body: dict[str, str], message: str
) -> None:
    with pytest.raises(CollectorError) as exc:
        authenticate(KEYS, header, body)
    err = exc.value
    assert err.status == 401 and message in err.message
    assert err.body().startswith(b'{"success":false,"code":"unauthorized","message":')
    assert "nope" not in err.message, "the key sent is not echoed"
