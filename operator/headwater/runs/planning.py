"""The run engine's whole decision, as data.

:func:`start` turns a new PipelineRun into its first status (the pipeline
snapshot and the steps it will run); :func:`plan` takes that status, the
step Jobs observed in the cluster and the clock, and returns the Jobs to
create or delete, the next status and the events to emit.  Both are pure:
every trigger (create, operator restart, Job event, timer) calls them with
what it observed and converges on the same state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from headwater.runs import checks
from headwater.runs.jobs import (
    BLOCKED_REASONS,
    PROBE_AFTER_SECONDS,
    JobObservation,
    JobSettings,
    RunRef,
    build_job,
    refusal,
)
from headwater.runs.settling import mark_unsettled
from headwater.spec import dag
from headwater.spec.conditions import set_condition
from headwater.spec.models import (
    PipelineRunSpec,
    PipelineRunStatus,
    PipelineSpec,
    RunPhase,
    StepPhase,
    StepReason,
    StepSpec,
    StepStatus,
)
from headwater.spec.times import format_duration, isotime, parse_time

__all__ = ["Event", "Plan", "plan", "start"]


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the run."""

    type: str
    reason: str
    message: str


@dataclass
class Plan:
    """What to do next for one run."""

    create: list[dict[str, Any]] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    status: PipelineRunStatus | None = None
    events: list[Event] = field(default_factory=list)
    recheck_after: float | None = None
    """Seconds after which to look at the run again though no event may come (a step that has not started)."""

    @property
    def finished(self) -> bool:
        return self.status is not None and self.status.phase.final


def _satisfied(step: StepStatus) -> bool:
    """A dependency that lets its downstream steps start."""
    return step.phase == StepPhase.SUCCEEDED or (
        step.phase == StepPhase.SKIPPED and step.reason == StepReason.NOT_SELECTED
    )


def start(
    spec: PipelineRunSpec,
    pipeline: PipelineSpec,
    now: datetime,
    earlier: PipelineRunStatus | None = None,
    generation: int | None = None,
) -> PipelineRunStatus:
    """The first status of a run: the pipeline snapshot and each step's starting point.

    ``earlier`` is the status of ``spec.retryOf``: steps that succeeded there are
    reused.  ``spec.fromStep`` selects that step and everything downstream of it.
    An invalid pipeline or request yields a Failed run that never creates a Job.
    """
    status = PipelineRunStatus(phase=RunPhase.RUNNING, started_at=isotime(now), pipeline_spec=pipeline,
                               observed_generation=generation, triggered_by=list(spec.triggered_by),
                               logical_time=spec.scheduled_for or isotime(now))
    problem = _start_problem(spec, pipeline, earlier)
    if problem:
        status.phase, status.finished_at = RunPhase.FAILED, isotime(now)
        set_condition(status.conditions, "Succeeded", "False", problem[0], problem[1], now)
        return status
    selected = dag.downstream_closure(pipeline.steps, spec.from_step, include_self=True) \
        if spec.from_step else {s.id for s in pipeline.steps}
    reused = {s.name: s for s in (earlier.steps if earlier else []) if s.phase == StepPhase.SUCCEEDED}
    for step in pipeline.steps:
        if step.id not in selected:
            status.steps.append(StepStatus(name=step.id, phase=StepPhase.SKIPPED, reason=StepReason.NOT_SELECTED,
                                           message=f"not downstream of fromStep {spec.from_step}"))
        elif step.id in reused:
            old = reused[step.id]
            status.steps.append(StepStatus(
                name=step.id, phase=StepPhase.SUCCEEDED, job=old.job, attempts=old.attempts,
                started_at=old.started_at, finished_at=old.finished_at, reason=StepReason.REUSED,
                message=f"succeeded in run {spec.retry_of}", result=old.result))
        else:
            status.steps.append(StepStatus(name=step.id, phase=StepPhase.PENDING))
    set_condition(status.conditions, "Succeeded", "Unknown", "Running", "the run has started", now)
    return status


