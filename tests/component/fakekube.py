"""An in-memory Kubernetes API that answers the operator's :class:`~headwater.adapters.kube.Kube` calls
the way the apiserver and :class:`~headwater.adapters.kube.KubeClient` answer them.

Every write bumps a global ``resourceVersion``; a create sets uid, creationTimestamp and generation, a
spec change bumps the generation, and a write that changes nothing writes nothing.  PipelineRuns,
Pipelines, Jobs and pods have a status subresource: status changes only through the status calls.
A status replace with a stale ``resourceVersion`` and a create of a taken name are HTTP 409, a
missing object is 404 (reported as ``KubeClient`` reports it), lists honour label selectors and come
in pages, and deleting an owner deletes what it owns, as the garbage collector does.  Finalizers hold
a deleted object (``deletionTimestamp`` set, no new finalizers accepted) until the last one is removed;
a merge patch that carries ``metadata.resourceVersion`` is refused (409) when the object changed since.

Tests steer it with :meth:`FakeKube.fail` (the next calls of a method get an error), :meth:`FakeKube.before`
(another writer acts just before a call), the Job controller's moves (:meth:`FakeKube.start_job`,
:meth:`FakeKube.complete_job`, :meth:`FakeKube.fail_job`) and :meth:`FakeKube.take_changes`, the
events a watch would have seen.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes.client.exceptions import (
    ApiException,
    BadRequestException,
    ConflictException,
    NotFoundException,
    UnprocessableEntityException,
)

from headwater.adapters.kube import Kube, KubeHelpers
from headwater.spec import constants as c
from headwater.spec.names import label_value
from headwater.spec.times import isotime

__all__ = [
    "EVENTS",
    "JOBS",
    "PIPELINES",
    "PODS",
    "RUNS",
    "Change",
    "FakeKube",
    "ManualClock",
    "api_error",
    "matches",
    "merge_patch",
]

RUNS, PIPELINES, JOBS, PODS, EVENTS = c.PIPELINERUN_PLURAL, c.PIPELINE_PLURAL, "jobs", "pods", "events"
BACKFILLS = c.BACKFILL_PLURAL

_KINDS = {c.PIPELINERUN_KIND: RUNS, c.PIPELINE_KIND: PIPELINES, c.BACKFILL_KIND: BACKFILLS, "Job": JOBS, "Pod": PODS,
          "Event": EVENTS}
_GROUP_RESOURCE = {RUNS: f"{RUNS}.{c.GROUP}", PIPELINES: f"{PIPELINES}.{c.GROUP}", BACKFILLS: f"{BACKFILLS}.{c.GROUP}",
                   JOBS: "jobs.batch", PODS: "pods", EVENTS: "events"}
_WITH_STATUS = {RUNS, PIPELINES, BACKFILLS, JOBS, PODS}
"""Resources with a status subresource: a create drops the status, a write of the object ignores it."""

_JOB_NAME = "batch.kubernetes.io/job-name"
_CONTROLLER_UID = "batch.kubernetes.io/controller-uid"
_DEFAULT_BACKOFF_LIMIT = 6

Obj = dict[str, Any]


class ManualClock:
    """A clock that moves only when told to; call it for the time."""

    def __init__(self, start: datetime = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


_ERRORS: dict[int, tuple[type[ApiException], str]] = {
    400: (BadRequestException, "BadRequest"), 404: (NotFoundException, "NotFound"),
    409: (ConflictException, "Conflict"), 422: (UnprocessableEntityException, "Invalid"),
}


def api_error(status: int, message: str = "", reason: str | None = None) -> ApiException:
    """The exception the client raises for an HTTP ``status`` answer, with the apiserver's Status body."""
    kind, default_reason = _ERRORS.get(status, (ApiException, "InternalError"))
    why = reason or default_reason
    body = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                       "reason": why, "code": status})
    return kind(status=status, reason=why, body=body)


# --- label selectors ----------------------------------------------------------------------
_SET_TERM = re.compile(r"^\s*([^\s!=]+)\s+(in|notin)\s+\((.*)\)\s*$")


def _terms(selector: str) -> list[str]:
    """The comma-separated requirements of a selector, commas inside ``in (...)`` kept."""
    out, depth, current = [], 0, ""
    for char in selector:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            out.append(current)
            current = ""
        else:
            current += char
    out.append(current)
    return [t.strip() for t in out if t.strip()]


