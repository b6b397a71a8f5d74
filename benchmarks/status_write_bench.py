"""What a PipelineRun status write costs the apiserver: the CRD as generated against one whose status keeps
the CEL rules of the Pipeline spec it snapshots, side by side on one cluster.

    .venv/bin/python benchmarks/status_write_bench.py [--kubeconfig PATH] [--writes 300] [--rounds 3]
        [--width 4 --depth 5]

Starts its own cluster (``hack/cluster.sh up hw-status-bench``, ``down`` at the end) unless given
``--kubeconfig``.  For each variant, in alternating rounds: replaces the PipelineRun CRD, creates a run, and
writes its status ``--writes`` times one after the other (the status of a run just started by the operator's
own planner, with a snapshot of a ``width`` x ``depth`` layered Pipeline; each write changes ``progress``).
Reports the wall time per write and the apiserver's CPU time per write (from /proc: the apiserver runs on this
machine).  Markdown goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "operator"))

from headwater.runs import planning  # noqa: E402
from headwater.spec import constants as c  # noqa: E402
from headwater.spec.crdgen import pipelinerun_crd, structural_schema  # noqa: E402
from headwater.spec.models import PipelineRunSpec, PipelineRunStatus, PipelineSpec  # noqa: E402

NS = "default"


def log(message: str) -> None:
    print(f"[status-write-bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def with_status_rules() -> dict[str, Any]:
    """The CRD as it was before the status lost its rules: the snapshot with the spec's CEL rules."""
    crd = pipelinerun_crd()
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"] = \
        structural_schema(PipelineRunStatus)
    return crd


VARIANTS: dict[str, Callable[[], dict[str, Any]]] = {
    "status with the snapshot's CEL rules (before)": with_status_rules,
    "as generated (no rules under status)": pipelinerun_crd,
}


def apply_crd(ext: client.ApiextensionsV1Api, crd: dict[str, Any]) -> None:
    name = crd["metadata"]["name"]
    try:
        crd["metadata"]["resourceVersion"] = ext.read_custom_resource_definition(name).metadata.resource_version
        ext.replace_custom_resource_definition(name, crd)
    except client.exceptions.ApiException as exc:
        if exc.status != 404:
            raise
        crd["metadata"].pop("resourceVersion", None)
        ext.create_custom_resource_definition(crd)
    time.sleep(5)  # the apiserver serves the new schema


def apiserver_pid(host: str) -> int:
    port = host.rsplit(":", 1)[-1]
    found = subprocess.run(["pgrep", "kube-apiserver"], capture_output=True, text=True, check=False).stdout
    for pid in found.split():
        if f"--secure-port={port}" in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode():
            return int(pid)
    raise SystemExit(f"no kube-apiserver process on this machine serves port {port}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def layered(width: int, depth: int) -> PipelineSpec:
    steps = [{"id": f"s{layer}-{i}", "type": "container", "image": "busybox", "command": ["true"],
              "dependsOn": [f"s{layer - 1}-{j}" for j in range(width)] if layer else []}
             for layer in range(depth) for i in range(width)]
    return PipelineSpec.model_validate({"steps": steps})


def writes(custom: client.CustomObjectsApi, pid: int, name: str, status: dict[str, Any],
           count: int) -> tuple[float, float]:
    body = {"apiVersion": c.API_VERSION, "kind": c.PIPELINERUN_KIND, "metadata": {"name": name},
            "spec": {"pipelineRef": {"name": "layered"}}}
    obj = custom.create_namespaced_custom_object(c.GROUP, c.VERSION, NS, c.PIPELINERUN_PLURAL, body)
    cpu, started = cpu_seconds(pid), time.monotonic()
    for k in range(count):
        obj["status"] = {**status, "progress": f"{k}"}
        obj = custom.replace_namespaced_custom_object_status(c.GROUP, c.VERSION, NS, c.PIPELINERUN_PLURAL, name, obj)
    return (time.monotonic() - started) / count, (cpu_seconds(pid) - cpu) / count


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kubeconfig")
    p.add_argument("--writes", type=int, default=300)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--width", type=int, default=4)
    p.add_argument("--depth", type=int, default=5)
    args = p.parse_args()
    kubeconfig = args.kubeconfig or subprocess.run(
        ["bash", str(ROOT / "hack" / "cluster.sh"), "up", "hw-status-bench"], capture_output=True, text=True,
        check=True).stdout.strip().splitlines()[-1]
    try:
        cfg = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
        if "127.0.0.1" not in cfg.host and "localhost" not in cfg.host:
            raise SystemExit(f"refusing to benchmark a non-local API server: {cfg.host}")
        api = client.ApiClient(cfg)
        custom, ext = client.CustomObjectsApi(api), client.ApiextensionsV1Api(api)
        pid = apiserver_pid(cfg.host)
        spec = layered(args.width, args.depth)
        status = planning.start(PipelineRunSpec.model_validate({"pipelineRef": {"name": "layered"}}), spec,
                                datetime.now(UTC)).model_dump(by_alias=True, exclude_none=True, mode="json")
        measured: dict[str, list[tuple[float, float]]] = {label: [] for label in VARIANTS}
        for round_ in range(args.rounds):
            for label, make in VARIANTS.items():
                apply_crd(ext, make())
                wall, cpu = writes(custom, pid, f"status-bench-{uuid.uuid4().hex[:10]}", status, args.writes)
                measured[label].append((wall, cpu))
                log(f"round {round_ + 1}: {label}: {wall * 1000:.1f} ms, apiserver CPU {cpu * 1000:.1f} ms a write")
    finally:
        if not args.kubeconfig:
            subprocess.run(["bash", str(ROOT / "hack" / "cluster.sh"), "down", "hw-status-bench"],
                           capture_output=True, check=False)
    print(f"PipelineRun status writes, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
          f"{os.cpu_count()} CPUs; a {args.width}x{args.depth} layered snapshot ({args.width * args.depth} steps), "
          f"{args.writes} writes a round, {args.rounds} rounds, load average {os.getloadavg()[0]:.2f}\n")
    print("| CRD | wall time a write (median of rounds) | apiserver CPU a write (median of rounds) |")
    print("|---|---:|---:|")
    for label, rounds in measured.items():
        print(f"| {label} | {statistics.median(w for w, _ in rounds) * 1000:.1f} ms | "
              f"{statistics.median(u for _, u in rounds) * 1000:.1f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
