"""Step Jobs: deterministic names, the Job manifest, and a step's state read back from its Job.

A Job whose pods cannot start says so only in Events (FailedCreate: PodSecurity, ResourceQuota, a missing
ServiceAccount) or in its pods (waiting reasons such as ImagePullBackOff, Unschedulable).  Reading those
costs API calls, so :func:`probe` picks the few Jobs worth it: those without a running pod some seconds
after they were created.  :func:`observe_job` turns what was read into the step's reason and message.

Step pods run least-privileged unless the step asks otherwise: no ServiceAccount token, the
"restricted" Pod Security Standard's securityContext, and a termination message read from the file
the step writes, never from its log (which may carry secrets into status, Events and alerts).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from headwater.spec import constants as c
from headwater.spec.models import SecurityContext, StepPhase, StepReason, StepSpec
from headwater.spec.names import job_name, label_value
from headwater.spec.text import RESULT_LIMIT, clean, clean_json
from headwater.spec.times import parse_time

__all__ = [
    "BLOCKED_REASONS",
    "POD_SECURITY_CONTEXT",
    "PROBE_AFTER_SECONDS",
    "JobObservation",
    "JobSettings",
    "Probe",
    "RunRef",
    "build_job",
    "container_security_context",
    "job_deadline",
    "job_name",
    "observe_job",
    "probe",
    "refusal",
]

PROBE_AFTER_SECONDS = 3.0
"""A Job with no running pod this long after its creation is looked into (Events, pods)."""
_WAITING_REASONS = frozenset({
    "ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull", "CreateContainerConfigError",
    "CreateContainerError", "RunContainerError",
})
BLOCKED_REASONS = frozenset({"FailedCreate", "Unschedulable", *_WAITING_REASONS})
"""Reasons a step's pods cannot start: shown on the step while it waits, and named when it fails for it."""

POD_SECURITY_CONTEXT: dict[str, Any] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
"""The pod-level half of the "restricted" Pod Security Standard; container fields override it."""
_CONTAINER_SECURITY_CONTEXT: dict[str, Any] = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}

@dataclass(frozen=True)
class RunRef:
    """The PipelineRun a Job belongs to."""

    name: str
    namespace: str
    uid: str
    pipeline: str


@dataclass(frozen=True)
class JobSettings:
    """Operator settings that shape every step Job."""

    step_image: str
    ttl_seconds: int | None = None
    allowed_service_accounts: frozenset[str] = frozenset()
    """ServiceAccounts steps may name, as ``name`` (any namespace) or ``namespace/name``; empty: any."""


@dataclass(frozen=True)
class JobObservation:
    """What a step's Job (and, once it ended, its pods) say about the step."""

    job: str
    phase: StepPhase
    attempts: int = 0
    started_at: str | None = None
    finished_at: str | None = None
    reason: str | None = None
    message: str | None = None
    result: dict[str, Any] | None = field(default=None, hash=False, compare=False)
    starting: bool = False
    """Pods exist but none is ready yet (pulling, scheduling, or stuck there)."""

    @property
    def blocked(self) -> bool:
        """The step's pods cannot start, and the reason says why."""
        return self.reason in BLOCKED_REASONS


@dataclass(frozen=True)
class Probe:
    """What else to read about a Job to tell why its step has not started."""

    events: bool = False
    pods: bool = False


def _labels(run: RunRef, step: str) -> dict[str, str]:
    return {
        c.LABEL_PIPELINE: label_value(run.pipeline),
        c.LABEL_RUN: label_value(run.name),
        c.LABEL_STEP: step,
        c.LABEL_MANAGED_BY: c.MANAGER,
    }


def refusal(namespace: str, step: StepSpec, settings: JobSettings,
            pipeline_context: SecurityContext | None = None) -> tuple[StepReason, str] | None:
    """Why the step's Job must not be created (a reason and a message), or None when it may.

    A step that names no ServiceAccount runs as the namespace's ``default`` one, always allowed.
    """
    name = step.service_account_name
    allowed = settings.allowed_service_accounts
    if allowed and name not in (None, "default") and name not in allowed and f"{namespace}/{name}" not in allowed:
        return StepReason.SERVICE_ACCOUNT_NOT_ALLOWED, (
            f"serviceAccountName {name!r} is not allowed for steps by this operator "
            f"(HEADWATER_ALLOWED_SERVICE_ACCOUNTS: {', '.join(sorted(allowed))})")
    # What the container ends up with: the pod's defaults under the container's own fields.
    effective = {**POD_SECURITY_CONTEXT, **container_security_context(pipeline_context, step.security_context)}
    try:
        SecurityContext.model_validate(effective)
    except ValidationError as exc:
        problems = "; ".join(e["msg"] for e in exc.errors())
        return StepReason.INVALID_SECURITY_CONTEXT, f"the step's securityContext over the pipeline's: {problems}"
    return None