def matches(selector: str | None, labels: dict[str, str]) -> bool:
    """Whether ``labels`` satisfy a label selector (``=``, ``==``, ``!=``, ``in``, ``notin``, ``key``, ``!key``)."""
    for term in _terms(selector or ""):
        if found := _SET_TERM.match(term):
            key, op, values = found.group(1), found.group(2), {v.strip() for v in found.group(3).split(",")}
            if (labels.get(key) in values) != (op == "in"):
                return False
        elif "!=" in term:
            key, value = (p.strip() for p in term.split("!=", 1))
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = (p.strip() for p in term.replace("==", "=").split("=", 1))
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge, null removes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


# --- the fake ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Change:
    """What a watch of ``resource`` sees: ADDED, MODIFIED or DELETED, and the object after the write."""

    type: str
    resource: str
    object: Obj


@dataclass
class _Rule:
    """A fault or a hook for the next ``times`` calls of ``call`` (on object ``name``, when given)."""

    call: str
    name: str | None
    times: int | None  # None: every call
    action: Callable[[], None]
    hits: int = 0

    def applies(self, call: str, name: str | None) -> bool:
        return call == self.call and self.name in (None, name) and (self.times is None or self.hits < self.times)

    def stop(self) -> None:
        """No more: the rule has acted for the last time."""
        self.times = self.hits


@dataclass
class _State:
    objects: dict[str, dict[tuple[str, str], Obj]] = field(default_factory=dict)
    version: int = 0


