"""Starting runs by hand: ``headwater run PIPELINE``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kubernetes import client, config

from headwater.spec import constants as c
from headwater.spec.models import Trigger
from headwater.spec.names import label_value

__all__ = ["manual_run", "start_run"]


def manual_run(pipeline: str, *, now: datetime, from_step: str | None = None,
               retry_of: str | None = None) -> dict[str, Any]:
    """The PipelineRun manifest of a manual (or retry) run, named after the pipeline and the time."""
    spec: dict[str, Any] = {"pipelineRef": {"name": pipeline},
                            "trigger": (Trigger.RETRY if retry_of else Trigger.MANUAL).value}
    if from_step:
        spec["fromStep"] = from_step
    if retry_of:
        spec["retryOf"] = retry_of
    return {
        "apiVersion": c.API_VERSION, "kind": c.PIPELINERUN_KIND,
        "metadata": {"generateName": f"{pipeline[:200]}-{now:%Y%m%d%H%M%S}-",
                     "labels": {c.LABEL_PIPELINE: label_value(pipeline), c.LABEL_TRIGGER: spec["trigger"]}},
        "spec": spec,
    }


def start_run(pipeline: str, namespace: str | None, *, from_step: str | None = None,
              retry_of: str | None = None) -> str:
    """Create the run in the cluster of the current kubeconfig; returns its name."""
    config.load_kube_config()
    if namespace is None:
        _, active = config.list_kube_config_contexts()
        namespace = active.get("context", {}).get("namespace", "default")
    body = manual_run(pipeline, now=datetime.now(UTC), from_step=from_step, retry_of=retry_of)
    with client.ApiClient() as api:
        out = client.CustomObjectsApi(api).create_namespaced_custom_object(
            c.GROUP, c.VERSION, namespace, c.PIPELINERUN_PLURAL, body)
    name: str = out["metadata"]["name"]
    return name
