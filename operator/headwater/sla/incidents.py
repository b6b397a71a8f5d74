"""What a finished run changes in the datasets' state: pure.

A run's successful steps move their outputs' ``lastUpdated`` forward (never back: a run settled late
does not undo a newer write).  A failed run is an incident: every dataset downstream of the failed
steps' outputs, across pipelines, is at risk until the next successful run of the pipeline at fault
clears what it caused.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from headwater.runs import checks
from headwater.runs.settling import finished_later
from headwater.sla.alerts import DatasetGraph, Incident, check_alert_id, step_cause
from headwater.spec.models import DatasetStatus, PipelineRunStatus, PipelineSpec, RunPhase, StepPhase, StepReason

__all__ = ["check_warnings", "clear_risk", "failure_incident", "mark_at_risk", "record_writes", "steps_that_wrote"]


def steps_that_wrote(status: PipelineRunStatus) -> dict[str, str | None]:
    """The steps of a run that wrote their outputs (succeeded, not reused), with when they finished."""
    return {s.name: s.finished_at for s in status.steps
            if s.phase == StepPhase.SUCCEEDED and s.reason != StepReason.REUSED}


def record_writes(spec: PipelineSpec, datasets: list[DatasetStatus], wrote: Mapping[str, str | None],
                  run: str) -> None:
    """Move the outputs of the steps in ``wrote`` (step id: finish time) to that write, only forward."""
    by_key = {(d.namespace, d.name): d for d in datasets}
    for step in spec.steps:
        if step.id not in wrote:
            continue
        written = wrote[step.id]
        for out in step.outputs:
            entry = by_key[(out.namespace, out.name)]
            if not entry.last_updated or finished_later(written, entry.last_updated):
                entry.last_updated, entry.last_run = written, run


def failure_incident(graph: DatasetGraph, namespace: str, pipeline: str, run: str,
                     status: PipelineRunStatus) -> Incident | None:
    """The incident of a failed run: caused by its failed steps, rooted at their outputs; None otherwise."""
    if status.phase != RunPhase.FAILED:
        return None
    failed = [s for s in status.steps if s.phase == StepPhase.FAILED]
    roots = [k for s in failed for k in graph.outputs_of_step.get((namespace, pipeline, s.name), [])]
    cause = "; ".join(step_cause(pipeline, f"{namespace}/{run}", s) for s in failed)
    return Incident.build(graph, cause, f"{namespace}/{pipeline}", roots)


def check_warnings(graph: DatasetGraph, namespace: str, pipeline: str, run: str, uid: str,
                   status: PipelineRunStatus) -> list[tuple[str, Incident]]:
    """One announcement (alert id, incident) per warning-severity check that failed on a published version
    (a succeeded step): these put nothing at risk.  A version held back is announced by the run's incident."""
    warned: list[tuple[str, Incident]] = []
    for step in status.steps:
        if step.phase != StepPhase.SUCCEEDED:
            continue
        for verdict in checks.failed_warnings(step.checks or []):
            cause = (f"{pipeline}/{step.name} in run {namespace}/{run}: {checks.describe(verdict)} "
                     f"(warning: the version is published)")
            roots = [checks.split_label(verdict.dataset)]
            warned.append((check_alert_id(uid, step.name, verdict.dataset, verdict.name),
                           Incident.build(graph, cause, f"{namespace}/{pipeline}", roots)))
    return warned


def mark_at_risk(datasets: list[DatasetStatus], incident: Incident) -> None:
    """Put the incident's datasets at risk, naming its cause and source."""
    at_risk: Collection[tuple[str, str]] = set(incident.affected)
    for d in datasets:
        if (d.namespace, d.name) in at_risk:
            d.at_risk, d.at_risk_source = incident.cause[:1024], incident.source


def clear_risk(datasets: list[DatasetStatus], source: str) -> None:
    """Clear the risks that ``source`` (namespace/pipeline) caused."""
    for d in datasets:
        if d.at_risk_source == source:
            d.at_risk = d.at_risk_source = None
