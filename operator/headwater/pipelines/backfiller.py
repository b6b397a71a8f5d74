"""Acting on Backfills: create the next slots' runs and write the progress (see ``pipelines.backfilling``)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from headwater.adapters.kube import Kube
from headwater.pipelines import backfilling
from headwater.spec import constants as c
from headwater.spec.conditions import set_condition
from headwater.spec.models import BackfillSpec, BackfillStatus, PipelineSpec
from headwater.spec.names import label_value
from headwater.spec.times import isotime

__all__ = ["CONDITION_PROGRESSING", "backfill_once", "set_backfill_condition"]

CONDITION_PROGRESSING = "Progressing"

log = logging.getLogger(__name__)


def _status(backfill: dict[str, Any], fields: dict[str, Any], ready: tuple[str, str, str]) -> dict[str, Any]:
    old = BackfillStatus.model_validate(backfill.get("status") or {})
    conditions = list(old.conditions)
    set_condition(conditions, c.CONDITION_READY, *ready, datetime.now(UTC), backfill["metadata"].get("generation"))
    return {**fields, "observedGeneration": backfill["metadata"].get("generation"),
            "conditions": [cond.model_dump(by_alias=True, exclude_none=True, mode="json") for cond in conditions]}


def _write(kube: Kube, backfill: dict[str, Any], status: dict[str, Any]) -> None:
    meta, old = backfill["metadata"], backfill.get("status") or {}
    if any(old.get(key) != value for key, value in status.items()):
        kube.patch_backfill_status(meta["namespace"], meta["name"], status)


def backfill_once(kube: Kube, backfill: dict[str, Any], post_event: Any = None) -> list[str]:
    """One pass over one Backfill; the names of the runs it created."""
    meta = backfill["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    spec = BackfillSpec.model_validate(backfill["spec"])
    pipeline = kube.get_pipeline(namespace, spec.pipeline_ref.name)
    problem: tuple[str, str] | None = None
    all_slots: list[datetime] = []
    if pipeline is None:
        problem = ("PipelineNotFound", f"Pipeline {spec.pipeline_ref.name} does not exist; the backfill waits for it")
    else:
        pipeline_spec = PipelineSpec.model_validate(pipeline["spec"])
        start, end = backfilling.range_of(spec)
        if pipeline_spec.schedule is None:
            problem = ("NoSchedule", f"Pipeline {spec.pipeline_ref.name} has no schedule, so it has no slots")
        elif end < start:
            problem = ("EmptyRange", "to is before from")
        else:
            try:
                all_slots = backfilling.slots(pipeline_spec.schedule, pipeline_spec.time_zone, start, end)
            except backfilling.TooManySlotsError as exc:
                problem = ("TooManySlots", str(exc))
    if problem is not None:
        phase = "Pending" if problem[0] == "PipelineNotFound" else "Failed"
        _write(kube, backfill, _status(backfill, {"phase": phase}, ("False", *problem)))
        return []
    runs = kube.list_runs(namespace, f"{c.LABEL_BACKFILL}={label_value(name)}")
    out = backfilling.plan(name, spec, all_slots, runs)
    created: list[str] = []
    for slot in out.create:  # oldest first: runs start in slot order
        body = backfilling.backfill_run(backfill, slot)
        if kube.create_run(namespace, body):
            created.append(body["metadata"]["name"])
            log.info("Backfill %s/%s: created PipelineRun %s for slot %s", namespace, name, body["metadata"]["name"],
                     isotime(slot))
            if post_event is not None:
                post_event(backfill, "Normal", "BackfillRun",
                           f"Created PipelineRun {body['metadata']['name']} for slot {isotime(slot)}")
    _write(kube, backfill, _status(backfill, out.status, ("True", "Valid", f"{len(all_slots)} slots to run")))
    return created


def set_backfill_condition(kube: Kube, backfill: dict[str, Any], failure: str | None) -> None:
    """The Progressing condition: False with the error while a pass over this Backfill fails, True after."""
    meta = backfill["metadata"]
    conditions = list(BackfillStatus.model_validate(backfill.get("status") or {}).conditions)
    state, reason, message = ("False", "BackfillFailed", failure) if failure else \
        ("True", "Progressing", "the backfill is worked on again")
    if set_condition(conditions, CONDITION_PROGRESSING, state, reason, message, datetime.now(UTC)):
        kube.patch_backfill_status(meta["namespace"], meta["name"], {"conditions": [
            cond.model_dump(by_alias=True, exclude_none=True, mode="json") for cond in conditions]})
