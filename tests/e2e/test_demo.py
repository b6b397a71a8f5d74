"""The README's demo runs green end to end, and leaves every metric the alerts and dashboard use on /metrics."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT, Cluster, fresh_database

pytestmark = pytest.mark.e2e


def chart_metric_names() -> list[str]:
    """The metric names the chart's PrometheusRule and dashboard are built from (_metrics.tpl)."""
    text = (ROOT / "charts/headwater/templates/_metrics.tpl").read_text()
    block = text.split('{{- define "headwater.metrics" -}}')[1].split("{{- end }}")[0]
    return re.findall(r":\s*(headwater_\w+)", block)


@pytest.mark.timeout(1200)  # above the 900 s bound on the demo itself, so that one speaks first
def test_the_demo_traces_explains_and_alerts_and_exposes_every_metric_the_chart_uses(
        cluster: Cluster, database_url: str, tmp_path: Path) -> None:
    metrics_file = tmp_path / "metrics.txt"
    with fresh_database(database_url) as url:
        proc = subprocess.run(
            [sys.executable, str(ROOT / "hack/demo.py"), "--kubeconfig", cluster.kubeconfig,
             "--database-url", url, "--metrics-out", str(metrics_file)],
            capture_output=True, text=True, timeout=900, check=False)
    out = proc.stdout
    assert proc.returncode == 0, out[-6000:] + proc.stderr[-3000:]
    assert "└── postgres://warehouse/analytics.daily_revenue  <- revenue/aggregate-metrics" in out
    assert "explain points at raw.stripe_payments (extract-payments) first" in out
    day2 = out.split("day 2:")[1].split("day 3:")[0]
    assert "extract-payments\tFailed\tCheckFailed" in day2 and "aggregate-metrics\tSkipped\tCheckFailed" in day2
    assert "check no-drop (change, error) on postgres://warehouse/raw.stripe_payments failed: 28788 rows, " \
           "40.0% below" in day2
    assert "Owners: data-team@company.com, finance-analytics@company.com" in day2
    assert "analytics.business_metrics keeps yesterday's good version" in day2
    assert "revenue/extract-payments failed in run" in out
    assert "Stripe API: 401 Unauthorized (invalid API key) (BackoffLimitExceeded" in out.split("day 3:")[1]
    assert "postgres://warehouse/reporting.finance_daily" in out.split("datasets at risk")[-1]
    exposed = {line.split("{")[0].split(" ")[0] for line in metrics_file.read_text().splitlines()
               if line and not line.startswith("#")}
    names = chart_metric_names()
    assert len(names) == 16
    missing = [n for n in names if not any(e == n or e.startswith(f"{n}_") for e in exposed)]
    assert missing == []
