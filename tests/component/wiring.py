"""The operator's parts wired to a :class:`~fakekube.FakeKube` as ``controller.runtime`` wires them to the
apiserver, and the fake's watch events handed to the real kopf handlers, as kopf would hand them.

Events are posted at once through :func:`~headwater.adapters.kube.post_event` rather than from the
background queue, so tests read them back without waiting.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import kopf

from fakekube import JOBS, PIPELINES, RUNS, Change, FakeKube, matches
from headwater.adapters.delivery import JsonPoster
from headwater.adapters.isolation import Isolation
from headwater.adapters.kube import post_event
from headwater.adapters.metrics import Metrics
from headwater.controller import handlers
from headwater.controller.runtime import Runtime
from headwater.controller.start_gate import StartGate
from headwater.controller.triggerer import WatchedPipelines
from headwater.lineage.recorder import Recorder
from headwater.runs.engine import Baselines, RunEngine
from headwater.runs.jobs import JobSettings
from headwater.sla.monitor import SlaMonitor
from headwater.spec import constants as c
from headwater.spec.names import job_name

__all__ = ["STEP_IMAGE", "Operator"]

STEP_IMAGE = "registry.example/headwater-step:1"
_RESOURCES = {RUNS: (c.GROUP, c.PIPELINERUN_PLURAL), JOBS: ("batch", "jobs")}
"""The fake's resources as the operator's watch selectors name them."""


class Operator:
    """Engine, SLA monitor and handlers over one fake API, sharing one clock."""

    def __init__(self, kube: FakeKube, clock: Callable[[], datetime], *, recorder: Recorder | None = None,
                 alerts: JsonPoster | None = None, namespaces: tuple[str, ...] = (),
                 baselines: Baselines | None = None) -> None:
        self.kube = kube
        self.namespaces = namespaces
        self.recorder = recorder
        self.metrics = Metrics()
        self.errors: list[Exception] = []
        self._unselected: set[tuple[str, str | None, str]] = set()  # objects outside their watch's selector
        self.watched_pipelines = WatchedPipelines()
        self.isolation = Isolation(self.events, clock=lambda: clock().timestamp())
        self.sla = SlaMonitor(kube, self.metrics, self.events, alerts, self.scopes(), isolation=self.isolation)
        self.engine = RunEngine(kube, JobSettings(STEP_IMAGE), self.events, clock=clock, recorder=recorder,
                                metrics=self.metrics, on_finish=self.sla.run_finished, isolation=self.isolation,
                                baselines=baselines, triggering_pipeline=self.watched_pipelines.triggering)
        self.start_gate = StartGate(self.reconcile)

    arrived = Runtime.arrived
    reconcile = Runtime.reconcile
    resync = Runtime.resync
    _resync_scope = Runtime._resync_scope
    finished = Runtime.finished
    backfill = Runtime.backfill
    _listed = Runtime._listed
    _in_scope = Runtime._in_scope
    freshness_board = Runtime.freshness_board

    def scopes(self) -> list[str | None]:
        return list(self.namespaces) or [None]

    def events(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        post_event(self.kube, obj, type_, reason, message)

    def run_one_step(self, namespace: str, name: str, pipeline: str, step: str, failure: str | None = None) -> None:
        """Create run ``name`` of ``pipeline`` and let the Job of its one ``step`` succeed (or fail, its last
        pod's message ``failure``), handing every event over."""
        self.kube.seed({"apiVersion": c.API_VERSION, "kind": c.PIPELINERUN_KIND, "metadata": {"name": name},
                        "spec": {"pipelineRef": {"name": pipeline}}}, namespace)
        self.deliver()
        if failure is None:
            self.kube.complete_job(namespace, job_name(name, step))
        else:
            self.kube.fail_job(namespace, job_name(name, step), failure)
        self.deliver()

    def deliver(self, rounds: int = 50) -> int:
        """Hand every watch event to its handler, and the events of the writes they make, until none is left.

        Returns how many were handed over.  A handler's exception is kept in :attr:`errors` and the
        next event goes on, as kopf logs the error of an event handler and does not call it again.
        """
        memo = kopf.Memo(runtime=self)
        handed = 0
        for _ in range(rounds):
            changes = self.kube.take_changes()
            if not changes:
                return handed
            for change in map(self._selected, changes):
                handler = self._handler(change)
                if handler is None:
                    continue
                handed += 1
                try:
                    handler(event={"type": change.type, "object": change.object}, body=change.object, memo=memo)
                except Exception as exc:
                    self.errors.append(exc)
        raise AssertionError(f"the handlers' writes still caused events after {rounds} rounds")

    def _selected(self, change: Change) -> Change:
        """The change as a watch with the operator's label selector shows it: an object that stops matching
        arrives once more, as a deletion, and then no more (its type ``""`` here: no handler is called)."""
        selector = handlers.WATCH_SELECTORS.get(_RESOURCES.get(change.resource, ("", "")))
        if selector is None:
            return change
        meta = change.object["metadata"]
        key = (change.resource, meta.get("namespace"), meta["name"])
        if matches(selector, meta.get("labels") or {}):
            self._unselected.discard(key)
            return change
        if change.type == "DELETED" or key in self._unselected:
            return Change("", change.resource, change.object)
        self._unselected.add(key)
        return Change("DELETED", change.resource, change.object)

    @staticmethod
    def _handler(change: Change) -> Callable[..., Any] | None:
        """The kopf handler registered for the change's resource (and, for Jobs, its label filter)."""
        labels = change.object["metadata"].get("labels") or {}
        if not change.type:
            return None
        if change.resource == RUNS:
            return handlers.run_event
        if change.resource == PIPELINES:
            return handlers.pipeline_event
        if change.resource == JOBS and labels.get(c.LABEL_MANAGED_BY) == c.MANAGER and c.LABEL_RUN in labels:
            return handlers.job_event
        return None