def container_security_context(*levels: SecurityContext | None) -> dict[str, Any]:
    """The step container's securityContext: Headwater's restricted defaults, then each level's fields over them.

    ``levels`` go from the most general (the pipeline's) to the most specific (the step's).  A level
    that asks for privilege (privileged, CAP_SYS_ADMIN) without saying allowPrivilegeEscalation
    drops an inherited ``false``, which Kubernetes would refuse next to it.
    """
    context = copy.deepcopy(_CONTAINER_SECURITY_CONTEXT)
    for level in levels:
        if level is None:
            continue
        given = level.model_dump(by_alias=True, exclude_none=True, mode="json")
        if level.needs_escalation and "allowPrivilegeEscalation" not in given:
            context.pop("allowPrivilegeEscalation", None)
        context.update(given)
    return context


def _measures(step: StepSpec) -> list[dict[str, Any]]:
    """What a sql step's runner measures on its output tables after the commit, for the outputs' checks."""
    out = []
    for output in step.outputs:
        item: dict[str, Any] = {"output": output.name}
        for check in output.all_checks:
            if check.schema_unchanged:
                item["columns"] = True
            if check.freshness is not None and check.freshness.column:
                item["freshnessColumn"] = check.freshness.column
            if check.sql is not None:
                item.setdefault("assertions", {})[check.name] = check.sql
        if len(item) > 1:
            out.append(item)
    return out


LOGICAL_TIME_ENV = "HEADWATER_LOGICAL_TIME"
"""The run's logical time (its schedule slot, RFC 3339 UTC), so that a step processes the right partition."""


def _container(step: StepSpec, settings: JobSettings, pipeline_context: SecurityContext | None,
               logical_time: str | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "step",
        "image": step.image or settings.step_image,
        # Only what the step writes to its termination file: a log tail may carry secrets.
        "terminationMessagePolicy": "File",
        "securityContext": container_security_context(pipeline_context, step.security_context),
    }
    env = [e.model_dump(by_alias=True, exclude_none=True, mode="json") for e in step.env]
    if logical_time is not None and not any(e.name == LOGICAL_TIME_ENV for e in step.env):
        env.append({"name": LOGICAL_TIME_ENV, "value": logical_time})
    if step.type == "sql":
        container["command"] = step.command or ["headwater", "step", "sql"]
        env.append({"name": "HEADWATER_SQL", "value": step.sql or ""})
        measures = _measures(step)
        if measures:
            env.append({"name": "HEADWATER_CHECKS", "value": json.dumps(measures, separators=(",", ":"))})
        if step.connection_secret_ref is not None:
            ref = step.connection_secret_ref
            env.append({
                "name": "HEADWATER_DATABASE_URL",
                "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}},
            })
    elif step.command:
        container["command"] = list(step.command)
    if step.args:
        container["args"] = list(step.args)
    if env:
        container["env"] = env
    if step.env_from:
        container["envFrom"] = [e.model_dump(by_alias=True, exclude_none=True, mode="json") for e in step.env_from]
    if step.resources is not None:
        container["resources"] = step.resources.model_dump(by_alias=True, exclude_none=True, mode="json")
    return container


RETRY_DELAY_SECONDS = 10
"""The Job controller's delay before a pod's first retry; it doubles for each retry after that ..."""
RETRY_DELAY_CAP_SECONDS = 360
"""... up to this."""
START_ALLOWANCE_SECONDS = 10
"""Per attempt, the time from the Job controller's creating its pod to the node's starting it, which the
pod's own deadline does not count."""


def job_deadline(step: StepSpec) -> int:
    """The Job's ``activeDeadlineSeconds``: room for every attempt to get its pod started and run its full
    ``timeoutSeconds``, with the Job controller's delays between attempts.

    Each attempt's own limit is its pod's ``activeDeadlineSeconds``, which the kubelet counts from the
    pod's start.  The Job's is the bound on a step whose pods never start (refused, unschedulable): it
    fails once all its attempts would have had their time.
    """
    delays = sum(min(RETRY_DELAY_SECONDS << i, RETRY_DELAY_CAP_SECONDS) for i in range(step.retries))
    return (step.retries + 1) * (step.timeout_seconds + START_ALLOWANCE_SECONDS) + delays


