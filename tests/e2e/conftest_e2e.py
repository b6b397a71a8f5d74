"""Manifest builders and waits for the operator's end-to-end tests."""

from __future__ import annotations

from typing import Any

from helpers import Cluster, wait_for

API = "headwater.dev/v1alpha1"


def step(step_id: str, *deps: str, **fields: Any) -> dict[str, Any]:
    return {"id": step_id, "type": "container", "image": "busybox", "dependsOn": list(deps), **fields}


def fail_label() -> dict[str, Any]:
    """podMetadata that makes every attempt of a step fail on the simulated nodes."""
    return {"labels": {"headwater.dev/test-fail": "true"}}


def pipeline(name: str, steps: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "Pipeline", "metadata": {"name": name},
            "spec": {"owner": "data-team@example.com", "steps": steps, **spec}}


def run(name: str, pipeline_name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "PipelineRun", "metadata": {"name": name},
            "spec": {"pipelineRef": {"name": pipeline_name}, **spec}}


def wait_run(cluster: Cluster, namespace: str, name: str, timeout: float = 90) -> dict[str, Any]:
    """The run once it has reached a final phase."""
    def finished() -> dict[str, Any] | None:
        obj = cluster.get("pipelinerun", name, namespace)
        phase = (obj.get("status") or {}).get("phase")
        return obj if phase in ("Succeeded", "Failed", "Cancelled") else None

    return wait_for(finished, timeout=timeout, interval=0.5, message=f"PipelineRun {name} to finish")
