"""How workers prove to each other that they are workers of one cluster: HMAC-SHA256 with a
shared internal secret (`Settings.internal_secret`, ENGAGE_INTERNAL_SECRET), both ways.

Why not a token in a header: workers find their peers through the profiles consumer group,
and anything that can reach the broker can join that group and be assigned partitions; a
token sent to "a peer" would be handed to it (as the client's Profile API token once was,
issue #15). Here the secret never leaves the process: a request carries a timestamp, a
random nonce and HMAC(secret, request); the answer carries HMAC(secret, nonce, status,
body). A member without the secret can neither call a worker's internal endpoints nor
pass off an answer as a peer's — its requests get 401, its answers are dropped.

What it does not do: encrypt. Requests and answers (profiles, members) cross the network
in the clear, as the Profile API's do; put workers on a private network or behind TLS. A
captured request can be replayed only within `WINDOW_S` and only once per worker
(`ReplayGuard`), and it can only read what it read the first time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping

from engage_stream.api.errors import ApiError

TIME_HEADER = "X-Engage-Peer-Time"
NONCE_HEADER = "X-Engage-Peer-Nonce"
SIGNATURE_HEADER = "X-Engage-Peer-Signature"
ANSWER_HEADER = "X-Engage-Peer-Answer"
WINDOW_S = 30.0  # how far a peer's clock and the request's age may be from ours


def _mac(secret: str, *parts: bytes) -> str:
    return hmac.new(secret.encode(), b"\n".join(parts), hashlib.sha256).hexdigest()


def sign_request(
    secret: str, method: str, path_qs: str, now: float | None = None
) -> dict[str, str]:
    """The headers that make a request to `path_qs` a peer's (see `verify_request`)."""
    ts = f"{time.time() if now is None else now:.3f}"
    nonce = secrets.token_hex(16)
    mac = _mac(secret, b"request", ts.encode(), nonce.encode(), method.encode(), path_qs.encode())
    return {TIME_HEADER: ts, NONCE_HEADER: nonce, SIGNATURE_HEADER: mac}


def is_peer_request(headers: Mapping[str, str]) -> bool:
    """Whether a request claims to come from a peer (then it must prove it)."""
    return SIGNATURE_HEADER in headers


class ReplayGuard:
    """The nonces of the peer requests accepted in the last `WINDOW_S`: each is accepted
    once."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}

    def first_use(self, nonce: str, now: float) -> bool:
        if len(self._seen) > 1024:
            self._seen = {n: t for n, t in self._seen.items() if now - t <= WINDOW_S}
        if nonce in self._seen:
            return False
        self._seen[nonce] = now
        return True


def verify_request(
    secret: str,
    headers: Mapping[str, str],
    method: str,
    path_qs: str,
    guard: ReplayGuard,
    now: float | None = None,
) -> str:
    """The request's nonce (what its answer is signed with), or a 401 `ApiError` unless
    it is a peer's: signed with `secret`, recent, and not seen before."""
    now = time.time() if now is None else now
    if not secret:
        raise ApiError(
            401, "authentication_error", "Peer requests are refused: no internal secret is set."
        )
    ts, nonce = headers.get(TIME_HEADER, ""), headers.get(NONCE_HEADER, "")
    given = headers.get(SIGNATURE_HEADER, "")
    want = _mac(secret, b"request", ts.encode(), nonce.encode(), method.encode(), path_qs.encode())
    if not hmac.compare_digest(given.encode(), want.encode()):
        raise ApiError(401, "authentication_error", "Invalid peer signature.")
    try:
        age = abs(now - float(ts))
    except ValueError:
        age = float("inf")
    if age > WINDOW_S or not guard.first_use(nonce, now):
        raise ApiError(401, "authentication_error", "Stale or replayed peer request.")
    return nonce


def sign_answer(secret: str, nonce: str, status: int, body: bytes) -> str:
    """`ANSWER_HEADER`'s value for an answer to the peer request with `nonce`."""
    return _mac(secret, b"answer", nonce.encode(), str(status).encode(), body)


def answer_is_genuine(
    secret: str, nonce: str, status: int, body: bytes, signature: str | None
) -> bool:
    """Whether an answer to our request (`nonce`) was written by a worker with `secret`."""
    want = sign_answer(secret, nonce, status, body)
    return signature is not None and hmac.compare_digest(signature.encode(), want.encode())
