"""Recording finished runs in the lineage store, without ever holding a run up and without losing one.

The backlog lives in the cluster: a finished PipelineRun without ``Recorded=True`` is still to be
written, and while a store is configured every started run carries the finalizer
``headwater.dev/lineage``, so deleting it (by hand, with its namespace, or by garbage collection
with its Pipeline) waits until it is written.  A background thread writes each run (idempotent
writes: a replay changes nothing), marks it ``Recorded=True`` and removes the finalizer.

Each pass also writes what every Ready Pipeline declares it writes (:mod:`headwater.lineage.declarations`),
once per generation, so that the store knows a dataset before its first run; the never-run declarations of
a Pipeline deleted while this process watched go with it.

When PostgreSQL or the apiserver is away, the whole pass backs off and the runs wait.  When one run
fails on its own (the store refuses its records), it gets ``Recorded=False`` with the reason, a
Warning Event and a back-off of its own, and the runs after it are recorded all the same.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from headwater.adapters.backoff import BackoffTracker
from headwater.adapters.kube import Kube, is_unavailable
from headwater.adapters.metrics import Metrics
from headwater.lineage.declarations import Declaration, declaration_for
from headwater.lineage.run_records import (
    CONDITION_RECORDED,
    finalizers_without,
    has_finalizer,
    is_deleting,
    is_recorded,
    needs_recorder,
    records_for_run,
)
from headwater.lineage.writes import write_declaration
from headwater.spec.conditions import with_condition
from headwater.spec.redaction import redact
from headwater.spec.text import clean
from headwater.spec.times import now

__all__ = ["Recorder", "outage"]

log = logging.getLogger(__name__)

Run = dict[str, Any]
EventSink = Callable[[dict[str, Any], str, str, str], None]

REASON_RECORD_FAILED = "RecordFailed"
REASON_DECLARE_FAILED = "DeclarationFailed"


def outage(exc: BaseException) -> str | None:
    """The reason when ``exc`` says the store or the apiserver is away (not this run's fault), else None."""
    if isinstance(exc, psycopg.OperationalError):  # connection refused or lost, pool timeout
        return "StoreUnavailable"
    return "ApiUnavailable" if is_unavailable(exc) else None


class Recorder:
    """A thread that writes finished runs to the store, marks them ``Recorded`` and lets them go."""

    def __init__(self, open_store: Callable[[], Any], kube: Kube, scopes: list[str | None],
                 rescan_seconds: float = 30.0, *, metrics: Metrics | None = None,
                 post_event: EventSink | None = None, retries: BackoffTracker | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._open_store, self.kube, self.scopes = open_store, kube, scopes
        self.rescan_seconds = rescan_seconds
        self.metrics = metrics or Metrics()
        self.post_event = post_event
        self.retries = retries or BackoffTracker(base=2.0, cap=300.0)
        self.declare_retries = BackoffTracker(base=2.0, cap=300.0)  # by Pipeline UID
        self.clock = clock
        self.store: Any = None
        self.backlog = 0
        self._declared: dict[str, tuple[str, str, int]] = {}  # Pipeline uid -> (namespace, name, generation) declared
        self._notified: dict[tuple[str, str], None] = {}  # in order, each run once however often notified
        self._guard = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lineage-recorder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        if self.store is not None:
            self.store.close()

    def notify(self, namespace: str, name: str) -> None:
        """A run finished, or a finished run is being deleted: see to it soon (the rescan would anyway)."""
        with self._guard:
            self._notified[(namespace, name)] = None
        self._wake.set()

    # --- the loop ---------------------------------------------------------------------------
    def _loop(self) -> None:
        delay = 1.0
        while not self._stop.is_set():
            try:
                self.run_pass()
                self._drain()
                delay = 1.0
            except Exception as exc:  # the database or the apiserver is away: back off, never crash
                reason = outage(exc) or "Unexpected"
                self.metrics.record_failures.labels(reason).inc()
                log.warning("lineage recording paused (%s runs waiting): %s: %s; retrying in %.0fs",
                            self.backlog, reason, clean(redact(exc), 300), delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)

    def run_pass(self) -> None:
        """Record every finished run that is due; raises when the store or the apiserver is away."""
        pending = [r for scope in self.scopes for r in self.kube.iter_runs(scope) if needs_recorder(r)]
        self.backlog = sum(1 for r in pending if not is_recorded(r))  # what waits, also while the store is away
        self.retries.keep_only(r["metadata"]["uid"] for r in pending)
        if self.store is None:
            self.store = self._open_store()
        for run in pending:
            if self._stop.is_set():
                return
            self._attempt(run)
        self._declare()

    def _declare(self) -> None:
        """Write the declaration of each Ready Pipeline not written yet for its generation, and drop the
        never-run declarations of the Pipelines deleted since.  One that the store refuses gets a Warning
        Event and a backoff (:attr:`declare_retries`); the others go on."""
        listed = [p for scope in self.scopes for p in self.kube.list_pipelines(scope)]
        names = {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in listed}
        self.declare_retries.keep_only([*(p["metadata"]["uid"] for p in listed), *self._declared])
        written: dict[str, tuple[str, str, int]] = {}  # uid -> (namespace, name, generation) written
        for pipeline in listed:
            declaration = declaration_for(pipeline)
            if declaration is None:
                continue  # not Ready (now): written again once it is
            uid, generation = declaration.version
            before = self._declared.get(uid)
            if (before is not None and before[2] == generation) or self._write(declaration, pipeline):
                written[uid] = (declaration.namespace, declaration.pipeline, generation)
        for uid, (namespace, name, _) in self._declared.items():
            if uid not in written and (namespace, name) not in names and \
                    not self._write(Declaration(namespace, name, (), (uid, 0))):
                written[uid] = (namespace, name, -1)  # deleted, its declarations not dropped yet: again when due
        self._declared = written

    def _write(self, declaration: Declaration, pipeline: dict[str, Any] | None = None) -> bool:
        """Write one declaration when it is due; a refusal of its own is counted, backed off and, for a
        Pipeline that exists, posted as a Warning Event on it (once per distinct error)."""
        uid = declaration.version[0]
        if not self.declare_retries.due(uid, self.clock()):
            return False
        try:
            with self.store.transaction() as conn:
                write_declaration(conn, declaration)
        except Exception as exc:
            if outage(exc):
                raise
            message = clean(f"{type(exc).__name__}: {redact(exc)}", 1024)
            failure, news = self.declare_retries.failed(uid, message, self.clock())
            self.metrics.record_failures.labels(REASON_DECLARE_FAILED).inc()
            log.warning("could not write the declared outputs of Pipeline %s (failure %d in a row, next try in "
                        "%.0fs or later): %s", declaration.pipeline, failure.attempts, failure.delay, message)
            if news and pipeline is not None and self.post_event is not None:
                self.post_event(pipeline, "Warning", REASON_DECLARE_FAILED,
                                f"declared outputs not in the lineage store: {message}")
            return False
        self.declare_retries.succeeded(uid)
        return True

    def _drain(self) -> None:
        """Record runs as they are notified, until it is time for the next full scan."""
        deadline = time.monotonic() + self.rescan_seconds
        while not self._stop.is_set() and (left := deadline - time.monotonic()) > 0:
            self._wake.wait(timeout=left)
            self._wake.clear()
            while not self._stop.is_set():
                with self._guard:
                    if not self._notified:
                        break
                    namespace, name = next(iter(self._notified))
                    del self._notified[(namespace, name)]
                run = self.kube.get_run(namespace, name)
                if run is not None and needs_recorder(run):
                    self._attempt(run)

    # --- one run ----------------------------------------------------------------------------
    def _attempt(self, run: Run) -> None:
        """Record one run if it is due; a failure of its own is marked on it and backed off."""
        uid = run["metadata"]["uid"]
        if not self.retries.due(uid, self.clock()):
            return
        try:
            self._record(run)
        except Exception as exc:
            if outage(exc):
                raise
            self._failed(run, exc)
        else:
            self.retries.succeeded(uid)

    def _record(self, run: Run) -> None:
        meta = run["metadata"]
        if not is_recorded(run):
            self.store.record(*records_for_run(run))
            self.backlog = max(self.backlog - 1, 0)
            log.info("Recorded PipelineRun %s/%s in the lineage store", meta["namespace"], meta["name"])
            if not is_deleting(run):  # a run on its way out needs no condition, only its finalizer removed
                marked = self._set_condition(run, "True", "Recorded", "run, steps and lineage are in the lineage store")
                if marked is None:
                    return
                run = marked
        if has_finalizer(run):
            self._with_latest(run, lambda r: self.kube.patch_run_metadata(
                meta["namespace"], meta["name"], {"finalizers": finalizers_without(r)},
                r["metadata"]["resourceVersion"]) if has_finalizer(r) else r)

    def _set_condition(self, run: Run, status: str, reason: str, message: str) -> Run | None:
        def write(latest: Run) -> Run | None:
            new = with_condition(latest.get("status") or {}, CONDITION_RECORDED, status, reason, message, now())
            return latest if new is None else self.kube.replace_run_status(latest, new)
        return self._with_latest(run, write)

    def _with_latest(self, run: Run, write: Callable[[Run], Run | None]) -> Run | None:
        """``write(run)``; on a conflict, again with the run read afresh.  None once the run is gone."""
        return self.kube.update_run(run, write, "it was recorded")

    def _failed(self, run: Run, exc: Exception) -> None:
        meta = run["metadata"]
        message = clean(f"{type(exc).__name__}: {redact(exc)}", 1024)
        failure, _ = self.retries.failed(meta["uid"], message, self.clock())
        self.metrics.record_failures.labels(REASON_RECORD_FAILED).inc()
        log.warning("could not record PipelineRun %s/%s (failure %d in a row, next try in %.0fs or later): %s",
                    meta["namespace"], meta["name"], failure.attempts, failure.retry_at - self.clock(), message)
        try:
            changed = with_condition(run.get("status") or {}, CONDITION_RECORDED, "False", REASON_RECORD_FAILED,
                                     message, now())
            if changed is not None and not is_deleting(run):
                self._set_condition(run, "False", REASON_RECORD_FAILED, message)
                if self.post_event is not None:
                    self.post_event(run, "Warning", REASON_RECORD_FAILED, f"not in the lineage store: {message}")
        except Exception as again:  # the mark is informative; the run is retried either way
            log.warning("could not mark PipelineRun %s/%s as not recorded: %s", meta["namespace"], meta["name"],
                        clean(redact(again), 300))
