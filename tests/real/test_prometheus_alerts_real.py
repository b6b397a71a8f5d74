"""Prometheus as users run it: a Prometheus server scrapes the in-cluster operator and evaluates the chart's alerts.

The server runs on this machine (built from its Go module by ``hack/build-tools.sh --prometheus``) and
scrapes the operator's /metrics through the metrics Service's cluster IP (kube-proxy's rules on the node).
Its rules are the chart's PrometheusRule groups as ``helm template`` renders them, with `for:` shortened
through the chart's values so that the test does not wait five minutes. What Prometheus did is read back
from its own HTTP API: the target's scrapes (/api/v1/targets), the series (/api/v1/query) and the alerts
going from pending to firing (/api/v1/alerts).
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import HACK, wait_for
from real_support import CHART, Release, free_port, hack_value, manifest, sh, wait_run

pytestmark = [pytest.mark.real, pytest.mark.timeout(2700)]

STALE_FOR = "15s"
FAILING_FOR = "10s"
MAX_AGE_SECONDS = 60
SCRAPE = "2s"
JOB = "headwater-metrics"


@pytest.fixture(scope="session")
def prometheus_binary() -> Path:
    """The Prometheus server, built once per version (about 10 minutes of CPU the first time)."""
    proc = subprocess.run(["bash", str(HACK / "build-tools.sh"), "--prometheus"], capture_output=True, text=True,
                          check=False, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return Path(hack_value('"$(prometheus_bin_dir)"')) / "prometheus"


def chart_rule_groups(release: Release) -> list[dict[str, Any]]:
    """The chart's PrometheusRule groups, rendered with the release's values and short `for:` durations."""
    helm = Path(hack_value('"$(helm_bin_dir)"')) / "helm"
    out = sh(str(helm), "template", release.name, str(CHART), "--namespace", release.namespace,
             "-f", str(release.values_file), "--set", "postgresql.password=unused-by-this-test",
             "--set", "metrics.prometheusRule.enabled=true",
             "--set", f"metrics.prometheusRule.for.datasetStale={STALE_FOR}",
             "--set", f"metrics.prometheusRule.for.runsFailing={FAILING_FOR}")
    [rule] = [d for d in manifest(out) if d["kind"] == "PrometheusRule"]
    groups: list[dict[str, Any]] = rule["spec"]["groups"]
    return groups


def http_get(url: str) -> tuple[int, bytes]:
    """Status and body; an HTTP error is an answer too (and its connection is closed, not left to the GC)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


@dataclass
class Prometheus:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    states: dict[str, list[tuple[float, str]]] = field(default_factory=dict)

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        status, raw = http_get(f"{self.url}/api/v1/{path}{query}")
        body = json.loads(raw)
        assert status == 200 and body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.api("query", query=expr)["result"]
        return result

    def alerts(self, name: str, **labels: str) -> list[dict[str, Any]]:
        return [a for a in self.api("alerts")["alerts"] if a["labels"].get("alertname") == name
                and all(a["labels"].get(k) == v for k, v in labels.items())]


@pytest.fixture(scope="module")
def prometheus(release: Release, prometheus_binary: Path, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Prometheus]:
    service = release.real.get("service", f"{release.name}-metrics", release.namespace)
    target = f"{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}"
    home = tmp_path_factory.mktemp("prometheus")
    (home / "rules.yaml").write_text(yaml.safe_dump({"groups": chart_rule_groups(release)}))
    (home / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": SCRAPE, "scrape_timeout": "1s", "evaluation_interval": SCRAPE},
        "rule_files": ["rules.yaml"],
        "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [target]}]}],
    }))
    port = free_port()
    log = home / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(prometheus_binary), f"--config.file={home / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={home / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=out, stderr=subprocess.STDOUT, cwd=home)
    server = Prometheus(f"http://127.0.0.1:{port}", proc, log)
    try:
        def ready() -> bool:
            assert proc.poll() is None, f"prometheus exited: {log.read_text()[-3000:]}"
            return http_get(f"{server.url}/-/ready")[0] == 200
        wait_for(ready, timeout=60, message="Prometheus to be ready")
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def watch_alert(prom: Prometheus, name: str, labels: dict[str, str], timeout: float
                ) -> tuple[float | None, float]:
    """Poll /api/v1/alerts until the alert fires; (first time seen pending, time seen firing), wall clock."""
    pending: float | None = None

    def firing() -> float | None:
        nonlocal pending
        states = {a["state"] for a in prom.alerts(name, **labels)}
        now = time.time()
        if "pending" in states and pending is None:
            pending = now
        return now if "firing" in states else None

    fired = wait_for(firing, timeout=timeout, interval=0.5, message=f"{name} {labels} to fire in Prometheus")
    return pending, fired


def apply(release: Release, namespace: str, *objects: dict[str, Any]) -> None:
    release.real.kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump_all(objects))


def pipeline(name: str, step: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "headwater.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": name},
            "spec": {"steps": [step]}}


def run(pipeline_name: str) -> dict[str, Any]:
    return {"apiVersion": "headwater.dev/v1alpha1", "kind": "PipelineRun", "metadata": {"name": f"{pipeline_name}-1"},
            "spec": {"pipelineRef": {"name": pipeline_name}, "trigger": "manual"}}


