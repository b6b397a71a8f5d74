"""OpenLineage out: START / COMPLETE / FAIL / ABORT RunEvents for every step, sent to a configured endpoint.

Events are derived from the step transitions the engine applies, with stable run ids
(uuid5 of the PipelineRun and the step), so a receiver sees the same id across retries and
operator restarts.  Sending happens on a background thread with retries and back-off and never
holds up reconciliation; an event still undeliverable after its retries is dropped and logged
(the lineage store, not this feed, is the record that is never lost).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import urllib.error
import urllib.request
from datetime import datetime
from functools import partial
from typing import Any

from headwater.lineage.openlineage import build_run_event
from headwater.lineage.records import DatasetRef
from headwater.models import PipelineRunStatus, StepPhase, StepStatus
from headwater.recording import run_id

__all__ = ["OpenLineageEmitter", "step_events"]

log = logging.getLogger(__name__)

_EVENT_TYPES = {StepPhase.SUCCEEDED: "COMPLETE", StepPhase.FAILED: "FAIL", StepPhase.CANCELLED: "ABORT"}


def _started(step: StepStatus | None) -> bool:
    return step is not None and step.job is not None and step.reason != "Reused"


def step_events(namespace: str, name: str, pipeline: str, old: PipelineRunStatus, new: PipelineRunStatus,
                now: datetime) -> list[dict[str, Any]]:
    """The RunEvents for the step transitions from ``old`` to ``new``."""
    before = {s.name: s for s in old.steps}
    declared = {s.id: s for s in (new.pipeline_spec.steps if new.pipeline_spec else [])}
    events = []
    for step in new.steps:
        prev, spec = before.get(step.name), declared.get(step.name)
        inputs = [DatasetRef(d.namespace, d.name) for d in (spec.inputs if spec else [])]
        outputs = [DatasetRef(d.namespace, d.name) for d in (spec.outputs if spec else [])]
        event = partial(build_run_event, run_id=run_id(namespace, name), pipeline=pipeline, step=step.name,
                        event_time=now, inputs=inputs, outputs=outputs)
        if _started(step) and not _started(prev):
            events.append(event("START"))
        kind = _EVENT_TYPES.get(step.phase)
        if kind and _started(step) and (prev is None or prev.phase != step.phase):
            rows = (step.result or {}).get("rowsAffected")
            counts = {outputs[0]: rows} if kind == "COMPLETE" and len(outputs) == 1 and isinstance(rows, int) else None
            events.append(event(kind, row_counts=counts, error=step.message if kind == "FAIL" else None))
    return events


class OpenLineageEmitter:
    """Posts RunEvents to ``url`` from a background thread, retrying with back-off."""

    def __init__(self, url: str, api_key: str | None = None, *, attempts: int = 8, timeout: float = 10.0) -> None:
        self.url, self.api_key, self.attempts, self.timeout = url, api_key, attempts, timeout
        self.sent = self.dropped = 0
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=100_000)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="openlineage-emitter", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(None)
        self._thread.join(timeout=10)

    def emit(self, event: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1
            log.warning("OpenLineage queue full; dropped a %s event", event.get("eventType"))

    def _loop(self) -> None:
        while not self._stop.is_set():
            event = self._queue.get()
            if event is not None:
                self._deliver(event)

    def _deliver(self, event: dict[str, Any]) -> None:
        delay = 0.5
        for attempt in range(1, self.attempts + 1):
            try:
                self._post(event)
                self.sent += 1
                return
            except (urllib.error.URLError, OSError) as exc:
                if attempt == self.attempts or self._stop.wait(delay):
                    log.warning("dropped OpenLineage %s event for %s after %d attempts: %s",
                                event.get("eventType"), event["job"]["name"], attempt, exc)
                    self.dropped += 1
                    return
                delay = min(delay * 2, 30.0)

    def _post(self, event: dict[str, Any]) -> None:
        request = urllib.request.Request(self.url, data=json.dumps(event).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        if self.api_key:
            request.add_header("Authorization", f"Bearer {self.api_key}")
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            response.read()
