"""Dataset triggers at work: a thread that turns new published dataset versions into the runs they trigger.

Woken by the store's notification when a version commits (and every ``rescan_seconds`` anyway), a pass
looks at every Ready Pipeline with ``spec.triggers.datasets``, each in isolation (its failure gets an Event,
a ``Triggered=False`` condition, a backoff and ``headwater_trigger_failures_total``; the others go on).
For one Pipeline: create the runs of firings claimed earlier but not confirmed (a crash between claim and
create), then decide (:mod:`headwater.pipelines.triggering`), claim each firing in the store and create its
run.  Claims come first and run names derive from the consumed versions, so nothing fires twice and nothing
claimed is lost.
Each run created counts in ``headwater_trigger_firings_total`` and ``headwater_trigger_latency_seconds``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import psycopg

from headwater.adapters.isolation import Isolation
from headwater.adapters.kube import Kube
from headwater.adapters.metrics import Metrics
from headwater.lineage import triggers as outbox
from headwater.lineage.recorder import outage
from headwater.lineage.store import LineageStore
from headwater.pipelines import triggering
from headwater.pipelines.loop_conditions import set_loop_condition
from headwater.spec import constants as c
from headwater.spec.conditions import is_ready
from headwater.spec.models import PipelineSpec, TriggerVersion
from headwater.spec.redaction import redact
from headwater.spec.text import clean
from headwater.spec.times import parse_time

__all__ = ["CONDITION_TRIGGERED", "Triggerer", "trigger_pipeline"]

log = logging.getLogger(__name__)

CONDITION_TRIGGERED = "Triggered"
WORKERS = 8
"""Pipelines evaluated at once in a pass (each holds one store connection while it works)."""
EventSink = Callable[[dict[str, Any], str, str, str], None]


def _create(kube: Kube, store: LineageStore, pipeline: dict[str, Any], firing_id: int, run_name: str,
            versions: list[TriggerVersion], post_event: EventSink | None, metrics: Metrics | None) -> bool:
    meta = pipeline["metadata"]
    created = kube.create_run(meta["namespace"], triggering.triggered_run(pipeline, run_name, versions))
    with store.transaction() as conn:
        latency = outbox.confirm(conn, firing_id)
    if not created:  # it existed already: the pass that created it counted and reported it
        return False
    if metrics is not None:
        metrics.trigger_firings.labels(meta["namespace"], meta["name"]).inc()
        if latency is not None:
            metrics.trigger_latency.labels(meta["namespace"], meta["name"]).observe(latency)
    names = ", ".join(f"{v.name}#{v.version}" for v in versions)
    log.info("Pipeline %s/%s: created PipelineRun %s for %s", meta["namespace"], meta["name"], run_name, names)
    if post_event is not None:
        post_event(pipeline, "Normal", "TriggeredRun", f"Created PipelineRun {run_name} for new versions of {names}")
    return True


def trigger_pipeline(kube: Kube, store: LineageStore, pipeline: dict[str, Any],
                     post_event: EventSink | None = None, metrics: Metrics | None = None) -> list[str]:
    """One trigger pass for one Pipeline; the names of the runs it created."""
    meta = pipeline["metadata"]
    spec = PipelineSpec.model_validate(pipeline["spec"])
    if spec.triggers is None or spec.triggers.datasets is None or not is_ready(pipeline):
        return []
    consumer = triggering.consumer_key(meta["namespace"], meta["name"], meta["uid"])
    # Declared from the start: versions since the Pipeline's creation count; triggers added later start now.
    since = parse_time(meta["creationTimestamp"]) if meta.get("generation", 1) == 1 else None
    created: list[str] = []
    triggers = spec.triggers.datasets
    with store.transaction() as conn:  # one round of reads: registration, left-overs, what is pending
        outbox.register(conn, consumer, since)
        left_over = outbox.unconfirmed(conn, consumer)
        pending = [] if spec.suspend or left_over else \
            outbox.pending_versions(conn, consumer, [(d.namespace, d.name) for d in triggers.inputs])
    for claimed in left_over:
        if _create(kube, store, pipeline, claimed.firing_id, claimed.run_name, claimed.versions, post_event,
                   metrics):
            created.append(claimed.run_name)
    if spec.suspend:
        return created  # pending versions are kept; they fire on resume
    if left_over:  # the rows they consumed are gone from the pending ones only now
        with store.transaction() as conn:
            pending = outbox.pending_versions(conn, consumer, [(d.namespace, d.name) for d in triggers.inputs])
    for firing in triggering.decide(meta["name"], consumer, triggers, pending, suspended=spec.suspend):
        with store.transaction() as conn:
            firing_id = outbox.claim(conn, consumer, firing)
        if firing_id is None:
            log.info("Pipeline %s/%s: firing %s was claimed by another pass", meta["namespace"], meta["name"],
                     firing.run_name)
            continue
        if _create(kube, store, pipeline, firing_id, firing.run_name, list(firing.versions), post_event, metrics):
            created.append(firing.run_name)
    return created


def set_trigger_condition(kube: Kube, namespace: str, name: str, failure: str | None) -> None:
    """The Triggered condition: False with the error while this Pipeline's triggers fail, True after."""
    set_loop_condition(kube, namespace, name, CONDITION_TRIGGERED, failure, failed_reason="TriggerFailed",
                       ok_reason="Triggered", ok_message="dataset triggers are evaluated again")


