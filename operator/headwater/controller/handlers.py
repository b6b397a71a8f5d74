"""kopf registration: each handler parses what it was given, asks the runtime, and returns.

Only event handlers are used (no kopf progress or finalizers on our objects):
every event is a hint to re-read and re-plan, so nothing depends on
which event arrives, or on whether one was missed while the operator was down.
Events the engine knows cannot change a run (the echo of its own status
write, a Job update that leaves its step as it was) are dropped here.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from functools import partial
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from headwater.controller.config import Settings
from headwater.controller.runtime import Runtime, api_client
from headwater.pipelines import status as pipelines
from headwater.runs.jobindex import owning_run
from headwater.runs.settling import UNSETTLED_SELECTOR
from headwater.spec import constants as c
from headwater.spec.models import RunPhase

LIST_PAGE = 200
"""Objects per page of the watches' first listing (kopf's ``watching.chunk_size``)."""
JOB_SELECTOR = f"{c.LABEL_MANAGED_BY}={c.MANAGER},{c.LABEL_RUN}"
WATCH_SELECTORS = {(c.GROUP, c.PIPELINERUN_PLURAL): UNSETTLED_SELECTOR, ("batch", "jobs"): JOB_SELECTOR}
"""The label selector of each watch that does not take every object of its resource."""


class NoEssence(kopf.DiffBaseStorage):
    """kopf's diff base, for an operator with event handlers only.

    kopf compares an object's "essence" with the one it last handled to find the changes that change
    handlers (``on.create``, ``on.update``, ...) react to, and daemons' idle timers. Headwater registers
    neither, yet kopf builds the essence on every event it receives: a deep copy of the whole object, status
    included, for each status write, Job update and pod count the operator sees. Here the essence is empty,
    and none is ever stored."""

    def build(self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.posting.enabled = False  # we post our own Events, with our own reasons
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=c.GROUP)
    settings.persistence.diffbase_storage = NoEssence()  # no change handlers: nothing to compare
    settings.execution.max_workers = 32
    settings.scanning.disabled = True  # our resources are known: no CRD or namespace discovery needed
    # The first listing of each resource a page at a time: one answer with every PipelineRun (each with its
    # pipeline snapshot) was the operator's largest allocation, and the heap stayed near that size after.
    settings.watching.chunk_size = LIST_PAGE
    # Selected by the apiserver: finished runs that owe nothing more, and Jobs that are not ours, never reach
    # the operator's memory (a run labelled settled arrives once more, as a deletion, and is forgotten).
    for (group, plural), selector in WATCH_SELECTORS.items():
        settings.watching.label_selectors[group, plural] = selector
    own: Settings = memo.settings  # put there by controller.main
    # connections kept: the handler threads (32), the Job creators, the trigger's creates (up to 100) and the loops
    runtime = Runtime(own, api_client(160), memo.metrics)
    await runtime.start()
    memo.runtime = runtime


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo.runtime
    await runtime.close()


def _owned(namespace: str | None, memo: kopf.Memo, **_: Any) -> bool:
    """Whether this instance's shard owns the object's namespace (every namespace without shards)."""
    shard = memo.settings.owned_shard()
    return shard is None or namespace is None or shard.owns(namespace)


@kopf.on.event(c.GROUP, c.VERSION, c.PIPELINERUN_PLURAL, when=_owned)
def run_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo.runtime
    meta = body["metadata"]
    if event["type"] == "DELETED":
        runtime.engine.forget(meta["namespace"], meta["name"])
        return
    runtime.engine.saw(dict(body))  # the next pass starts from the newest version seen
    if RunPhase.ended((body.get("status") or {}).get("phase")):
        runtime.finished(dict(body))
    elif not runtime.engine.memory.is_known(meta["namespace"], meta["name"], meta.get("resourceVersion", "")):
        runtime.arrived(dict(body))


@kopf.on.event("batch", "v1", "jobs", labels={c.LABEL_MANAGED_BY: c.MANAGER, c.LABEL_RUN: kopf.PRESENT},
               when=_owned)
def job_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo.runtime
    job, deleted = dict(body), event["type"] == "DELETED"
    namespace, owner = job["metadata"]["namespace"], owning_run(job)
    runtime.engine.jobs.saw(job, deleted=deleted)  # the run's next pass plans from it
    if owner and runtime.engine.memory.job_changes_run(namespace, owner["name"], job, deleted=deleted):
        runtime.reconcile({"metadata": {"namespace": namespace, "name": owner["name"], "uid": owner.get("uid")}})


@kopf.on.event(c.GROUP, c.VERSION, c.PIPELINE_PLURAL, when=_owned)
def pipeline_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo.runtime
    runtime.watched_pipelines.saw(event["object"], deleted=event["type"] == "DELETED")
    if event["type"] == "DELETED":
        return
    runtime.metrics.pipeline_seen(body["metadata"]["name"])
    runtime.isolation.run(dict(body), "checking the spec", partial(_pipeline_status, runtime, dict(body)),
                          reason="StatusFailed", kind=f"{c.PIPELINE_KIND}/spec", respect_backoff=False)


def _pipeline_status(runtime: Runtime, body: dict[str, Any]) -> None:
    meta = body["metadata"]
    status = pipelines.pipeline_status(dict(body["spec"]), dict(body.get("status") or {}),
                                       meta.get("generation"), datetime.now(UTC))
    if status is None:
        return
    try:  # onto the version this event showed: other writers' conditions are in the list we write
        runtime.kube.patch_pipeline_status(meta["namespace"], meta["name"], status, meta.get("resourceVersion"))
    except ApiException as exc:
        if exc.status == 409:
            return  # a newer version exists, and its event comes next
        raise
    ready = next(cond for cond in status["conditions"] if cond["type"] == c.CONDITION_READY)
    if ready["status"] == "False":
        runtime.events(body, "Warning", ready["reason"], ready["message"])
