"""A crash inside a checkpoint, on request: for the chaos suite, never set in production.

A SIGKILL from outside lands wherever the worker happens to be — mostly waiting for the
broker — so the windows that matter, between the steps of a checkpoint (records produced
but state not stored; stored but offsets not committable), are almost never hit. With
`ENGAGE_FAULT_KILL_AT=<step>:<n>` the worker kills itself with SIGKILL right after `<step>`
(`prepared`, `produced`, `stored` or `committable`, `state.checkpoint.Step`) of its `n`-th
profiles-stage checkpoint (1-based): no shutdown hooks, no final commit, as a crash.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable

from engage_stream.state.checkpoint import Step

log = logging.getLogger(__name__)

ENV = "ENGAGE_FAULT_KILL_AT"


def kill_at(spec: str) -> Callable[[Step], None]:
    """The checkpoint's fault hook for `spec` (`<step>:<n>`); ValueError when malformed."""
    name, _, nth = spec.partition(":")
    try:
        step = Step[name.strip().upper()]
        n = int(nth)
    except (KeyError, ValueError):
        raise ValueError(
            f"{ENV}={spec!r}: expected <step>:<n>, step one of "
            f"{', '.join(s.name.lower() for s in Step)}, n ≥ 1"
        ) from None
    if n < 1:
        raise ValueError(f"{ENV}={spec!r}: n must be ≥ 1")
    seen = 0

    def hook(at: Step) -> None:
        nonlocal seen
        if at is not step:
            return
        seen += 1
        if seen == n:
            log.warning("%s: killing the worker after %s of checkpoint %d", ENV, step.name, n)
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def from_env() -> Callable[[Step], None] | None:
    spec = os.environ.get(ENV, "").strip()
    return kill_at(spec) if spec else None