def test_prometheus_scrapes_the_in_cluster_operator_through_its_service(prometheus: Prometheus,
                                                                       release: Release) -> None:
    def scraped() -> dict[str, Any] | None:
        targets = [t for t in prometheus.api("targets")["activeTargets"] if t["labels"]["job"] == JOB]
        return targets[0] if targets and targets[0]["health"] == "up" else None

    target = wait_for(scraped, timeout=60, message="Prometheus' first successful scrape of the operator")
    assert target["lastError"] == ""
    # What the server stored came from the operator: its own metrics, and up == 1.
    assert [float(s["value"][1]) for s in prometheus.query(f'up{{job="{JOB}"}}')] == [1.0]
    names = prometheus.query(f'count by (__name__) ({{job="{JOB}", __name__=~"headwater_.+"}})')
    assert {"headwater_reconcile_errors_total", "headwater_lineage_backlog"} <= {s["metric"]["__name__"] for s in names}
    # Every group of the chart is loaded and evaluated, with no rule in error.
    rule_groups = prometheus.api("rules")["groups"]
    rules = [r for g in rule_groups for r in g["rules"]]
    chart_alerts = sorted(r["alert"] for g in chart_rule_groups(release) for r in g["rules"])
    assert len(chart_alerts) >= 7  # HeadwaterNoLeader among them
    assert sorted(r["name"] for r in rules) == chart_alerts and all(r["health"] == "ok" for r in rules), rules
    # Before the first scrape absent(up) holds and the alert may be pending: it goes once the target is up.
    wait_for(lambda: not prometheus.alerts("HeadwaterOperatorDown"), timeout=30,
             message="HeadwaterOperatorDown to clear once the operator is scraped")


def test_a_dataset_past_its_freshness_deadline_fires_the_stale_alert_in_prometheus(
        prometheus: Prometheus, release: Release, namespace: str) -> None:
    dataset = f"fresh-{namespace}"
    step = {"id": "load", "type": "container", "image": release.images["headwater"], "command": ["true"],
            "outputs": [{"namespace": "s3://lake", "name": dataset,
                         "freshness": {"maxAge": f"{MAX_AGE_SECONDS}s"}}]}
    apply(release, namespace, pipeline("fresh", step), run("fresh"))
    assert wait_run(release.real, namespace, "fresh-1")["status"]["phase"] == "Succeeded"

    def written() -> str | None:
        status = release.real.get("pipeline", "fresh", namespace).get("status") or {}
        [entry] = [d for d in status.get("datasets", []) if d["name"] == dataset]
        return entry.get("lastUpdated") if not entry.get("stale") else None

    last_updated = wait_for(written, timeout=60, message="the dataset's lastUpdated, fresh")
    deadline = datetime.fromisoformat(last_updated.replace("Z", "+00:00")).timestamp() + MAX_AGE_SECONDS
    label = f"s3://lake/{dataset}"
    assert time.time() < deadline, "the run's status came after the deadline: nothing left to measure"
    # Fresh in Prometheus before the deadline, and the alert of the dataset never written yet (pending while
    # the first run ran) gone: what follows is about the deadline.
    def fresh_in_prometheus() -> bool:
        return bool(prometheus.query(f'headwater_dataset_stale{{dataset="{label}"}} == 0')) and \
            not prometheus.alerts("HeadwaterDatasetStale", dataset=label)

    wait_for(fresh_in_prometheus, timeout=max(deadline - time.time() - 5, 1),
             message="Prometheus to see the dataset fresh and its alert gone")

    pending, fired = watch_alert(prometheus, "HeadwaterDatasetStale", {"dataset": label},
                                 timeout=MAX_AGE_SECONDS + 120)
    assert pending is not None and pending < fired, "the alert was never seen pending"
    assert pending >= deadline - 1
    [alert] = prometheus.alerts("HeadwaterDatasetStale", dataset=label)
    assert alert["labels"]["severity"] == "warning"
    assert dataset in alert["annotations"]["summary"]
    print(f"\nHeadwaterDatasetStale: deadline -> pending {pending - deadline:.1f} s, "
          f"deadline -> firing {fired - deadline:.1f} s (for: {STALE_FOR}, scrape and evaluation every {SCRAPE}, "
          f"freshness checked every 5 s)")


def test_a_failed_step_fires_the_failing_runs_alert_in_prometheus(
        prometheus: Prometheus, release: Release, namespace: str) -> None:
    name = f"failing-{namespace}"
    step = {"id": "fetch", "type": "container", "image": release.images["headwater"], "command": ["false"],
            "retries": 0}
    apply(release, namespace, pipeline(name, step))
    # The pipeline's failed-runs counter is there at 0 before its first failure, or increase() sees none.
    wait_for(lambda: prometheus.query(f'headwater_runs_total{{pipeline="{name}", phase="Failed"}} == 0'),
             timeout=60, message="Prometheus to see the pipeline's failed-runs counter at 0")
    apply(release, namespace, run(name))
    finished = wait_run(release.real, namespace, f"{name}-1")
    assert finished["status"]["phase"] == "Failed"
    failed_at = datetime.fromisoformat(finished["status"]["finishedAt"].replace("Z", "+00:00")).timestamp()

    pending, fired = watch_alert(prometheus, "HeadwaterRunsFailing", {"pipeline": name}, timeout=120)
    assert pending is not None and pending < fired, "the alert was never seen pending"
    [alert] = prometheus.alerts("HeadwaterRunsFailing", pipeline=name)
    assert name in alert["annotations"]["summary"]
    print(f"\nHeadwaterRunsFailing: run failed -> firing {fired - failed_at:.1f} s (for: {FAILING_FOR})")
