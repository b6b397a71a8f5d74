"""Step Jobs: deterministic names, the Job manifest, and a step's state read back from its Job."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from headwater.spec import constants as c
from headwater.spec.models import StepPhase, StepSpec
from headwater.spec.text import RESULT_LIMIT, clean, clean_json

__all__ = [
    "JobObservation",
    "JobSettings",
    "RunRef",
    "build_job",
    "job_name",
    "observe_job",
]

_MAX_NAME = 63
_HASH_LEN = 8


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


def job_name(run: str, step: str) -> str:
    """``<run>-<step>``; when that exceeds 63 characters, a prefix of it plus a stable hash of both.

    Deterministic, so a Job re-created after a crash collides with the first one
    (HTTP 409) instead of running the step twice.
    """
    name = f"{run}-{step}"
    if len(name) <= _MAX_NAME:
        return name
    digest = hashlib.sha256(f"{run}/{step}".encode()).hexdigest()[:_HASH_LEN]
    prefix = name[: _MAX_NAME - _HASH_LEN - 1].rstrip("-.")
    return f"{prefix}-{digest}"


def _labels(run: RunRef, step: str) -> dict[str, str]:
    return {
        c.LABEL_PIPELINE: run.pipeline,
        c.LABEL_RUN: run.name,
        c.LABEL_STEP: step,
        c.LABEL_MANAGED_BY: c.MANAGER,
    }


def _container(step: StepSpec, settings: JobSettings) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "step",
        "image": step.image or settings.step_image,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    env = [e.model_dump(by_alias=True, exclude_none=True, mode="json") for e in step.env]
    if step.type == "sql":
        container["command"] = step.command or ["headwater", "step", "sql"]
        env.append({"name": "HEADWATER_SQL", "value": step.sql or ""})
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


def build_job(run: RunRef, step: StepSpec, settings: JobSettings) -> dict[str, Any]:
    """The Job that runs ``step`` of ``run``: retries as backoffLimit, timeout as activeDeadlineSeconds."""
    labels = _labels(run, step.id)
    pod_meta = step.pod_metadata
    pod_labels = {**(pod_meta.labels if pod_meta else {}), **labels}
    pod_annotations = dict(pod_meta.annotations) if pod_meta else {}
    pod_spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [_container(step, settings)]}
    if step.service_account_name:
        pod_spec["serviceAccountName"] = step.service_account_name
    spec: dict[str, Any] = {
        "backoffLimit": step.retries,
        "activeDeadlineSeconds": step.timeout_seconds,
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


def observe_job(job: dict[str, Any], pods: list[dict[str, Any]]) -> JobObservation:
    """The step's state as its Job reports it; ``pods`` are read for the result or the failure message."""
    name = job["metadata"]["name"]
    status = job.get("status") or {}
    failed, succeeded, active = _counts(status, pods)
    started = status.get("startTime")
    done = _condition(job, "Complete", "SuccessCriteriaMet")
    if done:
        finished = status.get("completionTime") or done.get("lastTransitionTime")
        term = next((t for p in reversed(_pods_by_phase(pods, "Succeeded")) if (t := _termination(p))), None)
        result, text = _parse_message(term.get("message") if term else None)
        return JobObservation(name, StepPhase.SUCCEEDED, failed + max(succeeded, 1), started, finished,
                              "Completed", text, result)
    broken = _condition(job, "Failed", "FailureTarget")
    if broken:
        term = next((t for p in reversed(_pods_by_phase(pods, "Failed")) if (t := _termination(p))), None)
        result, text = _parse_message(term.get("message") if term else None)
        detail = (result or {}).get("error") or text
        message = clean(str(broken.get("message") or ""))
        if detail:
            message = f"{message}; last attempt: {clean(str(detail))}" if message else clean(str(detail))
        return JobObservation(name, StepPhase.FAILED, max(failed, 1), started, broken.get("lastTransitionTime"),
                              clean(str(broken.get("reason") or "Failed"), 256), message, result)
    if active or status.get("ready") or failed or succeeded:
        # pods ran and the Job is not finished: a pod is running, a retry is due, or the Job
        # controller has yet to record a pod's success -- all still Running, never back to Pending
        return JobObservation(name, StepPhase.RUNNING, failed + active + succeeded, started)
    return JobObservation(name, StepPhase.PENDING, failed, started, reason="JobCreated")


def job_datetime(value: str | None) -> datetime | None:
    """A Kubernetes timestamp as an aware datetime."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None
