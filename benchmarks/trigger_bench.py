"""Dataset trigger latency: upstream version committed -> downstream PipelineRun created, on the local control plane.

    .venv/bin/python benchmarks/trigger_bench.py [--concurrency 1,100] [--rounds 5] [--kubeconfig PATH]
        [--cluster NAME] [--baseline DIR]

Starts its own cluster (``hack/cluster.sh up NAME``, default hw-trigger-bench; ``down`` at the end unless
``--keep-cluster``, or uses ``--kubeconfig``) and a throwaway PostgreSQL (``hack/postgres.sh``), applies
``crds/``, and for each concurrency K creates K Pipelines in a fresh namespace, each triggered (mode any) by
a dataset of its own, and one ``headwater operator -n NAMESPACE`` with the lineage store.  A round commits K
OpenLineage COMPLETE events at once (K threads behind a barrier, each its own transaction, as K upstream
tools finishing together); each event writes one new version of one Pipeline's input.  With ``--baseline
DIR`` (another checkout, e.g. ``git archive`` of an earlier commit), each K runs first with that checkout's
``operator/`` and then with this one's, on the same cluster and store, for a side-by-side comparison.

Latency is measured client-side on one monotonic clock: from the moment the event's transaction has
committed (``ingest_openlineage`` returned) to the moment a watch on the namespace's PipelineRuns first
sees the triggered run (its ADDED event); and, beside it, to the moment it first sees that run started (a status
phase), which a round also waits for.  Markdown goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config, watch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "operator"))

from headwater.lineage.store import LineageStore  # noqa: E402
from run_engine_bench import Api, api_counters, counters_delta  # noqa: E402

WH = "postgres://bench"


def log(message: str) -> None:
    print(f"[trigger-bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def sh(*args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, check=False, timeout=900, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""


def wait_until(condition: Any, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return False


def pipeline(name: str, dataset: str) -> dict[str, Any]:
    return {"apiVersion": "headwater.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": name},
            "spec": {"successfulRunsHistoryLimit": 1000, "steps": [{"id": "report", "type": "container",
                                                                    "image": "busybox"}],
                     "triggers": {"datasets": {"mode": "any", "inputs": [{"namespace": WH, "name": dataset}]}}}}


def event(dataset: str) -> dict[str, Any]:
    return {"eventType": "COMPLETE", "eventTime": datetime.now(UTC).isoformat(), "producer": "trigger-bench",
            "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/definitions/RunEvent",
            "run": {"runId": str(uuid.uuid4())}, "job": {"namespace": "bench", "name": f"load.{dataset}"},
            "inputs": [], "outputs": [{"namespace": WH, "name": dataset}]}


class RunWatch(threading.Thread):
    """Records when each PipelineRun of the namespace is first seen (monotonic seconds), by its first input."""

    def __init__(self, custom: client.CustomObjectsApi, namespace: str) -> None:
        super().__init__(daemon=True)
        self.custom, self.namespace = custom, namespace
        self.seen: dict[str, float] = {}
        self.started: dict[str, float] = {}  # when the run was first seen started (a status phase), likewise
        self.by_run: dict[str, str] = {}  # run name -> the upstream run id that triggered it
        self.ready = threading.Event()

    def run(self) -> None:
        # Watched again whenever the stream ends or breaks (as an informer would): a run first seen after a
        # reconnect counts from then, which can only make its latency look longer, never shorter.
        while True:
            try:
                stream = watch.Watch()
                self.ready.set()
                for item in stream.stream(self.custom.list_namespaced_custom_object, "headwater.dev", "v1alpha1",
                                          self.namespace, "pipelineruns", timeout_seconds=300):
                    if item["type"] in ("ADDED", "MODIFIED"):
                        self._saw(item["object"], time.monotonic())
            except Exception as exc:  # the watch broke: say so, and watch again
                log(f"the PipelineRun watch broke ({type(exc).__name__}: {exc}); watching again")
                time.sleep(1)

    def _saw(self, obj: dict[str, Any], now: float) -> None:
        name = obj["metadata"]["name"]
        for version in (obj.get("spec") or {}).get("triggeredBy") or []:
            self.seen.setdefault(version["run"], now)
            self.by_run[name] = version["run"]
            if (obj.get("status") or {}).get("phase"):
                self.started.setdefault(version["run"], now)


def load() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def percentile(values: list[float], q: float) -> float:
    """The q-quantile of ``values`` (nan when there are none)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:,.0f} ms"


# ``headwater`` through the interpreter, so that a --baseline checkout's package is the one run.
_HEADWATER_COMMAND = [sys.executable, "-c", "import sys; from headwater.cli import main as m; "
                      "sys.exit(getattr(m, 'main', m)())"]


