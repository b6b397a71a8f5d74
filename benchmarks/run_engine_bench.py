"""Run engine benchmark: step handoff latency, throughput and operator memory on the local control plane.

    .venv/bin/python benchmarks/run_engine_bench.py [--runs 1,10,100] [--shapes diamond4,layered20] [--quick]

Starts its own cluster (``hack/cluster.sh up hw-bench``; ``down`` at the end unless ``--keep-cluster``,
or uses ``--kubeconfig``; ``--no-qps-limits`` lifts the control plane's client rate limits), applies
``crds/``, and runs every scenario (pipeline shape x concurrent runs) in a fresh namespace with its own
``headwater operator -n NAMESPACE`` subprocess (metrics and API off).

Handoff latency is measured client-side, since Kubernetes timestamps have 1-second resolution: a watch on
the namespace's Jobs records the monotonic time each Job is first seen (its ADDED event) and first seen
with a ``Complete`` condition (and, separately, ``SuccessCriteriaMet``).  The handoff of a step is its
Job's ADDED time minus the latest completion time among its dependencies (from the pipeline spec).
Throughput is runs finished per minute from the creation of the first run to the moment the last one is
first seen finished by a watch on PipelineRuns.  Memory is the operator's VmRSS (``/proc/PID/status``)
when idle in an empty namespace and with ``--memory-pipelines`` Pipelines and ``--memory-runs`` finished
PipelineRuns present (created while no operator runs, their Succeeded status written through the status
subresource with the operator's own planner, then a fresh operator started).

Everything talks to 127.0.0.1 only; every wait is bounded.  Markdown goes to stdout, progress to
stderr, raw samples to ``--raw`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import urllib3
import yaml
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from headwater.runs import planning
from headwater.runs.jobs import JobObservation, JobSettings, RunRef, job_name
from headwater.runs.settling import CONDITION_SETTLED
from headwater.spec import constants as c
from headwater.spec.conditions import set_condition
from headwater.spec.models import PipelineRunSpec, PipelineSpec, StepPhase
from headwater.spec.times import isotime

READY = "Ready"  # the Pipeline's condition type

ROOT = Path(__file__).resolve().parent.parent
TERMINAL = frozenset({"Succeeded", "Failed", "Cancelled", "Error"})  # Error: Argo's
DONE_SIGNALS = ("Complete", "SuccessCriteriaMet")
PIPELINE = "bench"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def wait_until(condition: Callable[[], Any], timeout: float, interval: float = 0.2) -> bool:
    """Poll ``condition`` until it is truthy (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return True
        except (ApiException, urllib3.exceptions.HTTPError):
            pass
        time.sleep(interval)
    return False


# --- pipelines ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Shape:
    """A pipeline's DAG: step id -> the ids it depends on, in topological order."""

    name: str
    deps: dict[str, list[str]]

    @property
    def handoffs_per_run(self) -> int:
        return sum(1 for d in self.deps.values() if d)


def diamond() -> Shape:
    """a -> (b, c) -> d."""
    return Shape("diamond4", {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]})


def layered(width: int = 4, depth: int = 5) -> Shape:
    """``depth`` layers of ``width`` steps; each step past the first layer needs two of the layer before."""
    deps: dict[str, list[str]] = {}
    for layer in range(depth):
        for i in range(width):
            deps[f"l{layer}s{i}"] = [] if layer == 0 else [f"l{layer - 1}s{i}", f"l{layer - 1}s{(i + 1) % width}"]
    return Shape(f"layered{width * depth}", deps)


def single() -> Shape:
    """One step: the CNOE scenario's pipeline (many runs created at once)."""
    return Shape("single1", {"a": []})


SHAPES: dict[str, Callable[[], Shape]] = {"diamond4": diamond, "layered20": layered, "single1": single}


def pipeline_spec(shape: Shape, step_duration: str | None, history: int, image: str = "busybox",
                  step_timeout: int | None = None) -> dict[str, Any]:
    pod = {"podMetadata": {"annotations": {"headwater.dev/test-duration": step_duration}}} if step_duration else {}
    timeout = {"timeoutSeconds": step_timeout} if step_timeout else {}
    steps = [{"id": s, "type": "container", "image": image, "command": ["true"], "dependsOn": d, **pod, **timeout}
             for s, d in shape.deps.items()]
    return {"owner": "bench@example.com", "steps": steps,
            "successfulRunsHistoryLimit": history, "failedRunsHistoryLimit": history}


