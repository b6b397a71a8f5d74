"""What a finished PipelineRun tells the lineage store: its run, steps, edges and dataset versions.

Pure: the records are derived from the run object alone (its status carries the pipeline snapshot),
so recording the same run twice writes the same facts.  A run is identified by its namespace, name
and UID: a run deleted and created again under the same name is another run.  ``Recorded=True`` on
the run's status says its records are in the store (:mod:`headwater.lineage.recorder` writes them).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from headwater.lineage import sqllineage
from headwater.lineage.records import (
    CheckRecord,
    DatasetRef,
    DatasetVersionRecord,
    DeclaredOutputsRecord,
    EdgeRecord,
    Record,
    RunRecord,
    StepRecord,
)
from headwater.runs import checks
from headwater.spec.conditions import condition_is
from headwater.spec.models import CheckResult, PipelineRunStatus, RunPhase, StepPhase, StepReason, StepSpec, StepStatus
from headwater.spec.times import parse_time

__all__ = [
    "CONDITION_RECORDED", "FINALIZER", "finalizers_with", "finalizers_without", "has_finalizer", "is_deleting",
    "is_recorded", "needs_recorder", "records_for_run", "run_id",
]

CONDITION_RECORDED = "Recorded"
FINALIZER = "headwater.dev/lineage"
"""Holds a started run until it is in the lineage store (only while a store is configured)."""


UID_PREFIX = 8


def run_id(namespace: str, name: str, uid: str) -> str:
    """How a PipelineRun is named in the lineage store and in OpenLineage: ``namespace/name/uid8``.

    The first 8 hex digits of the UID (random in a UUID v4) tell apart runs that had the same name
    at different times, and keep the id short enough to read and type.
    """
    return f"{namespace}/{name}/{uid[:UID_PREFIX]}"


def is_recorded(run: dict[str, Any]) -> bool:
    return condition_is(run, CONDITION_RECORDED, "True")


def has_finalizer(run: dict[str, Any]) -> bool:
    return FINALIZER in (run["metadata"].get("finalizers") or [])


def is_deleting(run: dict[str, Any]) -> bool:
    return bool(run["metadata"].get("deletionTimestamp"))


def finalizers_with(run: dict[str, Any]) -> list[str] | None:
    """The run's finalizers plus :data:`FINALIZER`; None when it has it, or is being deleted (the
    apiserver refuses new finalizers then)."""
    if has_finalizer(run) or is_deleting(run):
        return None
    return [*(run["metadata"].get("finalizers") or []), FINALIZER]


def finalizers_without(run: dict[str, Any]) -> list[str]:
    return [f for f in run["metadata"].get("finalizers") or [] if f != FINALIZER]


def needs_recorder(run: dict[str, Any]) -> bool:
    """A finished run the recorder still has work on: writing it, or letting it go (its finalizer)."""
    return RunPhase.ended((run.get("status") or {}).get("phase")) and (not is_recorded(run) or has_finalizer(run))


def _time(value: str | None) -> datetime | None:
    return parse_time(value) if value else None


_BIGINT = 2**63


def _rows(result: dict[str, Any] | None) -> int | None:
    """rowsAffected of a step's result, when it is a count PostgreSQL can hold (bigint)."""
    value = (result or {}).get("rowsAffected")
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < _BIGINT else None


def _datasets(step: StepSpec) -> tuple[tuple[DatasetRef, ...], tuple[DatasetRef, ...]]:
    """Declared datasets, plus for sql steps the tables their SQL reads or writes that were not declared
    (placed in the namespace of the step's declared outputs, the database the SQL runs in)."""
    inputs = {DatasetRef(d.namespace, d.name) for d in step.inputs}
    outputs = {DatasetRef(d.namespace, d.name) for d in step.outputs}
    home = next((d.namespace for d in step.outputs), None)
    if home:
        reads, writes = sqllineage.undeclared(step)
        inputs |= {DatasetRef(home, t) for t in reads}
        outputs |= {DatasetRef(home, t) for t in writes}
    return tuple(sorted(inputs)), tuple(sorted(outputs))


def _wrote(step: StepStatus) -> bool:
    """The step's Job wrote its outputs in this run: it succeeded, or its Job did and a check held the
    version back (then the version is recorded unpublished)."""
    if step.reason == StepReason.REUSED:
        return False
    return step.phase == StepPhase.SUCCEEDED or (step.phase == StepPhase.FAILED and step.reason ==
                                                 StepReason.CHECK_FAILED and bool(step.checks))


def _check_records(results: list[CheckResult], dataset: DatasetRef) -> tuple[CheckRecord, ...]:
    return tuple(CheckRecord(r.name, r.kind, r.severity.value, r.outcome.value, r.observed, r.baseline, r.message)
                 for r in results if r.dataset == str(dataset))


def records_for_run(run: dict[str, Any]) -> list[Record]:
    """Everything the store should know about a run: the run, its steps, and for each step that wrote
    its lineage edges and a version of each dataset it wrote, with its checks' verdicts (unpublished
    when a check of severity error failed)."""
    meta, spec = run["metadata"], run.get("spec") or {}
    status = PipelineRunStatus.model_validate(run.get("status") or {})
    pipeline = spec.get("pipelineRef", {}).get("name", "")
    rid = run_id(meta["namespace"], meta["name"], meta["uid"])
    out: list[Record] = [RunRecord(rid, pipeline, meta["namespace"], status.phase.value, spec.get("trigger", "manual"),
                                   _time(status.started_at), _time(status.finished_at),
                                   name=meta["name"], uid=meta["uid"])]
    snapshot = {s.id: s for s in (status.pipeline_spec.steps if status.pipeline_spec else [])}
    for step in status.steps:
        # why a step did not write (failed, cancelled, or skipped and because of what) is kept for explain
        unwritten = step.phase in (StepPhase.FAILED, StepPhase.CANCELLED, StepPhase.SKIPPED)
        out.append(StepRecord(rid, pipeline, step.name, step.phase.value, step.attempts, _time(step.started_at),
                              _time(step.finished_at), _rows(step.result), step.message if unwritten else None))
        declared = snapshot.get(step.name)
        if declared is not None and declared.outputs:
            out.append(DeclaredOutputsRecord(rid, pipeline, step.name,
                                             tuple(DatasetRef(o.namespace, o.name) for o in declared.outputs),
                                             namespace=meta["namespace"]))
        if declared is None or not _wrote(step):
            continue
        inputs, outputs = _datasets(declared)
        written = _time(step.finished_at) or datetime.now(UTC)
        if inputs or outputs:
            out.append(EdgeRecord(rid, pipeline, step.name, inputs, outputs, written, namespace=meta["namespace"]))
        fingerprint = (step.result or {}).get("schemaFingerprint")
        published = step.phase == StepPhase.SUCCEEDED
        declared_outputs = {DatasetRef(o.namespace, o.name): o for o in declared.outputs}
        for o in outputs:
            spec = declared_outputs.get(o)
            seen = checks.observe(step.result, spec, len(outputs) == 1) if spec is not None else None
            rows = seen.rows if seen is not None and seen.rows is not None else \
                (_rows(step.result) if len(outputs) == 1 else None)
            schema = (seen.schema if seen is not None else None) or \
                (fingerprint if isinstance(fingerprint, str) else None)
            out.append(DatasetVersionRecord(o, rid, pipeline, step.name, written, _bounded(rows), schema,
                                            published, _check_records(step.checks or [], o),
                                            logical_time=_time(status.logical_time)))
    return out


def _bounded(rows: int | None) -> int | None:
    return rows if rows is not None and rows < _BIGINT else None
