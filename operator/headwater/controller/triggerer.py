"""Dataset triggers at work: a thread that turns new published dataset versions into the runs they trigger.

Woken by the store's notification when versions commit (and every ``rescan_seconds`` anyway), a pass looks
at the Ready Pipelines with ``spec.triggers.datasets`` that read the notified datasets, all of them together
(a woken pass takes the Pipelines from :class:`WatchedPipelines`, as the operator's watch last showed them,
when it has one; the first pass and each rescan list them from the apiserver):

1. one store transaction for all of them (:func:`claim_pass`): register each Pipeline as a consumer, read
   the firings claimed earlier but not confirmed (a crash between claim and create) and the pending
   versions, decide (:mod:`headwater.pipelines.triggering`) and claim every new firing;
2. the runs created in the apiserver, ``WORKERS`` at once, one Pipeline's in order (left-overs first);
   each Pipeline in isolation (its failure gets an Event, a ``Triggered=False`` condition, a backoff and
   ``headwater_trigger_failures_total``; the others go on);
3. one transaction confirming every run created (or found existing).

The thread itself only chooses and claims (1); each pass's runs are created and confirmed (2, 3) behind it,
so a pass woken while an earlier one still creates its runs claims at once (at most ``MAX_PASSES`` at a
time; a firing being created is no later pass's left-over, and one Pipeline's runs keep their order).

Claims come first and run names derive from the consumed versions, so nothing fires twice and nothing
claimed is lost.  Each run created counts in ``headwater_trigger_firings_total`` and
``headwater_trigger_latency_seconds``.  A store outage stops the whole pass (it is no Pipeline's fault): the
thread backs off and the next pass finds the claimed firings unconfirmed.  Any other refusal of the shared
claim makes each Pipeline claim on its own, in isolation, so one bad Pipeline never holds back the others.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

import psycopg

from headwater.adapters.isolation import Isolation
from headwater.adapters.kube import Kube
from headwater.adapters.metrics import Metrics
from headwater.controller.start_gate import StartGate
from headwater.lineage import triggers as outbox
from headwater.lineage.recorder import outage
from headwater.lineage.store import LineageStore
from headwater.pipelines import triggering
from headwater.pipelines.loop_conditions import set_loop_condition
from headwater.spec import constants as c
from headwater.spec.conditions import is_ready
from headwater.spec.models import PipelineSpec, Trigger, TriggerVersion
from headwater.spec.redaction import redact
from headwater.spec.text import clean
from headwater.spec.times import parse_time

__all__ = ["CONDITION_TRIGGERED", "Triggerer", "WatchedPipelines", "claim_pass", "trigger_pipeline"]

log = logging.getLogger(__name__)

CONDITION_TRIGGERED = "Triggered"
WORKERS = 100
"""PipelineRuns created at once, over every pass under way (apiserver round trips; threads started only as a burst
needs them): while the same apiserver starts the runs just created, 32 at once created 80-90 runs in a quarter of
the time 8 took, and 100 at once (a later pass's runs no longer queued behind an earlier pass's) cut the p99 from
version committed to run created by about 30 % at 100 completions at once (docs/benchmarks.md)."""
MAX_PASSES = 8
"""Passes whose runs are being created at once (each waits for its creations in a thread of its own)."""
EventSink = Callable[[dict[str, Any], str, str, str], None]


class WatchedPipelines:
    """The Pipelines as the operator's watch last showed them (its Pipeline event handler feeds this), so that
    a woken pass need not list them: a Pipeline the watch has not shown yet waits for the next rescan."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[tuple[str, str], dict[str, Any]] = {}

    def saw(self, body: Mapping[str, Any], deleted: bool = False) -> None:
        """Keep (a copy of) a Pipeline with dataset triggers; forget one deleted or without them."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        kept = None if deleted or not _dataset_triggers(body) else copy.deepcopy(dict(body))
        with self._lock:
            if kept is None:
                self._items.pop(key, None)
            else:
                self._items[key] = kept

    def items(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._items.values())

    def triggering(self, run: Mapping[str, Any]) -> dict[str, Any] | None:
        """For a run that dataset triggers created, its Pipeline as last seen (the version whose triggers fired
        it; kept, never changed in place: read it, do not change it) while that is still the run's owner; else
        None."""
        spec, meta = run.get("spec") or {}, run["metadata"]
        if spec.get("trigger") != Trigger.DATASET.value:
            return None
        with self._lock:
            pipeline = self._items.get((meta["namespace"], (spec.get("pipelineRef") or {}).get("name", "")))
        owners = {o.get("uid") for o in meta.get("ownerReferences") or [] if o.get("controller")}
        return pipeline if pipeline is not None and pipeline["metadata"].get("uid") in owners else None


@dataclass(frozen=True)
class ToCreate:
    """A claimed firing whose run is to be created."""

    firing_id: int
    run_name: str
    versions: list[TriggerVersion]


@dataclass
class Evaluation:
    """One Pipeline's part of a pass: the firings to create (oldest first) and those created so far."""

    pipeline: dict[str, Any]
    consumer: str
    spec: PipelineSpec
    todo: list[ToCreate] = field(default_factory=list)
    done: list[tuple[ToCreate, bool]] = field(default_factory=list)  # (firing, created by this pass)


