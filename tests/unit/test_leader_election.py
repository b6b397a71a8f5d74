"""Leader election decided as data: take, renew, wait, release, and when a holder must stop."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from headwater.controller.config import Settings
from headwater.controller.leases import LeaseRecord, Move, Observed, decide, observe, released, still_leading, written

pytestmark = pytest.mark.unit

ME, OTHER = "pod-b_1", "pod-a_1"
HELD = LeaseRecord(OTHER, 10, "t0", "t0", 3)


def test_without_a_lease_the_candidate_creates_it_holding_it() -> None:
    observed = observe(None, None, 100.0)
    assert decide(ME, observed, 100.0) is Move.CREATE
    record = written(ME, Move.CREATE, None, 10, "t1")
    assert record == LeaseRecord(ME, 10, "t1", "t1", 0)


def test_a_lease_held_by_another_is_left_alone_for_its_duration_on_the_candidates_own_clock() -> None:
    observed = observe(None, HELD, 100.0)
    assert decide(ME, observed, 100.0) is Move.WAIT
    assert decide(ME, observe(observed, HELD, 109.9), 109.9) is Move.WAIT
    # unchanged for the whole duration: the holder is gone
    assert decide(ME, observe(observed, HELD, 110.0), 110.0) is Move.TAKE


def test_a_renewal_restarts_the_candidates_clock() -> None:
    observed = observe(None, HELD, 100.0)
    renewed = LeaseRecord(OTHER, 10, "t0", "t8", 3)
    observed = observe(observed, renewed, 108.0)
    assert observed.since == 108.0
    assert decide(ME, observed, 115.0) is Move.WAIT
    assert decide(ME, observed, 118.0) is Move.TAKE


def test_an_unchanged_record_keeps_the_time_it_was_first_seen() -> None:
    first = observe(None, HELD, 100.0)
    assert observe(first, HELD, 105.0) is first


def test_the_renew_time_as_written_by_a_skewed_clock_does_not_matter() -> None:
    # a renewTime far in the past (the holder's clock is behind) does not make the Lease look expired
    skewed = LeaseRecord(OTHER, 10, "1999-01-01T00:00:00.000000Z", "1999-01-01T00:00:00.000000Z", 1)
    assert decide(ME, observe(None, skewed, 100.0), 100.5) is Move.WAIT


def test_a_released_lease_is_taken_at_once_and_counts_a_transition() -> None:
    free = released(HELD, "t5")
    assert free.holder == "" and free.duration_seconds == 1
    observed = observe(None, free, 100.0)
    assert decide(ME, observed, 100.0) is Move.TAKE
    taken = written(ME, Move.TAKE, free, 10, "t6")
    assert taken == LeaseRecord(ME, 10, "t6", "t6", 4)


def test_the_holder_renews_keeping_its_acquire_time() -> None:
    mine = LeaseRecord(ME, 10, "t0", "t0", 2)
    assert decide(ME, observe(None, mine, 100.0), 100.0) is Move.RENEW
    assert written(ME, Move.RENEW, mine, 10, "t2") == LeaseRecord(ME, 10, "t0", "t2", 2)


def test_nothing_is_written_while_waiting() -> None:
    with pytest.raises(ValueError):
        written(ME, Move.WAIT, HELD, 10, "t1")


def test_the_holder_stops_before_a_candidate_may_take_over() -> None:
    duration, deadline = 10, 7.0
    last_renewed = 100.0
    assert still_leading(last_renewed, 106.9, deadline)
    assert not still_leading(last_renewed, 107.0, deadline)
    # a candidate that saw that renewal (at or after it started) may take over at 110 at the earliest
    candidate = Observed(LeaseRecord(ME, duration, "t0", "t0"), last_renewed)
    assert decide(OTHER, candidate, 109.9) is Move.WAIT


def test_each_shard_has_a_lease_of_its_own() -> None:
    assert Settings().lease() == "headwater-operator"
    assert Settings(lease_name="hw-headwater", shard="1/3").lease() == "hw-headwater-shard-1-of-3"
    assert Settings(shard=" 0 / 2 ").shard == "0/2"
    assert Settings(shard="").owned_shard() is None


@pytest.mark.parametrize(("duration", "deadline", "retry"), [(10, 10, 2), (10, 7, 7), (5, 7, 2), (10, 12, 2)])
def test_lease_timings_that_could_let_two_leaders_act_are_refused(duration: int, deadline: float, retry: float) -> None:
    with pytest.raises(ValidationError, match="retry < renew deadline < duration"):
        Settings(lease_duration_seconds=duration, lease_renew_deadline_seconds=deadline, lease_retry_seconds=retry)