def build_job(run: RunRef, step: StepSpec, settings: JobSettings,
              pipeline_context: SecurityContext | None = None, *, logical_time: str | None = None) -> dict[str, Any]:
    """The Job that runs ``step`` of ``run``: retries as backoffLimit, the timeout as each pod's
    activeDeadlineSeconds (per attempt), and all attempts' time as the Job's (:func:`job_deadline`).

    ``pipeline_context`` is the pipeline's securityContext, under the step's own.
    """
    labels = _labels(run, step.id)
    pod_meta = step.pod_metadata
    pod_labels = {**(pod_meta.labels if pod_meta else {}), **labels}
    pod_annotations = dict(pod_meta.annotations) if pod_meta else {}
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "activeDeadlineSeconds": step.timeout_seconds,
        "automountServiceAccountToken": step.automount_service_account_token,
        "securityContext": copy.deepcopy(POD_SECURITY_CONTEXT),
        "containers": [_container(step, settings, pipeline_context, logical_time)],
    }
    if step.service_account_name:
        pod_spec["serviceAccountName"] = step.service_account_name
    spec: dict[str, Any] = {
        "backoffLimit": step.retries,
        "activeDeadlineSeconds": job_deadline(step),
        # A pod evicted or lost with its node is retried without using up a retry.
        "podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]},
        "template": {"metadata": {"labels": pod_labels, "annotations": pod_annotations}, "spec": pod_spec},
    }
    if settings.ttl_seconds is not None:
        spec["ttlSecondsAfterFinished"] = settings.ttl_seconds
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(run.name, step.id),
            "namespace": run.namespace,
            "labels": labels,
            "ownerReferences": [{
                "apiVersion": c.API_VERSION,
                "kind": c.PIPELINERUN_KIND,
                "name": run.name,
                "uid": run.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }],
        },
        "spec": spec,
    }


def _condition(job: dict[str, Any], *types: str) -> dict[str, Any] | None:
    for cond in job.get("status", {}).get("conditions") or []:
        if cond.get("type") in types and cond.get("status") == "True":
            return dict(cond)
    return None


def _termination(pod: dict[str, Any]) -> dict[str, Any] | None:
    for status in pod.get("status", {}).get("containerStatuses") or []:
        terminated = (status.get("state") or {}).get("terminated")
        if terminated:
            return dict(terminated)
    return None


