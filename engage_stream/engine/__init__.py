"""The pure evaluation engine: audiences and computed traits over profile events.

No Kafka, no Faust, no wall clock: `(profile state, event | clock | history,
definitions) → (new state, changes)`. See engine.py for the time semantics.
"""

from engage_stream.engine.changes import Change
from engage_stream.engine.engine import Engine, EngineSettings

__all__ = ["Change", "Engine", "EngineSettings"]
