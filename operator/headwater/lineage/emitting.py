"""OpenLineage out: START / COMPLETE / FAIL / ABORT RunEvents for every step, sent to a configured endpoint.

Events are derived from the step transitions the engine applies, with stable run ids
(uuid5 of the PipelineRun's lineage id, which includes its UID, and the step), so a receiver sees
the same id across retries and operator restarts, and another id for a run re-created under the
same name.  Pure: a :class:`~headwater.adapters.delivery.JsonPoster` sends them on a background
thread with retries and back-off, never holding up reconciliation; an event still undeliverable after
its retries is dropped and logged (the lineage store, not this feed, is the record that is never lost).
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Any

from headwater.lineage.openlineage import build_run_event
from headwater.lineage.records import DatasetRef
from headwater.lineage.run_records import run_id
from headwater.runs.checks import split_label
from headwater.runs.jobs import RunRef
from headwater.spec.models import CheckOutcome, PipelineRunStatus, StepPhase, StepReason, StepStatus

__all__ = ["step_events"]

_EVENT_TYPES = {StepPhase.SUCCEEDED: "COMPLETE", StepPhase.FAILED: "FAIL", StepPhase.CANCELLED: "ABORT"}


def _started(step: StepStatus | None) -> bool:
    return step is not None and step.job is not None and step.reason != StepReason.REUSED


def _assertions(step: StepStatus) -> dict[DatasetRef, list[tuple[str, bool]]]:
    """The step's check verdicts per output (a check skipped for want of a baseline asserted nothing)."""
    out: dict[DatasetRef, list[tuple[str, bool]]] = {}
    for verdict in step.checks or []:
        if verdict.outcome != CheckOutcome.SKIPPED:
            out.setdefault(DatasetRef(*split_label(verdict.dataset)), []).append(
                (verdict.name, verdict.outcome == CheckOutcome.PASSED))
    return out


def step_events(run: RunRef, old: PipelineRunStatus, new: PipelineRunStatus, now: datetime) -> list[dict[str, Any]]:
    """The RunEvents for the step transitions from ``old`` to ``new`` of ``run``: run ids from its lineage id
    (:func:`headwater.lineage.run_records.run_id`), jobs in the namespace ``<namespace>/<pipeline>``."""
    lineage_id = run_id(run.namespace, run.name, run.uid)
    before = {s.name: s for s in old.steps}
    declared = {s.id: s for s in (new.pipeline_spec.steps if new.pipeline_spec else [])}
    events = []
    for step in new.steps:
        prev, spec = before.get(step.name), declared.get(step.name)
        inputs = [DatasetRef(d.namespace, d.name) for d in (spec.inputs if spec else [])]
        outputs = [DatasetRef(d.namespace, d.name) for d in (spec.outputs if spec else [])]
        event = partial(build_run_event, run_id=lineage_id, pipeline=run.pipeline, namespace=run.namespace,
                        step=step.name, event_time=now, inputs=inputs, outputs=outputs)
        if _started(step) and not _started(prev):
            events.append(event("START"))
        kind = _EVENT_TYPES.get(step.phase)
        if kind and _started(step) and (prev is None or prev.phase != step.phase):
            rows = (step.result or {}).get("rowsAffected")
            counts = {outputs[0]: rows} if kind == "COMPLETE" and len(outputs) == 1 and isinstance(rows, int) else None
            events.append(event(kind, row_counts=counts, error=step.message if kind == "FAIL" else None,
                                assertions=_assertions(step)))
    return events
