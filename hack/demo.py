"""The Headwater demo: the revenue pipeline and its downstream report on the local control plane.

Run through ``make demo`` (hack/demo.sh), which sets everything up first.  Pods
run on kwok's simulated nodes, so each step's result (rows written) is supplied
through a pod annotation instead of by a real database.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
HACK = ROOT / "hack"
NAMESPACE = "headwater-demo"
DEMO_READ_TOKEN = secrets.token_urlsafe(24)  # the API needs tokens; the demo makes its own
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


def simulated(manifest: dict[str, Any], rows: dict[str, int] | None = None,
              errors: dict[str, str] | None = None) -> dict[str, Any]:
    """The example with each step's simulated result, as the step would write it to its termination log
    (``errors``: the error a failing step reports instead)."""
    for step in manifest.get("spec", {}).get("steps", []):
        result: dict[str, Any] = {"rowsAffected": {**ROWS, **(rows or {})}.get(step["id"], 100)}
        if step["id"] in (errors or {}):
            result = {"error": (errors or {})[step["id"]]}
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class AlertInbox(ThreadingHTTPServer):
    """A local webhook that stands in for Slack: it keeps the messages the operator sends.

    On loopback by default; the real-node demo listens on the node's address, which in-cluster pods reach."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.messages: list[dict[str, Any]] = []
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                inbox.messages.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_: object) -> None:
                return

        super().__init__((host, 0), Handler)
        self.url = f"http://{host}:{self.server_address[1]}/slack"
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()


def start_operator(kubeconfig: str, log_path: Path, database_url: str, api_port: int,
                   metrics_port: int, alert_url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "KUBECONFIG": kubeconfig, "HEADWATER_DATABASE_URL": database_url,
           "HEADWATER_API_HOST": "127.0.0.1", "HEADWATER_API_PORT": str(api_port),
           "HEADWATER_API_TOKEN": DEMO_READ_TOKEN, "HEADWATER_API_WRITE_TOKEN": secrets.token_urlsafe(24),
           "HEADWATER_METRICS_PORT": str(metrics_port), "HEADWATER_RECORD_RESCAN_SECONDS": "2",
           "HEADWATER_ALERT_WEBHOOK_URL": alert_url, "HEADWATER_FRESHNESS_INTERVAL_SECONDS": "2"}
    with log_path.open("wb") as log:
        return subprocess.Popen([str(Path(sys.executable).parent / "headwater"), "operator", "-n", NAMESPACE],
                                env=env, stdout=log, stderr=subprocess.STDOUT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cluster", default="headwater-demo", help="name of the local cluster to start or reuse")
    parser.add_argument("--kubeconfig", default=None, help="use this cluster instead of starting one")
    parser.add_argument("--database-url", default=None, help="use this PostgreSQL instead of starting one")
    parser.add_argument("--metrics-out", default=None, help="write the operator's /metrics here at the end")
    parser.add_argument("--keep-running", action="store_true",
                        help="keep the operator (and so the web UI) running at the end, until Ctrl-C")
    args = parser.parse_args()
    kubeconfig = args.kubeconfig
    if kubeconfig is None:
        say("starting the local control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok nodes)")
        kubeconfig = sh("bash", str(HACK / "cluster.sh"), "up", args.cluster).strip().splitlines()[-1]
    kubectl = Kubectl(kubeconfig)
    say("installing the Pipeline and PipelineRun CRDs")
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    kubectl("wait", "--for=condition=Established", "-f", str(ROOT / "crds"))
    kubectl("apply", "-f", "-", input=yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace",
                                                       "metadata": {"name": NAMESPACE}}))
    cache = Path(os.environ.get("HEADWATER_CACHE", Path.home() / ".cache/headwater"))
    cache.mkdir(parents=True, exist_ok=True)
    pg_dir = Path(tempfile.gettempdir()) / "headwater-demo-postgres"  # the server may run as 'postgres'
    database_url = args.database_url
    if database_url is None:
        say("starting PostgreSQL for the lineage store")
        database_url = sh("bash", str(HACK / "postgres.sh"), "start", str(pg_dir)).strip()
    api, metrics_port, alerts = f"http://127.0.0.1:{free_port()}", free_port(), AlertInbox()
    log_path = cache / "demo-operator.log"
    operator = start_operator(kubeconfig, log_path, database_url, int(api.rsplit(":", 1)[1]), metrics_port,
                              alerts.url)
    say(f"operator started (pid {operator.pid}, log {log_path}), lineage API on {api}")
    try:
        code = _demo(kubectl, api, alerts)
        code = code or _break_a_source(kubectl, alerts)
        if args.metrics_out:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
                Path(args.metrics_out).write_bytes(response.read())
        _show_ui(api, database_url, keep_running=args.keep_running)
        return code
    finally:
        alerts.close()
        operator.terminate()
        operator.wait(timeout=30)
        say(f"done. The cluster keeps running: export KUBECONFIG={kubeconfig}; kubectl -n {NAMESPACE} get "
            f"pipelines,pipelineruns. Stop it: bash hack/cluster.sh down {args.cluster}; "
            f"bash hack/postgres.sh destroy {pg_dir}")


