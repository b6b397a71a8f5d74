"""The Headwater demo on a real node: the same story as hack/demo.py, with real SQL in real containers.

Run through ``make demo REAL=1`` (as root). The local cluster gets a real node (hack/cluster.sh up
--real-node); the Headwater image is built from the Dockerfile and PostgreSQL's from Debian
(hack/images.sh) and loaded into the node; the chart is installed with Helm, its bundled PostgreSQL
serving as both the lineage store and the warehouse. The examples run as written except where they
reach the outside world: a setup step creates the warehouse's tables and yesterday's production orders,
and the Stripe extract, the S3 export and the dashboard refresh are small Python programs in the
Headwater image. Day 2 the Stripe extract writes 40 % fewer rows and its check holds them back; day 3 it fails.
"""

from __future__ import annotations

import argparse
import base64
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from demo import HACK, NAMESPACE, ROOT, AlertInbox, Kubectl, load, say, sh, wait_recorded, wait_runs

RELEASE, RELEASE_NAMESPACE = "headwater", "headwater-system"
ORDERS = 480

SETUP_SQL = f"""
CREATE SCHEMA IF NOT EXISTS production_public;
CREATE SCHEMA IF NOT EXISTS raw;
CREATE SCHEMA IF NOT EXISTS analytics;
CREATE SCHEMA IF NOT EXISTS reporting;
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
  SELECT day, sum(orders) AS active_customers, sum(gross_cents) / greatest(sum(orders), 1) AS average_order_cents
  FROM analytics.daily_revenue GROUP BY day;
CREATE UNIQUE INDEX IF NOT EXISTS business_metrics_day ON analytics.business_metrics (day);
CREATE TABLE IF NOT EXISTS reporting.finance_daily (
  day date, currency text, net_cents bigint, active_customers bigint, average_order_cents bigint,
  PRIMARY KEY (day, currency));
INSERT INTO production_public.orders
  SELECT g, 1000 + g % 97, 500 + (g * 37) % 9000, CASE WHEN g % 3 = 0 THEN 'USD' ELSE 'EUR' END, 'paid',
         current_date - 1 + time '12:00'
  FROM generate_series(1, {ORDERS}) g
  ON CONFLICT (id) DO NOTHING;
"""

# Stripe's extract: one payment per order; PAYMENTS_SHARE < 1 drops the rest (day 2's pagination bug).
PAYMENTS = """
import json, os, sys, psycopg
if os.environ.get("STRIPE_API_KEY") == "rotated":
    with open("/dev/termination-log", "w") as log:
        json.dump({"error": "Stripe answered 401: Invalid API Key provided"}, log)
    sys.exit(1)
share = float(os.environ.get("PAYMENTS_SHARE", "1"))
with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
    cur = conn.execute(
        "INSERT INTO raw.stripe_payments "
        "SELECT 'pi_' || id, id, amount_cents, CASE WHEN mod(id, 10) = 0 THEN amount_cents / 4 ELSE 0 END, 'succeeded' "
        "FROM production_public.orders WHERE mod(id, 10) < %s "
        "ON CONFLICT (payment_id) DO UPDATE SET status = EXCLUDED.status", [round(share * 10)])
    rows = cur.rowcount
with open("/dev/termination-log", "w") as log:
    json.dump({"rowsAffected": rows}, log)
"""

# The S3 export and the dashboard refresh: read what they would ship and report it.
EXPORT = """
import json, os, psycopg
with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
    rows = conn.execute("SELECT count(*) FROM reporting.finance_daily WHERE day = current_date - 1").fetchone()[0]
with open("/dev/termination-log", "w") as log:
    json.dump({"rowsAffected": rows}, log)
"""


def hack_value(expression: str) -> str:
    script = f'source "{HACK}/versions.sh" && source "{HACK}/node-env.sh" && echo {expression}'
    return sh("bash", "-c", script).strip()


def real_revenue(image: str, payments_share: float = 1.0, stripe_key: str = "sk_live_demo") -> dict[str, Any]:
    pipeline = load("revenue-pipeline.yaml")[0]
    steps = {s["id"]: s for s in pipeline["spec"]["steps"]}
    payments = steps["extract-payments"]
    payments.update(image=image, command=["python", "-c", PAYMENTS], args=[])
    payments["env"] = [e for e in payments["env"] if e["name"] != "STRIPE_API_KEY"] + [
        {"name": "STRIPE_API_KEY", "value": stripe_key}, {"name": "PAYMENTS_SHARE", "value": str(payments_share)}]
    if stripe_key == "rotated":
        payments["retries"] = 0
    for step in (steps["extract-orders"], payments):
        step["dependsOn"] = ["setup-warehouse"]
    setup = {"id": "setup-warehouse", "name": "Create the warehouse's tables", "type": "sql", "retries": 0,
             "connectionSecretRef": {"name": "warehouse-db", "key": "url"}, "sql": SETUP_SQL}
    pipeline["spec"]["steps"] = [setup, *pipeline["spec"]["steps"]]
    return pipeline