def pipeline_body(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": c.API_VERSION, "kind": c.PIPELINE_KIND, "metadata": {"name": name}, "spec": spec}


def run_body(name: str, pipeline: str) -> dict[str, Any]:
    return {"apiVersion": c.API_VERSION, "kind": c.PIPELINERUN_KIND,
            "metadata": {"name": name, "labels": {c.LABEL_PIPELINE: pipeline, c.LABEL_TRIGGER: "manual"}},
            "spec": {"pipelineRef": {"name": pipeline}}}


def finished_status(run: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """A Succeeded status for ``run``, as the operator's own planner writes it when every Job completed."""
    meta, now = run["metadata"], datetime.now(UTC)
    pipeline = PipelineSpec.model_validate(spec)
    run_spec = PipelineRunSpec.model_validate(run["spec"])
    ref = RunRef(meta["name"], meta["namespace"], meta["uid"], run_spec.pipeline_ref.name)
    observed = {s.id: JobObservation(job_name(ref.name, s.id), StepPhase.SUCCEEDED, 1, isotime(now), isotime(now),
                                     "Completed") for s in pipeline.steps}
    status = planning.start(run_spec, pipeline, now, generation=meta.get("generation"))
    out = planning.plan(ref, run_spec, status, observed, now, JobSettings("busybox"))
    assert out.status is not None and out.status.phase.value == "Succeeded"
    # Settled, as the operator that finished the run leaves it once its outcome is on the Pipeline.
    set_condition(out.status.conditions, CONDITION_SETTLED, "True", "Settled", "", now)
    return out.status.model_dump(by_alias=True, exclude_none=True, mode="json")


# --- cluster --------------------------------------------------------------------------------------------
@dataclass
class Api:
    """Kubernetes API clients over one connection pool."""

    client: client.ApiClient
    core: client.CoreV1Api = field(init=False)
    batch: client.BatchV1Api = field(init=False)
    custom: client.CustomObjectsApi = field(init=False)
    ext: client.ApiextensionsV1Api = field(init=False)

    def __post_init__(self) -> None:
        self.core = client.CoreV1Api(self.client)
        self.batch = client.BatchV1Api(self.client)
        self.custom = client.CustomObjectsApi(self.client)
        self.ext = client.ApiextensionsV1Api(self.client)


def connect(kubeconfig: str, pool: int = 48) -> Api:
    cfg = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    if "127.0.0.1" not in cfg.host and "localhost" not in cfg.host:
        raise SystemExit(f"refusing to benchmark a non-local API server: {cfg.host}")
    cfg.connection_pool_maxsize = pool
    return Api(client.ApiClient(cfg))


def cluster(command: str, name: str, qps_limits: bool = True) -> str:
    env = {**os.environ, "HEADWATER_CLUSTER_NO_QPS_LIMITS": "" if qps_limits else "1"}
    proc = subprocess.run(["bash", str(ROOT / "hack" / "cluster.sh"), command, name],
                          capture_output=True, text=True, check=False, timeout=600, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"hack/cluster.sh {command} {name} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""


def kubernetes_version() -> str:
    out = subprocess.run(["bash", "-c", f"source {ROOT}/hack/versions.sh && echo $KUBERNETES_VERSION"],
                         capture_output=True, text=True, check=False)
    return out.stdout.strip() or "?"


def apply_crds(api: Api, paths: Iterable[Path] | None = None) -> None:
    for path in sorted((ROOT / "crds").glob("*.yaml")) if paths is None else paths:
        body = yaml.safe_load(path.read_text())
        try:
            api.ext.create_custom_resource_definition(body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            current = api.ext.read_custom_resource_definition(body["metadata"]["name"])
            body["metadata"]["resourceVersion"] = current.metadata.resource_version
            api.ext.replace_custom_resource_definition(body["metadata"]["name"], body)

        def established(name: str = body["metadata"]["name"]) -> bool:
            conds = api.ext.read_custom_resource_definition(name).status.conditions or []
            return any(x.type == "Established" and x.status == "True" for x in conds)

        if not wait_until(established, 60):
            raise SystemExit(f"CRD {body['metadata']['name']} was not established in 60s")


def fresh_namespace(api: Api, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    api.core.create_namespace({"metadata": {"name": name}})
    if not wait_until(lambda: api.core.read_namespaced_service_account("default", name), 60):
        raise SystemExit(f"no default ServiceAccount in {name} after 60s")
    return name


def drop_namespace(api: Api, name: str, timeout: float = 300) -> float:
    """Delete a namespace and wait (bounded) until it is gone; returns the seconds it took."""
    start = time.monotonic()
    api.core.delete_namespace(name)

    def gone() -> bool:
        try:
            api.core.read_namespace(name)
        except ApiException as exc:
            return bool(exc.status == 404)
        return False

    if not wait_until(gone, timeout, interval=1.0):
        log(f"namespace {name} still terminating after {timeout:.0f}s; going on")
    return time.monotonic() - start


# --- the operator under test ---------------------------------------------------------------------------
# ``headwater`` through the interpreter, so that a --baseline checkout's package is the one run, whichever
# layout it has (``headwater.cli`` the module with ``main``, or the package with ``main.main``).
_HEADWATER_COMMAND = [sys.executable, "-c", "import sys; from headwater.cli import main as m; "
                      "sys.exit(getattr(m, 'main', m)())"]

class Operator:
    """``headwater operator -n NAMESPACE`` as a subprocess, with its memory and CPU read from /proc."""

    def __init__(self, kubeconfig: str, namespace: str, log_path: Path, source: Path | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEADWATER_")}
        self.env = {**env, "KUBECONFIG": kubeconfig, "HEADWATER_METRICS_PORT": "0", "HEADWATER_API_PORT": "0"}
        if source is not None:  # another checkout's operator/ (``--baseline``) shadows the installed package
            self.env["PYTHONPATH"] = os.pathsep.join([str(source / "operator"), env.get("PYTHONPATH", "")])
        self.namespace, self.log_path = namespace, log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Operator:
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen([*_HEADWATER_COMMAND, "operator", "-n", self.namespace],
                                         env=self.env, stdout=out, stderr=subprocess.STDOUT)
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=20)

    def _proc_file(self, name: str) -> str:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"the operator exited ({self.proc.returncode}); see {self.log_path}")
        return Path(f"/proc/{self.proc.pid}/{name}").read_text()

    def kib(self, key: str = "VmRSS") -> int:
        """A memory figure of /proc/PID/status (VmRSS, VmHWM) in KiB."""
        for line in self._proc_file("status").splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
        raise KeyError(key)

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far."""
        fields = self._proc_file("stat").rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- Argo Workflows, side by side ---------------------------------------------------------------------
ARGO_GROUP, ARGO_VERSION, ARGO_PLURAL = "argoproj.io", "v1alpha1", "workflows"
ARGO_WORKFLOW_LABEL, ARGO_NODE_ANNOTATION = "workflows.argoproj.io/workflow", "workflows.argoproj.io/node-name"
ARGO_CONFIGMAP = "workflow-controller-configmap"


def argo_tool(what: str) -> str:
    """``hack/argo.sh bin|crds``: where the built workflow-controller and its CRDs are."""
    out = subprocess.run(["bash", str(ROOT / "hack" / "argo.sh"), what], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def argo_version() -> str:
    out = subprocess.run(["bash", "-c", f"source {ROOT}/hack/versions.sh && echo $ARGO_VERSION"],
                         capture_output=True, text=True, check=False)
    return out.stdout.strip() or "?"


class ArgoController(Operator):
    """Argo's ``workflow-controller`` out of the cluster, namespaced to one namespace, as the user of a
    local control plane would run it: leader election off, metrics off, its client's rate limit its own
    default (20/s, burst 30) unless ``qps`` is given, the handoff delay ``DEFAULT_REQUEUE_TIME`` = ``requeue``."""

    def __init__(self, kubeconfig: str, namespace: str, log_path: Path, requeue: str, qps: float | None) -> None:
        super().__init__(kubeconfig, namespace, log_path)
        self.env = {**self.env, "LEADER_ELECTION_DISABLE": "true", "DEFAULT_REQUEUE_TIME": requeue}
        self.kubeconfig, self.qps = kubeconfig, qps

    def start(self) -> Operator:
        command = [argo_tool("bin"), "--kubeconfig", self.kubeconfig, "-n", self.namespace, "--namespaced",
                   "--managed-namespace", self.namespace, "--configmap", ARGO_CONFIGMAP]
        if self.qps is not None:
            command += ["--qps", str(self.qps), "--burst", str(int(self.qps * 1.5))]
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(command, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        return self

    def ready(self) -> bool:
        """Its informers have synced: the garbage collector it starts right after says so in the log."""
        return "Performing periodic GC" in self.log_path.read_text(errors="replace")


def workflow_body(name: str, shape: Shape, step_duration: str | None, image: str) -> dict[str, Any]:
    """The same DAG as an Argo Workflow: every task a container running ``true``, as the Pipeline's steps."""
    step: dict[str, Any] = {"name": "step", "container": {"image": image, "command": ["true"]}}
    if step_duration:
        step["metadata"] = {"annotations": {"headwater.dev/test-duration": step_duration}}
    tasks = [{"name": s, "template": "step", **({"dependencies": d} if d else {})} for s, d in shape.deps.items()]
    return {"apiVersion": f"{ARGO_GROUP}/{ARGO_VERSION}", "kind": "Workflow", "metadata": {"name": name},
            "spec": {"entrypoint": "main", "templates": [{"name": "main", "dag": {"tasks": tasks}}, step]}}


# --- client-side observation ---------------------------------------------------------------------------
class Watcher(threading.Thread):
    """A bounded watch on one collection; ``on_event(type, object, monotonic time)`` for every event."""

    def __init__(self, list_call: Callable[..., Any], args: tuple[Any, ...],
                 on_event: Callable[[str, dict[str, Any], float], None], deadline: float) -> None:
        super().__init__(daemon=True)
        self.list_call, self.args, self.on_event, self.deadline = list_call, args, on_event, deadline
        self.halt = threading.Event()
        self.restarts = 0
        self.resource_version = self._listed_version()

    def _listed_version(self) -> str:
        resp = self.list_call(*self.args, limit=1, _preload_content=False)
        version: str = json.loads(resp.data)["metadata"]["resourceVersion"]
        return version

    def _relist(self) -> None:
        """List everything again and hand each object over as seen now: nothing missed while the watch was
        down goes uncounted (it is timed at this sight, a little late)."""
        resp = self.list_call(*self.args, _preload_content=False, _request_timeout=120)
        listed = json.loads(resp.data)
        now = time.monotonic()
        for obj in listed.get("items") or []:
            self.on_event("MODIFIED", obj, now)
        self.resource_version = listed["metadata"]["resourceVersion"]

    def run(self) -> None:
        while not self.halt.is_set() and time.monotonic() < self.deadline:
            try:
                self._stream()
            except (ApiException, KeyError, ValueError, urllib3.exceptions.HTTPError) as exc:
                # KeyError: the client's deserialize=False path cannot read an ERROR event (410 Gone).
                log(f"watch restarted after {exc!r:.120}")
                self.restarts += 1
                while not self.halt.is_set() and time.monotonic() < self.deadline:
                    try:  # an overloaded apiserver may refuse the list too: try again, the thread goes on
                        self._relist()
                        break
                    except (ApiException, ValueError, urllib3.exceptions.HTTPError) as again:
                        log(f"relist failed: {again!r:.120}")
                        time.sleep(1.0)
                time.sleep(0.2)

    def _stream(self) -> None:
        stream = watch.Watch()
        for event in stream.stream(self.list_call, *self.args, resource_version=self.resource_version,
                                   timeout_seconds=10, allow_watch_bookmarks=True, deserialize=False,
                                   _request_timeout=(30, 60)):  # a stalled stream is dropped, then relisted
            now = time.monotonic()
            obj = event["object"]
            self.resource_version = obj["metadata"]["resourceVersion"]
            if event["type"] != "BOOKMARK":
                self.on_event(event["type"], obj, now)
            if self.halt.is_set():
                stream.stop()
                return


@dataclass
class JobTimes:
    """When each Job was first seen, and first seen with each completion condition."""

    added: dict[str, float] = field(default_factory=dict)
    ids: dict[str, tuple[str, str]] = field(default_factory=dict)
    signals: dict[tuple[str, str], float] = field(default_factory=dict)

    def on_event(self, kind: str, obj: dict[str, Any], now: float) -> None:
        meta = obj["metadata"]
        name = meta["name"]
        self.added.setdefault(name, now)
        labels = meta.get("labels") or {}
        self.ids.setdefault(name, (labels.get(c.LABEL_RUN, ""), labels.get(c.LABEL_STEP, "")))
        for cond in (obj.get("status") or {}).get("conditions") or []:
            if cond.get("type") in DONE_SIGNALS and cond.get("status") == "True":
                self.signals.setdefault((name, cond["type"]), now)

    def done(self, name: str | None, signal_: str) -> float | None:
        """First sight of ``signal_`` ("Complete", or "first": whichever completion condition came first)."""
        if name is None:
            return None
        if signal_ != "first":
            return self.signals.get((name, signal_))
        seen = [t for s in DONE_SIGNALS if (t := self.signals.get((name, s))) is not None]
        return min(seen) if seen else None


@dataclass
class RunTimes:
    """When each PipelineRun was first seen in a final phase."""

    finished: dict[str, tuple[float, str]] = field(default_factory=dict)

    def on_event(self, kind: str, obj: dict[str, Any], now: float) -> None:
        phase = (obj.get("status") or {}).get("phase")
        if phase in TERMINAL:
            self.finished.setdefault(obj["metadata"]["name"], (now, phase))


@dataclass
class PodTimes:
    """When each step's pod was first seen and first seen Succeeded: the one measure both engines share.

    A Headwater pod names its run and step in labels; an Argo pod its workflow in a label and its DAG node
    (``workflow.task``) in an annotation.
    """

    added: dict[tuple[str, str], float] = field(default_factory=dict)
    succeeded: dict[tuple[str, str], float] = field(default_factory=dict)

    def on_event(self, kind: str, obj: dict[str, Any], now: float) -> None:
        meta = obj["metadata"]
        labels, notes = meta.get("labels") or {}, meta.get("annotations") or {}
        if ARGO_WORKFLOW_LABEL in labels:
            key = (labels[ARGO_WORKFLOW_LABEL], notes.get(ARGO_NODE_ANNOTATION, "").partition(".")[2])
        else:
            key = (labels.get(c.LABEL_RUN, ""), labels.get(c.LABEL_STEP, ""))
        self.added.setdefault(key, now)
        if (obj.get("status") or {}).get("phase") == "Succeeded":
            self.succeeded.setdefault(key, now)


def pod_handoffs(pods: PodTimes, shape: Shape) -> tuple[list[float], list[float]]:
    """Pod to pod handoffs (a step's pod first seen minus the latest success among its dependencies' pods),
    and every pod's time from first seen to Succeeded."""
    out = []
    for (run, step), added in pods.added.items():
        ends = [pods.succeeded.get((run, d)) for d in shape.deps.get(step) or []]
        if ends and all(e is not None for e in ends):
            out.append(added - max(e for e in ends if e is not None))
    turnaround = [pods.succeeded[k] - t for k, t in pods.added.items() if k in pods.succeeded]
    return out, turnaround


class ApiProbe(threading.Thread):
    """GETs the namespace every half second and keeps the latencies (ms): how busy the API server is."""

    def __init__(self, api: Api, namespace: str, deadline: float) -> None:
        super().__init__(daemon=True)
        self.api, self.namespace, self.deadline = api, namespace, deadline
        self.halt = threading.Event()
        self.samples: list[float] = []

    def run(self) -> None:
        while not self.halt.wait(0.5) and time.monotonic() < self.deadline:
            start = time.monotonic()
            try:
                self.api.core.read_namespace(self.namespace)
            except (ApiException, urllib3.exceptions.HTTPError):
                continue
            self.samples.append((time.monotonic() - start) * 1000)


_METRIC = re.compile(r"^(apiserver_request_total|apiserver_request_duration_seconds_sum)\{([^}]*)\} (\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')
_NOISE = frozenset({"leases", "nodes", "namespaces"})

Counters = dict[tuple[str, str], list[float]]
"""(verb, resource[/subresource]) -> [requests, seconds spent in the API server]."""


def api_counters(api: Api) -> Counters:
    """The API server's request counters, from its /metrics (whole control plane, every client)."""
    method, url, headers, body, post = api.client.param_serialize("GET", "/metrics", auth_settings=["BearerToken"])
    resp = api.client.call_api(method, url, headers, body, post, _request_timeout=60)
    resp.read()
    out: Counters = {}
    for line in resp.data.decode().splitlines():
        match = _METRIC.match(line)
        if not match:
            continue
        labels = dict(_LABEL.findall(match.group(2)))
        if labels.get("verb") in ("WATCH", "CONNECT") or labels.get("resource") in _NOISE:
            continue
        resource = labels.get("resource", "") + (f"/{labels['subresource']}" if labels.get("subresource") else "")
        entry = out.setdefault((labels.get("verb", ""), resource), [0.0, 0.0])
        entry[0 if match.group(1) == "apiserver_request_total" else 1] += float(match.group(3))
    return out


def counters_delta(before: Counters, after: Counters) -> Counters:
    return {k: [v[0] - before.get(k, [0.0, 0.0])[0], v[1] - before.get(k, [0.0, 0.0])[1]]
            for k, v in after.items() if v[0] > before.get(k, [0.0, 0.0])[0]}


def handoffs(jobs: JobTimes, shape: Shape, signal_: str) -> tuple[list[float], int]:
    """Handoff seconds of every created step with dependencies, and how many lacked a dependency's time."""
    by_step = {ids: name for name, ids in jobs.ids.items()}
    out: list[float] = []
    missing = 0
    for (run, step), name in by_step.items():
        deps = shape.deps.get(step) or []
        if not deps:
            continue
        ends = [jobs.done(by_step.get((run, d)), signal_) for d in deps]
        if any(e is None for e in ends):
            missing += 1
            continue
        out.append(jobs.added[name] - max(e for e in ends if e is not None))
    return out, missing


# --- statistics ----------------------------------------------------------------------------------------
def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (NaN for no values)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95),
            "p99": percentile(values, 99), "max": max(values) if values else math.nan}


def ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.0f}"


# --- scenarios -----------------------------------------------------------------------------------------
@dataclass
class Options:
    kubeconfig: str
    log_dir: Path
    timeout: float
    step_duration: str | None
    history: int
    source: Path | None = None  # None: this checkout's operator
    label: str = "current"
    image: str = "busybox"  # on kwok's nodes never pulled; on a real node it must be there already
    argo_requeue: str | None = None  # set: Argo's workflow-controller with this DEFAULT_REQUEUE_TIME
    argo_qps: float | None = None
    teardown_timeout: float = 300.0
    step_timeout: int | None = None  # the steps' timeoutSeconds (None: the default, 300)

@dataclass
class ScenarioResult:
    shape: str
    operator: str
    runs: int
    finished: int
    failed: int
    jobs: int
    handoff: list[float]
    handoff_first: list[float]
    missing: int
    turnaround: list[float]
    makespan: float
    cpu_seconds: float
    rss_kib: int
    hwm_kib: int
    api_ms: list[float]
    load: float
    watch_restarts: int
    requests: dict[str, list[float]] = field(default_factory=dict)
    teardown: float = 0.0
    handoff_pod: list[float] = field(default_factory=list)
    pod_turnaround: list[float] = field(default_factory=list)
    pods: int = 0


@dataclass
class Scene:
    """The moving parts of one scenario."""

    namespace: str
    operator: Operator
    jobs: JobTimes
    runs: RunTimes
    pods: PodTimes
    watchers: list[Watcher]
    probe: ApiProbe

    def start(self) -> None:
        for thread in (*self.watchers, self.probe):
            thread.start()
        self.operator.start()

    def stop(self) -> None:
        self.operator.stop()
        self.probe.halt.set()
        for watcher in self.watchers:
            watcher.halt.set()


def set_scene(api: Api, opts: Options, shape: Shape, runs: int) -> Scene:
    namespace = fresh_namespace(api, f"bench-{shape.name}-{runs}")
    deadline = time.monotonic() + opts.timeout + 120
    jobs, run_times, pods = JobTimes(), RunTimes(), PodTimes()
    watchers = [Watcher(api.core.list_namespaced_pod, (namespace,), pods.on_event, deadline)]
    log_path = opts.log_dir / f"operator-{namespace}.log"
    operator: Operator
    if opts.argo_requeue is None:
        watchers += [
            Watcher(api.batch.list_namespaced_job, (namespace,), jobs.on_event, deadline),
            Watcher(api.custom.list_namespaced_custom_object,
                    (c.GROUP, c.VERSION, namespace, c.PIPELINERUN_PLURAL), run_times.on_event, deadline),
        ]
        operator = Operator(opts.kubeconfig, namespace, log_path, opts.source)
    else:
        # An empty configuration but for metrics, which would take port 9090 (Headwater's are off too).
        api.core.create_namespaced_config_map(namespace, {"metadata": {"name": ARGO_CONFIGMAP},
                                                          "data": {"metricsConfig": "enabled: false\n"}})
        watchers.append(Watcher(api.custom.list_namespaced_custom_object,
                                (ARGO_GROUP, ARGO_VERSION, namespace, ARGO_PLURAL), run_times.on_event, deadline))
        operator = ArgoController(opts.kubeconfig, namespace, log_path, opts.argo_requeue, opts.argo_qps)
    return Scene(namespace, operator, jobs, run_times, pods, watchers, ApiProbe(api, namespace, deadline))


def pipeline_ready(api: Api, namespace: str, name: str) -> bool:
    obj = api.custom.get_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PIPELINE_PLURAL, name)
    conds = (obj.get("status") or {}).get("conditions") or []
    return any(x.get("type") == READY and x.get("status") == "True" for x in conds)


def create_all(calls: Iterable[Callable[[], Any]], workers: int = 16) -> list[Any]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(call) for call in calls]
        return [f.result() for f in futures]


