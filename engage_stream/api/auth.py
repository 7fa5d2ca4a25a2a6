"""Segment's access-token scheme: the token is the Basic username, the password is empty.

Both directions: requests to this worker are checked with it, and the requests a worker
sends its peers (the audiences API's fan-out) carry it.
"""

from __future__ import annotations

import base64

from engage_stream.api.errors import ApiError


def check_basic_auth(header: str | None, token: str) -> None:
    """Raises a 401 `ApiError` unless `header` carries `token`."""
    if not header or not header.startswith("Basic "):
        raise ApiError(401, "authentication_error", "Missing access token.")
    try:
        user, _, _ = base64.b64decode(header[6:]).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        raise ApiError(401, "authentication_error", "Malformed Authorization header.") from None
    if user != token:
        raise ApiError(401, "authentication_error", "Invalid access token.")


def basic_authorization(token: str) -> str:
    """The `Authorization` header value that `check_basic_auth(…, token)` accepts."""
    return "Basic " + base64.b64encode(f"{token}:".encode()).decode()