def _start_problem(
    spec: PipelineRunSpec, pipeline: PipelineSpec, earlier: PipelineRunStatus | None
) -> tuple[str, str] | None:
    problems = dag.validate(pipeline.steps)
    if problems:
        return "InvalidPipeline", "; ".join(f"spec.{p}" for p in problems)
    ids = [s.id for s in pipeline.steps]
    if spec.from_step and spec.from_step not in ids:
        return "InvalidRequest", f"spec.fromStep: unknown step {spec.from_step!r}; known steps: {', '.join(ids)}"
    if spec.retry_of and earlier is None:
        return "InvalidRequest", f"spec.retryOf: PipelineRun {spec.retry_of!r} was not found"
    if earlier is not None and not earlier.phase.final:
        return "InvalidRequest", f"spec.retryOf: PipelineRun {spec.retry_of!r} has not finished"
    return None


@dataclass
class _Work:
    """Mutable scratch state of one planning pass."""

    run: RunRef
    spec: PipelineRunSpec
    observed: Mapping[str, JobObservation]
    settings: JobSettings
    out: Plan
    steps: dict[str, StepStatus] = field(default_factory=dict)
    logical_time: str | None = None


def plan(
    run: RunRef,
    spec: PipelineRunSpec,
    status: PipelineRunStatus,
    observed: Mapping[str, JobObservation],
    now: datetime,
    settings: JobSettings,
    baselines: Mapping[str, checks.Baseline] | None = None,
) -> Plan:
    """Decide the next step of a started run from what the cluster shows.

    ``observed`` maps step ids to what their Jobs report.  Terminal step
    outcomes already in ``status`` are final; everything else is read from the
    Jobs.  A finished run plans nothing.  A step whose Job succeeded has its
    output checks evaluated (``baselines``: earlier published versions, by
    ``namespace/name``, see :func:`headwater.runs.checks.baseline_requests`);
    a failed check of severity error fails it with reason CheckFailed and skips
    everything downstream with the same reason.
    """
    out = Plan()
    if status.phase.final or status.pipeline_spec is None:
        return out
    pipeline = status.pipeline_spec
    work = _Work(run, spec, observed, settings, out, logical_time=status.logical_time)
    previous = {s.name: s for s in status.steps}
    by_id = {s.id: s for s in pipeline.steps}
    for step_id in dag.topological_order(pipeline.steps):
        work.steps[step_id] = _observe_step(previous.get(step_id), step_id, observed.get(step_id))
        _check_outputs(work.steps[step_id], previous.get(step_id), by_id[step_id], baselines or {}, now)
    halted = spec.cancel or (pipeline.fail_fast and any(s.phase == StepPhase.FAILED for s in work.steps.values()))
    if halted:
        _halt(work, StepReason.CANCELLED if spec.cancel else StepReason.FAIL_FAST, now)
    else:
        _advance(work, pipeline, now)
    new = _next_status(status, pipeline, work, now)
    _diff_events(previous, new, out)
    if new != status:
        out.status = new
    if not new.phase.final and any(_not_started(s, observed.get(s.name)) for s in new.steps):
        out.recheck_after = PROBE_AFTER_SECONDS
    return out


def _not_started(step: StepStatus, seen: JobObservation | None) -> bool:
    """A step whose Job has no running pod and no known reason why: the Job controller says so only in
    Events and pods, which bring no event to the run."""
    if step.phase.final or not step.job or step.reason in BLOCKED_REASONS:
        return False
    return step.phase == StepPhase.PENDING or (seen is not None and seen.starting)


