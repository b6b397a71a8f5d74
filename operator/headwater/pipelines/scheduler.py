"""Acting on cron schedules: create the slot's PipelineRun, skip, replace or record a miss."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from headwater.adapters.kube import Kube
from headwater.pipelines import scheduling, triggering
from headwater.pipelines.loop_conditions import set_loop_condition
from headwater.pipelines.scheduling import Action
from headwater.spec import constants as c
from headwater.spec.conditions import is_ready
from headwater.spec.models import PipelineSpec, RunPhase, Trigger, WithSchedule
from headwater.spec.names import label_value
from headwater.spec.times import isotime, parse_time

__all__ = ["CONDITION_SCHEDULED", "schedule_pipeline", "scheduled_run", "set_schedule_condition"]

CONDITION_SCHEDULED = "Scheduled"

log = logging.getLogger(__name__)


def scheduled_run(pipeline: dict[str, Any], slot: datetime) -> dict[str, Any]:
    """The PipelineRun of one schedule slot, owned by its Pipeline."""
    meta = pipeline["metadata"]
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.PIPELINERUN_KIND,
        "metadata": {
            "name": scheduling.run_name_for_slot(meta["name"], slot),
            "namespace": meta["namespace"],
            "labels": {c.LABEL_PIPELINE: label_value(meta["name"]), c.LABEL_TRIGGER: Trigger.SCHEDULE.value},
            "ownerReferences": [{"apiVersion": c.API_VERSION, "kind": c.PIPELINE_KIND, "name": meta["name"],
                                 "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": {"pipelineRef": {"name": meta["name"]}, "trigger": Trigger.SCHEDULE.value,
                 "scheduledFor": isotime(slot)},
    }


def schedule_pipeline(kube: Kube, pipeline: dict[str, Any], now: datetime | None = None,
                      post_event: Any = None) -> scheduling.Decision:
    """Run one scheduling pass for a Pipeline with a schedule.

    A Pipeline that is not Ready for its current generation is skipped (its Ready condition says why),
    so a spec the operator cannot run never reaches the cron parser here.  This pass owns
    ``status.lastScheduleTime`` and ``status.nextScheduleTime`` and nothing else.
    """
    now = now or datetime.now(UTC)
    meta, status = pipeline["metadata"], pipeline.get("status") or {}
    if not (pipeline.get("spec") or {}).get("schedule") or not is_ready(pipeline):
        _set_next(kube, pipeline, None)
        return scheduling.Decision(Action.NONE)
    spec = PipelineSpec.model_validate(pipeline["spec"])
    assert spec.schedule is not None
    upcoming = None if spec.suspend else isotime(scheduling.next_slot(spec.schedule, spec.time_zone, now))
    since = parse_time(status.get("lastScheduleTime") or meta["creationTimestamp"])
    runs = kube.list_pipeline_runs(meta["namespace"], meta["name"])
    # a backfill's runs have their own concurrency cap: they never hold a scheduled slot back
    active = [r for r in runs if not RunPhase.ended((r.get("status") or {}).get("phase"))
              and (r.get("spec") or {}).get("trigger") != Trigger.BACKFILL.value]
    decision = scheduling.decide(
        spec.schedule, spec.time_zone, now, since, suspended=spec.suspend,
        starting_deadline_seconds=spec.starting_deadline_seconds, policy=spec.concurrency_policy,
        active_runs=len(active))
    if decision.slot is None:
        _set_next(kube, pipeline, upcoming)
        return decision
    slot = decision.slot
    if any(r["metadata"]["name"] == scheduling.run_name_for_slot(meta["name"], slot) for r in runs):
        # The slot's run exists: an earlier pass created it and then failed to record the slot. Acting again
        # would take that run for an earlier one (Replace would cancel it, Forbid call the slot skipped).
        decision = scheduling.Decision(Action.RUN, slot, decision.skipped_earlier)
    elif _datasets_came_first(spec, runs, since):
        message = (f"slot {isotime(slot)} not run: a dataset-triggered run was created since the slot before "
                   "(withSchedule NoLaterThan)")
        log.info("Pipeline %s/%s: %s", meta["namespace"], meta["name"], message)
        if post_event is not None:
            post_event(pipeline, "Normal", "SatisfiedByDatasets", message)
    else:
        _act(kube, pipeline, decision, active, post_event)
    kube.patch_pipeline_status(meta["namespace"], meta["name"], {
        "lastScheduleTime": isotime(slot), "nextScheduleTime": upcoming})
    return decision


def _datasets_came_first(spec: PipelineSpec, runs: list[dict[str, Any]], since: datetime) -> bool:
    datasets = spec.triggers.datasets if spec.triggers else None
    return bool(datasets and datasets.with_schedule == WithSchedule.NO_LATER_THAN
                and triggering.deadline_satisfied(runs, since))


def _set_next(kube: Kube, pipeline: dict[str, Any], upcoming: str | None) -> None:
    """Keep ``status.nextScheduleTime`` true (a merge patch: the scheduler is its only writer)."""
    meta = pipeline["metadata"]
    if (pipeline.get("status") or {}).get("nextScheduleTime") != upcoming:
        kube.patch_pipeline_status(meta["namespace"], meta["name"], {"nextScheduleTime": upcoming})


def set_schedule_condition(kube: Kube, namespace: str, name: str, failure: str | None) -> None:
    """The Scheduled condition: False with the error while scheduling this Pipeline fails, True after."""
    set_loop_condition(kube, namespace, name, CONDITION_SCHEDULED, failure, failed_reason="ScheduleFailed",
                       ok_reason="Scheduled", ok_message="the schedule is evaluated again")


def _act(kube: Kube, pipeline: dict[str, Any], decision: scheduling.Decision,
         active: list[dict[str, Any]], post_event: Any) -> None:
    meta = pipeline["metadata"]
    slot = decision.slot
    assert slot is not None
    def say(type_: str, reason: str, message: str) -> None:
        log.info("Pipeline %s/%s: %s", meta["namespace"], meta["name"], message)
        if post_event is not None:
            post_event(pipeline, type_, reason, message)
    if decision.skipped_earlier:
        say("Warning", "MissedSchedule", "earlier schedule slots passed while the operator was away; "
            f"only the latest ({isotime(slot)}) is considered")
    if decision.action == Action.MISSED:
        say("Warning", "MissedSchedule", f"slot {isotime(slot)} is past startingDeadlineSeconds; not run")
        return
    if decision.action == Action.SKIP:
        names = ", ".join(r["metadata"]["name"] for r in active)
        say("Normal", "SkippedSchedule", f"slot {isotime(slot)} skipped: concurrencyPolicy Forbid and {names} "
            "still running")
        return
    if decision.action == Action.REPLACE:
        for run in active:
            kube.patch_run_spec(meta["namespace"], run["metadata"]["name"], {"cancel": True})
            say("Normal", "ReplacedRun", f"cancelled {run['metadata']['name']} (concurrencyPolicy Replace)")
    body = scheduled_run(pipeline, slot)
    if kube.create_run(meta["namespace"], body):
        say("Normal", "ScheduledRun", f"Created PipelineRun {body['metadata']['name']} for slot {isotime(slot)}")