class FakeKube(KubeHelpers):
    """The Kubernetes API in memory; thread-safe, like the apiserver it stands in for."""

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.clock = clock
        self.calls: list[tuple[str, str | None]] = []
        """Every request made through the :class:`Kube` calls: (call, object name); a list page is one."""
        self._lock = threading.RLock()
        self._state = _State()
        self._changes: list[Change] = []
        self._faults: list[_Rule] = []
        self._hooks: list[_Rule] = []
        self._pods_made = 0
        self._job_followers: list[Callable[..., None]] = []

    def follow_jobs(self, follower: Callable[..., None]) -> None:
        """Hand every change of a Job to ``follower(job, deleted=...)`` as it happens, as the operator's Job
        watch hands it to the engine's index (``RunEngine.jobs.saw``), only without the watch's delay: for tests
        that drive an engine directly rather than through :meth:`take_changes` and the handlers."""
        self._job_followers.append(follower)

    def _changed(self, change: Change) -> None:
        self._changes.append(change)
        if change.resource == JOBS:
            for follower in self._job_followers:
                follower(copy.deepcopy(change.object), deleted=change.type == "DELETED")

    # --- steering --------------------------------------------------------------------------
    def fail(self, call: str, status: int = 500, *, name: str | None = None, times: int | None = 1,
             message: str = "injected") -> _Rule:
        """Answer the next ``times`` requests of ``call`` (on ``name``) with HTTP ``status`` (None: all of them).

        The request has no effect, as when the apiserver refuses it; the call reports the error as
        ``KubeClient`` does (a 404 from ``get_run`` is None, a 409 from ``create_job`` is None).
        """
        def refuse() -> None:
            raise api_error(status, message)
        rule = _Rule(call, name, times, refuse)
        with self._lock:
            self._faults.append(rule)
        return rule

    def before(self, call: str, action: Callable[[], None], *, name: str | None = None,
               times: int | None = 1) -> _Rule:
        """Run ``action`` (another client's writes) just before the next ``times`` requests of ``call``."""
        rule = _Rule(call, name, times, action)
        with self._lock:
            self._hooks.append(rule)
        return rule

    def take_changes(self) -> list[Change]:
        """The watch events since the last call, oldest first."""
        with self._lock:
            out, self._changes = self._changes, []
        return out

    def count(self, call: str, name: str | None = None) -> int:
        """How many requests ``call`` made (on ``name``, when given)."""
        return sum(1 for made, on in list(self.calls) if made == call and name in (None, on))

    def _enter(self, call: str, name: str | None) -> None:
        """One request of ``call``: the hooks due run, then the first fault due answers it."""
        with self._lock:
            self.calls.append((call, name))
            due = [r for r in self._hooks if r.applies(call, name)]
            due += [r for r in self._faults if r.applies(call, name)][:1]
            for rule in due:
                rule.hits += 1
        for rule in due:
            rule.action()

    # --- the apiserver ---------------------------------------------------------------------
    def _bump(self) -> str:
        self._state.version += 1
        return str(self._state.version)

    def _store(self, resource: str) -> dict[tuple[str, str], Obj]:
        return self._state.objects.setdefault(resource, {})

    def _missing(self, resource: str, name: str) -> ApiException:
        return api_error(404, f'{_GROUP_RESOURCE[resource]} "{name}" not found', "NotFound")

    def _current(self, resource: str, namespace: str, name: str) -> Obj:
        obj = self._store(resource).get((namespace, name))
        if obj is None:
            raise self._missing(resource, name)
        return obj

    def _put(self, resource: str, old: Obj, new: Obj) -> Obj:
        """Store ``new`` in place of ``old`` unless nothing changed (then no write, no new version)."""
        if new == old:
            return copy.deepcopy(old)
        spec_before = {k: v for k, v in old.items() if k not in ("metadata", "status")}
        spec_after = {k: v for k, v in new.items() if k not in ("metadata", "status")}
        if spec_before != spec_after and "generation" in new["metadata"]:
            new["metadata"]["generation"] = old["metadata"]["generation"] + 1
        new["metadata"]["resourceVersion"] = self._bump()
        meta = new["metadata"]
        self._store(resource)[(meta["namespace"], meta["name"])] = new
        self._changed(Change("MODIFIED", resource, copy.deepcopy(new)))
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._remove(resource, new)  # its last finalizer is gone: the deletion completes
        return copy.deepcopy(new)

    def read(self, resource: str, namespace: str, name: str) -> Obj:
        with self._lock:
            return copy.deepcopy(self._current(resource, namespace, name))

    def select(self, resource: str, namespace: str | None = None, selector: str | None = None) -> list[Obj]:
        """Matching objects in key order (namespace, then name), as etcd returns them."""
        with self._lock:
            chosen = [o for (ns, _), o in sorted(self._store(resource).items())
                      if namespace in (None, ns) and matches(selector, o["metadata"].get("labels") or {})]
            return copy.deepcopy(chosen)

    def create(self, resource: str, namespace: str, body: Obj) -> Obj:
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if meta.get("namespace") not in (None, namespace):
            raise api_error(400, "the namespace of the provided object does not match the namespace sent on "
                                 "the request", "BadRequest")
        name = meta.get("name")
        if not name:
            raise api_error(422, "metadata.name: Required value: name or generateName is required")
        with self._lock:
            if (namespace, name) in self._store(resource):
                raise api_error(409, f'{_GROUP_RESOURCE[resource]} "{name}" already exists', "AlreadyExists")
            meta.update(namespace=namespace, uid=str(uuid.uuid4()), creationTimestamp=isotime(self.clock()),
                        resourceVersion=self._bump())
            if resource != EVENTS:
                meta["generation"] = 1
            if resource in _WITH_STATUS:
                obj.pop("status", None)
            if resource == JOBS:
                obj["status"] = {}
                _default_job(obj)
            elif resource == PODS:
                obj["status"] = {"phase": "Pending"}
            self._store(resource)[(namespace, name)] = obj
            self._changed(Change("ADDED", resource, copy.deepcopy(obj)))
            return copy.deepcopy(obj)

    def replace_status(self, resource: str, body: Obj) -> Obj:
        """PUT .../status: the stored object with ``body``'s status, if ``body`` is of its latest version."""
        meta = body["metadata"]
        with self._lock:
            old = self._current(resource, meta["namespace"], meta["name"])
            version = meta.get("resourceVersion")
            if not version:
                raise api_error(422, "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update")
            if meta.get("uid") not in (None, old["metadata"]["uid"]):
                raise api_error(409, f"Precondition failed: UID in precondition: {meta['uid']}, UID in object meta: "
                                     f"{old['metadata']['uid']}")
            if version != old["metadata"]["resourceVersion"]:
                raise api_error(409, f'Operation cannot be fulfilled on {_GROUP_RESOURCE[resource]} "{meta["name"]}": '
                                     "the object has been modified; please apply your changes to the latest "
                                     "version and try again")
            new = copy.deepcopy(old)
            new.pop("status", None)
            if body.get("status") is not None:
                new["status"] = copy.deepcopy(body["status"])
            return self._put(resource, old, new)

    def patch(self, resource: str, namespace: str, name: str, patch: Obj, *, status: bool = False) -> Obj:
        """A merge patch of the object (its status left alone) or, with ``status``, of its status only."""
        with self._lock:
            old = self._current(resource, namespace, name)
            if status:
                new = copy.deepcopy(old)
                patched = merge_patch(old.get("status") or {}, patch.get("status") or {})
                new["status"] = patched
            else:
                guard = (patch.get("metadata") or {}).get("resourceVersion")
                if guard is not None and guard != old["metadata"]["resourceVersion"]:
                    raise api_error(409, f'Operation cannot be fulfilled on {_GROUP_RESOURCE[resource]} "{name}": '
                                         "the object has been modified; please apply your changes to the latest "
                                         "version and try again")
                new = merge_patch(old, patch)
                if old["metadata"].get("deletionTimestamp"):
                    added = set(new["metadata"].get("finalizers") or []) - set(old["metadata"].get("finalizers") or [])
                    if added:
                        raise api_error(422, f"metadata.finalizers: Forbidden: no new finalizers can be added if the "
                                             f"object is being deleted, found new finalizers {sorted(added)}")
                for key in ("uid", "creationTimestamp", "resourceVersion", "generation", "namespace", "name",
                            "deletionTimestamp"):
                    if key in old["metadata"]:
                        new["metadata"][key] = old["metadata"][key]
                if resource in _WITH_STATUS:
                    new.pop("status", None)
                    if "status" in old:
                        new["status"] = copy.deepcopy(old["status"])
            return self._put(resource, old, new)

    def write_status(self, resource: str, namespace: str, name: str, status: Obj) -> Obj:
        """An unconditional status update, as a controller that owns the status makes it."""
        with self._lock:
            old = self._current(resource, namespace, name)
            return self.replace_status(resource, {**old, "status": status})

    def delete(self, resource: str, namespace: str, name: str) -> None:
        """Delete the object, then (as the garbage collector) whatever it alone owned; an object with
        finalizers is only marked (``deletionTimestamp``) until they are removed."""
        with self._lock:
            obj = self._current(resource, namespace, name)
            if obj["metadata"].get("finalizers"):
                if not obj["metadata"].get("deletionTimestamp"):
                    marked = copy.deepcopy(obj)
                    marked["metadata"]["deletionTimestamp"] = isotime(self.clock())
                    self._put(resource, obj, marked)
                return
            self._remove(resource, obj)

    def _remove(self, resource: str, obj: Obj) -> None:
        with self._lock:
            namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
            del self._store(resource)[(namespace, name)]
            obj["metadata"]["resourceVersion"] = self._bump()
            self._changed(Change("DELETED", resource, copy.deepcopy(obj)))
            alive = {o["metadata"]["uid"] for store in self._state.objects.values() for o in store.values()}
            for kind in list(self._state.objects):
                for key, other in list(self._store(kind).items()):
                    owners = {ref["uid"] for ref in other["metadata"].get("ownerReferences") or []}
                    if obj["metadata"]["uid"] in owners and not owners & alive and key in self._store(kind) \
                            and not other["metadata"].get("deletionTimestamp"):
                        self.delete(kind, *key)

    def seed(self, obj: Obj, namespace: str = "default") -> Obj:
        """Create ``obj`` (its kind picks the resource) and, if it carries one, write its status after."""
        resource = _KINDS[obj["kind"]]
        namespace = obj.get("metadata", {}).get("namespace") or namespace
        created = self.create(resource, namespace, obj)
        if obj.get("status"):
            created = self.write_status(resource, namespace, created["metadata"]["name"], obj["status"])
        return created

    # --- the Kube calls, answered as KubeClient answers them -----------------------------
    def _get_or_none(self, call: str, resource: str, namespace: str, name: str) -> Obj | None:
        try:
            self._enter(call, name)
            return self.read(resource, namespace, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def get_run(self, namespace: str, name: str) -> Obj | None:
        return self._get_or_none("get_run", RUNS, namespace, name)

    def get_pipeline(self, namespace: str, name: str) -> Obj | None:
        return self._get_or_none("get_pipeline", PIPELINES, namespace, name)

    def list_runs(self, namespace: str | None, selector: str | None = None) -> list[Obj]:
        self._enter("list_runs", None)
        return self.select(RUNS, namespace, selector)

    def iter_runs(self, namespace: str | None, selector: str | None = None, page: int = 200) -> Iterator[Obj]:
        """Runs in pages of ``page``, each page a request; all pages show the list as of the first one,
        as the apiserver serves a continued list from the version of its first page."""
        self._enter("iter_runs", None)
        items = self.select(RUNS, namespace, selector)
        for start in range(0, len(items), page):
            if start:
                self._enter("iter_runs", None)
            yield from items[start:start + page]

    def list_pipelines(self, namespace: str | None) -> list[Obj]:
        self._enter("list_pipelines", None)
        return self.select(PIPELINES, namespace)

    def list_backfills(self, namespace: str | None) -> list[Obj]:
        self._enter("list_backfills", None)
        return self.select(BACKFILLS, namespace)

    def patch_backfill_status(self, namespace: str, name: str, status: Obj) -> None:
        self._enter("patch_backfill_status", name)
        self.patch(BACKFILLS, namespace, name, {"status": status}, status=True)

    def replace_run_status(self, run: Obj, status: Obj) -> Obj:
        self._enter("replace_run_status", run["metadata"]["name"])
        return self.replace_status(RUNS, {**run, "status": status})

    def patch_run_status(self, namespace: str, name: str, status: Obj) -> None:
        self._enter("patch_run_status", name)
        self.patch(RUNS, namespace, name, {"status": status}, status=True)

    def patch_pipeline_status(self, namespace: str, name: str, status: Obj,
                              resource_version: str | None = None) -> None:
        self._enter("patch_pipeline_status", name)
        with self._lock:
            current = self._current(PIPELINES, namespace, name)["metadata"]["resourceVersion"]
            if resource_version is not None and resource_version != current:
                raise api_error(409, f"the object has been modified; resourceVersion {resource_version} is stale")
            self.patch(PIPELINES, namespace, name, {"status": status}, status=True)

    def create_run(self, namespace: str, body: Obj) -> bool:
        try:
            self._enter("create_run", body["metadata"]["name"])
            self.create(RUNS, namespace, body)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def label_run(self, namespace: str, name: str, labels: dict[str, str]) -> None:
        """Another client labelling a run (the operator itself writes metadata with patch_run_metadata)."""
        self._enter("label_run", name)
        self.patch(RUNS, namespace, name, {"metadata": {"labels": labels}})

    def patch_run_metadata(self, namespace: str, name: str, metadata: Obj,
                           resource_version: str | None = None) -> Obj | None:
        self._enter("patch_run_metadata", name)
        patch = {**metadata, **({"resourceVersion": resource_version} if resource_version else {})}
        try:
            self.patch(RUNS, namespace, name, {"metadata": patch})
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        with self._lock:
            stored = self._store(RUNS).get((namespace, name))
            return copy.deepcopy(stored) if stored is not None else None

    def patch_run_spec(self, namespace: str, name: str, spec: Obj) -> None:
        self._enter("patch_run_spec", name)
        self.patch(RUNS, namespace, name, {"spec": spec})

    def delete_run(self, namespace: str, name: str) -> None:
        try:
            self._enter("delete_run", name)
            self.delete(RUNS, namespace, name)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def list_jobs(self, namespace: str, run: str, uid: str | None = None) -> list[Obj]:
        self._enter("list_jobs", run)
        jobs = self.select(JOBS, namespace, f"{c.LABEL_RUN}={label_value(run)}")
        if uid is None:
            return jobs
        return [j for j in jobs if any(o.get("uid") == uid for o in j["metadata"].get("ownerReferences") or [])]

    def iter_step_jobs(self, namespace: str | None, page: int = 500) -> Iterator[Obj]:
        """Step Jobs in pages of ``page``, each page a request, all as of the first one."""
        self._enter("iter_step_jobs", namespace)
        items = self.select(JOBS, namespace, f"{c.LABEL_MANAGED_BY}={c.MANAGER},{c.LABEL_RUN}")
        for start in range(0, len(items), page):
            if start:
                self._enter("iter_step_jobs", namespace)
            yield from items[start:start + page]

    def list_pending_step_pods(self, namespace: str) -> tuple[list[Obj], bool]:
        self._enter("list_pending_step_pods", namespace)
        return [p for p in self.select(PODS, namespace, f"{c.LABEL_MANAGED_BY}={c.MANAGER}")
                if (p.get("status") or {}).get("phase") == "Pending"], True

    def list_failed_creates(self, namespace: str) -> list[Obj]:
        self._enter("list_failed_creates", namespace)
        return [e for e in self.select(EVENTS, namespace)
                if (e.get("involvedObject") or {}).get("kind") == "Job" and e.get("reason") == "FailedCreate"]

    def list_job_pods(self, namespace: str, job: str) -> list[Obj]:
        self._enter("list_job_pods", job)
        return self.select(PODS, namespace, f"{_JOB_NAME}={job}")

    def create_job(self, manifest: Obj) -> Obj | None:
        try:
            self._enter("create_job", manifest["metadata"]["name"])
            return self.create(JOBS, manifest["metadata"]["namespace"], manifest)
        except ApiException as exc:
            if exc.status == 409:
                return None
            raise

    def delete_job(self, namespace: str, name: str) -> None:
        try:
            self._enter("delete_job", name)
            self.delete(JOBS, namespace, name)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def create_event(self, namespace: str, body: Obj) -> None:
        self._enter("create_event", body["metadata"]["name"])
        self.create(EVENTS, namespace, body)

    # --- reading back, for assertions ------------------------------------------------------
    def get(self, resource: str, namespace: str, name: str) -> Obj | None:
        with self._lock:
            obj = self._store(resource).get((namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def names(self, resource: str, namespace: str | None = None, selector: str | None = None) -> list[str]:
        return [o["metadata"]["name"] for o in self.select(resource, namespace, selector)]

    def events_about(self, name: str) -> list[tuple[str, str, str]]:
        """(type, reason, message) of every Event posted about the object called ``name``, oldest first."""
        posted = sorted(self.select(EVENTS), key=lambda e: int(e["metadata"]["resourceVersion"]))
        return [(e["type"], e["reason"], e["message"]) for e in posted if e["involvedObject"]["name"] == name]

    # --- the Job controller ----------------------------------------------------------------
    def start_job(self, namespace: str, name: str) -> Obj:
        """The Job's pod is created and running; the Job counts it active and ready."""
        with self._lock:
            job = self._current(JOBS, namespace, name)
            if (job.get("status") or {}).get("startTime"):
                return copy.deepcopy(job)
            self._pod(job, "Running")
            return self.write_status(JOBS, namespace, name, {
                **(job.get("status") or {}), "startTime": isotime(self.clock()), "active": 1, "ready": 1})

    def complete_job(self, namespace: str, name: str, message: str | None = None, *, terminal: bool = True) -> Obj:
        """The pod exits 0 (with ``message`` as its termination message); the Job controller sets
        SuccessCriteriaMet and, once the pod is gone (``terminal``), Complete."""
        with self._lock:
            job = self.start_job(namespace, name)
            now = isotime(self.clock())
            self._end_pods(job, "Succeeded", 0, "Completed", message)
            why = {"reason": "CompletionsReached", "message": "Reached expected number of succeeded pods"}
            conditions = [_condition("SuccessCriteriaMet", now, **why)]
            status = {"startTime": job["status"]["startTime"], "succeeded": 1, "ready": 0, "terminating": 0,
                      "uncountedTerminatedPods": {}, "conditions": conditions}
            if terminal:
                conditions.append(_condition("Complete", now, **why))
                status["completionTime"] = now
            return self.write_status(JOBS, namespace, name, status)

    def fail_job(self, namespace: str, name: str, message: str | None = None, *, attempts: int | None = None,
                 reason: str = "BackoffLimitExceeded", terminal: bool = True) -> Obj:
        """Every attempt's pod exits 1 (``message`` as the last one's termination message); the Job
        controller sets FailureTarget and, once the pods are gone (``terminal``), Failed.

        ``attempts`` defaults to ``backoffLimit + 1``, as when the retries are used up.
        """
        with self._lock:
            job = self.start_job(namespace, name)
            tries = attempts if attempts is not None else job["spec"].get("backoffLimit", _DEFAULT_BACKOFF_LIMIT) + 1
            earlier = "an earlier attempt failed"
            self._end_pods(job, "Failed", 1, "Error", message if tries == 1 else earlier)
            for attempt in range(2, tries + 1):
                self._pod(job, "Failed", exit_code=1, message=message if attempt == tries else earlier)
            now = isotime(self.clock())
            why = {"reason": reason, "message": {
                "BackoffLimitExceeded": "Job has reached the specified backoff limit",
                "DeadlineExceeded": "Job was active longer than specified deadline"}.get(reason, reason)}
            conditions = [_condition("FailureTarget", now, **why)]
            if terminal:
                conditions.append(_condition("Failed", now, **why))
            return self.write_status(JOBS, namespace, name, {
                "startTime": job["status"]["startTime"], "failed": tries, "ready": 0, "terminating": 0,
                "uncountedTerminatedPods": {}, "conditions": conditions})

    def _pod(self, job: Obj, phase: str, exit_code: int | None = None, message: str | None = None) -> Obj:
        meta = job["metadata"]
        template = job["spec"]["template"]
        # the Job controller's names end in 5 random characters; counting keeps pods created in the same
        # second (the fake's clock may stand still) in creation order, as their timestamps would
        self._pods_made += 1
        name = f"{meta['name']}-{self._pods_made:05d}"
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "labels": dict(template["metadata"].get("labels") or {}),
                            "annotations": dict(template["metadata"].get("annotations") or {}),
                            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"],
                                                 "uid": meta["uid"], "controller": True,
                                                 "blockOwnerDeletion": True}]},
               "spec": copy.deepcopy(template["spec"])}
        self.create(PODS, meta["namespace"], pod)
        return self.write_status(PODS, meta["namespace"], name, _pod_status(phase, self.clock(), exit_code, message))

    def _end_pods(self, job: Obj, phase: str, exit_code: int, reason: str, message: str | None) -> None:
        meta = job["metadata"]
        for pod in self.select(PODS, meta["namespace"], f"{_JOB_NAME}={meta['name']}"):
            if pod["status"].get("phase") == "Running":
                status = _pod_status(phase, self.clock(), exit_code, message, reason)
                self.write_status(PODS, meta["namespace"], pod["metadata"]["name"], status)