def _observe_step(prev: StepStatus | None, step_id: str, seen: JobObservation | None) -> StepStatus:
    if prev is not None and prev.phase.final:
        return prev
    if seen is not None:
        reason, message = seen.reason, seen.message
        if seen.reason == "DeadlineExceeded" and prev is not None and prev.reason in BLOCKED_REASONS:
            # the deadline ended a step that never started: say why it never did
            reason = prev.reason
            message = f"{seen.message or 'the deadline passed'} (DeadlineExceeded); the step never started: " \
                      f"{prev.message}"
        return StepStatus(
            name=step_id, phase=seen.phase, job=seen.job, attempts=seen.attempts, started_at=seen.started_at,
            finished_at=seen.finished_at, reason=reason, message=message, result=seen.result)
    if prev is not None and prev.job:
        # We created this Job and it is gone before finishing: never run the step twice.
        return prev.model_copy(update={
            "phase": StepPhase.FAILED, "reason": StepReason.JOB_DELETED,
            "message": f"Job {prev.job} was deleted before it finished"})
    return StepStatus(name=step_id, phase=StepPhase.PENDING, message=prev.message if prev else None)


def _check_outputs(step: StepStatus, prev: StepStatus | None, spec: StepSpec,
                   baselines: Mapping[str, checks.Baseline], now: datetime) -> None:
    """Evaluate the checks of a step whose Job has just succeeded; a blocking failure fails the step."""
    if step.phase != StepPhase.SUCCEEDED or (prev is not None and prev.phase.final) or step.reason == StepReason.REUSED:
        return
    if not any(o.all_checks for o in spec.outputs):
        return
    written = parse_time(step.finished_at) if step.finished_at else now
    step.checks = checks.evaluate_step(spec, step.result, written, baselines)
    block = checks.blocking(step.checks)
    if block is not None:
        step.phase, step.reason = StepPhase.FAILED, StepReason.CHECK_FAILED
        step.message = f"{checks.describe(block)}; the version is not published"


def _halt(work: _Work, reason: str, now: datetime) -> None:
    """Cancel (or fail fast): delete unfinished Jobs and end every unfinished step."""
    for step in work.steps.values():
        if step.phase.final:
            continue
        if step.job:
            work.out.delete.append(step.job)
        phase = StepPhase.CANCELLED if (step.job or reason == StepReason.CANCELLED) else StepPhase.SKIPPED
        why = "the run was cancelled" if reason == StepReason.CANCELLED else "another step failed and failFast is set"
        step.phase, step.reason, step.message = phase, reason, why
        step.finished_at = isotime(now)


def _advance(work: _Work, pipeline: PipelineSpec, now: datetime) -> None:
    """Skip what is downstream of a failure; create the Jobs of ready steps, within maxParallelism.

    A ready step whose Job the operator must not create (a ServiceAccount outside the allow-list,
    a securityContext Kubernetes refuses) fails at once, saying why.
    """
    by_id = {s.id: s for s in pipeline.steps}
    active = sum(1 for s in work.steps.values() if s.job and not s.phase.final)
    limit = pipeline.max_parallelism
    for step_id, step in work.steps.items():
        if step.phase != StepPhase.PENDING or step.job:
            continue
        deps = [work.steps[d] for d in by_id[step_id].depends_on]
        broken = next((d for d in deps if d.phase.final and not _satisfied(d)), None)
        if broken is not None and broken.reason == StepReason.CHECK_FAILED:
            # the whole closure says which check held it back, not only the nearest skipped step
            step.phase, step.reason = StepPhase.SKIPPED, StepReason.CHECK_FAILED
            step.message = broken.message if broken.phase == StepPhase.SKIPPED else \
                f"upstream step {broken.name}: {broken.message}"
            step.finished_at = isotime(now)
        elif broken is not None:
            step.phase, step.reason = StepPhase.SKIPPED, StepReason.UPSTREAM_FAILED
            step.message = f"upstream step {broken.name} {broken.phase.value.lower()}"
            step.finished_at = isotime(now)
        elif all(_satisfied(d) for d in deps):
            refused = refusal(work.run.namespace, by_id[step_id], work.settings, pipeline.security_context)
            if refused is not None:
                step.phase, (step.reason, step.message) = StepPhase.FAILED, refused
                step.finished_at = isotime(now)
                continue
            if limit is not None and active >= limit:
                step.message = f"waiting for a free slot (maxParallelism {limit})"
                continue
            manifest = build_job(work.run, by_id[step_id], work.settings, pipeline.security_context,
                                 logical_time=work.logical_time)
            work.out.create.append(manifest)
            step.job, step.reason, step.message = manifest["metadata"]["name"], StepReason.JOB_CREATED, None
            active += 1


