"""The access-token check: Segment's Basic scheme, the token as the username."""

from __future__ import annotations

import base64

import pytest

from engage_stream.api.auth import basic_authorization, check_basic_auth
from engage_stream.api.errors import ApiError


def basic(user: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:".encode()).decode()


@pytest.mark.parametrize("header", [None, "Bearer x", basic("wrong"), "Basic !!!"])
def test_auth_rejects(header: str | None) -> None:
    with pytest.raises(ApiError) as exc:
        check_basic_auth(header, "secret")
    assert exc.value.status == 401 and exc.value.code == "authentication_error"


def test_auth_accepts_token_as_username() -> None:
    check_basic_auth(basic("secret"), "secret")


def test_the_header_sent_to_peers_is_accepted() -> None:
    check_basic_auth(basic_authorization("secret"), "secret")
    assert basic_authorization("secret") == basic("secret")
