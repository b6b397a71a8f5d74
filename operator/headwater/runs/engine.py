"""The run engine's side of reconciliation: read, call the planner, apply the plan.

Every trigger ends in :meth:`RunEngine.reconcile`, which plans from the newest
version of the run and of its Jobs seen (:mod:`~headwater.runs.latest`,
:mod:`~headwater.runs.jobindex`: the watch's events and the answers to the
engine's own writes, read from the API server when not known), so the outcome
never depends on which event arrived first; a write planned on an old version
conflicts and is planned again.

Reconciles of one run never overlap and never queue (:class:`~headwater.runs.dedup.Coalescer`),
and :attr:`RunEngine.memory` lets handlers drop events that cannot change a run
(:class:`~headwater.runs.dedup.RunMemory`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol

from kubernetes.client.exceptions import ApiException

from headwater.adapters.grouping import Batches
from headwater.adapters.isolation import Isolation
from headwater.adapters.kube import Kube
from headwater.adapters.metrics import Metrics
from headwater.lineage.emitting import step_events
from headwater.lineage.run_records import (
    finalizers_with,
    finalizers_without,
    has_finalizer,
    is_deleting,
    is_recorded,
)
from headwater.runs import checks, history, planning
from headwater.runs.dedup import Coalescer, RunMemory
from headwater.runs.jobindex import JobIndex
from headwater.runs.jobs import JobObservation, JobSettings, RunRef, events_about, observe_job, pods_of, probe
from headwater.runs.latest import LatestRuns
from headwater.runs.namespace_reads import NamespaceReads
from headwater.runs.rechecks import Rechecks
from headwater.runs.settling import (
    CONDITION_SETTLED,
    MESSAGE_SETTLED,
    REASON_FAILED,
    REASON_SETTLED,
    finished_later,
    needs_settled_label,
    needs_settling,
)
from headwater.spec import constants as c
from headwater.spec.conditions import set_condition, with_condition
from headwater.spec.models import PipelineRunSpec, PipelineRunStatus, PipelineSpec, RunPhase, StepPhase, StepReason
from headwater.spec.names import label_value
from headwater.spec.times import parse_time

__all__ = ["EventSink", "RunEngine", "RunSink", "run_object"]

log = logging.getLogger(__name__)

CONDITION_RECONCILED = "Reconciled"

JOB_CREATORS = 4
"""Jobs of one plan created at once: a layer of steps starts after one create's latency, not after all."""

RECHECK_MAX_SECONDS = 30.0
"""Longest wait between rechecks of a run whose unstarted steps stay as they were."""

EventSink = Callable[[dict[str, Any], str, str, str], None]
"""Posts a Kubernetes Event: (object, type, reason, message)."""


class RunSink(Protocol):
    """Told of every finished run (the lineage recorder): must return at once."""

    def notify(self, namespace: str, name: str) -> None: ...


Baselines = Callable[[list[str]], Mapping[str, checks.Baseline]]
"""Earlier published versions of datasets (``namespace/name``) for checks: the lineage store's, read at once;
raises while the store is away (the run is reconciled again, its checks not evaluated without it)."""


class EventFeed(Protocol):
    """Takes OpenLineage RunEvents to send (a background sender): must return at once."""

    def send(self, payload: dict[str, Any]) -> object: ...


def _dump(status: PipelineRunStatus) -> dict[str, Any]:
    return status.model_dump(by_alias=True, exclude_none=True, mode="json")