def apply_crds(ext: client.ApiextensionsV1Api, directory: Path) -> None:
    for path in sorted(directory.glob("*.yaml")):
        body = yaml.safe_load(path.read_text())
        try:
            ext.create_custom_resource_definition(body)
        except client.exceptions.ApiException as exc:
            if exc.status != 409:
                raise
            current = ext.read_custom_resource_definition(body["metadata"]["name"])
            body["metadata"]["resourceVersion"] = current.metadata.resource_version
            ext.replace_custom_resource_definition(body["metadata"]["name"], body)
    time.sleep(2)  # CRDs established (a fresh cluster needs a moment)


def new_namespace(core: client.CoreV1Api, namespace: str) -> str:
    core.create_namespace({"metadata": {"name": namespace}})
    def has_account() -> bool:
        try:
            return bool(core.read_namespaced_service_account("default", namespace))
        except client.exceptions.ApiException:
            return False
    if not wait_until(has_account, 300):
        raise SystemExit(f"no default ServiceAccount in {namespace} after 300s")
    return namespace


FLOOR = Path("floor")
"""The variant run by ``benchmarks/trigger_floor.py`` instead of an operator: the least any trigger can do here."""


def start_operator(kubeconfig: str, url: str, namespace: str, log_path: Path,
                   source: Path | None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "KUBECONFIG": kubeconfig, "HEADWATER_DATABASE_URL": url, "HEADWATER_METRICS_PORT": "0",
           "HEADWATER_API_PORT": "0"}
    command = [*_HEADWATER_COMMAND, "operator", "-n", namespace]
    if source == FLOOR:
        command = [sys.executable, str(ROOT / "benchmarks" / "trigger_floor.py"), url, namespace]
    elif source is not None:  # the baseline checkout's operator/ shadows the installed package
        env["PYTHONPATH"] = os.pathsep.join([str(source / "operator"), os.environ.get("PYTHONPATH", "")])
    with log_path.open("wb") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


