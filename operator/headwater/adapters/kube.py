"""Thin I/O over the Kubernetes API: every call the operator makes, in one place.

:class:`Kube` is what the engine, the scheduler, the SLA monitor, the recorder and the Event queue
depend on; :class:`KubeClient` answers it from the apiserver.  A missing object is None from the
getters, ignored by the deletes and an ``ApiException`` (404) from every other call.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, Protocol

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from headwater.adapters import rest
from headwater.spec import constants as c
from headwater.spec.names import label_value

__all__ = ["Kube", "KubeClient", "KubeHelpers", "is_unavailable", "post_event"]

log = logging.getLogger(__name__)

RunWrite = Callable[[dict[str, Any]], dict[str, Any] | None]
"""Given the run as last read, write to it and return what was written (or the run, when nothing was)."""
StatusChange = Callable[[dict[str, Any]], dict[str, Any] | None]
"""Given a Pipeline as read, the status patch to apply onto that version (None: nothing to write)."""


class Kube(Protocol):
    """The Kubernetes calls the operator makes."""

    def get_run(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def get_pipeline(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def list_runs(self, namespace: str | None, selector: str | None = None) -> list[dict[str, Any]]: ...

    def iter_runs(self, namespace: str | None, selector: str | None = None,
                  page: int = 200) -> Iterator[dict[str, Any]]: ...

    def list_pipelines(self, namespace: str | None) -> list[dict[str, Any]]: ...

    def list_backfills(self, namespace: str | None) -> list[dict[str, Any]]: ...

    def patch_backfill_status(self, namespace: str, name: str, status: dict[str, Any]) -> None: ...

    def replace_run_status(self, run: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]: ...

    def patch_run_status(self, namespace: str, name: str, status: dict[str, Any]) -> None: ...

    def patch_pipeline_status(self, namespace: str, name: str, status: dict[str, Any],
                              resource_version: str | None = None) -> None: ...

    def list_pipeline_runs(self, namespace: str, pipeline: str, selector: str | None = None
                           ) -> list[dict[str, Any]]: ...

    def update_pipeline_status(self, namespace: str, name: str, change: StatusChange, attempts: int = 5) -> bool: ...

    def update_run(self, run: dict[str, Any], write: RunWrite, what: str,
                   attempts: int = 4) -> dict[str, Any] | None: ...

    def create_run(self, namespace: str, body: dict[str, Any]) -> bool: ...

    def patch_run_metadata(self, namespace: str, name: str, metadata: dict[str, Any],
                           resource_version: str | None = None) -> dict[str, Any] | None: ...

    def patch_run_spec(self, namespace: str, name: str, spec: dict[str, Any]) -> None: ...

    def delete_run(self, namespace: str, name: str) -> None: ...

    def list_jobs(self, namespace: str, run: str, uid: str | None = None) -> list[dict[str, Any]]: ...

    def iter_step_jobs(self, namespace: str | None) -> Iterator[dict[str, Any]]: ...

    def list_failed_creates(self, namespace: str) -> list[dict[str, Any]]: ...

    def list_pending_step_pods(self, namespace: str) -> tuple[list[dict[str, Any]], bool]: ...

    def list_job_pods(self, namespace: str, job: str) -> list[dict[str, Any]]: ...

    def create_job(self, manifest: dict[str, Any]) -> dict[str, Any] | None: ...

    def delete_job(self, namespace: str, name: str) -> None: ...

    def create_event(self, namespace: str, body: dict[str, Any]) -> None: ...


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the apiserver is away or overloaded (no answer, 429, 5xx), not that the request
    was wrong."""
    if isinstance(exc, ApiException):
        return not exc.status or exc.status == 429 or exc.status >= 500
    return isinstance(exc, urllib3.exceptions.HTTPError | ConnectionError | TimeoutError)


