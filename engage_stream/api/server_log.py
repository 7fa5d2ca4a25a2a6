"""aiohttp's log of requests it cannot even parse (an over-long request line or header, a
malformed one): one WARNING line, at most once a minute, never an ERROR with a traceback.

Why: aiohttp logs `LineTooLong` and friends as "Error handling request" at ERROR with the
parser's traceback. It is the client's mistake (or a scanner's), not the server's, it is
answered with a 400 either way, and a flood of them would bury real errors. Both web
servers (the worker's API and the collector) install `quiet_bad_requests()`.
"""

from __future__ import annotations

import logging
import time

from aiohttp.http_exceptions import BadHttpMessage

SERVER_LOGGER = "aiohttp.server"


class BadRequestLog(logging.Filter):
    """Turns aiohttp's records of unparseable requests into one short warning per
    `interval_s`, counting the ones it drops in between."""

    def __init__(self, interval_s: float = 60.0) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._last = -float("inf")
        self._dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, BadHttpMessage):
            return True
        now = time.monotonic()
        if record.levelno < logging.WARNING:
            return True  # aiohttp's own debug-level ones (non-HTTP traffic) stay as they are
        if now - self._last < self.interval_s:
            self._dropped += 1
            return False
        self._last = now
        detail = str(exc.message).splitlines()[0][:120] if getattr(exc, "message", "") else ""
        more = f" ({self._dropped} more since the last such warning)" if self._dropped else ""
        self._dropped = 0
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg = "rejected an unparseable HTTP request (400): %s: %s%s"
        record.args = (type(exc).__name__, detail, more)
        record.exc_info, record.exc_text = None, None
        return True


def quiet_bad_requests() -> None:
    """Install the filter on aiohttp's server logger (once per process)."""
    logger = logging.getLogger(SERVER_LOGGER)
    if not any(isinstance(f, BadRequestLog) for f in logger.filters):
        logger.addFilter(BadRequestLog())
