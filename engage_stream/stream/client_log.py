"""The Kafka clients' retry logs, once per interval instead of once per attempt.

While the broker is unreachable every consumer and producer of the worker retries on its
own backoff (~100 ms) and aiokafka logs each attempt — "Unable connect to node",
"Unable to update metadata", "Failed fetch messages", "Group Coordinator Request failed" —
mostly at ERROR: about ten thousand lines in 30 s of outage with the worker's five clients
(issue #16), which bury the one line that matters and fill disks. The outage is still
said at once and at its level: the first record of each kind passes, the repeats within
`interval_s` are counted and dropped, and the first one after the interval passes with the
count. A kind is the logger and the message's format string, not its arguments, so node
ids, addresses and errors vary within one kind.
"""

from __future__ import annotations

import logging
import time

CLIENT_LOGGERS = ("aiokafka", "kafka")


class RepeatedClientLog(logging.Filter):
    def __init__(self, interval_s: float = 30.0) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._kinds: dict[tuple[str, object], tuple[float, int]] = {}  # → (passed at, dropped)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        kind = (record.name, record.msg)
        now = time.monotonic()
        last = self._kinds.get(kind)
        if last is not None and now - last[0] < self.interval_s:
            self._kinds[kind] = (last[0], last[1] + 1)
            return False
        self._kinds[kind] = (now, 0)
        if last is not None and last[1]:
            record.msg = f"{record.msg} (and {last[1]} more like it in the last %.0f s)"
            record.args = (*_args(record.args), now - last[0])
        return True


def _args(args: object) -> tuple[object, ...]:
    if args is None:
        return ()
    return args if isinstance(args, tuple) else (args,)


_FILTER = RepeatedClientLog()


def quiet_client_retries() -> None:
    """Install the filter on every logger of the Kafka clients (a logger's filter sees only
    the records logged to it, so each module's logger gets it; idempotent)."""
    import aiokafka.consumer.fetcher  # noqa: F401 (its modules create their loggers)
    import aiokafka.consumer.group_coordinator  # noqa: F401
    import aiokafka.producer.sender  # noqa: F401

    names = [n for n in logging.Logger.manager.loggerDict if n.split(".")[0] in CLIENT_LOGGERS]
    for name in names:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