class Triggerer:
    """The thread that evaluates dataset triggers; :meth:`start` and :meth:`stop` bracket it."""

    def __init__(self, database_url: str, open_store: Callable[[], LineageStore], kube: Kube,
                 scopes: list[str | None], isolation: Isolation, post_event: EventSink | None = None,
                 rescan_seconds: float = 2.0, workers: int = WORKERS, metrics: Metrics | None = None) -> None:
        self.database_url, self._open_store, self.kube, self.scopes = database_url, open_store, kube, scopes
        self.isolation, self.post_event, self.rescan_seconds = isolation, post_event, rescan_seconds
        self.metrics = metrics or Metrics()
        self.store: LineageStore | None = None
        self.passes = 0
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dataset-trigger")
        self._listener: psycopg.Connection[Any] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="dataset-triggers", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._close_listener()
        self._pool.shutdown(wait=True)
        if self.store is not None:
            self.store.close()

    def _close_listener(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(psycopg.Error):
                self._listener.close()
            self._listener = None

    def _loop(self) -> None:
        delay = 1.0
        changed: set[str] | None = None  # None: every Pipeline with triggers (the first pass, each rescan)
        while not self._stop.is_set():
            try:
                if self.store is None:
                    self.store = self._open_store()
                if self._listener is None:  # listen before the pass: nothing committed after it goes unseen
                    self._listener = psycopg.connect(self.database_url, autocommit=True)
                    self._listener.execute(f"LISTEN {outbox.NOTIFY_CHANNEL}")
                    changed = None
                self.run_pass(changed)
                delay = 1.0
                changed = outbox.wait_for_versions(self._listener, self.rescan_seconds) or None
            except Exception as exc:  # the database or the apiserver is away: back off, never crash
                self._close_listener()
                log.warning("dataset triggers paused: %s: %s; retrying in %.0fs", outage(exc) or "Unexpected",
                            clean(redact(exc), 300), delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)

    def run_pass(self, changed: set[str] | None = None) -> None:
        """Evaluate every Pipeline with dataset triggers, each on its own; with ``changed`` (datasets as
        ``outbox.dataset_hex`` keys), only those with one of them among their inputs."""
        store = self.store
        assert store is not None
        if not store.ping():  # an outage pauses the whole pass; it is no Pipeline's fault
            raise psycopg.OperationalError("the lineage store does not answer")
        chosen: list[dict[str, Any]] = []
        for scope in self.scopes:
            for pipeline in self.kube.list_pipelines(scope):
                datasets = ((pipeline.get("spec") or {}).get("triggers") or {}).get("datasets")
                if not datasets:
                    continue
                self.metrics.triggers_seen(pipeline["metadata"]["namespace"], pipeline["metadata"]["name"])
                if changed is None or _reads_any(datasets, changed):
                    chosen.append(pipeline)
        # Pipelines are independent (their claims are the store's to arbitrate): several at once, so that
        # many upstream completions landing together wait on round trips side by side, not one after another.
        list(self._pool.map(self._one, chosen))
        self.passes += 1

    def _one(self, pipeline: dict[str, Any]) -> None:
        store = self.store
        assert store is not None
        meta = pipeline["metadata"]
        self.isolation.run(
            pipeline, "evaluating dataset triggers",
            partial(self._evaluate, store, pipeline),
            reason="TriggerFailed", kind=f"{c.PIPELINE_KIND}/triggers",
            on_failure=partial(set_trigger_condition, self.kube, meta["namespace"], meta["name"]),
            on_recovery=partial(set_trigger_condition, self.kube, meta["namespace"], meta["name"], None))

    def _evaluate(self, store: LineageStore, pipeline: dict[str, Any]) -> list[str]:
        try:
            return trigger_pipeline(self.kube, store, pipeline, self.post_event, self.metrics)
        except Exception:  # counted on every failed evaluation; Isolation reports it and backs the Pipeline off
            meta = pipeline["metadata"]
            self.metrics.trigger_failures.labels(meta["namespace"], meta["name"]).inc()
            raise


def _reads_any(datasets: dict[str, Any], changed: set[str]) -> bool:
    return any(isinstance(d, dict) and outbox.dataset_hex(str(d.get("namespace")), str(d.get("name"))) in changed
               for d in datasets.get("inputs") or [])