def evaluation(pipeline: dict[str, Any]) -> Evaluation | None:
    """The Pipeline's evaluation, or None when it has no dataset triggers or is not Ready (raises on a spec
    the model refuses)."""
    meta = pipeline["metadata"]
    spec = PipelineSpec.model_validate(pipeline["spec"])
    if spec.triggers is None or spec.triggers.datasets is None or not is_ready(pipeline):
        return None
    return Evaluation(pipeline, triggering.consumer_key(meta["namespace"], meta["name"], meta["uid"]), spec)


def claim_pass(conn: psycopg.Connection[Any], evaluations: Sequence[Evaluation],
               in_flight: Collection[int] = ()) -> None:
    """In one transaction (``conn``'s), for every Pipeline at once: register it, read its unconfirmed firings
    (but those whose ids are ``in_flight``: an earlier pass is creating their runs) and pending versions,
    decide and claim; fills each evaluation's ``todo``."""
    def since(e: Evaluation) -> datetime | None:
        # Declared from the start: versions since the Pipeline's creation count; triggers added later start now.
        meta = e.pipeline["metadata"]
        return parse_time(meta["creationTimestamp"]) if meta.get("generation", 1) == 1 else None
    outbox.register_all(conn, [(e.consumer, since(e)) for e in evaluations])
    left_over = outbox.unconfirmed_all(conn, [e.consumer for e in evaluations])
    active = [e for e in evaluations if not e.spec.suspend]  # a suspended one's pending versions fire on resume
    pending = outbox.pending_all(conn, {e.consumer: [(d.namespace, d.name) for d in _triggers(e).inputs]
                                        for e in active})
    decided = [(e, firing) for e in active for firing in
               triggering.decide(e.pipeline["metadata"]["name"], e.consumer, _triggers(e), pending[e.consumer])]
    claimed = outbox.claim_all(conn, [(e.consumer, firing) for e, firing in decided])
    for e in evaluations:
        e.todo = [ToCreate(u.firing_id, u.run_name, u.versions) for u in left_over[e.consumer]
                  if u.firing_id not in in_flight]
    for (e, firing), firing_id in zip(decided, claimed, strict=True):
        if firing_id is None:
            meta = e.pipeline["metadata"]
            log.info("Pipeline %s/%s: firing %s was claimed by another pass", meta["namespace"], meta["name"],
                     firing.run_name)
        else:
            e.todo.append(ToCreate(firing_id, firing.run_name, list(firing.versions)))


def _triggers(e: Evaluation) -> Any:
    assert e.spec.triggers is not None and e.spec.triggers.datasets is not None
    return e.spec.triggers.datasets


def create_runs(kube: Kube, e: Evaluation) -> None:
    """Create the evaluation's runs in order, recording each in ``done`` as it goes (so that the runs made
    before a failure are still confirmed)."""
    namespace = e.pipeline["metadata"]["namespace"]
    for item in e.todo:
        created = kube.create_run(namespace, triggering.triggered_run(e.pipeline, item.run_name, item.versions))
        e.done.append((item, created))


