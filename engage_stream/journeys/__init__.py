"""Journeys: durable, branching, time-delayed workflows per profile (reference §4, §5).

This package is the self-contained core; the profiles-stage wiring, Kafka outputs, API
and metrics come later.

- `models.py` — `kind: journey` definitions. Classic (v1) journeys enter on joining an
  audience (`use_historical_data` for members at publish), event-triggered (v2) ones on
  a trigger event with property filters and an optional audience filter, entry rule
  `once` or `every_time` with a `unique_identifier` (one instance per value). Exit after
  N days, up to 10 exit events (optionally matching the identifier, optional final
  send), v1 re-entry `never` / `every_time` / after a duration from the exit, at most 25
  concurrent instances. Steps: wait, wait_until, hold_until (≤ 9 events, max hold,
  timeout branch, loop_back ≤ 100), split, multi_split (v1), data_split (v2),
  random_split (≤ 5 branches summing to 100; a branch without `next` is a holdout), goto,
  send_to_destination, send_message (email / SMS), exit. The graph is acyclic.
- `machine.py` — the pure state machine: `JourneyMachine(defn).on_change / on_event /
  on_clock(state, profile, input)` → `Result(state, outputs, next_wakeup)`. The state is
  plain JSON (one value per profile and journey); every pending instant fires at its own
  due instant, in order, before the input, so outputs never depend on tick timing; all
  ids are hashes of journey, profile, instance, step and cause.
- `subscriptions.py` — subscription states per contact vector from
  `context.messaging_subscriptions` and the gate messages go through (subscribed only by
  default; email may opt into all states).
- `loading.py` — `load_journeys(path)`: `*.journey` YAML files (see `topologies/journeys/`)
  with file:line problems, kept apart from the definitions loader until journeys are
  applied by the worker.
"""