def create_runs(api: Api, opts: Options, namespace: str, shape: Shape, count: int) -> None:
    def create(i: int) -> None:
        if opts.argo_requeue is None:
            api.custom.create_namespaced_custom_object(
                c.GROUP, c.VERSION, namespace, c.PIPELINERUN_PLURAL, run_body(f"r{i:04d}", PIPELINE))
        else:
            api.custom.create_namespaced_custom_object(
                ARGO_GROUP, ARGO_VERSION, namespace, ARGO_PLURAL,
                workflow_body(f"r{i:04d}", shape, opts.step_duration, opts.image))

    create_all(partial(create, i) for i in range(count))


def create_pipeline(api: Api, opts: Options, namespace: str, shape: Shape) -> None:
    """Create the scenario's Pipeline and wait until the operator has marked it Ready (so it is watching)."""
    api.custom.create_namespaced_custom_object(
        c.GROUP, c.VERSION, namespace, c.PIPELINE_PLURAL,
        pipeline_body(PIPELINE, pipeline_spec(shape, opts.step_duration, opts.history, opts.image, opts.step_timeout)))
    if not wait_until(lambda: pipeline_ready(api, namespace, PIPELINE), 60):
        raise RuntimeError(f"the operator did not mark Pipeline {PIPELINE} Ready in 60s")


