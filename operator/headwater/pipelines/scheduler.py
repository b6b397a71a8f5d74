"""Acting on cron schedules: create the slot's PipelineRun, skip, replace or record a miss."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from headwater.adapters.kube import Kube
from headwater.pipelines import scheduling
from headwater.pipelines.scheduling import Action
from headwater.spec import constants as c
from headwater.spec.models import PipelineSpec, RunPhase, Trigger
from headwater.spec.times import isotime, parse_time

__all__ = ["schedule_pipeline", "scheduled_run"]

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
            "labels": {c.LABEL_PIPELINE: meta["name"], c.LABEL_TRIGGER: Trigger.SCHEDULE.value},
            "ownerReferences": [{"apiVersion": c.API_VERSION, "kind": c.PIPELINE_KIND, "name": meta["name"],
                                 "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": {"pipelineRef": {"name": meta["name"]}, "trigger": Trigger.SCHEDULE.value,
                 "scheduledFor": isotime(slot)},
    }


def schedule_pipeline(kube: Kube, pipeline: dict[str, Any], now: datetime | None = None,
                      post_event: Any = None) -> scheduling.Decision:
    """Run one scheduling pass for a Pipeline with a schedule."""
    now = now or datetime.now(UTC)
    meta, status = pipeline["metadata"], pipeline.get("status") or {}
    spec = PipelineSpec.model_validate(pipeline["spec"])
    if not spec.schedule or not _is_ready(status):
        return scheduling.Decision(Action.NONE)
    since = parse_time(status.get("lastScheduleTime") or meta["creationTimestamp"])
    runs = kube.list_runs(meta["namespace"], f"{c.LABEL_PIPELINE}={meta['name']}")
    active = [r for r in runs if not RunPhase.ended((r.get("status") or {}).get("phase"))]
    decision = scheduling.decide(
        spec.schedule, spec.time_zone, now, since, suspended=spec.suspend,
        starting_deadline_seconds=spec.starting_deadline_seconds, policy=spec.concurrency_policy,
        active_runs=len(active))
    if decision.slot is None:
        return decision
    _act(kube, pipeline, decision, active, post_event)
    kube.patch_pipeline_status(meta["namespace"], meta["name"], {
        "lastScheduleTime": isotime(decision.slot),
        "nextScheduleTime": isotime(scheduling.next_slot(spec.schedule, spec.time_zone, now))})
    return decision


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


def _is_ready(status: dict[str, Any]) -> bool:
    return any(cond.get("type") == "Ready" and cond.get("status") == "True"
               for cond in status.get("conditions") or [])