def _parse_message(text: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """A termination message: a JSON object is a result; anything else is plain text (both cleaned and
    bounded: they come from the step's container)."""
    if not text or not text.strip():
        return None, None
    try:
        value = json.loads(text)
    except ValueError:
        return None, clean(text.strip())
    if not isinstance(value, dict):
        return None, clean(text.strip())
    result = clean_json(value)
    if result is None:
        return None, f"the step's result was dropped: it takes more than {RESULT_LIMIT} bytes"
    return result, None


def _pods_by_phase(pods: list[dict[str, Any]], phase: str) -> list[dict[str, Any]]:
    chosen = [p for p in pods if p.get("status", {}).get("phase") == phase]
    return sorted(chosen, key=lambda p: p.get("metadata", {}).get("creationTimestamp") or "")


def _counts(status: dict[str, Any], pods: list[dict[str, Any]]) -> tuple[int, int, int]:
    """Failed, succeeded and active pods, including those the Job controller has not counted yet."""
    uncounted = status.get("uncountedTerminatedPods") or {}
    failed = status.get("failed", 0) + len(uncounted.get("failed") or [])
    succeeded = status.get("succeeded", 0) + len(uncounted.get("succeeded") or [])
    failed = max(failed, len(_pods_by_phase(pods, "Failed")))
    succeeded = max(succeeded, len(_pods_by_phase(pods, "Succeeded")))
    return failed, succeeded, status.get("active", 0)


def probe(job: dict[str, Any], seen: JobObservation, now: datetime) -> Probe:
    """Whether to read the Job's Events or pods to learn why its step has not started.

    Only for a Job at least :data:`PROBE_AFTER_SECONDS` old with no pod yet (Events: FailedCreate), or
    with pods of which none is ready (their waiting reasons); and for a Job that failed without any pod
    having failed (it was never able to start one).
    """
    stamp = job["metadata"].get("creationTimestamp")
    created = parse_time(stamp) if stamp else None
    old_enough = created is None or (now - created).total_seconds() >= PROBE_AFTER_SECONDS
    status = job.get("status") or {}
    if seen.phase == StepPhase.FAILED:
        return Probe(events=not status.get("failed"))
    if not old_enough:
        return Probe()
    if seen.phase == StepPhase.PENDING:
        return Probe(events=True)
    return Probe(pods=seen.phase == StepPhase.RUNNING and seen.starting)


def events_about(events: list[dict[str, Any]], job: dict[str, Any]) -> list[dict[str, Any]]:
    """Of a namespace's Events, those about ``job`` (by name, and by UID where the Event names one)."""
    meta = job["metadata"]
    return [e for e in events if (e.get("involvedObject") or {}).get("name") == meta["name"]
            and (e.get("involvedObject") or {}).get("uid") in (meta.get("uid"), None)]


def pods_of(pods: list[dict[str, Any]], job: dict[str, Any]) -> list[dict[str, Any]]:
    """Of a namespace's pods, those of ``job`` (the Job controller's labels: the Job's name and UID)."""
    meta = job["metadata"]
    labels = [(p, (p.get("metadata") or {}).get("labels") or {}) for p in pods]
    return [p for p, kept in labels if kept.get(c.LABEL_JOB_NAME) == meta["name"]
            and kept.get(c.LABEL_JOB_CONTROLLER_UID, meta.get("uid")) == meta.get("uid")]


def _failed_create(events: list[dict[str, Any]]) -> str | None:
    """The latest FailedCreate message among a Job's Events."""
    chosen = [e for e in events if e.get("reason") == "FailedCreate" and e.get("message")]
    if not chosen:
        return None
    latest = max(chosen, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
    return clean(str(latest["message"]), 1024)


def _stuck_pod(pods: list[dict[str, Any]]) -> tuple[str, str] | None:
    """Why a pod of the Job cannot start: a container's waiting reason, or the scheduler's verdict."""
    for pod in _pods_by_phase(pods, "Pending"):
        status = pod.get("status") or {}
        for container in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in _WAITING_REASONS:
                return waiting["reason"], clean(str(waiting.get("message") or waiting["reason"]), 1024)
        for cond in status.get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False" and cond.get("reason"):
                return "Unschedulable", clean(str(cond.get("message") or cond["reason"]), 1024)
    return None


def observe_job(job: dict[str, Any], pods: list[dict[str, Any]],
                events: list[dict[str, Any]] | None = None) -> JobObservation:
    """The step's state as its Job reports it.

    ``pods`` are read for the result or the failure message, or to tell why none is ready; ``events``
    (the Job's) to tell why the Job controller creates no pod.  A Job that fails at its deadline without
    ever starting a pod names that cause rather than only ``DeadlineExceeded``.
    """
    name = job["metadata"]["name"]
    status = job.get("status") or {}
    failed, succeeded, active = _counts(status, pods)
    started = status.get("startTime")
    done = _condition(job, "Complete", "SuccessCriteriaMet")
    broken = _condition(job, "Failed", "FailureTarget")
    if done or (broken and succeeded):
        # A pod that succeeded did the step's work, even when the Job controller counted it only after the
        # Job's deadline had passed (it checks the deadline first): a Job controller behind its queue must
        # not fail a step that ran to its end.
        term = next((t for p in reversed(_pods_by_phase(pods, "Succeeded")) if (t := _termination(p))), None)
        finished = status.get("completionTime") or (term or {}).get("finishedAt") \
            or (done or broken or {}).get("lastTransitionTime")
        result, text = _parse_message(term.get("message") if term else None)
        return JobObservation(name, StepPhase.SUCCEEDED, failed + max(succeeded, 1), started, finished,
                              "Completed", text, result)
    if broken:
        failed_pods = _pods_by_phase(pods, "Failed")
        last = failed_pods[-1] if failed_pods else None
        term = next((t for p in reversed(failed_pods) if (t := _termination(p))), None)
        result, text = _parse_message(term.get("message") if term else None)
        detail = (result or {}).get("error") or text
        message = clean(str(broken.get("message") or ""))
        reason = clean(str(broken.get("reason") or "Failed"), 256)
        killed = (last or {}).get("status") or {}
        if killed.get("reason") == "DeadlineExceeded":
            # the kubelet ended the last attempt at its own deadline (the pod's activeDeadlineSeconds)
            message = f"{message} ({reason}); the last attempt ran out of its time: " \
                      f"{clean(str(killed.get('message') or 'the pod passed its deadline'))}"
            reason = "DeadlineExceeded"
        if detail:
            message = f"{message}; last attempt: {clean(str(detail))}" if message else clean(str(detail))
        cannot_create = _failed_create(events or []) if not failed else None
        if cannot_create:
            message = f"{message} ({reason}); its pods could not be created: {cannot_create}"
            reason = "FailedCreate"
        return JobObservation(name, StepPhase.FAILED, max(failed, 1), started,
                              broken.get("lastTransitionTime"), reason, message, result)
    if active or status.get("ready") or failed or succeeded:
        # pods ran and the Job is not finished: a pod is running, a retry is due, or the Job
        # controller has yet to record a pod's success -- all still Running, never back to Pending
        starting = bool(active) and not status.get("ready")
        stuck = _stuck_pod(pods) if starting else None
        return JobObservation(name, StepPhase.RUNNING, failed + active + succeeded, started,
                              reason=stuck[0] if stuck else None, message=stuck[1] if stuck else None,
                              starting=starting)
    cannot_create = _failed_create(events or [])
    if cannot_create:
        return JobObservation(name, StepPhase.PENDING, failed, started, reason="FailedCreate", message=cannot_create)
    return JobObservation(name, StepPhase.PENDING, failed, started, reason="JobCreated")
