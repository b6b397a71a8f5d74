"""The operator's runtime: one object that owns every client, thread and loop, from start to close.

Created at start-up from the :class:`~headwater.controller.config.Settings` that kopf's memo carries,
kept in that memo for the handlers, and closed at clean-up.  The kopf handlers only parse and call
into it; nothing else starts or stops a background activity that writes.  /metrics and the lineage API
are served before it, by ``controller.main`` (a standby serves them too, and runs none of this).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from kubernetes import client, config

from headwater.adapters.delivery import JsonPoster
from headwater.adapters.events import EventQueue
from headwater.adapters.isolation import Isolation
from headwater.adapters.kube import Kube, KubeClient
from headwater.adapters.metrics import Metrics
from headwater.controller.config import Settings
from headwater.controller.heap import release_free_memory
from headwater.controller.start_gate import StartGate
from headwater.controller.triggerer import Triggerer, WatchedPipelines
from headwater.lineage.baselines import StoreBaselines
from headwater.lineage.recorder import Recorder
from headwater.lineage.run_records import has_finalizer
from headwater.lineage.store import LineageStore
from headwater.pipelines.backfiller import backfill_once, set_backfill_condition
from headwater.pipelines.scheduler import schedule_pipeline, set_schedule_condition
from headwater.runs.engine import RunEngine, run_object
from headwater.runs.jobs import JobSettings
from headwater.runs.settling import UNSETTLED_SELECTOR, needs_settled_label, needs_settling
from headwater.sla.board import freshness_board
from headwater.sla.monitor import SlaMonitor
from headwater.spec import constants as c
from headwater.spec.models import RunPhase

__all__ = ["Runtime", "api_client"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class Runtime:
    """Everything the handlers share; :meth:`start` and :meth:`close` bracket the operator's life."""

    def __init__(self, settings: Settings, api_client: client.ApiClient, metrics: Metrics | None = None) -> None:
        self.settings = settings
        shard = settings.owned_shard()
        self.kube = KubeClient(api_client, owns=shard.owns if shard else None)
        self.events = EventQueue(self.kube)
        self.isolation = Isolation(self.events)
        self.metrics = metrics or Metrics()
        self.recorder = Recorder(partial(LineageStore.open, settings.database_url), self.kube, self.scopes(),
                                 settings.record_rescan_seconds, metrics=self.metrics, post_event=self.events) \
            if settings.database_url else None
        self.emitter = JsonPoster(settings.openlineage_url, settings.openlineage_api_key, name="openlineage",
                                  metrics=self.metrics, max_queue_bytes=settings.delivery_queue_bytes) \
            if settings.openlineage_url else None
        self.alerts = JsonPoster(settings.alert_webhook_url, settings.alert_webhook_token, name="alerts",
                                 metrics=self.metrics, max_queue_bytes=settings.delivery_queue_bytes) \
            if settings.alert_webhook_url else None
        self.sla = SlaMonitor(self.kube, self.metrics, self.events, self.alerts, self.scopes(),
                              settings.freshness_window_seconds, isolation=self.isolation)
        self.baselines = StoreBaselines(partial(LineageStore.open, settings.database_url, max_size=2)) \
            if settings.database_url else None
        jobs = JobSettings(settings.step_image, settings.job_ttl_seconds,
                           frozenset(settings.allowed_service_accounts))
        self.watched_pipelines = WatchedPipelines()
        self.engine = RunEngine(self.kube, jobs,
                                self.events, recorder=self.recorder, metrics=self.metrics,
                                emitter=self.emitter, on_finish=self.sla.run_finished, isolation=self.isolation,
                                baselines=self.baselines, triggering_pipeline=self.watched_pipelines.triggering)
        # new runs start after a burst of trigger creates, not among them
        self.start_gate = StartGate(self.reconcile)
        self.triggerer = Triggerer(settings.database_url,
                                   partial(LineageStore.open, settings.database_url, max_size=2),
                                   self.kube, self.scopes(), self.isolation, self.events,
                                   settings.trigger_rescan_seconds, metrics=self.metrics,
                                   watched=self.watched_pipelines, gate=self.start_gate) \
            if settings.database_url else None
        self._tasks: list[asyncio.Task[None]] = []

    def scopes(self) -> list[str | None]:
        """The namespaces the periodic loops look at; [None] means every namespace."""
        return list(self.settings.namespaces) or [None]

    def freshness_board(self) -> dict[str, Any]:
        """The web UI's freshness board: the SLAs and status of the Pipelines this operator watches."""
        return watched_board(self.kube, self.scopes())

    # --- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the Event poster, the periodic loops, the senders and the recorder."""
        own = self.settings
        self.events.start()
        self._every(own.resync_seconds, self.resync)
        self._every(own.schedule_interval_seconds, self.schedule)
        self._every(own.backfill_interval_seconds, self.backfill)
        self._every(own.freshness_interval_seconds, self.sla.evaluate_all)
        for poster in (self.emitter, self.alerts):
            if poster is not None:
                poster.start()
        if self.recorder is not None:
            recorder = self.recorder
            self.metrics.lineage_backlog.set_function(lambda: recorder.backlog)
            recorder.start()
        if self.triggerer is not None:
            self.triggerer.start()

    async def close(self) -> None:
        """Stop everything :meth:`start` started, loops first, then the threads, then the API client."""
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self.triggerer is not None:
            await asyncio.to_thread(self.triggerer.stop)
        await asyncio.to_thread(self.start_gate.close)
        if self.recorder is not None:
            await asyncio.to_thread(self.recorder.stop)
        if self.baselines is not None:
            await asyncio.to_thread(self.baselines.close)
        for poster in (self.emitter, self.alerts):
            if poster is not None:
                await asyncio.to_thread(poster.stop)
        await asyncio.to_thread(self.events.stop)
        self.kube.api_client.close()

    def _every(self, seconds: float, work: Callable[[], object]) -> None:
        """Run ``work`` in a worker thread every ``seconds``; an error is logged and the loop goes on."""
        async def loop() -> None:
            while True:
                await asyncio.sleep(seconds)
                try:
                    await asyncio.to_thread(work)
                except Exception:
                    log.exception("periodic %s failed", getattr(work, "__name__", work))
        self._tasks.append(asyncio.create_task(loop()))

    # --- the periodic passes ----------------------------------------------------------------
    # Each object is worked on in isolation: its error is logged once, posted as an Event on it, set as a
    # condition and backed off, and the pass goes on with the others (docs/architecture.md).
    def resync(self) -> None:
        """Safety net, whatever events were missed: re-plan every unfinished run, apply the after-finish
        effects of finished runs still ``Settled=False``, and (without a store) let held runs go."""
        for scope in self.scopes():
            # Streamed a page at a time: thousands of finished runs never sit in memory together (a list of
            # them all, every resync, kept the process' memory at the size of that list).
            # whatever Job events the watch may have missed: one list of the scope's step Jobs corrects the Jobs
            # kept; its failure is its own (the runs are planned on the Jobs seen, and the next resync lists again)
            self._in_scope(scope, "Jobs", self.engine.relist_jobs)
            self._in_scope(scope, "PipelineRuns", self._resync_scope)
        release_free_memory()  # what the pass (and the watch events since the last) parsed and let go

    def _resync_scope(self, scope: str | None) -> None:
        for run in self.kube.iter_runs(scope, UNSETTLED_SELECTOR):  # labelled settled: nothing left to do
            self.engine.saw(run)
            ended = RunPhase.ended((run.get("status") or {}).get("phase"))
            # let go without a store (with one, the recorder scans for its own work), or labelled settled
            if ended and (self.recorder is None or needs_settled_label(run)):
                self.finished(run)
            if not ended or needs_settling(run):
                self.reconcile(run)

    def arrived(self, run: dict[str, Any]) -> None:
        """A run the watch shows with something new: reconciled now, or, when it has not started and dataset
        triggers are creating a burst of runs, once the burst's creates are done (:mod:`.start_gate`)."""
        if not (run.get("status") or {}).get("phase") and self.start_gate.hold(run):
            return
        self.reconcile(run)

    def reconcile(self, run: dict[str, Any]) -> None:
        """Reconcile one run, its failure kept to it (the run event handlers come here too)."""
        meta = run["metadata"]
        self.isolation.run(
            run_object(run), "reconciling",
            partial(self.engine.reconcile, meta["namespace"], meta["name"]), reason="ReconcileFailed",
            on_failure=partial(self.engine.mark_reconcile_failure, meta["namespace"], meta["name"]),
            on_recovery=partial(self.engine.mark_reconcile_failure, meta["namespace"], meta["name"], None))

    def finished(self, run: dict[str, Any]) -> None:
        """A finished run: the recorder writes it and lets it go; without a store it is let go at once
        (its failure kept to it).  Once it owes nothing more, it joins its Pipeline's history, labelled settled,
        and leaves the watch."""
        if not has_finalizer(run):
            if needs_settled_label(run):
                self.isolation.run(run_object(run), "joining the run history", partial(self.engine.join_history, run),
                                   reason="HistoryFailed", kind=f"{c.PIPELINERUN_KIND}/history")
            return
        meta = run["metadata"]
        if self.recorder is not None:
            self.recorder.notify(meta["namespace"], meta["name"])
        else:
            self.isolation.run(run_object(run), "letting the run go", partial(self.engine.let_go, run),
                               reason="LetGoFailed", kind=f"{c.PIPELINERUN_KIND}/finalizer")

    def schedule(self) -> None:
        """Create the runs whose schedule slot is due."""
        for scope in self.scopes():
            for pipeline in self._listed(scope, "Pipelines", self.kube.list_pipelines):
                if (pipeline.get("spec") or {}).get("schedule") or \
                        (pipeline.get("status") or {}).get("nextScheduleTime"):
                    meta = pipeline["metadata"]
                    self.isolation.run(
                        pipeline, "scheduling", partial(schedule_pipeline, self.kube, pipeline, post_event=self.events),
                        reason="ScheduleFailed", kind=f"{c.PIPELINE_KIND}/schedule",
                        on_failure=partial(set_schedule_condition, self.kube, meta["namespace"], meta["name"]),
                        on_recovery=partial(set_schedule_condition, self.kube, meta["namespace"], meta["name"], None))

    def backfill(self) -> None:
        """Create the next slots' runs of every Backfill and write its progress."""
        for scope in self.scopes():
            for backfill in self._listed(scope, "Backfills", self.kube.list_backfills):
                self.isolation.run(backfill, "backfilling", partial(backfill_once, self.kube, backfill, self.events),
                                   reason="BackfillFailed", kind=c.BACKFILL_KIND,
                                   on_failure=partial(set_backfill_condition, self.kube, backfill),
                                   on_recovery=partial(set_backfill_condition, self.kube, backfill, None))

    def _listed(self, scope: str | None, what: str, lister: Callable[[str | None], list[dict[str, Any]]]
                ) -> list[dict[str, Any]]:
        """The objects of one scope; a scope that cannot be listed is logged once and skipped, not the pass."""
        return self._in_scope(scope, what, lister) or []

    def _in_scope(self, scope: str | None, what: str, work: Callable[[str | None], T]) -> T | None:
        """``work(scope)``; a scope whose objects cannot be listed is logged once and skipped, not the pass."""
        scope_obj = {"kind": "Namespace", "metadata": {"name": scope or "(all namespaces)"}}
        return self.isolation.run(scope_obj, f"listing {what}", partial(work, scope), reason="ListFailed",
                                  kind=f"Namespace/{what}", respect_backoff=False)


def watched_board(kube: Kube, scopes: list[str | None]) -> dict[str, Any]:
    """The freshness board over the Pipelines in ``scopes`` that ``kube`` lists (a shard's own only)."""
    return freshness_board(p for scope in scopes for p in kube.list_pipelines(scope))


def board_reader(settings: Settings) -> Callable[[], dict[str, Any]]:
    """The freshness board the operator's API serves, with a Kubernetes client of its own: the API answers
    from a standby too, before any Runtime exists."""
    shard = settings.owned_shard()
    kube = KubeClient(api_client(2), owns=shard.owns if shard else None)
    scopes: list[str | None] = list(settings.namespaces) or [None]
    return partial(watched_board, kube, scopes)


def api_client(pool: int) -> client.ApiClient:
    """A Kubernetes API client: in-cluster credentials when in a pod, the kubeconfig otherwise."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    configuration = client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = pool
    return client.ApiClient(configuration)
