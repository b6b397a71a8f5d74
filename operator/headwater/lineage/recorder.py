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
from typing import Any

from headwater.adapters.kube import Kube
from headwater.lineage.run_records import CONDITION_RECORDED, is_recorded, records_for_run
from headwater.spec.models import RunPhase
from headwater.spec.redaction import redact
from headwater.spec.times import isotime, now

__all__ = ["Recorder"]

log = logging.getLogger(__name__)


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
                            self.backlog, redact(exc), delay)
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
                if RunPhase.ended((r.get("status") or {}).get("phase")) and not is_recorded(r)]

    def _record(self, run: dict[str, Any]) -> None:
        if not RunPhase.ended((run.get("status") or {}).get("phase")) or is_recorded(run):
            return
        self.store.record(*records_for_run(run))
        conditions = list((run.get("status") or {}).get("conditions") or [])
        conditions.append({"type": CONDITION_RECORDED, "status": "True", "reason": "Recorded",
                           "message": "run, steps and lineage are in the lineage store",
                           "lastTransitionTime": isotime(now())})
        meta = run["metadata"]
        self.kube.patch_run_status(meta["namespace"], meta["name"], {"conditions": conditions})
        log.info("Recorded PipelineRun %s/%s in the lineage store", meta["namespace"], meta["name"])