class KubeHelpers:
    """Calls made of other calls, the same over any :class:`Kube` (the apiserver's or a test's)."""

    def iter_runs(self, namespace: str | None, selector: str | None = None,
                  page: int = 200) -> Iterator[dict[str, Any]]:
        raise NotImplementedError

    def get_pipeline(self, namespace: str, name: str) -> dict[str, Any] | None:
        raise NotImplementedError

    def get_run(self, namespace: str, name: str) -> dict[str, Any] | None:
        raise NotImplementedError

    def update_run(self, run: dict[str, Any], write: RunWrite, what: str, attempts: int = 4) -> dict[str, Any] | None:
        """``write(run)``; on a conflict, again with the run read afresh, as long as it is the same run (UID).

        None once the run is gone (deleted, or re-created under its name); ``what`` names the write in the
        error raised when the run kept changing.
        """
        meta = run["metadata"]
        latest: dict[str, Any] | None = run
        for _ in range(attempts):
            if latest is None or latest["metadata"].get("uid") != meta["uid"]:
                return None
            try:
                return write(latest)
            except ApiException as exc:
                if exc.status == 404:
                    return None
                if exc.status != 409:
                    raise
            latest = self.get_run(meta["namespace"], meta["name"])
        raise RuntimeError(f"PipelineRun {meta['namespace']}/{meta['name']} kept changing while {what}")

    def patch_pipeline_status(self, namespace: str, name: str, status: dict[str, Any],
                              resource_version: str | None = None) -> None:
        raise NotImplementedError

    def list_pipeline_runs(self, namespace: str, pipeline: str, selector: str | None = None) -> list[dict[str, Any]]:
        """The runs of one Pipeline (and of ``selector``): selected by its (shortened) label, then by the exact
        name."""
        runs = self.iter_runs(namespace, ",".join([f"{c.LABEL_PIPELINE}={label_value(pipeline)}",
                                                   *([selector] if selector else [])]))
        return [r for r in runs if ((r.get("spec") or {}).get("pipelineRef") or {}).get("name") == pipeline]

    def update_pipeline_status(self, namespace: str, name: str,
                               change: Callable[[dict[str, Any]], dict[str, Any] | None], attempts: int = 5) -> bool:
        """Read the Pipeline, ask ``change`` for a status patch, and apply it onto the version read.

        Used by every writer of a field that others write too (``status.conditions``): a conflict re-reads
        and asks again, so no writer overwrites what another wrote meanwhile.  False when the Pipeline is
        gone or ``change`` had nothing to write.
        """
        for _ in range(attempts):
            pipeline = self.get_pipeline(namespace, name)
            if pipeline is None:
                return False
            patch = change(pipeline)
            if patch is None:
                return False
            try:
                self.patch_pipeline_status(namespace, name, patch, pipeline["metadata"]["resourceVersion"])
            except ApiException as exc:
                if exc.status != 409:
                    raise
                continue
            return True
        raise RuntimeError(f"Pipeline {namespace}/{name}: status kept conflicting after {attempts} attempts")


