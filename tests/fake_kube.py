"""An in-memory stand-in for the Kubernetes API with the calls of ``headwater.adapters.kube.Kube``.

For fast component tests of the recorder, the run engine and the SLA monitor (each behaviour is also
covered end to end on the real control plane).  It keeps what the apiserver guarantees and the code
relies on: resourceVersions that change on every write and guard replaces and patches that carry
one (409), JSON merge patches, finalizers (a delete only marks an object that has some; removing the
last one deletes it), and 404 for what is gone.  ``fail`` makes a call raise, to stand for an
apiserver that is away.
"""

from __future__ import annotations

import copy
import itertools
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from kubernetes.client.exceptions import ApiException

Obj = dict[str, Any]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


class FakeKube:
    """PipelineRuns, Pipelines and Jobs in memory."""

    def __init__(self) -> None:
        self.runs: dict[tuple[str, str], Obj] = {}
        self.pipelines: dict[tuple[str, str], Obj] = {}
        self.jobs: dict[tuple[str, str], Obj] = {}
        self.fail: dict[str, Callable[[], BaseException | None]] = {}
        self._versions = itertools.count(1)
        self._finished = 0
        self.writes: list[tuple[str, str, str]] = []  # (call, namespace, name)

    # --- helpers of the tests ---------------------------------------------------------------
    def _check(self, call: str) -> None:
        make = self.fail.get(call)
        error = make() if make else None
        if error is not None:
            raise error

    def _stamp(self, obj: Obj) -> Obj:
        obj["metadata"]["resourceVersion"] = str(next(self._versions))
        return obj

    def add_pipeline(self, namespace: str, name: str, spec: Obj, status: Obj | None = None) -> Obj:
        obj = {"apiVersion": "headwater.dev/v1alpha1", "kind": "Pipeline",
               "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4()),
                            "creationTimestamp": "2026-11-23T00:00:00Z", "generation": 1},
               "spec": copy.deepcopy(spec), "status": copy.deepcopy(status or {})}
        self.pipelines[(namespace, name)] = self._stamp(obj)
        return copy.deepcopy(obj)

    def add_run(self, run: Obj) -> Obj:
        obj = copy.deepcopy(run)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", "2026-11-23T00:00:00Z")
        meta.setdefault("generation", 1)
        meta.setdefault("labels", {})
        obj.setdefault("apiVersion", "headwater.dev/v1alpha1")
        obj.setdefault("kind", "PipelineRun")
        self.runs[(meta["namespace"], meta["name"])] = self._stamp(obj)
        return copy.deepcopy(obj)

    @staticmethod
    def _missing(kind: str, name: str) -> ApiException:
        return ApiException(status=404, reason=f"{kind} {name} not found")

    def _guard(self, stored: Obj, version: str | None) -> None:
        if version and version != stored["metadata"]["resourceVersion"]:
            raise ApiException(status=409, reason="Conflict: the object has been modified")

    def _settle_deletion(self, store: dict[tuple[str, str], Obj], key: tuple[str, str]) -> None:
        obj = store[key]
        if obj["metadata"].get("deletionTimestamp") and not obj["metadata"].get("finalizers"):
            del store[key]

    # --- custom resources -------------------------------------------------------------------
    def get_run(self, namespace: str, name: str) -> Obj | None:
        self._check("get_run")
        obj = self.runs.get((namespace, name))
        return copy.deepcopy(obj) if obj else None

    def get_pipeline(self, namespace: str, name: str) -> Obj | None:
        self._check("get_pipeline")
        obj = self.pipelines.get((namespace, name))
        return copy.deepcopy(obj) if obj else None

    def iter_runs(self, namespace: str | None, selector: str | None = None, page: int = 200) -> Iterator[Obj]:
        self._check("iter_runs")
        key, _, value = (selector or "").partition("=")
        for (ns, _name), obj in sorted(self.runs.items()):
            if namespace and ns != namespace:
                continue
            if selector and obj["metadata"].get("labels", {}).get(key) != value:
                continue
            yield copy.deepcopy(obj)

    def list_runs(self, namespace: str | None, selector: str | None = None) -> list[Obj]:
        return list(self.iter_runs(namespace, selector))

    def list_pipelines(self, namespace: str | None) -> list[Obj]:
        self._check("list_pipelines")
        return [copy.deepcopy(p) for (ns, _), p in sorted(self.pipelines.items()) if not namespace or ns == namespace]

    def replace_run_status(self, run: Obj, status: Obj) -> Obj:
        self._check("replace_run_status")
        meta = run["metadata"]
        key = (meta["namespace"], meta["name"])
        stored = self.runs.get(key)
        if stored is None:
            raise self._missing("pipelineruns", meta["name"])
        self._guard(stored, meta.get("resourceVersion"))
        stored["status"] = copy.deepcopy(status)
        self.writes.append(("replace_run_status", *key))
        return copy.deepcopy(self._stamp(stored))

    def patch_run_status(self, namespace: str, name: str, status: Obj) -> None:
        self._check("patch_run_status")
        stored = self.runs.get((namespace, name))
        if stored is None:
            raise self._missing("pipelineruns", name)
        stored["status"] = merge_patch(stored.get("status") or {}, status)
        self.writes.append(("patch_run_status", namespace, name))
        self._stamp(stored)

    def patch_pipeline_status(self, namespace: str, name: str, status: Obj, resource_version: str | None = None
                              ) -> Obj:
        self._check("patch_pipeline_status")
        stored = self.pipelines.get((namespace, name))
        if stored is None:
            raise self._missing("pipelines", name)
        self._guard(stored, resource_version)
        stored["status"] = merge_patch(stored.get("status") or {}, status)
        self.writes.append(("patch_pipeline_status", namespace, name))
        return copy.deepcopy(self._stamp(stored))

    def create_run(self, namespace: str, body: Obj) -> bool:
        self._check("create_run")
        if (namespace, body["metadata"]["name"]) in self.runs:
            return False
        self.add_run({**body, "metadata": {**body["metadata"], "namespace": namespace}})
        return True

    def label_run(self, namespace: str, name: str, labels: dict[str, str]) -> None:
        self.patch_run_metadata(namespace, name, {"labels": labels})

    def patch_run_metadata(self, namespace: str, name: str, metadata: Obj, resource_version: str | None = None
                           ) -> Obj | None:
        self._check("patch_run_metadata")
        key = (namespace, name)
        stored = self.runs.get(key)
        if stored is None:
            return None
        self._guard(stored, resource_version)
        if stored["metadata"].get("deletionTimestamp"):
            added = set(metadata.get("finalizers") or []) - set(stored["metadata"].get("finalizers") or [])
            if added:
                raise ApiException(status=422, reason="Forbidden: no new finalizers can be added if the object "
                                                      "is being deleted")
        stored["metadata"] = merge_patch(stored["metadata"], metadata)
        self.writes.append(("patch_run_metadata", namespace, name))
        self._stamp(stored)
        self._settle_deletion(self.runs, key)
        out = self.runs.get(key)
        return copy.deepcopy(out) if out else None

    def patch_run_spec(self, namespace: str, name: str, spec: Obj) -> None:
        self._check("patch_run_spec")
        stored = self.runs[(namespace, name)]
        stored["spec"] = merge_patch(stored["spec"], spec)
        stored["metadata"]["generation"] += 1
        self._stamp(stored)

    def delete_run(self, namespace: str, name: str) -> None:
        self._check("delete_run")
        key = (namespace, name)
        stored = self.runs.get(key)
        if stored is None:
            return
        if stored["metadata"].get("finalizers"):
            stored["metadata"].setdefault("deletionTimestamp", "2026-11-23T00:00:00Z")
            self._stamp(stored)
        else:
            del self.runs[key]
        for job_key in [k for k, j in self.jobs.items()
                        if j["metadata"]["ownerReferences"][0]["uid"] == stored["metadata"]["uid"]]:
            if key not in self.runs:
                del self.jobs[job_key]  # garbage collection of the run's Jobs

    # --- Jobs and pods ----------------------------------------------------------------------
    def list_jobs(self, namespace: str, run: str) -> list[Obj]:
        self._check("list_jobs")
        return [copy.deepcopy(j) for (ns, _), j in sorted(self.jobs.items())
                if ns == namespace and j["metadata"]["labels"].get("headwater.dev/run") == run]

    def list_job_pods(self, namespace: str, job: str) -> list[Obj]:
        return []

    def create_job(self, manifest: Obj) -> bool:
        self._check("create_job")
        key = (manifest["metadata"]["namespace"], manifest["metadata"]["name"])
        if key in self.jobs:
            return False
        job = copy.deepcopy(manifest)
        job["metadata"]["uid"] = str(uuid.uuid4())
        job["status"] = {}
        self.jobs[key] = self._stamp(job)
        return True

    def delete_job(self, namespace: str, name: str) -> None:
        self._check("delete_job")
        self.jobs.pop((namespace, name), None)

    def finish_job(self, namespace: str, name: str, succeeded: bool = True) -> None:
        """What the Job controller writes when the Job's pod ends (each Job a minute after the one before)."""
        job = self.jobs[(namespace, name)]
        self._finished += 1
        at = f"2026-11-23T{6 + self._finished // 60:02d}:{self._finished % 60:02d}:00Z"
        condition = {"type": "Complete" if succeeded else "Failed", "status": "True", "lastTransitionTime": at,
                     "reason": "" if succeeded else "BackoffLimitExceeded"}
        job["status"] = {"startTime": "2026-11-23T06:00:00Z", "conditions": [condition],
                         "succeeded" if succeeded else "failed": 1}
        if succeeded:
            job["status"]["completionTime"] = at
        self._stamp(job)
