"""Cron slots: which one is due, what it is called, and what concurrencyPolicy does with it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from headwater.pipelines.scheduling import Action, decide, latest_slot, next_slot, run_name_for_slot
from headwater.spec.models import ConcurrencyPolicy

pytestmark = pytest.mark.unit

DAILY = "0 6 * * *"
T = datetime(2026, 11, 23, 6, 0, 20, tzinfo=UTC)


def test_the_latest_slot_is_the_one_just_passed_in_the_pipelines_time_zone() -> None:
    assert latest_slot(DAILY, None, T) == datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
    assert latest_slot(DAILY, "Europe/Berlin", T) == datetime(2026, 11, 23, 5, 0, tzinfo=UTC)
    assert next_slot(DAILY, "America/New_York", T) == datetime(2026, 11, 23, 11, 0, tzinfo=UTC)


def test_a_slot_already_handled_is_not_due_again() -> None:
    assert decide(DAILY, None, T, since=datetime(2026, 11, 23, 6, 0, tzinfo=UTC)).action == Action.NONE


def test_a_due_slot_runs_and_the_run_name_comes_from_the_slot() -> None:
    decision = decide(DAILY, None, T, since=T - timedelta(hours=1))
    assert decision.action == Action.RUN
    assert decision.slot is not None
    assert run_name_for_slot("revenue", decision.slot) == "revenue-202611230600"
    assert not decision.skipped_earlier


def test_after_downtime_only_the_latest_slot_is_considered() -> None:
    decision = decide("*/5 * * * *", None, T, since=T - timedelta(hours=2))
    assert (decision.action, decision.slot) == (Action.RUN, datetime(2026, 11, 23, 6, 0, tzinfo=UTC))
    assert decision.skipped_earlier


def test_a_slot_older_than_the_starting_deadline_is_recorded_as_missed() -> None:
    late = T + timedelta(minutes=10)
    decision = decide(DAILY, None, late, since=T - timedelta(days=1), starting_deadline_seconds=300)
    assert decision.action == Action.MISSED


def test_forbid_skips_a_slot_while_a_run_is_active_and_replace_replaces_it() -> None:
    since = T - timedelta(days=1)
    assert decide(DAILY, None, T, since, policy=ConcurrencyPolicy.FORBID, active_runs=1).action == Action.SKIP
    assert decide(DAILY, None, T, since, policy=ConcurrencyPolicy.REPLACE, active_runs=1).action == Action.REPLACE
    assert decide(DAILY, None, T, since, policy=ConcurrencyPolicy.ALLOW, active_runs=1).action == Action.RUN


def test_a_suspended_schedule_creates_nothing() -> None:
    assert decide(DAILY, None, T, T - timedelta(days=1), suspended=True).action == Action.NONE