class KubeClient(KubeHelpers):
    """:class:`Kube` over one API client.

    ``owns`` (a shard's namespaces) narrows every list: a shard's periodic passes (resync, schedules,
    freshness, the recorder's rescan) never see another shard's objects.
    """

    def __init__(self, api_client: client.ApiClient, owns: Callable[[str], bool] | None = None) -> None:
        self.api_client = api_client
        self.owns = owns
        self.custom = client.CustomObjectsApi(api_client)

    # --- custom resources -------------------------------------------------
    def get_run(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(c.PIPELINERUN_PLURAL, namespace, name)

    def get_pipeline(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(c.PIPELINE_PLURAL, namespace, name)

    def _get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
                c.GROUP, c.VERSION, namespace, plural, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return obj

    def list_runs(self, namespace: str | None, selector: str | None = None) -> list[dict[str, Any]]:
        return list(self.iter_runs(namespace, selector))

    def iter_runs(self, namespace: str | None, selector: str | None = None,
                  page: int = 200) -> Iterator[dict[str, Any]]:
        """Every PipelineRun, read ``page`` at a time so that thousands of runs never sit in memory at once."""
        kwargs: dict[str, Any] = {"limit": page}
        if selector:
            kwargs["label_selector"] = selector
        while True:
            if namespace:
                out = self.custom.list_namespaced_custom_object(
                    c.GROUP, c.VERSION, namespace, c.PIPELINERUN_PLURAL, **kwargs)
            else:
                out = self.custom.list_cluster_custom_object(c.GROUP, c.VERSION, c.PIPELINERUN_PLURAL, **kwargs)
            yield from self._owned(out.get("items", []))
            kwargs["_continue"] = (out.get("metadata") or {}).get("continue")
            if not kwargs["_continue"]:
                return

    def list_pipelines(self, namespace: str | None) -> list[dict[str, Any]]:
        if namespace:
            out = self.custom.list_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PIPELINE_PLURAL)
        else:
            out = self.custom.list_cluster_custom_object(c.GROUP, c.VERSION, c.PIPELINE_PLURAL)
        return self._owned(out.get("items", []))

    def _owned(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.owns is None:
            return items
        owns = self.owns
        return [item for item in items if owns(item["metadata"]["namespace"])]

    def list_backfills(self, namespace: str | None) -> list[dict[str, Any]]:
        if namespace:
            out = self.custom.list_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.BACKFILL_PLURAL)
        else:
            out = self.custom.list_cluster_custom_object(c.GROUP, c.VERSION, c.BACKFILL_PLURAL)
        items: list[dict[str, Any]] = out.get("items", [])
        return items

    def patch_backfill_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Merge-patch a Backfill's status (the backfill pass is its only writer)."""
        self.custom.patch_namespaced_custom_object_status(
            c.GROUP, c.VERSION, namespace, c.BACKFILL_PLURAL, name, {"status": status})

    def replace_run_status(self, run: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        """Write the whole status, guarded by the run's resourceVersion (409 when someone else wrote first)."""
        body = {**run, "status": status}
        meta = run["metadata"]
        out: dict[str, Any] = self.custom.replace_namespaced_custom_object_status(
            c.GROUP, c.VERSION, meta["namespace"], c.PIPELINERUN_PLURAL, meta["name"], body)
        return out

    def patch_run_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object_status(
            c.GROUP, c.VERSION, namespace, c.PIPELINERUN_PLURAL, name, {"status": status})

    def patch_pipeline_status(self, namespace: str, name: str, status: dict[str, Any],
                              resource_version: str | None = None) -> None:
        """Merge-patch fields of a Pipeline's status; with ``resource_version``, only onto that version (409 if
        it changed).  Without one, only for fields that a single writer owns (docs/architecture.md)."""
        body: dict[str, Any] = {"status": status}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}
        self.custom.patch_namespaced_custom_object_status(
            c.GROUP, c.VERSION, namespace, c.PIPELINE_PLURAL, name, body)

    def create_run(self, namespace: str, body: dict[str, Any]) -> bool:
        """Create a PipelineRun; False when one of that name already exists."""
        try:
            self.custom.create_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PIPELINERUN_PLURAL, body)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def patch_run_metadata(self, namespace: str, name: str, metadata: dict[str, Any],
                           resource_version: str | None = None) -> dict[str, Any] | None:
        """Merge-patch the run's labels or finalizers (a list is replaced whole, so pass ``resource_version``
        to make it a guarded read-modify-write: 409 when the run changed since); None when it is gone."""
        patch = {"metadata": {**metadata, **({"resourceVersion": resource_version} if resource_version else {})}}
        try:
            out: dict[str, Any] = self.custom.patch_namespaced_custom_object(
                c.GROUP, c.VERSION, namespace, c.PIPELINERUN_PLURAL, name, patch)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return out

    def patch_run_spec(self, namespace: str, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            c.GROUP, c.VERSION, namespace, c.PIPELINERUN_PLURAL, name, {"spec": spec})

    def delete_run(self, namespace: str, name: str) -> None:
        try:
            self.custom.delete_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PIPELINERUN_PLURAL, name)
        except ApiException as exc:
            if exc.status != 404:
                raise

    # --- Jobs and pods ----------------------------------------------------
    def list_jobs(self, namespace: str, run: str, uid: str | None = None) -> list[dict[str, Any]]:
        """The Jobs of a run: selected by its (shortened) label, then by owner when ``uid`` is given."""
        jobs = self._list(_JOBS, namespace, labelSelector=f"{c.LABEL_RUN}={label_value(run)}")
        if uid is None:
            return jobs
        return [j for j in jobs if any(o.get("uid") == uid for o in j["metadata"].get("ownerReferences") or [])]

    def iter_step_jobs(self, namespace: str | None) -> Iterator[dict[str, Any]]:
        """Every step Job (of any run) in ``namespace`` (None: every namespace), read a page at a time; all
        pages show the Jobs as of the first one."""
        query = {"labelSelector": f"{c.LABEL_MANAGED_BY}={c.MANAGER},{c.LABEL_RUN}"}
        for page, _ in self._paged(_JOBS if namespace else _ALL_JOBS, {"namespace": namespace} if namespace else {},
                                   query):
            yield from self._owned(page)

    def list_job_pods(self, namespace: str, job: str) -> list[dict[str, Any]]:
        return self._list(_PODS, namespace, labelSelector=f"{c.LABEL_JOB_NAME}={job}")

    def list_failed_creates(self, namespace: str) -> list[dict[str, Any]]:
        """The namespace's Events that say the Job controller could not create a Job's pods (``FailedCreate``),
        selected by the apiserver; at most :data:`NAMESPACE_READ_LIMIT`."""
        return self._pages(_EVENTS, namespace, {"fieldSelector": "involvedObject.kind=Job,reason=FailedCreate"})[0]

    def list_pending_step_pods(self, namespace: str) -> tuple[list[dict[str, Any]], bool]:
        """The namespace's step pods still Pending, selected by the apiserver, and whether that is all of them
        (at most :data:`NAMESPACE_READ_LIMIT` are read)."""
        return self._pages(_PODS, namespace, {"labelSelector": f"{c.LABEL_MANAGED_BY}={c.MANAGER}",
                                              "fieldSelector": "status.phase=Pending"})

    def _pages(self, path: str, namespace: str, query: dict[str, str]) -> tuple[list[dict[str, Any]], bool]:
        """A list read a page at a time, up to :data:`NAMESPACE_READ_LIMIT` items; and whether it was all."""
        items: list[dict[str, Any]] = []
        for page, more in self._paged(path, {"namespace": namespace}, query):
            items += page
            if len(items) >= NAMESPACE_READ_LIMIT or not more:
                return items[:NAMESPACE_READ_LIMIT], not more and len(items) <= NAMESPACE_READ_LIMIT
        return items, True

    def _paged(self, path: str, params: dict[str, str],
               query: dict[str, str]) -> Iterator[tuple[list[dict[str, Any]], bool]]:
        """A list's pages of :data:`NAMESPACE_READ_PAGE` items, each a request, all as of the first one; with
        whether more pages follow."""
        query = {**query, "limit": str(NAMESPACE_READ_PAGE)}
        while True:
            answer = rest.request(self.api_client, "GET", path, params=params, query=query) or {}
            more = (answer.get("metadata") or {}).get("continue")
            yield answer.get("items") or [], bool(more)
            if not more:
                return
            query = {**query, "continue": more}

    def create_job(self, manifest: dict[str, Any]) -> dict[str, Any] | None:
        """Create a Job: the Job created, or None when it already exists (a deterministic name makes that the
        same step)."""
        try:
            created: dict[str, Any] = rest.request(
                self.api_client, "POST", _JOBS, params={"namespace": manifest["metadata"]["namespace"]},
                body=manifest)
        except ApiException as exc:
            if exc.status == 409:
                return None
            raise
        return created

    def delete_job(self, namespace: str, name: str) -> None:
        try:
            rest.request(self.api_client, "DELETE", _JOBS + "/{name}", params={"namespace": namespace, "name": name},
                         query={"propagationPolicy": "Background"})
        except ApiException as exc:
            if exc.status != 404:
                raise

    # --- Events -------------------------------------------------------------
    def create_event(self, namespace: str, body: dict[str, Any]) -> None:
        rest.request(self.api_client, "POST", _EVENTS, params={"namespace": namespace}, body=body)

    def _list(self, path: str, namespace: str, **query: str) -> list[dict[str, Any]]:
        answer = rest.request(self.api_client, "GET", path, params={"namespace": namespace}, query=query)
        items: list[dict[str, Any]] = (answer or {}).get("items") or []
        return items


