"""kopf registration: each handler parses what it was given, asks the engine, and returns.

Only event handlers are used (no kopf progress or finalizers on our objects):
every event is a hint to re-read and re-plan, so nothing depends on
which event arrives, or on whether one was missed while the operator was down.
Events the engine knows cannot change a run (the echo of its own status
write, a Job update that leaves its step as it was) are dropped here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from functools import partial
from typing import Any

import kopf
from prometheus_client import start_http_server

from headwater.controller.config import Settings, load_settings
from headwater.controller.runtime import Runtime, api_client
from headwater.lineage.api import start_api
from headwater.lineage.store import LineageStore
from headwater.pipelines import status as pipelines
from headwater.pipelines.scheduler import schedule_pipeline
from headwater.spec import constants as c

log = logging.getLogger(__name__)

_TERMINAL = {"Succeeded", "Failed", "Cancelled"}


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    own = load_settings()
    settings.posting.enabled = False  # we post our own Events, with our own reasons
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=c.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=c.GROUP)
    settings.execution.max_workers = 32
    settings.batching.batch_window = 0.05
    settings.scanning.disabled = True  # our resources are known: no CRD or namespace discovery needed
    runtime = Runtime(own, api_client(64))
    runtime.events.start()
    memo.runtime = runtime
    if own.metrics_port:
        start_http_server(own.metrics_port, registry=runtime.metrics.registry)
    runtime.tasks = [
        asyncio.create_task(_every(own.resync_seconds, partial(_resync, runtime))),
        asyncio.create_task(_every(own.schedule_interval_seconds, partial(_schedule, runtime))),
    ]
    runtime.tasks.append(asyncio.create_task(_every(own.freshness_interval_seconds, runtime.sla.evaluate_all)))
    for poster in (runtime.emitter, runtime.alerts):
        if poster is not None:
            poster.start()
    if runtime.recorder is not None:
        recorder = runtime.recorder
        runtime.metrics.lineage_backlog.set_function(lambda: recorder.backlog)
        recorder.start()
        if own.api_port:
            runtime.tasks.append(asyncio.create_task(_serve_api(own)))


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo.runtime
    for task in runtime.tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if runtime.recorder is not None:
        await asyncio.to_thread(runtime.recorder.stop)
    for poster in (runtime.emitter, runtime.alerts):
        if poster is not None:
            await asyncio.to_thread(poster.stop)
    await asyncio.to_thread(runtime.events.stop)
    runtime.kube.api_client.close()


@kopf.on.event(c.GROUP, c.VERSION, c.PIPELINERUN_PLURAL)
def run_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo.runtime
    meta = body["metadata"]
    if event["type"] == "DELETED":
        runtime.engine.forget(meta["namespace"], meta["name"])
    elif (body.get("status") or {}).get("phase") not in _TERMINAL and \
            not runtime.engine.memory.is_known(meta["namespace"], meta["name"], meta.get("resourceVersion", "")):
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


async def _serve_api(settings: Settings) -> None:
    """Serve the lineage API from this process once the store can be opened (retrying until then)."""
    assert settings.database_url is not None
    delay = 1.0
    waiting = await start_api(None, host=settings.api_host, port=settings.api_port)
    while True:
        try:
            store = await asyncio.to_thread(LineageStore.open, settings.database_url)
            break
        except Exception as exc:
            log.warning("lineage API waits for the database: %s; retrying in %.0fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
    await waiting.cleanup()
    runner = await start_api(store, host=settings.api_host, port=settings.api_port, token=settings.api_token)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        store.close()


async def _every(seconds: float, work: Any) -> None:
    """Run ``work`` in a worker thread every ``seconds``; an error is logged and the loop goes on."""
    while True:
        await asyncio.sleep(seconds)
        try:
            await asyncio.to_thread(work)
        except Exception:
            log.exception("periodic %s failed", getattr(work, "func", work).__name__)


def _resync(runtime: Runtime) -> None:
    """Safety net: re-plan every unfinished run, whatever events were missed."""
    unfinished = [(run["metadata"]["namespace"], run["metadata"]["name"])
                  for scope in runtime.scopes() for run in runtime.kube.iter_runs(scope)
                  if (run.get("status") or {}).get("phase") not in _TERMINAL]
    for namespace, name in unfinished:
        runtime.engine.reconcile(namespace, name)


def _schedule(runtime: Runtime) -> None:
    for scope in runtime.scopes():
        for pipeline in runtime.kube.list_pipelines(scope):
            if (pipeline.get("spec") or {}).get("schedule"):
                schedule_pipeline(runtime.kube, pipeline, post_event=runtime.events)
