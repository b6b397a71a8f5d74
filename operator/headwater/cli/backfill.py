"""``headwater backfill PIPELINE --from --to``: the slots of a range, and the Backfill that runs them.

The dry run reads the Pipeline's schedule and lists the slots without creating anything; otherwise a
``Backfill`` object is created and the operator creates one run per slot (``kubectl get backfills``
shows the progress).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kubernetes import client, config

from headwater.pipelines.backfilling import run_name_for_slot, slots
from headwater.spec import constants as c
from headwater.spec.models import BackfillSpec, PipelineSpec
from headwater.spec.names import MAX_PIPELINE_NAME, bounded
from headwater.spec.times import isotime, parse_time

__all__ = ["backfill_manifest", "create_backfill", "plan_slots"]


def backfill_manifest(pipeline: str, start: datetime, end: datetime, max_concurrent: int,
                      name: str | None = None) -> dict[str, Any]:
    """The Backfill object (validated as the apiserver would)."""
    spec = {"pipelineRef": {"name": pipeline}, "from": isotime(start), "to": isotime(end),
            "maxConcurrent": max_concurrent}
    BackfillSpec.model_validate(spec)
    default = bounded(f"{pipeline}-backfill-{start:%Y%m%d}-{end:%Y%m%d}", MAX_PIPELINE_NAME)
    return {"apiVersion": c.API_VERSION, "kind": c.BACKFILL_KIND, "metadata": {"name": name or default},
            "spec": spec}


def plan_slots(pipeline: dict[str, Any], start: datetime, end: datetime) -> list[datetime]:
    """The slots of the Pipeline's schedule in the range (ValueError when it has none)."""
    spec = PipelineSpec.model_validate(pipeline["spec"])
    if spec.schedule is None:
        raise ValueError(f"Pipeline {pipeline['metadata']['name']} has no schedule, so it has no slots")
    return slots(spec.schedule, spec.time_zone, start, end)


def _namespace(namespace: str | None) -> str:
    if namespace is not None:
        return namespace
    _, active = config.list_kube_config_contexts()
    found: str = active.get("context", {}).get("namespace", "default")
    return found


def create_backfill(pipeline: str, start: str, end: str, *, namespace: str | None, max_concurrent: int,
                    name: str | None, dry_run: bool) -> list[str]:
    """Lines to print: the slots (dry run), or the Backfill created and how many slots it runs."""
    config.load_kube_config()
    namespace = _namespace(namespace)
    first, last = parse_time(start), parse_time(end)
    manifest = backfill_manifest(pipeline, first, last, max_concurrent, name)
    with client.ApiClient() as api:
        custom = client.CustomObjectsApi(api)
        found = custom.get_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PIPELINE_PLURAL, pipeline)
        chosen = plan_slots(found, first, last)
        backfill = manifest["metadata"]["name"]
        if dry_run:
            return [f"{isotime(slot)}  {run_name_for_slot(backfill, slot)}" for slot in chosen] + [
                f"{len(chosen)} slot(s); dry run: nothing created"]
        custom.create_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.BACKFILL_PLURAL, manifest)
    return [f"backfill.{c.GROUP}/{backfill} created: {len(chosen)} slot(s), at most {max_concurrent} at once",
            f"progress: kubectl get backfill {backfill} -n {namespace}"]