def scenario(custom: client.CustomObjectsApi, core: client.CoreV1Api, kubeconfig: str, url: str, k: int,
             rounds: int, workdir: Path, source: Path | None = None) -> tuple[list[float], list[float]]:
    namespace = new_namespace(core, f"trig-{k}-{uuid.uuid4().hex[:5]}")
    datasets = [f"bench.table_{i:03d}" for i in range(k)]
    for i, dataset in enumerate(datasets):
        custom.create_namespaced_custom_object("headwater.dev", "v1alpha1", namespace, "pipelines",
                                               pipeline(f"down-{i:03d}", dataset))
    label = "floor" if source == FLOOR else "baseline" if source else "current"
    operator = start_operator(kubeconfig, url, namespace, workdir / f"operator-{k}-{label}.log", source)
    starts_runs = source != FLOOR  # the floor only creates runs
    runs = RunWatch(custom, namespace)
    runs.start()
    runs.ready.wait(10)
    latencies: list[float] = []
    starts: list[float] = []  # version committed -> the run seen started
    try:
        def ready() -> bool:
            items = custom.list_namespaced_custom_object("headwater.dev", "v1alpha1", namespace, "pipelines")["items"]
            return all(any(c["type"] == "Ready" and c["status"] == "True"
                           for c in (p.get("status") or {}).get("conditions") or []) for p in items)
        if starts_runs and not wait_until(ready, 120):
            raise SystemExit("the Pipelines did not become Ready")
        with LineageStore.open(url, max_size=max(4, k), apply_migrations=False) as store:
            # warm-up: one completion per dataset, so every Pipeline has registered and every connection is open
            warm = [event(d) for d in datasets]
            time.sleep(3)  # the operator's first trigger pass registers the Pipelines (not measured)
            for e in warm:
                store.ingest_openlineage(e)
            if not wait_until(lambda: all(e["run"]["runId"] in runs.seen for e in warm), 600):
                missing = sum(e["run"]["runId"] not in runs.seen for e in warm)
                raise SystemExit(f"the warm-up completions did not all trigger a run: {missing} of {len(warm)} "
                                 f"not seen ({len(runs.by_run)} triggered runs watched)")
            # and started, as each round waits for its starts: the first round never meets the warm-up's
            if starts_runs and not wait_until(lambda: all(e["run"]["runId"] in runs.started for e in warm), 600):
                raise SystemExit("the warm-up's triggered runs did not all start within 600s")
            before = api_counters(Api(custom.api_client))
            for number in range(rounds):
                events = [event(d) for d in datasets]
                committed: dict[str, float] = {}
                barrier = threading.Barrier(k)

                def complete(e: dict[str, Any], barrier: threading.Barrier, committed: dict[str, float]) -> None:
                    barrier.wait(30)
                    store.ingest_openlineage(e)
                    committed[e["run"]["runId"]] = time.monotonic()
                threads = [threading.Thread(target=complete, args=(e, barrier, committed)) for e in events]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(60)
                if not wait_until(lambda c=committed: all(r in runs.seen for r in c), 600):
                    raise SystemExit(f"round {number}: not every completion triggered a run within 600s")
                if starts_runs and not wait_until(lambda c=committed: all(r in runs.started for r in c), 600):
                    raise SystemExit(f"round {number}: not every triggered run started within 600s")
                latencies += [runs.seen[r] - at for r, at in committed.items()]
                starts += [runs.started[r] - at for r, at in committed.items() if r in runs.started]
                log(f"K={k} round {number + 1}/{rounds}: p50 {percentile(latencies, 0.5) * 1000:.0f} ms, "
                    f"max {max(latencies) * 1000:.0f} ms; started p50 {percentile(starts, 0.5) * 1000:.0f} ms, "
                    f"max {max(starts, default=float('nan')) * 1000:.0f} ms")
            requests = counters_delta(before, api_counters(Api(custom.api_client)))
            top = sorted(requests.items(), key=lambda kv: -kv[1][0])[:8]
            log(f"K={k}: API requests in the measured rounds, per triggered run: " + ", ".join(
                f"{verb} {resource} {counts[0] / (k * rounds):.1f} ({counts[1] * 1000 / counts[0]:.0f} ms each)"
                for (verb, resource), counts in top))
        created = len(runs.by_run)
        if created != k * (rounds + 1):
            raise SystemExit(f"expected {k * (rounds + 1)} triggered runs, saw {created}")
    finally:
        operator.terminate()
        try:
            operator.wait(60)
        except subprocess.TimeoutExpired:
            operator.kill()
            operator.wait(30)
        core.delete_namespace(namespace)
    return latencies, starts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default="1,100", help="concurrent upstream completions per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--kubeconfig", default=None)
    parser.add_argument("--cluster", default="hw-trigger-bench", help="the local cluster to start and stop")
    parser.add_argument("--keep-cluster", action="store_true")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="another checkout: each K also runs with its operator/, just before this one's")
    parser.add_argument("--floor", action="store_true",
                        help="each K also runs, first, benchmarks/trigger_floor.py instead of an operator: the least "
                             "any trigger can do on this machine (it creates runs, it does not start them)")
    args = parser.parse_args()
    name = args.cluster
    kubeconfig = args.kubeconfig or sh("bash", str(ROOT / "hack" / "cluster.sh"), "up", name)
    workdir = Path(tempfile.mkdtemp(prefix="trigger-bench-"))
    workdir.chmod(0o755)  # the PostgreSQL server may run as 'postgres'
    pg_dir = workdir / "postgres"
    url = sh("bash", str(ROOT / "hack" / "postgres.sh"), "start", str(pg_dir))
    try:
        LineageStore.open(url).close()  # migrated
        cfg = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
        if "127.0.0.1" not in cfg.host and "localhost" not in cfg.host:
            raise SystemExit(f"refusing to benchmark a non-local API server: {cfg.host}")
        cfg.connection_pool_maxsize = 16
        api = client.ApiClient(cfg)
        custom, core, ext = client.CustomObjectsApi(api), client.CoreV1Api(api), client.ApiextensionsV1Api(api)
        rows = []
        variants: list[tuple[str, Path | None]] = [("current", None)]
        if args.baseline is not None:
            variants.insert(0, (f"baseline ({args.baseline})", args.baseline.resolve()))
        if args.floor:
            variants.insert(0, ("floor (trigger_floor.py)", FLOOR))
        for k in (int(x) for x in args.concurrency.split(",")):
            for label, source in variants:
                # each checkout's own CRDs (their schemas cost the apiserver)
                apply_crds(ext, (ROOT if source in (None, FLOOR) else source) / "crds")
                log(f"K={k}, {label}: {k} Pipeline(s), {args.rounds} round(s); load average {load()}")
                samples, starts = scenario(custom, core, kubeconfig, url, k, args.rounds, workdir, source)
                rows.append((k, label, len(samples), percentile(samples, 0.5), percentile(samples, 0.99),
                             max(samples), statistics.mean(samples), percentile(starts, 0.5),
                             percentile(starts, 0.99), load()))
        print(f"Trigger latency, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
              f"{os.cpu_count()} CPUs, Python {platform.python_version()}; operator logs in {workdir}\n")
        print("| concurrent completions | operator | samples | p50 | p99 | max | mean | started p50 | started p99 "
              "| load average after |")
        print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---|")
        for k, label, n, p50, p99, top, mean, s50, s99, after in rows:
            print(f"| {k} | {label} | {n} | {ms(p50)} | {ms(p99)} | {ms(top)} | {ms(mean)} | {ms(s50)} | {ms(s99)} "
                  f"| {after} |")
    finally:
        sh("bash", str(ROOT / "hack" / "postgres.sh"), "destroy", str(pg_dir))
        if args.kubeconfig is None and not args.keep_cluster:
            sh("bash", str(ROOT / "hack" / "cluster.sh"), "down", name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