NAMESPACE_READ_PAGE = 500
NAMESPACE_READ_LIMIT = 2000
"""Items read at most by one namespace-wide read (FailedCreate Events, pending step pods); pods beyond it are read
Job by Job."""

# Built-in resources, called as plain JSON (adapters.rest): the typed API classes are large and slow.
_JOBS = "/apis/batch/v1/namespaces/{namespace}/jobs"
_ALL_JOBS = "/apis/batch/v1/jobs"
_PODS = "/api/v1/namespaces/{namespace}/pods"
_EVENTS = "/api/v1/namespaces/{namespace}/events"


def _event_name(obj: dict[str, Any]) -> str:
    return f"{obj['metadata']['name'][:200]}.{uuid.uuid4().hex[:12]}"


def post_event(kube: Kube, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
    """Post a Kubernetes Event about ``obj``; a failure to post is logged, never raised.  An Event about an
    object without a namespace (a Namespace: a scope the operator could not list) goes to ``default``, as
    Kubernetes puts those about cluster-scoped objects."""
    meta = obj["metadata"]
    namespace = meta.get("namespace") or "default"
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": _event_name(obj), "namespace": namespace},
        "involvedObject": {
            "apiVersion": obj.get("apiVersion", c.API_VERSION), "kind": obj.get("kind", c.PIPELINERUN_KIND),
            "name": meta["name"], "namespace": meta.get("namespace"), "uid": meta.get("uid"),
        },
        "type": type_, "reason": reason, "message": message[:1024],
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        "source": {"component": c.MANAGER},
        "reportingComponent": c.FIELD_MANAGER, "reportingInstance": c.FIELD_MANAGER,
    }
    try:
        kube.create_event(namespace, body)
    except ApiException as exc:
        log.warning("could not post Event %s on %s/%s: %s", reason, namespace, meta["name"], exc.reason)