def confirm_pass(store: LineageStore, evaluations: Sequence[Evaluation], post_event: EventSink | None,
                 metrics: Metrics | None) -> None:
    """One transaction confirming every run the pass created or found; then count and report the new ones."""
    ids = [item.firing_id for e in evaluations for item, _ in e.done]
    if not ids:
        return
    with store.transaction() as conn:
        latencies = outbox.confirm_all(conn, ids)
    for e in evaluations:
        meta = e.pipeline["metadata"]
        for item, created in e.done:
            if not created:  # it existed already: the pass that created it counted and reported it
                continue
            latency = latencies.get(item.firing_id)
            if metrics is not None:
                metrics.trigger_firings.labels(meta["namespace"], meta["name"]).inc()
                if latency is not None:
                    metrics.trigger_latency.labels(meta["namespace"], meta["name"]).observe(latency)
            names = ", ".join(f"{v.name}#{v.version}" for v in item.versions)
            log.info("Pipeline %s/%s: created PipelineRun %s for %s", meta["namespace"], meta["name"],
                     item.run_name, names)
            if post_event is not None:
                post_event(e.pipeline, "Normal", "TriggeredRun",
                           f"Created PipelineRun {item.run_name} for new versions of {names}")


def trigger_pipeline(kube: Kube, store: LineageStore, pipeline: dict[str, Any],
                     post_event: EventSink | None = None, metrics: Metrics | None = None) -> list[str]:
    """One trigger pass for one Pipeline; the names of the runs it created."""
    e = evaluation(pipeline)
    if e is None:
        return []
    with store.transaction() as conn:
        claim_pass(conn, [e])
    try:
        create_runs(kube, e)
    finally:
        confirm_pass(store, [e], post_event, metrics)
    return [item.run_name for item, created in e.done if created]


def set_trigger_condition(kube: Kube, namespace: str, name: str, failure: str | None) -> None:
    """The Triggered condition: False with the error while this Pipeline's triggers fail, True after."""
    set_loop_condition(kube, namespace, name, CONDITION_TRIGGERED, failure, failed_reason="TriggerFailed",
                       ok_reason="Triggered", ok_message="dataset triggers are evaluated again")


@dataclass
class Pass:
    """A pass whose runs are being created: its claimed evaluations, each one's creation, its clock."""

    evaluations: list[Evaluation]
    creations: list[Future[None]]
    started: float
    listed: float
    claimed: float
    gate: StartGate | None = None
    """The start gate holding new runs while this pass creates its runs (None: it creates none)."""