def _run_phase(steps: list[StepStatus], cancel: bool) -> RunPhase:
    if any(not s.phase.final for s in steps):
        return RunPhase.RUNNING
    if cancel:
        return RunPhase.CANCELLED
    if any(s.phase == StepPhase.FAILED for s in steps):
        return RunPhase.FAILED
    if any(s.phase == StepPhase.CANCELLED for s in steps):
        return RunPhase.CANCELLED
    return RunPhase.SUCCEEDED


def _next_status(old: PipelineRunStatus, pipeline: PipelineSpec, work: _Work, now: datetime) -> PipelineRunStatus:
    steps = [work.steps[s.id] for s in pipeline.steps]
    new = old.model_copy(deep=True)
    new.steps = steps
    new.phase = _run_phase(steps, work.spec.cancel)
    selected = [s for s in steps if not (s.phase == StepPhase.SKIPPED and s.reason == StepReason.NOT_SELECTED)]
    new.progress = f"{sum(1 for s in selected if s.phase == StepPhase.SUCCEEDED)}/{len(selected)}"
    if new.phase.final:
        new.finished_at = isotime(now)
        if new.started_at:
            new.duration = format_duration(now, parse_time(new.started_at))
        failed = [f"{s.name} ({s.reason})" if s.reason else s.name for s in steps if s.phase == StepPhase.FAILED]
        state, reason, message = {
            RunPhase.SUCCEEDED: ("True", "Succeeded", f"all {len(selected)} steps succeeded"),
            RunPhase.FAILED: ("False", "StepFailed", f"failed steps: {', '.join(failed)}"),
            RunPhase.CANCELLED: ("False", "Cancelled", "the run was cancelled"),
        }[new.phase]
        set_condition(new.conditions, "Succeeded", state, reason, message, now)
        mark_unsettled(new, now)
    return new


def _diff_events(previous: Mapping[str, StepStatus], new: PipelineRunStatus, out: Plan) -> None:
    for step in new.steps:
        old = previous.get(step.name)
        if not step.phase.final and step.reason in BLOCKED_REASONS and (old is None or old.reason != step.reason):
            out.events.append(Event("Warning", step.reason or "", f"Step {step.name} cannot start: {step.message}"))
        if old is not None and old.phase == step.phase and old.job == step.job:
            continue
        if step.phase.final and (old is None or not old.phase.final):
            out.events.extend(Event("Warning", "CheckWarning", f"Step {step.name}: {checks.describe(r)}")
                              for r in checks.failed_warnings(step.checks or []))
        event = _step_event(step)
        if event is not None:
            out.events.append(event)
    if new.phase.final:
        kind = "Normal" if new.phase == RunPhase.SUCCEEDED else "Warning"
        out.events.append(Event(kind, f"Run{new.phase.value}",
                                f"Run {new.phase.value.lower()} after {new.duration or '?'} ({new.progress} steps)"))


def _step_event(step: StepStatus) -> Event | None:
    if step.phase == StepPhase.PENDING and step.reason == StepReason.JOB_CREATED:
        return Event("Normal", "JobCreated", f"Created Job {step.job} for step {step.name}")
    if step.phase == StepPhase.SUCCEEDED and step.reason != StepReason.REUSED:
        return Event("Normal", "StepSucceeded", f"Step {step.name} succeeded after {step.attempts} attempt(s)")
    if step.phase == StepPhase.FAILED:
        return Event("Warning", "StepFailed", f"Step {step.name} failed: {step.reason}: {step.message or ''}".strip())
    if step.phase == StepPhase.SKIPPED and step.reason != StepReason.NOT_SELECTED:
        return Event("Warning", "StepSkipped", f"Step {step.name} skipped: {step.message}")
    if step.phase == StepPhase.CANCELLED:
        return Event("Normal", "StepCancelled", f"Step {step.name} cancelled: {step.message}")
    return None
