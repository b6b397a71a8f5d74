"""kopf registration: each handler parses what it was given, asks the runtime, and returns.

Only event handlers are used (no kopf progress or finalizers on our objects):
every event is a hint to re-read and re-plan, so nothing depends on
which event arrives, or on whether one was missed while the operator was down.
Events the engine knows cannot change a run (the echo of its own status
write, a Job update that leaves its step as it was) are dropped here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import kopf

from headwater.controller.config import Settings
from headwater.controller.runtime import Runtime, api_client
from headwater.pipelines import status as pipelines
from headwater.spec import constants as c
from headwater.spec.models import RunPhase


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.posting.enabled = False  # we post our own Events, with our own reasons
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=c.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=c.GROUP)
    settings.execution.max_workers = 32
    settings.batching.batch_window = 0.05
    settings.scanning.disabled = True  # our resources are known: no CRD or namespace discovery needed
    own: Settings = memo.settings  # put there by controller.main
    runtime = Runtime(own, api_client(64))
    await runtime.start()
    memo.runtime = runtime


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo.runtime
    await runtime.close()


@kopf.on.event(c.GROUP, c.VERSION, c.PIPELINERUN_PLURAL)
def run_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo.runtime
    meta = body["metadata"]
    if event["type"] == "DELETED":
        runtime.engine.forget(meta["namespace"], meta["name"])
    elif RunPhase.ended((body.get("status") or {}).get("phase")):
        runtime.finished(dict(body))
    elif not runtime.engine.memory.is_known(meta["namespace"], meta["name"], meta.get("resourceVersion", "")):
        runtime.engine.reconcile(meta["namespace"], meta["name"])


@kopf.on.event("batch", "v1", "jobs", labels={c.LABEL_MANAGED_BY: c.MANAGER, c.LABEL_RUN: kopf.PRESENT})
def job_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo.runtime
    namespace, run = body["metadata"]["namespace"], body["metadata"]["labels"][c.LABEL_RUN]
    if runtime.engine.memory.job_changes_run(namespace, run, dict(body), deleted=event["type"] == "DELETED"):
        runtime.engine.reconcile(namespace, run)


@kopf.on.event(c.GROUP, c.VERSION, c.PIPELINE_PLURAL)
def pipeline_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    if event["type"] == "DELETED":
        return
    runtime: Runtime = memo.runtime
    meta = body["metadata"]
    status = pipelines.pipeline_status(dict(body["spec"]), dict(body.get("status") or {}),
                                       meta.get("generation"), datetime.now(UTC))
    if status is not None:
        runtime.kube.patch_pipeline_status(meta["namespace"], meta["name"], status)
        ready = next(cond for cond in status["conditions"] if cond["type"] == "Ready")
        if ready["status"] == "False":
            runtime.events(dict(body), "Warning", ready["reason"], ready["message"])
