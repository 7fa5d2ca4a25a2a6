"""Schedules across daylight-saving changes, and the send firing at such an instant through
the profiles stage with the clock injected (`Replay.advance`): the zone's rules that day,
never a fixed offset nor the machine's zone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engage_stream.broadcasts.catalog import BroadcastEntry
from engage_stream.broadcasts.models import Schedule
from tests.broadcasts.test_sending import messages, population, replay, spring

SEC = 1000


def utc(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


@pytest.mark.parametrize(
    ("local", "zone", "instant"),
    [
        # Paris springs forward on 2027-03-28 at 02:00 (UTC+1 → UTC+2)
        ("2027-03-28T01:59", "Europe/Paris", "2027-03-28T00:59"),
        ("2027-03-28T03:00", "Europe/Paris", "2027-03-28T01:00"),
        ("2027-03-28T09:00", "Europe/Paris", "2027-03-28T07:00"),
        # a time the jump skips: with the offset before it (= 03:30 summer time)
        ("2027-03-28T02:30", "Europe/Paris", "2027-03-28T01:30"),
        # Paris falls back on 2027-10-31 at 03:00 (UTC+2 → UTC+1); 02:30 happens twice:
        # the first occurrence
        ("2027-10-31T02:30", "Europe/Paris", "2027-10-31T00:30"),
        ("2027-10-31T03:30", "Europe/Paris", "2027-10-31T02:30"),
        # New York changes two weeks before Europe: 09:00 there is 13:00Z from 2027-03-14
        ("2027-03-13T09:00", "America/New_York", "2027-03-13T14:00"),
        ("2027-03-20T09:00", "America/New_York", "2027-03-20T13:00"),
        # the southern hemisphere ends its summer time in April (UTC+11 → UTC+10)
        ("2027-04-03T09:00", "Australia/Sydney", "2027-04-02T22:00"),
        ("2027-04-04T09:00", "Australia/Sydney", "2027-04-03T23:00"),
        # a half-hour zone without daylight saving
        ("2027-03-28T09:00", "Asia/Kolkata", "2027-03-28T03:30"),
    ],
)
def test_a_local_time_is_the_instant_of_its_zone_that_day(
    local: str, zone: str, instant: str
) -> None:
    assert Schedule(at=local, time_zone=zone).at_ms == utc(instant)


def test_a_send_on_the_first_summer_day_fires_at_the_summer_instant() -> None:
    """09:00 in Paris on the day clocks spring forward is 07:00Z: not a tick before it, at
    the first tick there (an offset kept from the winter would fire at 08:00Z)."""
    defn = spring(schedule={"at": "2027-03-28T09:00", "time_zone": "Europe/Paris"})
    send_at = utc("2027-03-28T07:00")
    assert defn.send_at(0) == send_at
    r = replay(BroadcastEntry(defn, 1, 0))
    list(r.run(population(n=3)))  # the population of test_sending, in January
    assert messages(list(r.advance(send_at - SEC))) == []
    fired = messages(list(r.advance(send_at)))
    fired += messages(list(r.advance(send_at + 2 * SEC)))
    assert len(fired) == 4 and {m["at"] for m in fired} == {send_at}


def test_the_same_local_time_in_another_zone_is_another_instant() -> None:
    """09:00 in New York is six hours after 09:00 in Paris that week (both on summer time
    by then): the send waits for New York's."""
    defn = spring(schedule={"at": "2027-04-01T09:00", "time_zone": "America/New_York"})
    paris = utc("2027-04-01T07:00")
    new_york = utc("2027-04-01T13:00")
    r = replay(BroadcastEntry(defn, 1, 0))
    list(r.run(population(n=1)))
    assert messages(list(r.advance(paris))) == []
    assert messages(list(r.advance(new_york - SEC))) == []
    fired = messages(list(r.advance(new_york)))  # the snapshot; the drain starts after it
    fired += messages(list(r.advance(new_york + 2 * SEC)))
    assert len(fired) == 2 and {m["at"] for m in fired} == {new_york}