def _answers_kube(fake: FakeKube) -> Kube:
    """Never called: mypy checks here that the fake has every call of the Protocol, with its signature."""
    return fake


def _condition(type_: str, now: str, reason: str, message: str) -> Obj:
    return {"type": type_, "status": "True", "reason": reason, "message": message, "lastProbeTime": now,
            "lastTransitionTime": now}


def _pod_status(phase: str, now: datetime, exit_code: int | None, message: str | None,
                reason: str | None = None) -> Obj:
    state: Obj = {"running": {"startedAt": isotime(now)}}
    if exit_code is not None:
        terminated: Obj = {"exitCode": exit_code, "reason": reason or ("Completed" if exit_code == 0 else "Error"),
                           "startedAt": isotime(now), "finishedAt": isotime(now)}
        if message:
            terminated["message"] = message
        state = {"terminated": terminated}
    return {"phase": phase, "startTime": isotime(now),
            "containerStatuses": [{"name": "step", "ready": phase == "Running", "restartCount": 0, "state": state}]}


def _default_job(job: Obj) -> None:
    """What the apiserver adds to a new Job: defaults, and the labels that tie its pods to it."""
    spec, uid, name = job.setdefault("spec", {}), job["metadata"]["uid"], job["metadata"]["name"]
    spec.setdefault("backoffLimit", _DEFAULT_BACKOFF_LIMIT)
    spec.setdefault("completions", 1)
    spec.setdefault("parallelism", 1)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec["selector"] = {"matchLabels": {_CONTROLLER_UID: uid}}
    template = spec.setdefault("template", {}).setdefault("metadata", {})
    template["labels"] = {**(template.get("labels") or {}), _CONTROLLER_UID: uid, _JOB_NAME: name,
                          "controller-uid": uid, "job-name": name}