def run_scenario(api: Api, opts: Options, shape: Shape, runs: int) -> ScenarioResult:
    scene = set_scene(api, opts, shape, runs)
    log(f"{shape.name} x {runs}: namespace {scene.namespace}, operator log {scene.operator.log_path}")
    scene.start()
    try:
        if isinstance(scene.operator, ArgoController):
            if not wait_until(scene.operator.ready, 60):
                raise RuntimeError(f"Argo's controller did not sync in 60s; see {scene.operator.log_path}")
        else:
            create_pipeline(api, opts, scene.namespace, shape)
        before = api_counters(api)
        cpu0, t0 = scene.operator.cpu_seconds(), time.monotonic()
        create_runs(api, opts, scene.namespace, shape, runs)
        if not wait_until(lambda: len(scene.runs.finished) >= runs, opts.timeout, interval=0.5):
            log(f"only {len(scene.runs.finished)}/{runs} runs finished in {opts.timeout:.0f}s")
        result = collect(scene, shape, runs, t0, scene.operator.cpu_seconds() - cpu0, opts.label)
        delta = counters_delta(before, api_counters(api))
        result.requests = {f"{verb} {resource}": v for (verb, resource), v in delta.items()}
    finally:
        scene.stop()
    result.teardown = drop_namespace(api, scene.namespace, opts.teardown_timeout)
    return result


