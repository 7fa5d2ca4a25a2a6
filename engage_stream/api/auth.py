"""Segment's access-token scheme: the token is the Basic username, the password is empty;
and the Bearer token that can guard `/metrics`.

Tokens are compared with `hmac.compare_digest`: the time a comparison takes does not tell a
caller how much of a guess was right.
"""

from __future__ import annotations

import base64
import hmac
import logging

from engage_stream.api.errors import ApiError

log = logging.getLogger(__name__)

DEFAULT_TOKEN = "dev-token"  # `Settings.api_token`'s default: for a laptop, never a deployment


def same(given: str, want: str) -> bool:
    """Whether two secrets are equal, in time independent of where they differ."""
    return hmac.compare_digest(given.encode(), want.encode())


def check_basic_auth(header: str | None, token: str) -> None:
    """Raises a 401 `ApiError` unless `header` carries `token`."""
    if not header or not header.startswith("Basic "):
        raise ApiError(401, "authentication_error", "Missing access token.")
    try:
        user, _, _ = base64.b64decode(header[6:]).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        raise ApiError(401, "authentication_error", "Malformed Authorization header.") from None
    if not same(user, token):
        raise ApiError(401, "authentication_error", "Invalid access token.")


def check_bearer(header: str | None, token: str) -> None:
    """Raises a 401 `ApiError` unless `header` is `Bearer <token>`."""
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not same(given.strip(), token):
        raise ApiError(
            401,
            "authentication_error",
            "This endpoint needs Authorization: Bearer <metrics token>.",
            {"WWW-Authenticate": 'Bearer realm="metrics"'},
        )


def basic_authorization(token: str) -> str:
    """The `Authorization` header value that `check_basic_auth(…, token)` accepts."""
    return "Basic " + base64.b64encode(f"{token}:".encode()).decode()


def warn_about_settings(api_token: str, internal_secret: str) -> list[str]:
    """Log (at WARNING, once at start) what makes this worker unsafe or limited as
    configured; returns the messages. Whether there will be peers is not known at start
    (workers join later), so a missing secret is always mentioned."""
    out = []
    if api_token == DEFAULT_TOKEN:
        out.append(
            "!!! ENGAGE_API_TOKEN is the default 'dev-token': anyone who can reach this "
            "worker can read every profile. Set ENGAGE_API_TOKEN to a secret value. !!!"
        )
    if not internal_secret:
        out.append(
            "ENGAGE_INTERNAL_SECRET is not set: with more than one worker, profile requests "
            "for another worker's partitions get 503 and the audiences, journeys and "
            "broadcasts APIs count only this worker's partitions. Set the same secret on "
            "every worker of the cluster."
        )
    for message in out:
        log.warning(message)
    return out
