"""The chaos suite (issue #15): a seeded workload through real workers on a real broker
while they are SIGKILLed (also during startup and recovery), lose their local state, see
the broker stop and start and a second worker join and leave; the outcome is compared with
an uninterrupted run and with `replay` of the chaos run's own input.

    python -m bench.chaos [--events N] [--kills K] [--seed S]
"""