def collect(scene: Scene, shape: Shape, runs: int, t0: float, cpu: float, operator: str) -> ScenarioResult:
    finished = dict(scene.runs.finished)
    end = max((t for t, _ in finished.values()), default=time.monotonic())
    handoff, missing = handoffs(scene.jobs, shape, "Complete")
    handoff_first, _ = handoffs(scene.jobs, shape, "first")
    done = ((scene.jobs.done(name, "first"), added) for name, added in scene.jobs.added.items())
    turnaround = [t_done - added for t_done, added in done if t_done is not None]
    handoff_pod, pod_turnaround = pod_handoffs(scene.pods, shape)
    if isinstance(scene.operator, ArgoController):  # no Jobs: its pods are its steps
        turnaround = pod_turnaround
    return ScenarioResult(
        shape=shape.name, operator=operator, runs=runs, finished=len(finished),
        failed=sum(1 for _, phase in finished.values() if phase != "Succeeded"),
        jobs=len(scene.jobs.added) or len(scene.pods.added),
        handoff=handoff, handoff_first=handoff_first, missing=missing, turnaround=turnaround,
        makespan=end - t0, cpu_seconds=cpu,
        rss_kib=scene.operator.kib("VmRSS"), hwm_kib=scene.operator.kib("VmHWM"), api_ms=list(scene.probe.samples),
        load=os.getloadavg()[0], watch_restarts=sum(w.restarts for w in scene.watchers),
        handoff_pod=handoff_pod, pod_turnaround=pod_turnaround, pods=len(scene.pods.added))


