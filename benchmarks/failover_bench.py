"""Failover benchmark: how long two operator replicas take to hand over, after a SIGKILL and a clean stop.

    .venv/bin/python benchmarks/failover_bench.py --kubeconfig KUBECONFIG [--crashes 6] [--stops 3] [--in-flight 100]

Uses a running local cluster (``hack/cluster.sh up NAME``; the CRDs applied) and a fresh namespace. Two
``headwater operator`` subprocesses elect a leader on a Lease in that namespace (the defaults: lease
10 s, renew deadline 7 s, retry 2 s). Each round stops the leader (SIGKILL, or SIGTERM for a clean stop),
creates a one-step run at that moment, and times, on the monotonic clock from the signal: until the
other replica holds the Lease (polled every 50 ms), and until the run's Job exists (the first thing the
new leader writes for it). The stopped replica is then started again as the standby, and the next round
waits until it has read the Lease once (its log says who holds it). With ``--in-flight N``, each round first
creates N runs of a three-step chain and signals the leader once they have N Jobs among them (work in flight),
then also times until all N have succeeded and counts the Jobs of each (run, step): more than one is a
duplicate. Markdown to stdout.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

GROUP, VERSION = "headwater.dev", "v1alpha1"
LEASE = "headwater-operator"


class Replica:
    def __init__(self, kubeconfig: str, namespace: str, identity: str, log: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEADWATER_")}
        self.env = {**env, "KUBECONFIG": kubeconfig, "HEADWATER_METRICS_PORT": "0", "HEADWATER_API_PORT": "0",
                    "HEADWATER_LEADER_ELECTION": "true", "HEADWATER_LEASE_NAMESPACE": namespace,
                    "HEADWATER_LEADER_IDENTITY": identity}
        self.namespace, self.identity, self.log = namespace, identity, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_from = 0

    def start(self) -> None:
        self.log_from = self.log.stat().st_size if self.log.exists() else 0  # this start's lines begin here
        headwater = Path(sys.executable).parent / "headwater"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([str(headwater), "operator", "-n", self.namespace], env=self.env,
                                         stdout=out, stderr=subprocess.STDOUT)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def has_read_the_lease(self) -> bool:
        """Whether this process (its latest start) has read the Lease once: from then on its clock runs."""
        with self.log.open("rb") as log:
            log.seek(self.log_from)
            text = log.read().decode(errors="replace")
        return "standing by for the Lease" in text and "is held by" in text

    def wait(self) -> None:
        if self.proc is not None:
            self.proc.wait(timeout=60)


def holder(coord: client.CoordinationV1Api, namespace: str) -> str | None:
    try:
        return coord.read_namespaced_lease(LEASE, namespace).spec.holder_identity  # type: ignore[no-any-return]
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def until(condition: Any, timeout: float, what: str, interval: float = 0.05) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return time.monotonic()
        time.sleep(interval)
    raise SystemExit(f"timed out waiting for {what}")


def in_flight(custom: client.CustomObjectsApi, batch: client.BatchV1Api, namespace: str, round_: int,
              count: int) -> list[str]:
    """Create ``count`` runs of the chain; return their names once they have ``count`` Jobs among them."""
    names = [f"load-{round_:02d}-{k:03d}" for k in range(count)]
    for name in names:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "pipelineruns", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "PipelineRun", "metadata": {"name": name},
            "spec": {"pipelineRef": {"name": "chain"}}})
    prefix = f"load-{round_:02d}-"
    until(lambda: sum(j.metadata.labels.get(f"{GROUP}/run", "").startswith(prefix)
                      for j in batch.list_namespaced_job(namespace).items) >= count, 600, "work in flight", 0.5)
    return names


def finished_once(custom: client.CustomObjectsApi, batch: client.BatchV1Api, namespace: str, names: list[str],
                  timeout: float) -> int:
    """Wait until every run in ``names`` succeeded; the most Jobs any (run, step) got."""
    wanted = set(names)

    def done() -> bool:
        runs = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "pipelineruns")["items"]
        phases = {r["metadata"]["name"]: (r.get("status") or {}).get("phase") for r in runs}
        failed = [n for n in wanted if phases.get(n) in ("Failed", "Cancelled")]
        if failed:
            raise SystemExit(f"runs did not succeed: {sorted(failed)[:5]}")
        return all(phases.get(n) == "Succeeded" for n in wanted)
    until(done, timeout, "every run in flight to succeed", 1.0)
    per_step: dict[tuple[str, str], int] = {}
    for job in batch.list_namespaced_job(namespace).items:
        labels = job.metadata.labels or {}
        key = (labels.get(f"{GROUP}/run", ""), labels.get(f"{GROUP}/step", ""))
        if key[0] in wanted:
            per_step[key] = per_step.get(key, 0) + 1
    return max(per_step.values(), default=0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--crashes", type=int, default=6, help="rounds with SIGKILL")
    p.add_argument("--stops", type=int, default=3, help="rounds with SIGTERM")
    p.add_argument("--log-dir", type=Path, default=Path("/tmp"))
    p.add_argument("--in-flight", type=int, default=0, help="runs of a three-step chain in flight at each stop")
    args = p.parse_args()
    cfg = client.Configuration()
    config.load_kube_config(config_file=args.kubeconfig, client_configuration=cfg)
    if "127.0.0.1" not in cfg.host and "localhost" not in cfg.host:
        raise SystemExit(f"refusing to benchmark a non-local API server: {cfg.host}")
    api = client.ApiClient(cfg)
    core, coord, custom, batch = (client.CoreV1Api(api), client.CoordinationV1Api(api),
                                  client.CustomObjectsApi(api), client.BatchV1Api(api))
    namespace = f"failover-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": namespace}})
    until(lambda: core.list_namespaced_service_account(namespace).items, 120, "the default ServiceAccount", 0.5)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "pipelines", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Pipeline", "metadata": {"name": "one"},
        "spec": {"owner": "bench@example.com", "steps": [{"id": "a", "type": "container", "image": "busybox"}]}})
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "pipelines", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Pipeline", "metadata": {"name": "chain"},
        "spec": {"owner": "bench@example.com", "successfulRunsHistoryLimit": 1000, "steps": [
            {"id": "a", "type": "container", "image": "busybox"},
            {"id": "b", "type": "container", "image": "busybox", "dependsOn": ["a"]},
            {"id": "c", "type": "container", "image": "busybox", "dependsOn": ["b"]}]}})
    replicas = {name: Replica(args.kubeconfig, namespace, name, args.log_dir / f"{namespace}-{name}.log")
                for name in ("replica-a", "replica-b")}
    results: dict[str, list[tuple[float, ...]]] = {"SIGKILL": [], "SIGTERM": []}
    try:
        for replica in replicas.values():
            replica.start()
        until(lambda: holder(coord, namespace) in replicas, 120, "a first leader", 0.2)
        first = holder(coord, namespace)
        until(lambda: all(r.has_read_the_lease() for n, r in replicas.items() if n != first), 120,
              "the standby to read the Lease", 0.2)
        plan = ["SIGKILL"] * args.crashes + ["SIGTERM"] * args.stops
        for i, kind in enumerate(plan):
            leader = holder(coord, namespace)
            assert leader is not None
            standby = next(name for name in replicas if name != leader)
            run = f"r-{i:02d}"
            load = in_flight(custom, batch, namespace, i, args.in_flight) if args.in_flight else []
            replicas[leader].signal(signal.SIGKILL if kind == "SIGKILL" else signal.SIGTERM)
            stopped = time.monotonic()
            custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "pipelineruns", {
                "apiVersion": f"{GROUP}/{VERSION}", "kind": "PipelineRun", "metadata": {"name": run},
                "spec": {"pipelineRef": {"name": "one"}}})
            took = until(lambda s=standby: holder(coord, namespace) == s, 120, "the standby to lead") - stopped
            job = until(lambda r=run: batch.list_namespaced_job(namespace, label_selector=f"{GROUP}/run={r}").items,
                        120, "the run's Job", 0.1) - stopped
            if load:
                most = finished_once(custom, batch, namespace, load, 1800)
                results[kind].append((took, job, time.monotonic() - stopped, most))
                print(f"{kind} {i}: lease taken after {took:.2f} s, the run's Job after {job:.2f} s, "
                      f"{len(load)} runs in flight all succeeded after {results[kind][-1][2]:.1f} s, "
                      f"at most {most} Job(s) per (run, step)", file=sys.stderr)
            else:
                results[kind].append((took, job))
                print(f"{kind} {i}: lease taken after {took:.2f} s, the run's Job after {job:.2f} s", file=sys.stderr)
            replicas[leader].wait()
            replicas[leader].start()
            # a standby times the Lease from its first read: a kill before that would be timed from later
            until(replicas[leader].has_read_the_lease, 120, "the restarted replica to read the Lease", 0.2)
    finally:
        for replica in replicas.values():
            if replica.proc is not None and replica.proc.poll() is None:
                replica.signal(signal.SIGTERM)
                replica.wait()
        core.delete_namespace(namespace)
    report(results, args.in_flight)
    return 0


def report(results: dict[str, list[tuple[float, ...]]], load_runs: int) -> None:
    load = os.getloadavg()
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.node()}, {os.cpu_count()} cores, "
          f"load average {load[0]:.1f}; lease 10 s, renew deadline 7 s, retry 2 s\n")
    extra = (f" {load_runs} three-step runs in flight: all succeeded after, median / max (s) | Jobs per (run, step), "
             "most |") if load_runs else ""
    print("| stop | rounds | lease taken: median / max (s) | the new run's Job: median / max (s) |" + extra)
    print("|---|---|---|---|" + ("---|---|" if load_runs else ""))
    for kind, samples in results.items():
        if samples:
            leases, jobs = [s[0] for s in samples], [s[1] for s in samples]
            row = (f"| {kind} | {len(samples)} | {statistics.median(leases):.1f} / {max(leases):.1f} | "
                   f"{statistics.median(jobs):.1f} / {max(jobs):.1f} |")
            if load_runs:
                ends = [s[2] for s in samples]
                row += f" {statistics.median(ends):.1f} / {max(ends):.1f} | {max(int(s[3]) for s in samples)} |"
            print(row)


if __name__ == "__main__":
    sys.exit(main())
