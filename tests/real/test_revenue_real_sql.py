"""The revenue example (examples/revenue-pipeline.yaml) with real SQL in real pods against the bundled PostgreSQL.

The example reads production orders and Stripe payments; here a setup step first creates its tables (and a
few production orders) in the chart's PostgreSQL, and the Stripe extract is a small Python program in the
Headwater image that copies the orders' payments. Everything else is the example as it is.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import ROOT, wait_for
from real_support import Release, bundled_database, port_forward, step_pods, steps_by_name, wait_run

# The first test also waits for the node to come up, which on a fresh machine builds kubelet, kube-proxy,
# CoreDNS and the images (about 15-20 minutes on 2 cores): more than the default per-test timeout.
pytestmark = [pytest.mark.real, pytest.mark.timeout(2700)]

SETUP_SQL = """
CREATE SCHEMA IF NOT EXISTS production_public;
CREATE SCHEMA IF NOT EXISTS raw;
CREATE SCHEMA IF NOT EXISTS analytics;
CREATE TABLE IF NOT EXISTS production_public.orders (
  id bigint PRIMARY KEY, customer_id bigint, amount_cents bigint, currency text, status text, created_at timestamptz);
CREATE TABLE IF NOT EXISTS raw.orders (
  order_id bigint PRIMARY KEY, customer_id bigint, amount_cents bigint, currency text, status text,
  created_at timestamptz);
CREATE TABLE IF NOT EXISTS raw.stripe_payments (
  payment_id text PRIMARY KEY, order_id bigint, amount_cents bigint, refunded_cents bigint, status text);
CREATE TABLE IF NOT EXISTS analytics.daily_revenue (
  day date, currency text, gross_cents bigint, refunded_cents bigint, net_cents bigint, orders bigint,
  PRIMARY KEY (day, currency));
CREATE MATERIALIZED VIEW IF NOT EXISTS analytics.business_metrics AS
  SELECT currency, sum(net_cents) AS net_cents, sum(orders) AS orders FROM analytics.daily_revenue GROUP BY currency;
CREATE UNIQUE INDEX IF NOT EXISTS business_metrics_currency ON analytics.business_metrics (currency);
INSERT INTO production_public.orders
  SELECT g, 100 + g, 1000 * g, CASE WHEN g % 2 = 0 THEN 'EUR' ELSE 'USD' END, 'paid', now()
  FROM generate_series(1, 6) g
  ON CONFLICT (id) DO UPDATE SET created_at = EXCLUDED.created_at;
"""

# The Stripe extract's stand-in: one payment per production order, the first one partly refunded.
PAYMENTS = """
import json, os, psycopg
with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
    cur = conn.execute(
        "INSERT INTO raw.stripe_payments "
        "SELECT 'pi_' || id, id, amount_cents, CASE WHEN id = 1 THEN 100 ELSE 0 END, 'succeeded' "
        "FROM production_public.orders ON CONFLICT (payment_id) DO UPDATE SET status = EXCLUDED.status")
    rows = cur.rowcount
with open("/dev/termination-log", "w") as log:
    json.dump({"rowsAffected": rows}, log)
"""


def revenue_pipeline(image: str) -> dict[str, Any]:
    """examples/revenue-pipeline.yaml, on demand, with the setup step and the Stripe extract's stand-in."""
    pipeline: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "revenue-pipeline.yaml").read_text())
    spec = pipeline["spec"]
    for key in ("schedule", "timeZone", "startingDeadlineSeconds"):
        spec.pop(key, None)
    steps = {s["id"]: s for s in spec["steps"]}
    payments = steps["extract-payments"]
    payments.update(image=image, command=["python", "-c", PAYMENTS], args=[])
    payments.pop("resources", None)
    for step in (steps["extract-orders"], payments):
        step["dependsOn"] = ["setup-warehouse"]
    setup = {"id": "setup-warehouse", "name": "Create the warehouse's tables", "type": "sql",
             "connectionSecretRef": {"name": "warehouse-db", "key": "url"}, "sql": SETUP_SQL, "retries": 0}
    spec["steps"] = [setup, *spec["steps"]]
    return pipeline


def test_revenue_pipeline_runs_real_sql_to_succeeded_and_records_lineage(release: Release, namespace: str) -> None:
    real = release.real
    image = release.images["headwater"]
    real.kubectl("-n", namespace, "create", "secret", "generic", "stripe", "--from-literal=api-key=sk_test_local")
    real.kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump(revenue_pipeline(image)))
    run_manifest = yaml.safe_load((ROOT / "examples" / "manual-run.yaml").read_text())
    real.kubectl("-n", namespace, "create", "-f", "-", input=yaml.safe_dump(run_manifest))
    run_name = run_manifest["metadata"]["name"]

    run = wait_run(real, namespace, run_name)
    steps = steps_by_name(run)
    assert run["status"]["phase"] == "Succeeded", json.dumps(run["status"], indent=2)
    # Row counts come from the steps' own termination messages: the database's counts.
    assert steps["extract-orders"]["result"]["rowsAffected"] == 6
    assert steps["extract-payments"]["result"] == {"rowsAffected": 6}
    assert steps["transform-revenue"]["result"]["rowsAffected"] == 2  # one row per currency
    assert "rowsAffected" in steps["aggregate-metrics"]["result"]
    for pod in step_pods(real, namespace, run_name):
        assert pod["spec"]["nodeName"] == real.node_name
        assert pod["spec"]["containers"][0]["image"] == image

    with bundled_database(release) as conn:
        revenue = dict(conn.execute("SELECT currency, net_cents FROM analytics.daily_revenue "
                                    "WHERE day = current_date").fetchall())
        metrics = dict(conn.execute("SELECT currency, orders FROM analytics.business_metrics").fetchall())
    assert revenue == {"EUR": 2000 + 4000 + 6000, "USD": 1000 + 3000 + 5000 - 100}
    assert metrics == {"EUR": 3, "USD": 3}

    # The lineage the operator recorded, explained by the CLI from the in-cluster API, with the read token
    # the chart generated (the API answers 401 without it).
    secrets = json.loads(real.kubectl("-n", release.namespace, "get", "secrets", "-o", "json").stdout)["items"]
    [tokens] = [s for s in secrets if s["metadata"]["name"].endswith("-api-token")]
    reader = {**os.environ, "HEADWATER_API_TOKEN": base64.b64decode(tokens["data"]["read-token"]).decode()}
    with port_forward(real, release.namespace, f"svc/{release.name}-api", 8080) as port:
        def explained() -> dict[str, Any] | None:
            proc = subprocess.run(
                [str(Path(sys.executable).parent / "headwater"), "lineage", "explain", "analytics.daily_revenue",
                 "--api", f"http://127.0.0.1:{port}", "-o", "json"],
                capture_output=True, text=True, check=False, timeout=60, env=reader)
            if proc.returncode != 0:
                return None
            answer: dict[str, Any] = json.loads(proc.stdout)
            return answer if "raw.stripe_payments" in proc.stdout else None
        explanation = wait_for(explained, timeout=90, interval=2, message="the lineage of analytics.daily_revenue")
        tree = subprocess.run(
            [str(Path(sys.executable).parent / "headwater"), "lineage", "explain", "analytics.daily_revenue",
             "--api", f"http://127.0.0.1:{port}"], capture_output=True, text=True, check=True, timeout=60,
            env=reader).stdout
    names = json.dumps(explanation)
    for upstream in ("raw.orders", "raw.stripe_payments", "public.orders"):
        assert upstream in names, names
    assert tree.startswith("Why might postgres://warehouse/analytics.daily_revenue be wrong?"), tree