class RunEngine:
    """Reconciles PipelineRuns into step Jobs; safe to call from many threads at once."""

    def __init__(self, kube: Kube, settings: JobSettings, post_event: EventSink,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 recorder: RunSink | None = None, metrics: Metrics | None = None,
                 emitter: EventFeed | None = None,
                 on_finish: Callable[[RunRef, PipelineRunStatus, bool], None] | None = None,
                 isolation: Isolation | None = None, baselines: Baselines | None = None,
                 triggering_pipeline: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None) -> None:
        self.kube = kube
        # for a run dataset triggers created, the Pipeline that fired it as the watch showed it (None: read it)
        self.triggering_pipeline = triggering_pipeline
        self.baselines = baselines
        self.isolation = isolation or Isolation(post_event)
        self.on_finish = on_finish
        self.emitter = emitter
        self.recorder = recorder
        self.metrics = metrics or Metrics()
        self._succeeded_at: dict[tuple[str, str], dict[str, float]] = {}
        self.settings = settings
        self.post_event = post_event
        self.clock = clock
        self._passes = Coalescer()
        self._joining: Batches[dict[str, Any]] = Batches()  # runs joining their Pipeline's history
        self.memory = RunMemory()
        self.latest = LatestRuns()  # the newest version seen of each run: a pass starts from it, not a GET
        self.jobs = JobIndex()  # the Jobs seen of each run in flight: a pass plans from them, not a LIST
        # why Jobs have no pod, or pods that do not start: one read per namespace for all its Jobs
        self.failed_creates = NamespaceReads(kube.list_failed_creates, clock=lambda: self.clock().timestamp())
        self.pending_pods = NamespaceReads(kube.list_pending_step_pods, clock=lambda: self.clock().timestamp())
        self._rechecks: Rechecks[RunRef] = Rechecks(self._recheck)
        self._creators = ThreadPoolExecutor(JOB_CREATORS, thread_name_prefix="job-create")
        self._quiet_rechecks: dict[tuple[str, str], int] = {}

    def saw(self, run: dict[str, Any]) -> dict[str, Any]:
        """A version of the run, from its watch or the answer to a write: the next pass may start from it."""
        self.latest.saw(run)
        return run

    def forget(self, namespace: str, name: str) -> None:
        self.latest.drop(namespace, name)
        self.jobs.drop(namespace, name)
        self.memory.forget(namespace, name)
        self._succeeded_at.pop((namespace, name), None)
        self._quiet_rechecks.pop((namespace, name), None)

    def relist_jobs(self, namespace: str | None) -> None:
        """Correct the Jobs kept of the runs tracked in ``namespace`` (None: everywhere) by one list of the
        namespace's step Jobs, for the events the watch may have missed (the resync's, before its passes)."""
        relist = self.jobs.relist_begin(namespace)
        try:
            if relist.runs:
                self.jobs.relisted(relist, self.kube.iter_step_jobs(namespace))
        finally:
            self.jobs.relist_end(relist)

    def reconcile(self, namespace: str, name: str) -> planning.Plan | None:
        """Bring one run up to date with its Jobs; returns the last plan applied.

        Returns None when the run is gone, and None at once when another thread is reconciling
        the run: that thread goes once more, so nothing observed before this call is missed.
        """
        return self._passes.run((namespace, name), partial(self._reconcile_latest, namespace, name))

    def _reconcile_latest(self, namespace: str, name: str) -> planning.Plan | None:
        """One pass from the newest version of the run seen (:mod:`headwater.runs.latest`), or read; a pass
        whose writes find the run changed (409), or gone while it was planned from what was seen (404), reads
        it afresh and plans again."""
        run = self.latest.get(namespace, name)
        for _ in range(3):
            seen = run is not None
            if run is None:
                run = self.kube.get_run(namespace, name)
                if run is None:
                    self.forget(namespace, name)
                    return None
                self.saw(run)
            try:
                return self._reconcile(run)
            except ApiException as exc:
                if exc.status != 409 and not (seen and exc.status == 404):
                    self.metrics.reconcile_errors.labels("PipelineRun").inc()
                    raise
                self.latest.drop(namespace, name)
                log.info("PipelineRun %s/%s changed while reconciling; retrying", namespace, name)
            run = None
        raise RuntimeError(f"PipelineRun {namespace}/{name}: status kept conflicting")

    def _reconcile(self, run: dict[str, Any]) -> planning.Plan:
        meta = run["metadata"]
        raw_status = run.get("status") or {}
        if RunPhase.ended(raw_status.get("phase")) and raw_status.get("pipelineSpec"):
            self.settle(run)  # a finished run only ever needs its effects (again)
            return planning.Plan()
        spec = PipelineRunSpec.model_validate(run.get("spec") or {})
        started_now = False
        if not raw_status.get("pipelineSpec") and raw_status.get("phase") not in (RunPhase.FAILED, RunPhase.CANCELLED):
            if is_deleting(run):  # deleted before it started: nothing ran, nothing to record
                self.let_go(run)
                return planning.Plan()
            started = self._start(run, spec)
            if started is None:
                return planning.Plan()
            metadata: dict[str, Any] = {}
            pipeline_label = label_value(spec.pipeline_ref.name)
            if meta.get("labels", {}).get(c.LABEL_PIPELINE) != pipeline_label:
                # runs created by hand carry no pipeline label; schedules and history limits find runs by it
                metadata["labels"] = {c.LABEL_PIPELINE: pipeline_label}
            if self.recorder is not None and (finalizers := finalizers_with(run)) is not None:
                metadata["finalizers"] = finalizers  # held, once started, until it is in the lineage store
            if metadata:
                patched = self.kube.patch_run_metadata(meta["namespace"], meta["name"], metadata,
                                                       meta["resourceVersion"])
                if patched is None:
                    return planning.Plan()
                run = self.saw(patched)
                self.memory.remember(run, started)  # the echo of this write says nothing new
            run = self.saw(self.kube.replace_run_status(run, _dump(started)))
            raw_status, started_now = run["status"], True
            self.jobs.started(meta["namespace"], meta["name"], meta["uid"])
            self.memory.remember(run, started)
            steps = len(started.pipeline_spec.steps) if started.pipeline_spec else 0
            # after the write: a start that conflicts is planned again, and must not say so twice
            self.post_event(run, "Normal", "Started", f"Running pipeline {spec.pipeline_ref.name} ({steps} steps)")
        elif self.recorder is not None and (finalizers := finalizers_with(run)) is not None:
            # started by an operator without a lineage store, or before runs were held
            run = self.saw(self.kube.patch_run_metadata(meta["namespace"], meta["name"], {"finalizers": finalizers},
                                                        meta["resourceVersion"]) or run)
        elif self.recorder is None and has_finalizer(run):
            run = self.let_go(run) or run
        if is_deleting(run):
            # deleted while running: stop its steps and end it, so that it is recorded and let go
            spec = spec.model_copy(update={"cancel": True})
        status = PipelineRunStatus.model_validate(raw_status)
        ref = RunRef(meta["name"], meta["namespace"], meta["uid"], spec.pipeline_ref.name)
        # A run this pass started has no Job: Jobs are created after the start is written, and a start only
        # writes onto a status without one (should one exist anyway, its create answers 409: the same step).
        observed = {} if started_now else self._observe(ref, status)
        out = planning.plan(ref, spec, status, observed, self.clock(), self.settings,
                            self._baselines(status, observed))
        # remembered before the writes, so that the events of the Jobs being created are known for what they are
        self.memory.remember(run, out.status or status)
        try:
            self._apply(run, ref, out)
        except BaseException:
            self.memory.forget(ref.namespace, ref.name)
            raise
        self._measure(ref, status, out)
        self._plan_recheck(ref, out)
        if self.emitter is not None and out.status is not None:
            for event in step_events(ref, status, out.status, self.clock()):
                self.emitter.send(event)
        return out

    def _baselines(self, status: PipelineRunStatus,
                   observed: Mapping[str, JobObservation]) -> Mapping[str, checks.Baseline]:
        """Baselines of the checks the planner is about to evaluate (none without a lineage store)."""
        if self.baselines is None or status.pipeline_spec is None:
            return {}
        succeeded = {step for step, seen in observed.items() if seen.phase == StepPhase.SUCCEEDED}
        wanted = checks.baseline_requests(status.pipeline_spec, status, succeeded)
        return self.baselines(wanted) if wanted else {}

    def _start(self, run: dict[str, Any], spec: PipelineRunSpec) -> PipelineRunStatus | None:
        """The first status of a run, or None while its Pipeline does not exist yet."""
        meta = run["metadata"]
        # a triggered run snapshots the version whose triggers fired it (no GET as a burst of them start)
        pipeline = (self.triggering_pipeline and self.triggering_pipeline(run)) or \
            self.kube.get_pipeline(meta["namespace"], spec.pipeline_ref.name)
        if pipeline is None:
            self.post_event(run, "Warning", "PipelineNotFound",
                            f"Pipeline {spec.pipeline_ref.name} does not exist; the run waits for it")
            return None
        earlier = None
        if spec.retry_of:
            other = self.kube.get_run(meta["namespace"], spec.retry_of)
            if other is not None:
                earlier = PipelineRunStatus.model_validate(other.get("status") or {})
        pipeline_spec = PipelineSpec.model_validate(pipeline["spec"])
        return planning.start(spec, pipeline_spec, self.clock(), earlier, meta.get("generation"))

    def let_go(self, run: dict[str, Any]) -> dict[str, Any] | None:
        """Remove the lineage finalizer of a run that has nothing to record, or when no store is configured;
        the run as it is then (None once gone).  A run that changed meanwhile is let go on its next event
        or the next resync."""
        if not has_finalizer(run):
            return run
        meta = run["metadata"]
        try:
            out = self.kube.patch_run_metadata(meta["namespace"], meta["name"],
                                               {"finalizers": finalizers_without(run)}, meta["resourceVersion"])
        except ApiException as exc:
            if exc.status != 409:
                raise
            return run
        log.info("Let go of PipelineRun %s/%s (nothing to record)", meta["namespace"], meta["name"])
        return None if out is None else self.saw(out)

    def _observe(self, ref: RunRef, status: PipelineRunStatus) -> dict[str, JobObservation]:
        """Each step's Job as the cluster shows it; pods are read only for Jobs that just ended or whose pods
        do not start, FailedCreate Events (one read per namespace: :mod:`~headwater.runs.namespace_reads`) only
        for Jobs without pods (:func:`~headwater.runs.jobs.probe`)."""
        settled = {s.name for s in status.steps if s.phase.final}
        observed: dict[str, JobObservation] = {}
        now = self.clock()
        for job in self._jobs(ref):
            step = job["metadata"].get("labels", {}).get(c.LABEL_STEP)
            if not step or step in settled:
                continue
            seen = observe_job(job, [])
            look = probe(job, seen, now)
            if seen.phase.final or look.pods or look.events:
                pods = self._pods(ref.namespace, job, seen.phase.final) if seen.phase.final or look.pods else []
                events = events_about(self.failed_creates.get(ref.namespace), job) if look.events else []
                seen = observe_job(job, pods, events)
            observed[step] = seen
        return observed

    def _pods(self, namespace: str, job: dict[str, Any], final: bool) -> list[dict[str, Any]]:
        """A Job's pods: all of them for a Job that ended (its result); for one whose pod does not start, its
        pending pods from the namespace's shared read (Job by Job when that read could not hold them all)."""
        if not final:
            pending, complete = self.pending_pods.get(namespace)
            if complete:
                return pods_of(pending, job)
        return self.kube.list_job_pods(namespace, job["metadata"]["name"])

    def _jobs(self, ref: RunRef) -> list[dict[str, Any]]:
        """The run's Jobs as last seen (:mod:`headwater.runs.jobindex`), listed when not known."""
        known = self.jobs.jobs(ref.namespace, ref.name, ref.uid)
        if known is not None:
            return known
        listing = self.jobs.begin(ref.namespace, ref.name, ref.uid)
        listed = self.kube.list_jobs(ref.namespace, ref.name, ref.uid)
        if listing is not None:
            self.jobs.listed(ref.namespace, ref.name, listing, listed)
        return listed

    def _plan_recheck(self, ref: RunRef, out: planning.Plan) -> None:
        """Look again at a run whose steps have not started: soon after a change, later and later (up to
        RECHECK_MAX_SECONDS) while nothing changes, so that a Job controller that is only behind is not asked
        about every waiting Job every few seconds, which on a busy apiserver put it further behind."""
        key = (ref.namespace, ref.name)
        if out.recheck_after is None:
            self._quiet_rechecks.pop(key, None)
            return
        quiet = self._quiet_rechecks.get(key, 0) if out.status is None else 0
        self._quiet_rechecks[key] = quiet + 1
        self._recheck_later(ref, min(out.recheck_after * 2 ** quiet, RECHECK_MAX_SECONDS))

    def _recheck_later(self, ref: RunRef, delay: float) -> None:
        """Reconcile the run again after ``delay`` seconds, or later while many runs wait (one recheck per run
        at a time; :mod:`headwater.runs.rechecks`)."""
        self._rechecks.later(ref, delay)

    def _recheck(self, ref: RunRef) -> None:
        run = {"apiVersion": c.API_VERSION, "kind": c.PIPELINERUN_KIND,
               "metadata": {"namespace": ref.namespace, "name": ref.name, "uid": ref.uid}}
        self.isolation.run(run, "reconciling", partial(self.reconcile, ref.namespace, ref.name),
                           reason="ReconcileFailed")

    def _create_jobs(self, ref: RunRef, manifests: list[dict[str, Any]]) -> None:
        """Create every Job, concurrently when there are several; the first failure is raised once all
        were tried (the next pass retries only what is still missing)."""
        if len(manifests) == 1:
            outcomes = [self._created(manifests[0])]
        else:
            outcomes = list(self._creators.map(self._created, manifests))
        for manifest, outcome in zip(manifests, outcomes, strict=True):
            if isinstance(outcome, dict):
                self.jobs.saw(outcome)
                log.info("Created Job %s/%s", ref.namespace, manifest["metadata"]["name"])
            elif outcome is None:  # there already, unseen by this process: the next pass lists the run's Jobs
                self.jobs.drop(ref.namespace, ref.name)
        failure = next((o for o in outcomes if isinstance(o, BaseException)), None)
        if failure is not None:
            raise failure

    def _created(self, manifest: dict[str, Any]) -> dict[str, Any] | Exception | None:
        try:
            return self.kube.create_job(manifest)
        except Exception as exc:  # raised by _create_jobs once every Job was tried
            return exc

    def _apply(self, run: dict[str, Any], ref: RunRef, out: planning.Plan) -> None:
        if out.create:
            self._create_jobs(ref, list(out.create))
        for job in out.delete:
            self.kube.delete_job(ref.namespace, job)
            log.info("Deleted Job %s/%s", ref.namespace, job)
        if out.status is not None:
            run = self.saw(self.kube.replace_run_status(run, _dump(out.status)))
            self.memory.remember(run, out.status)
        for event in out.events:
            self.post_event(run, event.type, event.reason, event.message)
        if out.finished and out.status is not None:
            self.jobs.drop(ref.namespace, ref.name)
            if self.recorder is not None:
                self.recorder.notify(ref.namespace, ref.name)
            self.settle(run)

    def _measure(self, ref: RunRef, old: PipelineRunStatus, out: planning.Plan) -> None:
        """Step durations, attempts, handoff latency and run outcomes, from the transition just applied."""
        self.metrics.pipeline_seen(ref.pipeline)
        if out.status is None:
            return
        now = time.monotonic()
        seen = self._succeeded_at.setdefault((ref.namespace, ref.name), {})
        before = {s.name: s.phase for s in old.steps}
        for step in out.status.steps:
            if step.phase == before.get(step.name) or not step.phase.final:
                continue
            if step.phase == StepPhase.SUCCEEDED:
                seen[step.name] = now
            for verdict in step.checks or []:
                self.metrics.checks.labels(ref.pipeline, verdict.dataset, verdict.name, verdict.severity.value,
                                           verdict.outcome.value).inc()
            if step.started_at and step.finished_at and step.reason != StepReason.REUSED:
                elapsed = (parse_time(step.finished_at) - parse_time(step.started_at)).total_seconds()
                self.metrics.step_duration.labels(ref.pipeline, step.name).observe(elapsed)
                self.metrics.step_attempts.labels(ref.pipeline, step.name).inc(step.attempts)
                self.metrics.step_retries.labels(ref.pipeline, step.name).inc(max(step.attempts - 1, 0))
        spec = out.status.pipeline_spec
        deps = {s.id: s.depends_on for s in spec.steps} if spec else {}
        for manifest in out.create:
            step_id = manifest["metadata"]["labels"][c.LABEL_STEP]
            times = [seen[d] for d in deps.get(step_id, []) if d in seen]
            if times and len(times) == len(deps[step_id]):
                self.metrics.handoff.labels(ref.pipeline).observe(now - max(times))
        if out.finished:
            self.metrics.runs.labels(ref.pipeline, out.status.phase.value).inc()
            if out.status.started_at and out.status.finished_at:
                total = parse_time(out.status.finished_at) - parse_time(out.status.started_at)
                self.metrics.run_duration.labels(ref.pipeline).observe(total.total_seconds())
            self._succeeded_at.pop((ref.namespace, ref.name), None)

    def mark_reconcile_failure(self, namespace: str, name: str, failure: str | None) -> None:
        """The run's Reconciled condition: False with the error while reconciling it fails, True after.

        Written onto the version read (a conflict means someone wrote meanwhile: the next pass tells).
        """
        run = self.kube.get_run(namespace, name)
        if run is None:
            return
        status = PipelineRunStatus.model_validate(run.get("status") or {})
        state, reason, message = ("False", "ReconcileFailed", failure) if failure else \
            ("True", "Reconciled", "the run is reconciled again")
        if failure is None and not any(cond.type == CONDITION_RECONCILED for cond in status.conditions):
            return
        if set_condition(status.conditions, CONDITION_RECONCILED, state, reason, message, self.clock()):
            try:
                self.kube.replace_run_status(run, _dump(status))
            except ApiException as exc:
                if exc.status != 409:
                    raise

    def settle(self, run: dict[str, Any]) -> bool:
        """Put a finished run's outcome on its Pipeline, then mark it ``Settled=True``; True when done.

        Level-based (:mod:`headwater.runs.settling`): called right after the final status write and again
        (on the run's events and by the resync) for any run still ``Settled=False``.  It runs in isolation:
        a failure is logged once, posted as an Event on the run, set as ``Settled=False`` with the reason,
        and the run backs off; it never raises, so one run never stops the others.
        """
        if not needs_settling(run):
            return False
        done = self.isolation.run(run_object(run), "applying the after-finish effects", partial(self._settle, run),
                                  reason=REASON_FAILED, kind=f"{c.PIPELINERUN_KIND}/settle",
                                  on_failure=partial(self._mark_failed, run))
        return bool(done)

    def _settle(self, run: dict[str, Any]) -> bool:
        failed = self._apply_effects(run)
        if failed:
            raise EffectsFailedError(f"{'; '.join(failed)} failed (each reported on the Pipeline)")
        return self._mark_settled(run, "True", REASON_SETTLED, MESSAGE_SETTLED)

    def _apply_effects(self, run: dict[str, Any]) -> list[str]:
        """lastRun and the SLA monitor's datasets and incidents; each idempotent, and each run on its own:
        one's failure is reported on the Pipeline and never keeps the other from happening.  The effects
        that failed.  (History trimming comes once the run owes nothing more: :meth:`join_history`.)"""
        meta = run["metadata"]
        spec = PipelineRunSpec.model_validate(run.get("spec") or {})
        status = PipelineRunStatus.model_validate(run.get("status") or {})
        ref = RunRef(meta["name"], meta["namespace"], meta["uid"], spec.pipeline_ref.name)
        pipeline = self.kube.get_pipeline(ref.namespace, ref.pipeline)
        if pipeline is None:
            return []  # deleted with its runs: nothing to update
        latest = self._is_latest(pipeline, ref, status)
        effects: list[tuple[str, Callable[[], object]]] = []
        if latest:
            effects.append(("recording the last run", partial(
                self.kube.patch_pipeline_status, ref.namespace, ref.pipeline,
                {"lastRun": ref.name, "lastRunPhase": status.phase.value})))
        if self.on_finish is not None:
            effects.append(("the run's SLA effects", partial(self.on_finish, ref, status, latest)))
        failed: list[str] = []
        for what, effect in effects:
            if self.isolation.run(pipeline, what, partial(_done, effect), reason="RunEffectFailed",
                                  kind=f"{c.PIPELINE_KIND}/{what}", respect_backoff=False) is None:
                failed.append(what)
        return failed

    def _trim_history(self, joining: list[dict[str, Any]], pipeline: dict[str, Any]) -> set[str]:
        """Delete the Pipeline's oldest runs beyond its history limits, counting the ``joining`` runs and those
        that joined the history before them (labelled settled): never the runs still in flight, however many.
        The names deleted."""
        spec = PipelineSpec.model_validate(pipeline["spec"])
        namespace = pipeline["metadata"]["namespace"]
        uids = {r["metadata"].get("uid") for r in joining}
        joined = self.kube.list_pipeline_runs(namespace, pipeline["metadata"]["name"], f"{c.LABEL_SETTLED}=true")
        runs = [r for r in joined if r["metadata"].get("uid") not in uids] + joining

        def keep(other: dict[str, Any]) -> bool:  # e.g. finished before a store was configured
            return self.recorder is not None and not is_recorded(other)
        by_name = {r["metadata"]["name"]: r for r in runs}
        deleted: set[str] = set()
        for name in history.runs_to_delete(runs, spec.successful_runs_history_limit,
                                           spec.failed_runs_history_limit, keep):
            # each on its own: a run that cannot be deleted gets its Event and back-off, and stops nothing
            if self.isolation.run(run_object(by_name[name]), "deleting the run (history limit)",
                                  partial(self._delete_run, namespace, name), reason="HistoryFailed",
                                  kind=f"{c.PIPELINERUN_KIND}/history"):
                deleted.add(name)
        return deleted

    def _delete_run(self, namespace: str, name: str) -> bool:
        self.kube.delete_run(namespace, name)
        log.info("Deleted PipelineRun %s/%s (history limit)", namespace, name)
        return True

    def _is_latest(self, pipeline: dict[str, Any], ref: RunRef, status: PipelineRunStatus) -> bool:
        """Whether no run the Pipeline already shows as its last one finished after this one."""
        shown = (pipeline.get("status") or {}).get("lastRun")
        if not shown or shown == ref.name:
            return True
        other = self.kube.get_run(ref.namespace, shown)
        theirs = ((other or {}).get("status") or {}).get("finishedAt")
        return finished_later(status.finished_at, theirs)

    def _mark_settled(self, run: dict[str, Any], state: str, reason: str, message: str) -> bool:
        """Write the Settled condition, re-reading the run on a conflict; False when the run is gone."""
        def write(latest: dict[str, Any]) -> dict[str, Any]:
            new = with_condition(latest.get("status") or {}, CONDITION_SETTLED, state, reason, message, self.clock())
            return latest if new is None else self.kube.replace_run_status(latest, new)
        return self.kube.update_run(run, write, "it settled") is not None

    def join_history(self, run: dict[str, Any]) -> None:
        """A finished run that owes nothing more (:func:`~headwater.runs.settling.needs_settled_label`) joins
        its Pipeline's history: the history is trimmed to its limits with the run counted, then the run is
        labelled settled, and the operator's watch lets it go.

        The runs of one Pipeline join in batches, one batch at a time (:class:`~headwater.adapters.grouping.Batches`):
        each trim counts every run that joined before, one trim serves all the runs that finished while the
        last was made, and no thread waits for another.  Each deletion and each label is isolated: a run
        that cannot be deleted or labelled gets its Event and back-off, and stays watched until it can; a
        failure to read the history leaves the whole batch unlabelled, and the resync brings its runs back.
        """
        if not needs_settled_label(run):
            return
        meta = run["metadata"]
        name = PipelineRunSpec.model_validate(run.get("spec") or {}).pipeline_ref.name
        self._joining.add((meta["namespace"], name), meta.get("uid") or meta["name"], run,
                          partial(self._join, meta["namespace"], name))

    def _join(self, namespace: str, name: str, runs: list[dict[str, Any]]) -> None:
        pipeline = self.kube.get_pipeline(namespace, name)
        deleted = self._trim_history(runs, pipeline) if pipeline is not None else set()  # else gone with its runs
        for run in runs:  # each on its own: a run whose label is refused gets its Event and back-off, alone
            if run["metadata"]["name"] not in deleted:
                self.isolation.run(run_object(run), "labelling the run settled", partial(self._label_settled, run),
                                   reason="HistoryFailed", kind=f"{c.PIPELINERUN_KIND}/history")

    def _label_settled(self, run: dict[str, Any]) -> None:
        meta = run["metadata"]
        try:
            self.kube.patch_run_metadata(meta["namespace"], meta["name"], {"labels": {c.LABEL_SETTLED: "true"}},
                                         meta.get("resourceVersion"))
        except ApiException as exc:
            if exc.status != 409:  # changed since: its next event brings it here again
                raise

    def _mark_failed(self, run: dict[str, Any], message: str) -> None:
        """``Settled=False`` with why the effects failed (the isolation's failure report)."""
        self._mark_settled(run, "False", REASON_FAILED, message)


class EffectsFailedError(RuntimeError):
    """Some after-finish effects of a run failed; the others were applied."""


def _done(effect: Callable[[], object]) -> bool:
    effect()
    return True


def run_object(run: dict[str, Any]) -> dict[str, Any]:
    """A run as the isolation reports on it: its kind and metadata."""
    return {"apiVersion": c.API_VERSION, "kind": c.PIPELINERUN_KIND, "metadata": run["metadata"]}
