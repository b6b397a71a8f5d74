"""History limits keep the newest finished runs and never touch running ones."""

from __future__ import annotations

from typing import Any

import pytest

from headwater.runs.history import runs_to_delete

pytestmark = pytest.mark.unit


def _run(name: str, phase: str | None, minute: int) -> dict[str, Any]:
    return {"metadata": {"name": name, "creationTimestamp": f"2026-11-23T06:{minute:02d}:00Z"},
            "status": {"phase": phase} if phase else {}}


def test_the_oldest_finished_runs_beyond_each_limit_are_deleted() -> None:
    runs = [_run(f"ok-{i}", "Succeeded", i) for i in range(5)]
    runs += [_run(f"bad-{i}", "Failed", i) for i in range(3)] + [_run("cancel", "Cancelled", 10)]
    runs += [_run("live", "Running", 0), _run("new", None, 0)]
    assert runs_to_delete(runs, keep_successful=2, keep_failed=2) == ["bad-0", "bad-1", "ok-0", "ok-1", "ok-2"]


def test_a_limit_of_zero_deletes_every_finished_run_of_that_kind() -> None:
    runs = [_run("ok", "Succeeded", 1), _run("bad", "Failed", 2)]
    assert runs_to_delete(runs, keep_successful=0, keep_failed=5) == ["ok"]


def test_protected_runs_count_toward_the_limit_but_are_not_deleted() -> None:
    runs = [_run(f"ok-{i}", "Succeeded", i) for i in range(4)]
    unsettled = {"ok-3", "ok-0"}  # the run that just finished, and an old one whose effects failed

    def protected(run: dict[str, Any]) -> bool:
        return run["metadata"]["name"] in unsettled

    assert runs_to_delete(runs, keep_successful=2, keep_failed=2, protected=protected) == ["ok-1"]


def test_a_backfills_runs_are_never_trimmed_by_the_pipelines_history_limit() -> None:
    backfilled = [{**_run(f"nov-{i}", "Succeeded", i), "spec": {"trigger": "backfill"}} for i in range(5)]
    assert runs_to_delete([*backfilled, _run("daily", "Succeeded", 9)], keep_successful=1, keep_failed=1) == []
