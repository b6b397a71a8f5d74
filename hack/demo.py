"""The Headwater demo: the revenue pipeline and its downstream report on the local control plane.

Run through ``make demo`` (hack/demo.sh), which sets everything up first.  Pods
run on kwok's simulated nodes, so each step's result (rows written) is supplied
through a pod annotation instead of by a real database.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
HACK = ROOT / "hack"
NAMESPACE = "headwater-demo"
ROWS = {"extract-orders": 48_210, "extract-payments": 47_980, "transform-revenue": 31, "aggregate-metrics": 12,
        "build-finance-report": 31, "refresh-dashboard": 1}


def say(message: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", flush=True)


def sh(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(args, input=input, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"command failed: {' '.join(args)}\n{proc.stderr}")
    return proc.stdout


class Kubectl:
    def __init__(self, kubeconfig: str) -> None:
        self.kubeconfig = kubeconfig
        tools = sh("bash", "-c", f"source {HACK}/versions.sh && k8s_bin_dir").strip()
        self.path = str(Path(tools) / "kubectl")

    def __call__(self, *args: str, input: str | None = None) -> str:
        return sh(self.path, "--kubeconfig", self.kubeconfig, *args, input=input)


def simulated(manifest: dict[str, Any]) -> dict[str, Any]:
    """The example with each step's simulated result, as the step would write it to its termination log."""
    for step in manifest.get("spec", {}).get("steps", []):
        result = {"rowsAffected": ROWS.get(step["id"], 100)}
        meta = step.setdefault("podMetadata", {})
        meta.setdefault("annotations", {})["headwater.dev/test-termination-message"] = json.dumps(result)
    return manifest


def load(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((ROOT / "examples" / name).read_text()) if d]


def wait_runs(kubectl: Kubectl, names: list[str], timeout: float = 300) -> None:
    deadline, last = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        runs = json.loads(kubectl("-n", NAMESPACE, "get", "pipelineruns", "-o", "json"))["items"]
        state = {r["metadata"]["name"]: (r.get("status") or {}) for r in runs if r["metadata"]["name"] in names}
        line = ", ".join(f"{n}: {s.get('phase', 'Pending')} {s.get('progress', '')}".strip()
                         for n, s in sorted(state.items()))
        if line != last:
            say(f"waiting: {line}")
            last = line
        if len(state) == len(names) and all(s.get("phase") in ("Succeeded", "Failed", "Cancelled")
                                            for s in state.values()):
            return
        time.sleep(1)
    raise SystemExit(f"runs did not finish within {timeout}s")


def start_operator(kubeconfig: str, log_path: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "KUBECONFIG": kubeconfig, "HEADWATER_METRICS_PORT": "0", "HEADWATER_API_PORT": "0"}
    with log_path.open("wb") as log:
        return subprocess.Popen([str(Path(sys.executable).parent / "headwater"), "operator", "-n", NAMESPACE],
                                env=env, stdout=log, stderr=subprocess.STDOUT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cluster", default="headwater-demo")
    args = parser.parse_args()
    say("starting the local control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok nodes)")
    kubeconfig = sh("bash", str(HACK / "cluster.sh"), "up", args.cluster).strip().splitlines()[-1]
    kubectl = Kubectl(kubeconfig)
    say("installing the Pipeline and PipelineRun CRDs")
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    kubectl("wait", "--for=condition=Established", "-f", str(ROOT / "crds"))
    kubectl("apply", "-f", "-", input=yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace",
                                                       "metadata": {"name": NAMESPACE}}))
    log_path = Path(os.environ.get("HEADWATER_CACHE", Path.home() / ".cache/headwater")) / "demo-operator.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    operator = start_operator(kubeconfig, log_path)
    say(f"operator started (pid {operator.pid}, log {log_path})")
    try:
        return _demo(kubectl)
    finally:
        operator.terminate()
        operator.wait(timeout=30)
        say(f"done. The cluster keeps running: export KUBECONFIG={kubeconfig}; "
            f"kubectl -n {NAMESPACE} get pipelines,pipelineruns; stop it with: bash hack/cluster.sh down {args.cluster}")


def _demo(kubectl: Kubectl) -> int:
    pipelines = [simulated(d) for d in load("revenue-pipeline.yaml") + load("revenue-reporting.yaml")]
    stamp = time.strftime("%Y%m%d%H%M%S")
    runs = [{"apiVersion": "headwater.dev/v1alpha1", "kind": "PipelineRun",
             "metadata": {"name": f"{p['metadata']['name']}-demo-{stamp}"},
             "spec": {"pipelineRef": {"name": p["metadata"]["name"]}}} for p in pipelines]
    say("applying the revenue pipeline and the revenue-reporting pipeline that consumes it")
    kubectl("-n", NAMESPACE, "apply", "-f", "-", input=yaml.safe_dump_all(pipelines))
    say("running the revenue pipeline")
    kubectl("-n", NAMESPACE, "create", "-f", "-", input=yaml.safe_dump(runs[0]))
    wait_runs(kubectl, [runs[0]["metadata"]["name"]])
    say("running revenue-reporting on the fresh revenue tables")
    kubectl("-n", NAMESPACE, "create", "-f", "-", input=yaml.safe_dump(runs[1]))
    wait_runs(kubectl, [runs[1]["metadata"]["name"]])
    print()
    print(kubectl("-n", NAMESPACE, "get", "pipelines,pipelineruns"))
    steps = kubectl("-n", NAMESPACE, "get", "pipelinerun", runs[0]["metadata"]["name"], "-o",
                    "jsonpath={range .status.steps[*]}{.name}{'\\t'}{.phase}{'\\t'}{.attempts}{'\\t'}"
                    "{.result.rowsAffected}{'\\n'}{end}")
    print("STEP\tPHASE\tATTEMPTS\tROWS\n" + steps)
    ok = all(json.loads(kubectl("-n", NAMESPACE, "get", "pipelinerun", r["metadata"]["name"], "-o", "json"))
             ["status"]["phase"] == "Succeeded" for r in runs)
    say("both runs succeeded" if ok else "a run did not succeed; see the operator log")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