class Triggerer:
    """The thread that evaluates dataset triggers; :meth:`start` and :meth:`stop` bracket it.

    The thread claims; the runs of a pass are created and confirmed behind it, so that versions committed
    while a pass creates its runs are claimed by the next pass at once instead of after it (at most
    ``MAX_PASSES`` passes at a time).  A firing being created is left out of later passes' left-overs, and
    one Pipeline's creations keep the order of its claims across passes."""

    def __init__(self, database_url: str, open_store: Callable[[], LineageStore], kube: Kube,
                 scopes: list[str | None], isolation: Isolation, post_event: EventSink | None = None,
                 rescan_seconds: float = 2.0, workers: int = WORKERS, metrics: Metrics | None = None,
                 watched: WatchedPipelines | None = None, gate: StartGate | None = None) -> None:
        self.database_url, self._open_store, self.kube, self.scopes = database_url, open_store, kube, scopes
        self.isolation, self.post_event, self.rescan_seconds = isolation, post_event, rescan_seconds
        self.metrics = metrics or Metrics()
        self.watched = watched
        self.gate = gate  # new runs start after a pass's creates, not among them
        self.store: LineageStore | None = None
        self.passes = 0  # passes ended (their runs created and confirmed)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dataset-trigger")
        self._finishers = ThreadPoolExecutor(max_workers=MAX_PASSES, thread_name_prefix="dataset-trigger-pass")
        self._finishing: set[Future[None]] = set()
        self._lock = threading.Lock()
        self._in_flight: set[int] = set()  # firing ids whose runs a pass is creating
        self._tails: dict[str, Future[None]] = {}  # a Pipeline's latest creation (the thread's alone)
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
        self._finishers.shutdown(wait=True)  # the passes still creating end first: they use the pool and store
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
                self._room()
                finishing = self._finishers.submit(self._finish, self._begin(changed))
                with self._lock:
                    self._finishing.add(finishing)
                finishing.add_done_callback(self._reap)
                delay = 1.0
                changed = outbox.wait_for_versions(self._listener, self.rescan_seconds) or None
            except Exception as exc:  # the database or the apiserver is away: back off, never crash
                self._close_listener()
                log.warning("dataset triggers paused: %s: %s; retrying in %.0fs", outage(exc) or "Unexpected",
                            clean(redact(exc), 300), delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)

    def _room(self) -> None:
        """Wait until fewer than ``MAX_PASSES`` passes are creating runs."""
        while True:
            with self._lock:
                running = [f for f in self._finishing if not f.done()]
            if len(running) < MAX_PASSES:
                return
            wait(running, return_when="FIRST_COMPLETED")

    def _reap(self, finishing: Future[None]) -> None:
        with self._lock:
            self._finishing.discard(finishing)
        exc = finishing.exception()
        if exc is not None:  # its firings stay unconfirmed: a later pass creates (or finds) and confirms them
            log.warning("dataset triggers: a pass did not confirm its runs: %s: %s", outage(exc) or "Unexpected",
                        clean(redact(exc), 300))

    def run_pass(self, changed: set[str] | None = None) -> None:
        """Evaluate every Pipeline with dataset triggers, each on its own; with ``changed`` (datasets as
        ``outbox.dataset_hex`` keys), only those with one of them among their inputs.  Returns when the
        pass's runs are created and confirmed."""
        self._finish(self._begin(changed))

    def _begin(self, changed: set[str] | None) -> Pass:
        """Choose, claim, and start creating the runs (each Pipeline's after its earlier pass's)."""
        store = self.store
        assert store is not None
        if not store.ping():  # an outage pauses the whole pass; it is no Pipeline's fault
            raise psycopg.OperationalError("the lineage store does not answer")
        started = time.monotonic()
        chosen: list[dict[str, Any]] = []
        for pipeline in self._pipelines(changed is not None):
            datasets = _dataset_triggers(pipeline)
            if not datasets:
                continue
            self.metrics.triggers_seen(pipeline["metadata"]["namespace"], pipeline["metadata"]["name"])
            woken = changed is None or _reads_any(datasets, changed)
            if woken and self.isolation.due(Isolation.key(pipeline, _KIND)):
                chosen.append(pipeline)
        evaluations: list[Evaluation] = []
        for pipeline in chosen:
            try:
                found = evaluation(pipeline)
            except Exception as exc:  # a spec the model refuses: that Pipeline's failure
                self._one(pipeline, partial(_raise, exc))
                continue
            if found is not None:
                evaluations.append(found)
        listed = time.monotonic()
        with self._lock:
            in_flight = set(self._in_flight)
        evaluations = self._claim(store, evaluations, in_flight)
        claimed = time.monotonic()
        ids = {item.firing_id for e in evaluations for item in e.todo}
        with self._lock:
            self._in_flight |= ids
        self._tails = {consumer: tail for consumer, tail in self._tails.items() if not tail.done()}
        creations: list[Future[None]] = []
        gate = self.gate if any(e.todo for e in evaluations) else None
        if gate is not None:
            gate.burst_begins()
        try:
            # Pipelines are independent: their runs are created side by side, each Pipeline's in order.
            for e in evaluations:
                if not e.todo:
                    continue
                creation = self._pool.submit(self._create_after, self._tails.get(e.consumer), e)
                self._tails[e.consumer] = creation
                creations.append(creation)
        except BaseException:  # (a pool shut down) the firings not started are a later pass's left-overs
            wait(creations)
            with self._lock:
                self._in_flight -= ids
            if gate is not None:
                gate.burst_ends()
            raise
        return Pass(evaluations, creations, started, listed, claimed, gate)

    def _create_after(self, before: Future[None] | None, e: Evaluation) -> None:
        # ``before`` went into the pool's queue first, so it runs or ran already: waiting for it never deadlocks
        if before is not None:
            wait([before])
        self._one(e.pipeline, partial(create_runs, self.kube, e))

    def _finish(self, begun: Pass) -> None:
        """Wait for the pass's creations, confirm them in one transaction, count the pass."""
        store = self.store
        assert store is not None
        evaluations = begun.evaluations
        try:
            try:
                wait(begun.creations)
            finally:
                if begun.gate is not None:
                    begun.gate.burst_ends()
            created = time.monotonic()
            confirm_pass(store, evaluations, self.post_event, self.metrics)
        finally:
            with self._lock:
                self._in_flight -= {item.firing_id for e in evaluations for item in e.todo}
                self.passes += 1
        if any(e.done for e in evaluations):  # where a pass's time goes, when it made runs
            log.info("trigger pass: %d Pipeline(s), %d run(s); listed %.0f ms, claimed %.0f ms, created %.0f ms, "
                     "confirmed %.0f ms", len(evaluations), sum(len(e.done) for e in evaluations),
                     (begun.listed - begun.started) * 1000, (begun.claimed - begun.listed) * 1000,
                     (created - begun.claimed) * 1000, (time.monotonic() - created) * 1000)

    def _claim(self, store: LineageStore, evaluations: list[Evaluation],
               in_flight: Collection[int]) -> list[Evaluation]:
        """Claim for every Pipeline in one transaction; when the store refuses it for another reason than an
        outage (one Pipeline's rows, say), each Pipeline claims on its own, in isolation, so that one bad
        Pipeline never holds back the others.  The evaluations that claimed."""
        if not evaluations:
            return evaluations
        try:
            with store.transaction() as conn:
                claim_pass(conn, evaluations, in_flight)
            return evaluations
        except Exception as exc:
            if outage(exc):
                raise
            log.warning("dataset triggers: the shared claim failed (%s); claiming Pipeline by Pipeline",
                        clean(redact(exc), 300))
        claimed: list[Evaluation] = []
        for e in evaluations:
            e.todo = []
            try:
                with store.transaction() as conn:
                    claim_pass(conn, [e], in_flight)
            except Exception as exc:
                if outage(exc):
                    raise
                self._one(e.pipeline, partial(_raise, exc))  # reported as its failure, as a refused spec is
            else:
                claimed.append(e)
        return claimed

    def _pipelines(self, woken: bool) -> list[dict[str, Any]]:
        if woken and self.watched is not None:
            return self.watched.items()
        return [pipeline for scope in self.scopes for pipeline in self.kube.list_pipelines(scope)]

    def _one(self, pipeline: dict[str, Any], work: Callable[[], object]) -> None:
        """``work()`` for one Pipeline in isolation."""
        meta = pipeline["metadata"]
        self.isolation.run(
            pipeline, "evaluating dataset triggers", partial(self._counted, pipeline, work),
            reason="TriggerFailed", kind=_KIND,
            on_failure=partial(set_trigger_condition, self.kube, meta["namespace"], meta["name"]),
            on_recovery=partial(set_trigger_condition, self.kube, meta["namespace"], meta["name"], None))

    def _counted(self, pipeline: dict[str, Any], work: Callable[[], object]) -> None:
        try:
            work()
        except Exception:  # counted on every failed evaluation; Isolation reports it and backs the Pipeline off
            meta = pipeline["metadata"]
            self.metrics.trigger_failures.labels(meta["namespace"], meta["name"]).inc()
            raise


_KIND = f"{c.PIPELINE_KIND}/triggers"


def _raise(exc: Exception) -> None:
    raise exc


def _dataset_triggers(pipeline: Mapping[str, Any]) -> Any:
    return ((pipeline.get("spec") or {}).get("triggers") or {}).get("datasets")


def _reads_any(datasets: dict[str, Any], changed: set[str]) -> bool:
    return any(isinstance(d, dict) and outbox.dataset_hex(str(d.get("namespace")), str(d.get("name"))) in changed
               for d in datasets.get("inputs") or [])