# --- memory --------------------------------------------------------------------------------------------
@dataclass
class MemoryResult:
    state: str
    pipelines: int
    runs: int
    rss_kib: int
    hwm_kib: int
    rss_max_kib: int
    cpu_seconds: float
    window: float
    startup: float
    requests: dict[str, float] = field(default_factory=dict)
    operator: str = "current"


def observe_operator(op: Operator, window: float) -> tuple[int, int, float]:
    """Sample the operator's RSS every second for ``window`` seconds: (last, largest sample, CPU seconds used)."""
    cpu0, largest = op.cpu_seconds(), 0
    deadline = time.monotonic() + window
    while time.monotonic() < deadline:
        largest = max(largest, op.kib("VmRSS"))
        time.sleep(1.0)
    last = op.kib("VmRSS")
    return last, max(largest, last), op.cpu_seconds() - cpu0


def settle(op: Operator, timeout: float = 120.0) -> None:
    """Wait (bounded) until the operator has used under 0.05 s of CPU in each of 3 consecutive seconds."""
    quiet, last = 0, op.cpu_seconds()
    deadline = time.monotonic() + timeout
    while quiet < 3 and time.monotonic() < deadline:
        time.sleep(1.0)
        now = op.cpu_seconds()
        quiet, last = (quiet + 1 if now - last < 0.05 else 0), now


def populate(api: Api, namespace: str, pipelines: int, runs: int) -> None:
    """Pipelines p0000..., and finished runs spread evenly over them (status written via /status)."""
    spec = pipeline_spec(diamond(), None, 10)
    def pipeline(i: int) -> None:
        api.custom.create_namespaced_custom_object(
            c.GROUP, c.VERSION, namespace, c.PIPELINE_PLURAL, pipeline_body(f"p{i:04d}", spec))

    def finished_run(i: int) -> None:
        body = run_body(f"p{i % pipelines:04d}-r{i // pipelines:03d}", f"p{i % pipelines:04d}")
        body["metadata"]["labels"][c.LABEL_SETTLED] = "true"  # as an operator leaves a run that owes nothing
        made = api.custom.create_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PIPELINERUN_PLURAL, body)
        made["status"] = finished_status(made, spec)
        api.custom.replace_namespaced_custom_object_status(
            c.GROUP, c.VERSION, namespace, c.PIPELINERUN_PLURAL, made["metadata"]["name"], made)

    create_all(partial(pipeline, i) for i in range(pipelines))
    create_all(partial(finished_run, i) for i in range(runs))


def count_ready(api: Api, namespace: str) -> int:
    out = api.custom.list_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PIPELINE_PLURAL)
    return sum(1 for p in out["items"] for x in (p.get("status") or {}).get("conditions") or []
               if x.get("type") == READY and x.get("status") == "True")


def count_settled(api: Api, namespace: str) -> int:
    settled, token = 0, None
    while True:
        page = api.custom.list_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PIPELINERUN_PLURAL,
                                                        limit=500, _continue=token)
        settled += sum(1 for r in page["items"] for x in (r.get("status") or {}).get("conditions") or []
                       if x.get("type") == CONDITION_SETTLED and x.get("status") == "True")
        token = page["metadata"].get("continue")
        if not token:
            return settled


def memory_case(api: Api, opts: Options, pipelines: int, runs: int, window: float) -> MemoryResult:
    namespace = fresh_namespace(api, "bench-memory")
    try:
        if pipelines or runs:
            t0 = time.monotonic()
            populate(api, namespace, pipelines, runs)
            log(f"created {pipelines} Pipelines and {runs} finished PipelineRuns in {time.monotonic() - t0:.0f}s")
        op = Operator(opts.kubeconfig, namespace, opts.log_dir / f"operator-{namespace}.log", opts.source).start()
        try:
            return measure_operator(api, opts, op, pipelines, runs, window)
        finally:
            op.stop()
    finally:
        drop_namespace(api, namespace)


def measure_operator(api: Api, opts: Options, op: Operator, pipelines: int, runs: int, window: float
                     ) -> MemoryResult:
    """Once the operator has marked every Pipeline Ready and gone quiet, observe it for ``window`` seconds."""
    t0 = time.monotonic()
    wait_until(lambda: op.kib() and count_ready(api, op.namespace) >= pipelines, opts.timeout, interval=2.0)
    # Populated runs are Settled as an operator leaves them; one that is not would be settled first.
    wait_until(lambda: count_settled(api, op.namespace) >= runs, opts.timeout, interval=5.0)
    settle(op)
    startup = time.monotonic() - t0
    before = api_counters(api)
    rss, largest, cpu = observe_operator(op, window)
    delta = counters_delta(before, api_counters(api))
    state = "idle, namespace empty" if not (pipelines or runs) else "Pipelines + finished PipelineRuns"
    return MemoryResult(state, pipelines, runs, rss, op.kib("VmHWM"), largest, cpu, window, startup,
                        {f"{verb} {resource}": v[0] for (verb, resource), v in delta.items()}, opts.label)


# --- report --------------------------------------------------------------------------------------------
def label(r: ScenarioResult) -> str:
    return r.shape if r.operator == "current" else f"{r.shape} [{r.operator}]"


def headline(r: ScenarioResult) -> str:
    pod = summary(r.handoff_pod)
    return (f"{label(r)} x {r.runs}: pod handoff p50 {ms(pod['p50'])} ms, p99 {ms(pod['p99'])} ms; "
            f"{r.finished} runs in {r.makespan:.1f}s ({r.finished / (r.makespan / 60):.0f}/min), "
            f"load {r.load:.1f}")


