"""The chart's PrometheusRule and Grafana dashboard hold PromQL that Prometheus' own parser accepts.

promtool (Prometheus' tool, built from Go modules by hack/build-tools.sh) checks the rules as
they are, and every dashboard query wrapped as a recording rule.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import HACK
from test_chart import EVERYTHING, of_kind, one, render

pytestmark = pytest.mark.unit


def _promtool() -> Path:
    out = subprocess.run(["bash", "-c", f'source "{HACK}/versions.sh" && promtool_bin_dir'],
                         check=True, capture_output=True, text=True).stdout.strip()
    return Path(out) / "promtool"


def check_rules(groups: list[dict[str, Any]], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    promtool = _promtool()
    if not promtool.exists():
        pytest.skip(f"promtool is not built ({promtool} is missing): run hack/build-tools.sh")
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}))
    return subprocess.run([str(promtool), "check", "rules", str(path)], capture_output=True, text=True,
                          check=False, timeout=60)


def dashboard_queries() -> list[str]:
    config_map = one(render(*EVERYTHING), "ConfigMap", "hw-headwater-dashboard")
    dashboard = json.loads(next(iter(config_map["data"].values())))
    return [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", []) if t.get("expr")]


def test_the_alert_rules_parse_with_promtool(tmp_path: Path) -> None:
    [rule] = of_kind(render(*EVERYTHING), "PrometheusRule")
    groups = rule["spec"]["groups"]
    alerts = [r["alert"] for g in groups for r in g["rules"]]
    assert len(alerts) >= 4
    proc = check_rules(groups, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(alerts)} rules found" in proc.stdout


def test_every_dashboard_query_parses_with_promtool(tmp_path: Path) -> None:
    queries = dashboard_queries()
    assert len(queries) >= 6
    rules = [{"record": f"headwater:dashboard_query_{i}", "expr": q.replace("$__rate_interval", "5m")
              .replace("$__range", "1h").replace("$__interval", "1m")} for i, q in enumerate(queries)]
    proc = check_rules([{"name": "dashboard", "rules": rules}], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_broken_expression_is_refused(tmp_path: Path) -> None:
    proc = check_rules([{"name": "bad", "rules": [{"alert": "Bad", "expr": "sum(rate(x[5m])"}]}], tmp_path)
    assert proc.returncode != 0
