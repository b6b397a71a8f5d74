"""Backfills over the in-memory Kubernetes API: every slot runs once, in order, within the backfill's cap,
and the Pipeline's own schedule keeps firing beside it."""

from __future__ import annotations

from typing import Any

import pytest

from fakekube import BACKFILLS, JOBS, PIPELINES, RUNS, FakeKube, ManualClock
from headwater.pipelines.backfiller import backfill_once
from headwater.pipelines.scheduler import schedule_pipeline
from headwater.spec import constants as c
from manifests import pipeline, step
from wiring import Operator

pytestmark = pytest.mark.component

NS = "data"


def backfill(name: str, start: str, end: str, max_concurrent: int = 3, pipeline_name: str = "revenue"
             ) -> dict[str, Any]:
    return {"apiVersion": c.API_VERSION, "kind": c.BACKFILL_KIND, "metadata": {"name": name},
            "spec": {"pipelineRef": {"name": pipeline_name}, "from": start, "to": end,
                     "maxConcurrent": max_concurrent}}


def backfill_runs(kube: FakeKube) -> list[dict[str, Any]]:
    return kube.select(RUNS, NS, "headwater.dev/trigger=backfill")


def test_thirty_slots_with_a_cap_of_three_run_once_each_in_order_while_the_schedule_keeps_firing(
        kube: FakeKube, operator: Operator, clock: ManualClock) -> None:
    kube.seed(pipeline("revenue", [step("load")], schedule="0 6 * * *"), NS)
    kube.seed(backfill("nov", "2026-10-01T00:00:00Z", "2026-10-30T23:59:00Z"), NS)
    operator.deliver()
    order: list[str] = []
    scheduled: list[str] = []
    for _ in range(40):
        order += backfill_once(kube, kube.read(BACKFILLS, NS, "nov"))
        operator.deliver()
        active = [r for r in backfill_runs(kube) if r["status"].get("phase") not in ("Succeeded", "Failed")]
        assert len(active) <= 3
        clock.advance(86400)  # a day passes: the daily slot is due while backfill runs are active
        decision = schedule_pipeline(kube, kube.read(PIPELINES, NS, "revenue"), now=clock())
        scheduled.append(decision.action.value)
        operator.deliver()
        for job in kube.select(JOBS, NS):
            if not (job.get("status") or {}).get("succeeded"):
                kube.complete_job(NS, job["metadata"]["name"])
        operator.deliver()
        if kube.read(BACKFILLS, NS, "nov").get("status", {}).get("phase") == "Succeeded":
            break
    status = kube.read(BACKFILLS, NS, "nov")["status"]
    assert (status["phase"], status["progress"], status["succeeded"]) == ("Succeeded", "30/30", 30)
    expected = [f"nov-202610{day:02d}0600" for day in range(1, 31)]
    assert order == expected  # each slot once, oldest first
    assert sorted(r["metadata"]["name"] for r in backfill_runs(kube)) == expected
    assert len(scheduled) >= 10 and set(scheduled) == {"Run"}  # the backfill never made the schedule skip a slot


def test_a_backfill_of_a_pipeline_without_a_schedule_says_why_and_creates_nothing(
        kube: FakeKube, operator: Operator) -> None:
    kube.seed(pipeline("adhoc", [step("load")]), NS)
    kube.seed(backfill("nov", "2026-11-01T00:00:00Z", "2026-11-30T23:59:00Z", pipeline_name="adhoc"), NS)
    assert backfill_once(kube, kube.read(BACKFILLS, NS, "nov")) == []
    status = kube.read(BACKFILLS, NS, "nov")["status"]
    assert status["phase"] == "Failed"
    assert [(cond["reason"], cond["status"]) for cond in status["conditions"]] == [("NoSchedule", "False")]


def test_a_range_beyond_the_slot_limit_is_refused_with_a_condition_naming_the_limit(
        kube: FakeKube, operator: Operator) -> None:
    kube.seed(pipeline("revenue", [step("load")], schedule="* * * * *"), NS)
    kube.seed(backfill("year", "2026-01-01T00:00:00Z", "2026-12-31T00:00:00Z"), NS)
    backfill_once(kube, kube.read(BACKFILLS, NS, "year"))
    condition = kube.read(BACKFILLS, NS, "year")["status"]["conditions"][0]
    assert condition["reason"] == "TooManySlots" and "1000" in condition["message"]
    assert backfill_runs(kube) == []


def test_steps_of_a_backfill_run_read_its_slot_as_their_logical_time(
        kube: FakeKube, operator: Operator, clock: ManualClock) -> None:
    kube.seed(pipeline("revenue", [step("load")], schedule="0 6 * * *"), NS)
    kube.seed(backfill("nov", "2026-11-02T00:00:00Z", "2026-11-02T23:00:00Z"), NS)
    operator.deliver()
    backfill_once(kube, kube.read(BACKFILLS, NS, "nov"))
    operator.deliver()
    job = kube.select(JOBS, NS)[0]
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0].get("env", [])}
    assert env["HEADWATER_LOGICAL_TIME"] == "2026-11-02T06:00:00Z"
    assert kube.read(RUNS, NS, "nov-202611020600")["status"]["logicalTime"] == "2026-11-02T06:00:00Z"


def test_a_backfill_whose_pass_fails_gets_an_event_and_a_condition_and_the_others_go_on(
        kube: FakeKube, operator: Operator) -> None:
    kube.seed(pipeline("revenue", [step("load")], schedule="0 6 * * *"), NS)
    kube.seed(backfill("a-broken", "2026-11-01T00:00:00Z", "2026-11-02T23:00:00Z"), NS)
    kube.seed(backfill("b-fine", "2026-11-01T00:00:00Z", "2026-11-02T23:00:00Z"), NS)
    operator.deliver()
    kube.fail("create_run", 500, name="a-broken-202611010600", times=None)
    operator.backfill()
    assert [r["metadata"]["name"] for r in backfill_runs(kube)] == ["b-fine-202611010600", "b-fine-202611020600"]
    broken = kube.read(BACKFILLS, NS, "a-broken")["status"]["conditions"]
    assert [(cond["type"], cond["status"], cond["reason"]) for cond in broken
            if cond["type"] == "Progressing"] == [("Progressing", "False", "BackfillFailed")]
    assert "BackfillFailed" in [reason for _, reason, _ in kube.events_about("a-broken")]