def real_reporting(image: str) -> dict[str, Any]:
    pipeline = load("revenue-reporting.yaml")[0]
    pipeline["spec"]["notifications"].pop("webhookSecretRef", None)
    pipeline["spec"].pop("triggers", None)  # this demo starts each day's report itself, after revenue's run
    database = [{"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "warehouse-db", "key": "url"}}}]
    for step in pipeline["spec"]["steps"]:
        if step["type"] != "sql":
            step.update(image=image, command=["python", "-c", EXPORT], args=[], env=database)
            step.pop("envFrom", None)
    return pipeline


@contextmanager
def port_forward(kubectl: Kubectl, target: str, port: int) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        local = s.getsockname()[1]
    proc = subprocess.Popen([kubectl.path, "--kubeconfig", kubectl.kubeconfig, "-n", RELEASE_NAMESPACE,
                             "port-forward", target, f"{local}:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", local)) == 0:
                    break
            time.sleep(0.2)
        yield f"http://127.0.0.1:{local}"
    finally:
        proc.terminate()
        proc.wait()


def run(kubectl: Kubectl, pipeline: str, suffix: str) -> str:
    name = f"{pipeline}-{suffix}-{time.strftime('%H%M%S')}"
    body = {"apiVersion": "headwater.dev/v1alpha1", "kind": "PipelineRun", "metadata": {"name": name},
            "spec": {"pipelineRef": {"name": pipeline}}}
    kubectl("-n", NAMESPACE, "create", "-f", "-", input=yaml.safe_dump(body))
    wait_runs(kubectl, [name], timeout=600)
    wait_recorded(kubectl, name, timeout=120)
    return name


def headwater(*args: str) -> str:
    return sh(str(Path(sys.executable).parent / "headwater"), *args)


def install(kubectl: Kubectl, cluster: str, alerts: AlertInbox) -> str:
    """Images loaded into the node, the chart installed from them; returns the Headwater image."""
    socket_path = hack_value(f'"$(node_state_dir {cluster})/containerd/containerd.sock"')
    say("building the Headwater image (Dockerfile, buildah) and PostgreSQL's (Debian), loading them into the node")
    refs = dict(line.split()[:2] for line in
                sh("bash", str(HACK / "images.sh"), "import", socket_path, "headwater", "postgres").splitlines())
    volume = Path(hack_value(f'"$(node_state_dir {cluster})"')) / "volumes" / "postgresql"
    volume.mkdir(parents=True, exist_ok=True)
    sh("chown", "999:999", str(volume))
    kubectl("apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"{cluster}-postgresql"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "",
                 "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": str(volume), "type": "Directory"},
                 "claimRef": {"namespace": RELEASE_NAMESPACE, "name": f"data-{RELEASE}-postgresql-0"}}}))
    for ns in (RELEASE_NAMESPACE, NAMESPACE):
        kubectl("apply", "-f", "-", input=yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace",
                                                           "metadata": {"name": ns}}))
    applied = kubectl("-n", RELEASE_NAMESPACE, "apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "headwater-alerts"},
        "stringData": {"url": alerts.url}}))
    node = {hack_value("$NODE_LABEL_KEY"): hack_value("$NODE_LABEL_VALUE")}
    image, tag = refs["headwater"].rsplit(":", 1)
    pg_image, pg_tag = refs["postgres"].rsplit(":", 1)
    values = {"image": {"repository": image, "tag": tag, "pullPolicy": "Never"}, "nodeSelector": node,
              "postgresql": {"image": {"repository": pg_image, "tag": pg_tag, "pullPolicy": "Never"},
                             "persistence": {"size": "1Gi"}, "nodeSelector": node},
              "alerts": {"webhookSecret": "headwater-alerts"},
              "operator": {"recordRescanSeconds": 2, "extraEnv": [
                  {"name": "HEADWATER_FRESHNESS_INTERVAL_SECONDS", "value": "2"}]}}
    helm = str(Path(hack_value('"$(helm_bin_dir)"')) / "helm")
    say(f"helm upgrade --install {RELEASE} charts/headwater (image {refs['headwater']}, pullPolicy Never)")
    sh(helm, "--kubeconfig", kubectl.kubeconfig, "upgrade", "--install", RELEASE, str(ROOT / "charts" / "headwater"),
       "--namespace", RELEASE_NAMESPACE, "--wait", "--timeout", "5m", "-f", "-", input=yaml.safe_dump(values))
    if "configured" in applied:
        # A second demo's inbox has another port; the operator reads the Secret when it starts.
        kubectl("-n", RELEASE_NAMESPACE, "rollout", "restart", f"deployment/{RELEASE}")
        kubectl("-n", RELEASE_NAMESPACE, "rollout", "status", f"deployment/{RELEASE}", "--timeout=5m")
    secret = json.loads(kubectl("-n", RELEASE_NAMESPACE, "get", "secret", f"{RELEASE}-postgresql", "-o", "json"))
    url = base64.b64decode(secret["data"]["database-url"]).decode()
    kubectl("-n", NAMESPACE, "apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "warehouse-db"}, "stringData": {"url": url}}))
    return refs["headwater"]


def story(kubectl: Kubectl, image: str, api: str, alerts: AlertInbox) -> int:
    # A second demo on the same cluster starts from no runs (their Jobs and pods go with them).
    kubectl("-n", NAMESPACE, "delete", "pipelineruns", "--all", "--wait=true")
    say("applying the revenue pipeline and the revenue-reporting pipeline that consumes it (real SQL)")
    kubectl("-n", NAMESPACE, "apply", "-f", "-", input=yaml.safe_dump_all([real_revenue(image), real_reporting(image)]))
    say("day 1: running revenue, then revenue-reporting on its fresh tables")
    first = run(kubectl, "revenue", "day1")
    run(kubectl, "revenue-reporting", "day1")
    print(kubectl("-n", NAMESPACE, "get", "pipelines,pipelineruns"))
    steps = kubectl("-n", NAMESPACE, "get", "pipelinerun", first, "-o",
                    "jsonpath={range .status.steps[*]}{.name}{'\\t'}{.phase}{'\\t'}{.attempts}{'\\t'}"
                    "{.result.rowsAffected}{'\\n'}{end}")
    print("STEP\tPHASE\tATTEMPTS\tROWS (from the database)\n" + steps)
    say("where does analytics.business_metrics come from?  headwater lineage upstream analytics.business_metrics")
    print(headwater("lineage", "upstream", "analytics.business_metrics", "--api", api))
    say("day 2: Stripe's API changed its pagination; extract-payments quietly writes 40% fewer rows")
    kubectl("-n", NAMESPACE, "apply", "-f", "-", input=yaml.safe_dump(real_revenue(image, payments_share=0.6)))
    run(kubectl, "revenue", "day2")
    deadline = time.monotonic() + 60
    while not alerts.messages and time.monotonic() < deadline:
        time.sleep(0.5)
    say("the extract's check held the version back; the alert every downstream owner got:")
    print("\n".join(m["text"] for m in alerts.messages) + "\n")
    run(kubectl, "revenue-reporting", "day2")
    say("why is the dashboard not updated?  headwater lineage explain analytics.business_metrics")
    explanation = headwater("lineage", "explain", "analytics.business_metrics", "--api", api)
    print(explanation)
    lines = explanation.splitlines()
    found = len(lines) > 1 and "raw.stripe_payments" in lines[1]
    say("explain points at raw.stripe_payments (extract-payments) first" if found
        else "explain did not point at raw.stripe_payments first")
    say("day 3: the Stripe API key was rotated; extract-payments fails")
    kubectl("-n", NAMESPACE, "apply", "-f", "-", input=yaml.safe_dump(real_revenue(image, stripe_key="rotated")))
    before = len(alerts.messages)
    failed = run(kubectl, "revenue", "day3")
    print(kubectl("-n", NAMESPACE, "get", "pipelinerun", failed, "-o",
                  "jsonpath={range .status.steps[*]}{.name}{'\\t'}{.phase}{'\\t'}{.message}{'\\n'}{end}"))
    deadline = time.monotonic() + 60
    while len(alerts.messages) <= before and time.monotonic() < deadline:
        time.sleep(0.5)
    day3 = alerts.messages[before:]
    if len(day3) != 1:
        say(f"expected one grouped alert, received {len(day3)}")
        return 1
    say("the alert every downstream owner received at once:")
    print(day3[0]["text"] + "\n")
    return 0 if found else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cluster", default="headwater-demo-real", help="name of the local cluster")
    args = parser.parse_args()
    say("starting the local control plane with a real node (containerd, kubelet, kube-proxy, CoreDNS)")
    kubeconfig = sh("bash", str(HACK / "cluster.sh"), "up", "--real-node", args.cluster).strip().splitlines()[-1]
    kubectl = Kubectl(kubeconfig)
    alerts = AlertInbox(hack_value("$NODE_IP"))
    try:
        image = install(kubectl, args.cluster, alerts)
        with port_forward(kubectl, f"svc/{RELEASE}-api", 8080) as api:
            return story(kubectl, image, api, alerts)
    finally:
        alerts.shutdown()
        alerts.server_close()
        say(f"done. The cluster keeps running: export KUBECONFIG={kubeconfig}; kubectl -n {NAMESPACE} get "
            f"pipelines,pipelineruns,pods -o wide. Stop it: bash hack/cluster.sh down {args.cluster}")


if __name__ == "__main__":
    sys.exit(main())
