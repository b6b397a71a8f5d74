"""Recording finished runs in the lineage store, without ever holding a run up.

The backlog is durable because it lives in the cluster: a finished PipelineRun whose
status has no ``Recorded=True`` condition is still to be written.  A background thread
writes its records (all idempotent: replays change nothing), then sets the condition.
When PostgreSQL is unreachable, runs go on; the recorder retries with back-off and
catches up when the database returns.  History limits never delete an unrecorded run.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from headwater.adapters.kube import Kube
from headwater.lineage import sqllineage
from headwater.lineage.records import DatasetRef, DatasetVersionRecord, EdgeRecord, Record, RunRecord, StepRecord
from headwater.spec.models import PipelineRunStatus, StepPhase, StepSpec
from headwater.spec.status import isotime, parse_time

__all__ = ["CONDITION_RECORDED", "Recorder", "is_recorded", "records_for_run", "run_id"]

log = logging.getLogger(__name__)

CONDITION_RECORDED = "Recorded"
_TERMINAL = {"Succeeded", "Failed", "Cancelled"}


def run_id(namespace: str, name: str) -> str:
    """How a PipelineRun is named in the lineage store."""
    return f"{namespace}/{name}"


def is_recorded(run: dict[str, Any]) -> bool:
    conditions = (run.get("status") or {}).get("conditions") or []
    return any(cond.get("type") == CONDITION_RECORDED and cond.get("status") == "True" for cond in conditions)


def _time(value: str | None) -> datetime | None:
    return parse_time(value) if value else None


def _rows(result: dict[str, Any] | None) -> int | None:
    value = (result or {}).get("rowsAffected")
    return value if isinstance(value, int) and value >= 0 else None


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


def records_for_run(run: dict[str, Any]) -> list[Record]:
    """Everything the store should know about a run: the run, its steps, and for each succeeded step
    its lineage edges and a version of each dataset it wrote."""
    meta, spec = run["metadata"], run.get("spec") or {}
    status = PipelineRunStatus.model_validate(run.get("status") or {})
    pipeline = spec.get("pipelineRef", {}).get("name", "")
    rid = run_id(meta["namespace"], meta["name"])
    out: list[Record] = [RunRecord(rid, pipeline, meta["namespace"], status.phase.value, spec.get("trigger", "manual"),
                                   _time(status.started_at), _time(status.finished_at))]
    snapshot = {s.id: s for s in (status.pipeline_spec.steps if status.pipeline_spec else [])}
    for step in status.steps:
        failed = step.phase in (StepPhase.FAILED, StepPhase.CANCELLED)
        out.append(StepRecord(rid, pipeline, step.name, step.phase.value, step.attempts, _time(step.started_at),
                              _time(step.finished_at), _rows(step.result), step.message if failed else None))
        declared = snapshot.get(step.name)
        if declared is None or step.phase != StepPhase.SUCCEEDED or step.reason == "Reused":
            continue
        inputs, outputs = _datasets(declared)
        written = _time(step.finished_at) or datetime.now(UTC)
        if inputs or outputs:
            out.append(EdgeRecord(rid, pipeline, step.name, inputs, outputs, written))
        rows = _rows(step.result) if len(outputs) == 1 else None
        fingerprint = (step.result or {}).get("schemaFingerprint")
        out.extend(DatasetVersionRecord(o, rid, pipeline, step.name, written, rows,
                                        fingerprint if isinstance(fingerprint, str) else None) for o in outputs)
    return out


class Recorder:
    """A thread that writes finished runs to the store and marks them ``Recorded``."""

    def __init__(self, open_store: Callable[[], Any], kube: Kube, scopes: list[str | None],
                 rescan_seconds: float = 30.0) -> None:
        self._open_store, self.kube, self.scopes = open_store, kube, scopes
        self.rescan_seconds = rescan_seconds
        self.store: Any = None
        self.backlog = 0
        self._queue: queue.Queue[tuple[str, str]] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lineage-recorder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(("", ""))
        self._thread.join(timeout=10)
        if self.store is not None:
            self.store.close()

    def notify(self, namespace: str, name: str) -> None:
        """A run just finished: record it soon (the rescan would find it anyway)."""
        self._queue.put((namespace, name))

    def _loop(self) -> None:
        delay = 1.0
        while not self._stop.is_set():
            try:
                pending = self._pending()
                self.backlog = len(pending)
                self._connect()
                for run in pending:
                    self._record(run)
                    self.backlog -= 1
                self._drain()
                delay = 1.0
            except Exception as exc:  # the database or the apiserver is away: back off, never crash
                log.warning("lineage recording paused (%s runs waiting): %s; retrying in %.0fs",
                            self.backlog, exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)

    def _connect(self) -> None:
        if self.store is None:
            self.store = self._open_store()

    def _drain(self) -> None:
        """Record runs as they are notified, until it is time for the next full scan."""
        deadline = time.monotonic() + self.rescan_seconds
        while not self._stop.is_set() and (left := deadline - time.monotonic()) > 0:
            try:
                namespace, name = self._queue.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            run = self.kube.get_run(namespace, name) if name else None
            if run is not None:
                self._record(run)

    def _pending(self) -> list[dict[str, Any]]:
        """Every finished run not yet recorded (after downtime of the database or the operator)."""
        return [r for scope in self.scopes for r in self.kube.iter_runs(scope)
                if (r.get("status") or {}).get("phase") in _TERMINAL and not is_recorded(r)]

    def _record(self, run: dict[str, Any]) -> None:
        if (run.get("status") or {}).get("phase") not in _TERMINAL or is_recorded(run):
            return
        self.store.record(*records_for_run(run))
        conditions = list((run.get("status") or {}).get("conditions") or [])
        conditions.append({"type": CONDITION_RECORDED, "status": "True", "reason": "Recorded",
                           "message": "run, steps and lineage are in the lineage store",
                           "lastTransitionTime": isotime(datetime.now(UTC))})
        meta = run["metadata"]
        self.kube.patch_run_status(meta["namespace"], meta["name"], {"conditions": conditions})
        log.info("Recorded PipelineRun %s/%s in the lineage store", meta["namespace"], meta["name"])

