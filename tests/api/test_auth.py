"""The access-token check: Segment's Basic scheme, the token as the username."""

from __future__ import annotations

import base64
import logging

import pytest

from engage_stream.api.auth import (
    basic_authorization,
    check_basic_auth,
    check_bearer,
    warn_about_settings,
)
from engage_stream.api.errors import ApiError
from engage_stream.api.peer_auth import (
    NONCE_HEADER,
    ReplayGuard,
    answer_is_genuine,
    sign_answer,
    sign_request,
    verify_request,
)


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


def test_metrics_bearer_token() -> None:
    check_bearer("Bearer scrape", "scrape")
    check_bearer("bearer  scrape", "scrape")
    for header in (None, "", "Bearer", "Bearer scrap", "Basic c2NyYXBlOg==", "Bearer scrapes"):
        with pytest.raises(ApiError) as exc:
            check_bearer(header, "scrape")
        assert exc.value.status == 401 and "WWW-Authenticate" in exc.value.headers


def test_startup_warns_loudly_about_the_default_token_and_a_missing_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="engage_stream.api.auth"):
        messages = warn_about_settings("dev-token", "")
    assert len(messages) == 2 and caplog.messages == messages
    assert "dev-token" in messages[0] and "ENGAGE_INTERNAL_SECRET" in messages[1]
    assert warn_about_settings("s3cret", "cluster") == []


def test_a_signed_request_verifies_once_within_the_window() -> None:
    guard = ReplayGuard()
    headers = sign_request("k", "GET", "/v1/internal/x?a=1", now=1000.0)
    nonce = verify_request("k", headers, "GET", "/v1/internal/x?a=1", guard, now=1010.0)
    assert nonce == headers[NONCE_HEADER]
    for secret, method, path, now in (
        ("k", "GET", "/v1/internal/x?a=1", 1010.0),  # the same nonce again
        ("other", "GET", "/v1/internal/x?a=1", 1010.0),
        ("", "GET", "/v1/internal/x?a=1", 1010.0),
    ):
        with pytest.raises(ApiError):
            verify_request(secret, headers, method, path, guard, now=now)
    fresh = sign_request("k", "GET", "/p", now=1000.0)
    for method, path, now in (("POST", "/p", 1000.0), ("GET", "/q", 1000.0), ("GET", "/p", 1031.0)):
        with pytest.raises(ApiError):
            verify_request("k", fresh, method, path, ReplayGuard(), now=now)


def test_an_answer_is_genuine_only_with_the_secret_nonce_status_and_body() -> None:
    sig = sign_answer("k", "n1", 200, b"{}")
    assert answer_is_genuine("k", "n1", 200, b"{}", sig)
    assert not answer_is_genuine("k", "n1", 200, b"{}", None)
    assert not answer_is_genuine("other", "n1", 200, b"{}", sig)
    assert not answer_is_genuine("k", "n2", 200, b"{}", sig)
    assert not answer_is_genuine("k", "n1", 404, b"{}", sig)
    assert not answer_is_genuine("k", "n1", 200, b"{1}", sig)
