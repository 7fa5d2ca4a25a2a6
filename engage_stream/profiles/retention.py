"""How much event history the workers keep, against what a definition looks back over.

Every edit or backfill evaluates a definition over the profile's stored history, so a
lookback longer than that history would silently undercount — and exit members whose
qualifying events were simply not kept. So such a definition is refused: by
`validate`/`apply` (with the file, path and the setting to change) and, should it reach a
worker configured with less history than the machine that applied it, by the worker,
which marks it Failed instead of evaluating it.
"""

from __future__ import annotations

from engage_stream.config import Settings
from engage_stream.definitions.catalog import AnyDefinition

SETTING = "ENGAGE_HISTORY_DAYS"


def lookback_problem(defn: AnyDefinition, settings: Settings) -> str | None:
    """Why the workers cannot evaluate `defn` over its whole lookback, or None."""
    history = defn.include_history
    if history is None or history.days <= settings.history_days:
        return None
    return (
        f"include_history looks back {history.days:g} days but the workers keep "
        f"{settings.history_days:g} days of event history ({SETTING}); raise {SETTING} to at "
        f"least {history.days:g} on every worker, or shorten the lookback"
    )
