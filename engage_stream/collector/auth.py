"""Which write key a request carries: Basic auth username, else `writeKey` in the body.

Segment accepts both (reference §9): `Authorization: Basic base64("<writeKey>:")`, or the
key in the JSON body (the browser SDK sends it there, and the OAuth variant sends a Bearer
token beside it). A header that is not Basic — a Bearer token — defers to the body, since
tokens are not issued here.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from typing import Any

from engage_stream.collector.errors import CollectorError
from engage_stream.collector.write_keys import Source, WriteKeys


def basic_username(authorization: str | None) -> str | None:
    """The username of a Basic `Authorization` header, or None if there is none."""
    if not authorization:
        return None
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise CollectorError.unauthorized("Malformed Basic authorization header.") from None
    return decoded.partition(":")[0] or None


def body_write_key(body: Any) -> str | None:
    if isinstance(body, Mapping):
        key = body.get("writeKey")
        if isinstance(key, str) and key:
            return key
    return None


def authenticate(keys: WriteKeys, header_key: str | None, body: Any) -> Source:
    """The source of the request's write key; 401 when it has none or an unknown one."""
    key = header_key or body_write_key(body)
    if key is None:
        raise CollectorError.unauthorized(
            "Missing write key: send it as the Basic auth username or as writeKey in the body."
        )
    source = keys.lookup(key)
    if source is None:
        raise CollectorError.unauthorized("Invalid write key.")
    return source


def check_metrics_token(authorization: str | None, token: str) -> None:
    """A 401 unless `authorization` is `Bearer <token>` (`Settings.metrics_token`; the
    caller skips this when none is set)."""
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        raise CollectorError(
            401,
            "unauthorized",
            "/metrics needs Authorization: Bearer <metrics token>.",
            {"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