def _show_ui(api: str, database_url: str, *, keep_running: bool) -> None:
    """Where to see it all in a browser: the web UI the operator's API serves (sign in with the read token)."""
    say(f"the web UI: {api}/ui/ (sign in with the read token {DEMO_READ_TOKEN}); try "
        f"{api}/ui/#/dataset?name=analytics.business_metrics and its Explain button")
    if keep_running:
        say("the operator and the web UI keep running; Ctrl-C stops them")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return
    say(f"the operator stops now; to browse the same data later: HEADWATER_API_TOKEN={DEMO_READ_TOKEN} "
        f".venv/bin/headwater api --database-url '{database_url}' --port 8080, then open "
        "http://127.0.0.1:8080/ui/ (or run the demo with --keep-running)")


def headwater(*args: str) -> str:
    return sh(str(Path(sys.executable).parent / "headwater"), *args,
              env={**os.environ, "HEADWATER_API_TOKEN": DEMO_READ_TOKEN})


def wait_recorded(kubectl: Kubectl, name: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = json.loads(kubectl("-n", NAMESPACE, "get", "pipelinerun", name, "-o", "json")).get("status", {})
        if any(c["type"] == "Recorded" and c["status"] == "True" for c in status.get("conditions", [])):
            return
        time.sleep(0.5)
    raise SystemExit(f"{name} was not recorded in the lineage store within {timeout}s")


def run_once(kubectl: Kubectl, pipeline: str, suffix: str) -> str:
    name = f"{pipeline}-{suffix}-{time.strftime('%H%M%S')}"
    body = {"apiVersion": "headwater.dev/v1alpha1", "kind": "PipelineRun", "metadata": {"name": name},
            "spec": {"pipelineRef": {"name": pipeline}}}
    kubectl("-n", NAMESPACE, "create", "-f", "-", input=yaml.safe_dump(body))
    wait_runs(kubectl, [name])
    wait_recorded(kubectl, name)
    return name


def wait_alerts(alerts: AlertInbox, count: int, timeout: float = 120) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while len(alerts.messages) < count and time.monotonic() < deadline:
        time.sleep(0.5)
    return alerts.messages


def last_updated(kubectl: Kubectl, pipeline: str, dataset: str) -> str:
    return kubectl("-n", NAMESPACE, "get", "pipeline", pipeline, "-o",
                   f"jsonpath={{.status.datasets[?(@.name=='{dataset}')].lastUpdated}}").strip()


def reporting_runs(kubectl: Kubectl) -> set[str]:
    runs = json.loads(kubectl("-n", NAMESPACE, "get", "pipelineruns", "-l",
                              "headwater.dev/pipeline=revenue-reporting,headwater.dev/trigger=dataset", "-o", "json"))
    return {r["metadata"]["name"] for r in runs["items"]}


def triggered_once(kubectl: Kubectl, before: set[str], timeout: float = 120) -> str:
    """The run the dataset trigger created after ``before``, once it has finished and been recorded."""
    deadline = time.monotonic() + timeout
    while not (new := reporting_runs(kubectl) - before):
        if time.monotonic() > deadline:
            raise SystemExit(f"revenue-reporting was not triggered within {timeout}s")
        time.sleep(0.3)
    name = sorted(new)[0]
    versions = kubectl("-n", NAMESPACE, "get", "pipelinerun", name, "-o",
                       "jsonpath={range .spec.triggeredBy[*]}{.name}#{.version} {end}")
    say(f"revenue's new data triggered {name} (versions {versions.strip()})")
    wait_runs(kubectl, [name])
    wait_recorded(kubectl, name)
    return name


def _demo(kubectl: Kubectl, api: str, alerts: AlertInbox) -> int:
    revenue, reporting = load("revenue-pipeline.yaml")[0], load("revenue-reporting.yaml")[0]
    say("applying the revenue pipeline and the revenue-reporting pipeline, triggered by revenue's new data")
    kubectl("-n", NAMESPACE, "apply", "-f", "-", input=yaml.safe_dump_all([simulated(revenue), simulated(reporting)]))
    say("day 1: running revenue; its new tables trigger revenue-reporting")
    before = reporting_runs(kubectl)
    first = run_once(kubectl, "revenue", "day1")
    triggered_once(kubectl, before)
    print()
    print(kubectl("-n", NAMESPACE, "get", "pipelines,pipelineruns"))
    steps = kubectl("-n", NAMESPACE, "get", "pipelinerun", first, "-o",
                    "jsonpath={range .status.steps[*]}{.name}{'\\t'}{.phase}{'\\t'}{.attempts}{'\\t'}"
                    "{.result.rowsAffected}{'\\n'}{end}")
    print("STEP\tPHASE\tATTEMPTS\tROWS\n" + steps)
    say("where does analytics.business_metrics come from?  headwater lineage upstream analytics.business_metrics")
    print(headwater("lineage", "upstream", "analytics.business_metrics", "--api", api))
    good = last_updated(kubectl, "revenue", "analytics.business_metrics")
    say("day 2: Stripe's API changed its pagination; extract-payments quietly writes 40% fewer rows")
    fewer = round(ROWS["extract-payments"] * 0.6)
    kubectl("-n", NAMESPACE, "apply", "-f", "-",
            input=yaml.safe_dump(simulated(load("revenue-pipeline.yaml")[0], {"extract-payments": fewer})))
    before = reporting_runs(kubectl)
    second = run_once(kubectl, "revenue", "day2")
    steps = kubectl("-n", NAMESPACE, "get", "pipelinerun", second, "-o",
                    "jsonpath={range .status.steps[*]}{.name}{'\\t'}{.phase}{'\\t'}{.reason}{'\\n'}{end}")
    print("STEP\tPHASE\tREASON\n" + steps)
    say("the extract's check held the version back: nothing downstream ran on it; the alert every owner got:")
    messages = wait_alerts(alerts, 1)
    if len(messages) != 1 or "no-drop" not in messages[0]["incident"]["cause"]:
        say(f"expected one alert naming the check no-drop, received {len(messages)}")
        return 1
    print(messages[0]["text"] + "\n")
    kept = last_updated(kubectl, "revenue", "analytics.business_metrics")
    say(f"analytics.business_metrics keeps yesterday's good version (written {kept})" if kept == good
        else f"analytics.business_metrics moved from {good} to {kept}")
    if kept != good:
        return 1
    triggered = reporting_runs(kubectl) - before
    say("its inputs got no new published version, so revenue-reporting was not triggered" if not triggered
        else f"revenue-reporting was triggered by held-back data: {sorted(triggered)}")
    if triggered:
        return 1
    say("why is the dashboard not updated?  headwater lineage explain analytics.business_metrics")
    explanation = headwater("lineage", "explain", "analytics.business_metrics", "--api", api)
    print(explanation)
    found = "raw.stripe_payments" in explanation.splitlines()[1] if len(explanation.splitlines()) > 1 else False
    say("explain points at raw.stripe_payments (extract-payments) first" if found
        else "explain did not point at raw.stripe_payments first")
    return 0 if found else 1


def _break_a_source(kubectl: Kubectl, alerts: AlertInbox) -> int:
    say("day 3: the Stripe API key was rotated; extract-payments fails (retries set to 0 for the demo)")
    broken = simulated(load("revenue-pipeline.yaml")[0],
                       errors={"extract-payments": "Stripe API: 401 Unauthorized (invalid API key)"})
    before = len(alerts.messages)
    for step in broken["spec"]["steps"]:
        if step["id"] == "extract-payments":
            step["retries"] = 0
            step["podMetadata"].setdefault("labels", {})["headwater.dev/test-fail"] = "true"
    kubectl("-n", NAMESPACE, "apply", "-f", "-", input=yaml.safe_dump(broken))
    run_once(kubectl, "revenue", "day3")
    messages = wait_alerts(alerts, before + 1)[before:]
    if len(messages) != 1:
        say(f"expected one grouped alert, received {len(messages)}")
        return 1
    say("the alert every downstream owner received at once:")
    print(messages[0]["text"] + "\n")
    # the alert is sent before the Pipelines' status is marked: wait for the datasets it names
    named = {f"{d['namespace']}/{d['name']}" for d in messages[0]["incident"]["affectedDatasets"]}
    at_risk = "{range .items[*]}{range .status.datasets[?(@.atRisk)]}{.namespace}/{.name}{'\\n'}{end}{end}"
    deadline, shown = time.monotonic() + 120, ""
    while not named <= set(shown.split()):
        if time.monotonic() > deadline:
            say(f"the Pipelines' status does not mark every dataset the alert named: {sorted(named)}")
            return 1
        time.sleep(0.5)
        shown = kubectl("-n", NAMESPACE, "get", "pipelines", "-o", f"jsonpath={at_risk}")
    say("datasets at risk, as the Pipelines' status shows them:")
    print(shown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