def latency_table(results: list[ScenarioResult]) -> str:
    rows = ["| pipeline | concurrent runs | runs finished | handoffs n | p50 ms | p95 ms | p99 ms | max ms "
            "| from Complete: p50 / p99 / min ms |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        s, done = summary(r.handoff_first), summary(r.handoff)
        low = min(r.handoff, default=math.nan)
        rows.append(f"| {label(r)} | {r.runs} | {r.finished} ({r.failed} failed) | {s['n']:.0f} | {ms(s['p50'])} "
                    f"| {ms(s['p95'])} | {ms(s['p99'])} | {ms(s['max'])} "
                    f"| {ms(done['p50'])} / {ms(done['p99'])} / {ms(low)} |")
    return "\n".join(rows)


def requests_table(results: list[ScenarioResult], top: int = 8) -> str:
    """The busiest API server request kinds of each scenario, per Job, with their server-side mean latency."""
    rows = ["| pipeline | runs | requests per Job (verb resource: count, mean server ms) |", "|---|---:|---|"]
    for r in results:
        busiest = sorted(r.requests.items(), key=lambda kv: -kv[1][0])[:top]
        cells = "; ".join(f"{k}: {v[0] / max(r.jobs, 1):.1f}, {1000 * v[1] / max(v[0], 1):.0f}" for k, v in busiest)
        total = sum(v[0] for v in r.requests.values()) / max(r.jobs, 1)
        rows.append(f"| {label(r)} | {r.runs} | total {total:.0f}; {cells} |")
    return "\n".join(rows)


def throughput_table(results: list[ScenarioResult]) -> str:
    rows = ["| pipeline | runs | Jobs | first create → last finish s | runs/min | Jobs/min | Job created → "
            "succeeded p50 / p99 s | operator CPU s (% of a core) | operator RSS MiB (peak) | API GET p50 / p99 ms "
            "| load avg (1 min) |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        minutes = r.makespan / 60
        api = f"{percentile(r.api_ms, 50):.0f} / {percentile(r.api_ms, 99):.0f}" if r.api_ms else "-"
        turn = f"{percentile(r.turnaround, 50):.1f} / {percentile(r.turnaround, 99):.1f}"
        rows.append(f"| {label(r)} | {r.runs} | {r.jobs} | {r.makespan:.1f} | {r.finished / minutes:.0f} "
                    f"| {r.jobs / minutes:.0f} | {turn} "
                    f"| {r.cpu_seconds:.1f} ({100 * r.cpu_seconds / r.makespan:.0f}%) "
                    f"| {r.rss_kib / 1024:.0f} ({r.hwm_kib / 1024:.0f}) | {api} | {r.load:.1f} |")
    return "\n".join(rows)


def side_by_side_table(results: list[ScenarioResult]) -> str:
    """Every engine measured the same way: from its pods (first seen, first seen Succeeded) and its runs."""
    rows = ["| pipeline | engine | concurrent runs | runs finished | pod → pod handoffs n | p50 ms | p95 ms | p99 ms "
            "| max ms | pod created → Succeeded p50 / p99 s | first create → last finish s | runs/min | pods/min "
            "| controller CPU s (% of a core) | controller RSS MiB | load avg (1 min) |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        s, minutes = summary(r.handoff_pod), r.makespan / 60
        turn = f"{percentile(r.pod_turnaround, 50):.1f} / {percentile(r.pod_turnaround, 99):.1f}"
        rows.append(f"| {r.shape} | {r.operator} | {r.runs} | {r.finished} ({r.failed} failed) | {s['n']:.0f} "
                    f"| {ms(s['p50'])} | {ms(s['p95'])} | {ms(s['p99'])} | {ms(s['max'])} | {turn} "
                    f"| {r.makespan:.1f} | {r.finished / minutes:.0f} | {r.pods / minutes:.0f} "
                    f"| {r.cpu_seconds:.1f} ({100 * r.cpu_seconds / r.makespan:.0f}%) | {r.rss_kib / 1024:.0f} "
                    f"| {r.load:.1f} |")
    return "\n".join(rows)


def memory_table(results: list[MemoryResult], top: int = 4) -> str:
    rows = ["| operator | state | Pipelines | PipelineRuns | VmRSS MiB | largest sample MiB | VmHWM MiB "
            "| CPU s in window | start until quiet s | busiest API requests in window (whole control plane) |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for m in results:
        busiest = ", ".join(f"{k} {v:.0f}" for k, v in sorted(m.requests.items(), key=lambda kv: -kv[1])[:top])
        rows.append(f"| {m.operator} | {m.state} | {m.pipelines} | {m.runs} | {m.rss_kib / 1024:.0f} "
                    f"| {m.rss_max_kib / 1024:.0f} "
                    f"| {m.hwm_kib / 1024:.0f} | {m.cpu_seconds:.1f} / {m.window:.0f} s | {m.startup:.1f} "
                    f"| {busiest} |")
    return "\n".join(rows)


def nodes(args: argparse.Namespace) -> str:
    return f"steps in containers of image {args.image}" if args.image != "busybox" else "kwok"


def report(args: argparse.Namespace, results: list[ScenarioResult], memory: list[MemoryResult]) -> str:
    limits = "as configured" if args.kubeconfig else "off (--no-qps-limits)" if args.no_qps_limits else "default"
    default_duration = "1s (kwok default)" if args.image == "busybox" else "the container's own (`true`)"
    head = (f"Run engine benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs "
            f"({platform.machine()}), Kubernetes {kubernetes_version()} ({nodes(args)}), "
            f"Python {platform.python_version()}, "
            f"step duration {args.step_duration or default_duration}, step timeoutSeconds {args.step_timeout or 300}, "
            f"control plane client rate limits {limits}")
    parts = [head]
    ours = [r for r in results if not r.operator.startswith("argo")]
    if any(r.operator.startswith("argo") for r in results):
        parts += ["### Side by side: pod to pod handoff and throughput (every engine)", side_by_side_table(results),
                  "### API server requests (whole control plane)", requests_table(results)]
    if ours:
        parts += ["### Step handoff latency", latency_table(ours),
                  "### Throughput and cost", throughput_table(ours)]
        if len(ours) == len(results):
            parts += ["### API server requests (whole control plane)", requests_table(ours)]
    if memory:
        parts += ["### Operator memory", memory_table(memory)]
    return "\n\n".join(parts) + "\n"


# --- main ----------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default="1,10,100", help="concurrent runs per scenario, comma-separated")
    p.add_argument("--shapes", default="diamond4,layered20", help=f"pipeline shapes: {', '.join(SHAPES)}")
    p.add_argument("--quick", action="store_true", help="smoke pass: runs 1,10; 100 Pipelines / 500 runs")
    p.add_argument("--memory-pipelines", type=int, default=1000)
    p.add_argument("--memory-runs", type=int, default=5000)
    p.add_argument("--memory-window", type=float, default=65.0, help="seconds the operator is observed (RSS, CPU)")
    p.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    p.add_argument("--no-latency", action="store_true", help="skip the handoff and throughput scenarios")
    p.add_argument("--step-duration", default=None, help="kwok container run time, e.g. 0s (default 1s)")
    p.add_argument("--step-timeout", type=int, default=None,
                   help="the steps' timeoutSeconds (default 300); it counts from when the Job controller starts the "
                        "Job, so thousands of Jobs queued at the default control-plane limits need more")
    p.add_argument("--history", type=int, default=1000, help="successful/failedRunsHistoryLimit of the pipeline")
    p.add_argument("--timeout", type=float, default=900.0, help="bound of one scenario, seconds")
    p.add_argument("--cluster", default=None,
                   help="name of the cluster started with hack/cluster.sh (hw-bench, or hw-bench-noqps)")
    p.add_argument("--no-qps-limits", action="store_true",
                   help="start the cluster without the components' client rate limits (kube-controller-manager's "
                        "default 20 requests/s caps Jobs per minute); has no effect with --kubeconfig")
    p.add_argument("--kubeconfig", help="use this (local) cluster instead of starting one")
    p.add_argument("--image", default="busybox",
                   help="image of the steps (they run `true`); on a real node (hack/cluster.sh up --real-node) one "
                        "loaded into it, e.g. the Headwater image from hack/images.sh")
    p.add_argument("--argo", default="",
                   help="also run each scenario with Argo Workflows' workflow-controller (hack/argo.sh build) at these "
                        "DEFAULT_REQUEUE_TIME values, comma-separated, e.g. 10s,1s (10s is Argo's default)")
    p.add_argument("--argo-qps", type=float, default=None,
                   help="Argo's client rate limit (--qps; burst 1.5x); default Argo's own (20/s, burst 30)")
    p.add_argument("--no-headwater", action="store_true", help="with --argo: run Argo's controller only")
    p.add_argument("--teardown-timeout", type=float, default=300.0,
                   help="how long to wait for a scenario's namespace to be gone before the next one")
    p.add_argument("--keep-cluster", action="store_true")
    p.add_argument("--raw", type=Path, help="write raw samples (JSON) here")
    p.add_argument("--baseline", type=Path,
                   help="another checkout (e.g. a git worktree of an earlier commit): each latency scenario and "
                        "the memory measurement also run with its operator/, just before this checkout's, for a "
                        "side-by-side comparison")
    args = p.parse_args(argv)
    args.cluster = args.cluster or ("hw-bench-noqps" if args.no_qps_limits else "hw-bench")
    if args.quick:
        args.runs, args.memory_pipelines, args.memory_runs = "1,10", 100, 500
        args.memory_window, args.timeout = min(args.memory_window, 35.0), min(args.timeout, 300.0)
    return args


def bench(args: argparse.Namespace, kubeconfig: str) -> tuple[list[ScenarioResult], list[MemoryResult]]:
    api = connect(kubeconfig)
    apply_crds(api)
    opts = Options(kubeconfig, Path(tempfile.mkdtemp(prefix="run-engine-bench-")), args.timeout,
                   args.step_duration, args.history, image=args.image, teardown_timeout=args.teardown_timeout,
                   step_timeout=args.step_timeout)
    log(f"operator logs in {opts.log_dir}")
    operators = [] if args.no_headwater else [opts]
    if args.argo:
        apply_crds(api, sorted(Path(argo_tool("crds")).glob("argoproj.io_*.yaml")))
        for requeue in args.argo.split(","):
            operators.append(replace(opts, argo_requeue=requeue, argo_qps=args.argo_qps,
                                     label=f"argo {argo_version()}, requeue {requeue}"))
    if args.baseline:
        rev = subprocess.run(["git", "-C", str(args.baseline), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=False).stdout.strip() or args.baseline.name
        operators.insert(0, replace(opts, source=args.baseline.resolve(), label=f"baseline {rev}"))
    results = []
    for shape_name in [] if args.no_latency else args.shapes.split(","):
        for runs in (int(n) for n in args.runs.split(",")):
            for variant in operators:  # side by side: each scenario with each operator, one after the other
                if variant.argo_requeue is None:  # each checkout's own CRDs (their schemas cost the apiserver)
                    apply_crds(api, sorted(((variant.source or ROOT) / "crds").glob("*.yaml")))
                results.append(run_scenario(api, variant, SHAPES[shape_name](), runs))
                r = results[-1]
                log(headline(r))
                if args.raw:  # partial results survive an interrupted run
                    args.raw.write_text(json.dumps({"scenarios": [asdict(x) for x in results]}, indent=1))
    memory = []
    if not args.no_memory:
        for variant in (o for o in operators if o.argo_requeue is None):  # side by side with --baseline
            memory.append(memory_case(api, variant, 0, 0, args.memory_window))
            memory.append(memory_case(api, variant, args.memory_pipelines, args.memory_runs, args.memory_window))
    return results, memory


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    kubeconfig = args.kubeconfig or cluster("up", args.cluster, qps_limits=not args.no_qps_limits)
    try:
        results, memory = bench(args, kubeconfig)
    finally:
        if not (args.kubeconfig or args.keep_cluster):
            cluster("down", args.cluster)
    print(report(args, results, memory))
    if args.raw:
        args.raw.write_text(json.dumps({"scenarios": [asdict(r) for r in results],
                                        "memory": [asdict(m) for m in memory]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
