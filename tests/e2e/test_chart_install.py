"""The Helm chart against the real control plane: the apiserver accepts it, and its RBAC runs a pipeline.

The operator's access is tested for real: the chart's ServiceAccount and RBAC are installed, the
operator runs as a subprocess with a kubeconfig holding that ServiceAccount's token (and nothing
else), and a pipeline must run to the end; `kubectl auth can-i` with the same token then shows that
nothing broader was granted.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest_e2e import OperatorProcess, free_port, wait_run
from headwater.lineage import DatasetRef, build_run_event
from helpers import ROOT, Cluster, fresh_database, wait_for
from manifests import pipeline, run, step

pytestmark = pytest.mark.e2e

CHART = ROOT / "charts" / "headwater"
HACK = ROOT / "hack"
# An RBAC denial, or kopf falling back because it may not list or watch something.
RBAC_DENIED = re.compile(r'forbidden: User \\?"system:serviceaccount:|Not enough permissions', re.IGNORECASE)


def _helm_path() -> Path:
    out = subprocess.run(["bash", "-c", f'source "{HACK}/versions.sh" && helm_bin_dir'],
                         check=True, capture_output=True, text=True).stdout.strip()
    return Path(out) / "helm"


HELM = _helm_path()


def helm(cluster: Cluster, *args: str) -> str:
    """Run the built helm against the test cluster; fail with its stderr."""
    if not HELM.exists():
        pytest.fail(f"helm is not built ({HELM} is missing): run hack/build-tools.sh")
    proc = subprocess.run([str(HELM), "--kubeconfig", cluster.kubeconfig, *args],
                          capture_output=True, text=True, check=False, timeout=180)
    assert proc.returncode == 0, f"helm {' '.join(args)} failed: {proc.stderr}"
    return proc.stdout


def template(cluster: Cluster, release: str, namespace: str, *args: str) -> str:
    """``helm template``: no cluster to read a generated password back from, so one is given."""
    return helm(cluster, "template", release, str(CHART), "--namespace", namespace,
                "--set", "postgresql.password=e2e-password", *args)


@dataclass
class ChartAccess:
    """The chart's ServiceAccount and RBAC, installed, and a kubeconfig that authenticates as it."""

    cluster: Cluster
    namespace: str
    service_account: str
    kubeconfig: Path

    def can_i(self, *args: str) -> str:
        """`kubectl auth can-i` as the ServiceAccount (its own token): "yes" or "no"."""
        proc = subprocess.run([self.cluster.kubectl_path, "--kubeconfig", str(self.kubeconfig), "auth", "can-i",
                               *args], capture_output=True, text=True, check=False, timeout=60)
        answer = proc.stdout.strip()
        assert answer in ("yes", "no"), f"kubectl auth can-i {' '.join(args)}: {proc.stdout}{proc.stderr}"
        return answer


def _token_kubeconfig(cluster: Cluster, token: str, path: Path) -> Path:
    """A kubeconfig with the test cluster's server and CA and only ``token`` as credentials."""
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    context = next(c["context"] for c in admin["contexts"] if c["name"] == admin["current-context"])
    server = next(c["cluster"] for c in admin["clusters"] if c["name"] == context["cluster"])
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "chart-sa",
        "clusters": [{"name": "test", "cluster": server}],
        "users": [{"name": "chart-sa", "user": {"token": token}}],
        "contexts": [{"name": "chart-sa", "context": {"cluster": "test", "user": "chart-sa"}}],
    }))
    path.chmod(0o600)
    return path


@pytest.fixture(params=["namespaced", "cluster-wide"])
def chart_access(request: pytest.FixtureRequest, cluster: Cluster, namespace: str, tmp_path: Path
                 ) -> Iterator[ChartAccess]:
    """Only the chart's ServiceAccount and RBAC, rendered for the test namespace (the release's namespace)."""
    release = namespace  # unique, so that the cluster-scoped objects of parallel sessions never collide
    scope = ["--set", f"watchNamespaces={{{namespace}}}"] if request.param == "namespaced" else []
    manifests = template(cluster, release, namespace, *scope,
                         "--show-only", "templates/serviceaccount.yaml", "--show-only", "templates/rbac.yaml")
    objects = [doc for doc in yaml.safe_load_all(manifests) if doc]
    assert {o["kind"] for o in objects} >= {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"}
    cluster.kubectl("apply", "--server-side", "-f", "-", input=manifests)
    [account] = [o["metadata"]["name"] for o in objects if o["kind"] == "ServiceAccount"]
    token = cluster.kubectl("-n", namespace, "create", "token", account, "--duration=1h").stdout.strip()
    access = ChartAccess(cluster, namespace, account, _token_kubeconfig(cluster, token, tmp_path / "sa.kubeconfig"))
    # RBAC changes reach the authorizer's cache within moments; wait until the token works.
    wait_for(lambda: access.can_i("list", "pipelineruns.headwater.dev", "-n", namespace) == "yes",
             timeout=120, message="the chart's RBAC to take effect")
    yield access
    cluster.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", "-", input=manifests, check=False)


class ClusterWideOperator(OperatorProcess):
    """``headwater operator`` without ``-n``: it watches every namespace, as the chart's default does."""

    def start(self) -> None:
        headwater = Path(sys.executable).parent / "headwater"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([str(headwater), "operator"], env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT)
        self.starts += 1


def _assert_no_rbac_denials(operator: OperatorProcess) -> None:
    denials = [line for line in operator.logs().splitlines() if RBAC_DENIED.search(line)]
    assert not denials, "the operator was denied access:\n" + "\n".join(denials[:20])


# --- (1) the apiserver accepts the rendered chart ------------------------------------------------------------

@pytest.mark.parametrize("variant", ["defaults-with-dashboard", "external-database", "namespaced"])
def test_the_rendered_chart_is_accepted_by_the_apiserver(cluster: Cluster, namespace: str, variant: str) -> None:
    values = {
        "defaults-with-dashboard": ["--set", "metrics.dashboard.enabled=true"],
        "external-database": ["--set", "postgresql.enabled=false", "--set", "database.existingSecret=lineage-db"],
        "namespaced": ["--set", f"watchNamespaces={{{namespace}}}"],
    }[variant]
    # The CRDs first, for real (they exist already; applying them again must be a no-op that succeeds).
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CHART / "crds"))
    # The apiserver's PodSecurity admission warns about any workload that is not "restricted".
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted",
                    "pod-security.kubernetes.io/warn=restricted")
    manifests = template(cluster, namespace, namespace, *values)
    proc = cluster.kubectl("apply", "--server-side", "--dry-run=server", "-f", "-", input=manifests)
    kinds = {line.split("/")[0] for line in proc.stdout.splitlines()}
    assert "deployment.apps" in kinds and "serviceaccount" in kinds, proc.stdout
    assert "PodSecurity" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet"])
def test_the_charts_pods_are_admitted_where_the_restricted_pod_security_standard_is_enforced(
        cluster: Cluster, namespace: str, kind: str) -> None:
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    docs = [d for d in yaml.safe_load_all(template(cluster, namespace, namespace)) if d]
    cluster.apply(*[d for d in docs if d["kind"] == "ServiceAccount"], namespace=namespace)
    [workload] = [d for d in docs if d["kind"] == kind]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"chart-{kind.lower()}"},
           "spec": workload["spec"]["template"]["spec"]}
    if kind == "StatefulSet":  # the claim template's volume, as the StatefulSet controller adds it
        pod["spec"]["volumes"].append({"name": "data", "emptyDir": {}})
    proc = cluster.kubectl("-n", namespace, "apply", "--server-side", "--dry-run=server", "-f", "-",
                           input=yaml.safe_dump(pod), check=False)
    assert proc.returncode == 0 and "PodSecurity" not in proc.stderr, proc.stderr


# --- (2) the chart's RBAC is enough to run a pipeline ---------------------------------------------------------

@pytest.fixture
def chart_operator(cluster: Cluster, namespace: str, chart_access: ChartAccess, tmp_path: Path,
                   request: pytest.FixtureRequest) -> Iterator[OperatorProcess]:
    """The operator as a subprocess authenticated only by the chart's ServiceAccount token.

    Namespaced RBAC: it watches the test namespace. Cluster-wide RBAC: it watches every namespace.
    """
    cluster_wide = request.node.callspec.params["chart_access"] == "cluster-wide"
    kind = ClusterWideOperator if cluster_wide else OperatorProcess
    # with leader election as the chart sets it: its Lease is named after the release (as is the ServiceAccount)
    operator = kind(cluster, namespace, tmp_path / "operator.log", KUBECONFIG=str(chart_access.kubeconfig),
                    HEADWATER_NAMESPACES="" if cluster_wide else namespace, HEADWATER_DATABASE_URL="",
                    HEADWATER_LEADER_ELECTION="true", HEADWATER_LEASE_NAME=chart_access.service_account,
                    HEADWATER_LEASE_NAMESPACE=namespace)
    operator.start()
    yield operator
    operator.stop()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(f"--- operator log ({operator.log_path}) ---\n{operator.logs()[-20000:]}")


def test_the_charts_rbac_is_enough_for_the_operator_to_run_a_pipeline(
        cluster: Cluster, namespace: str, chart_operator: OperatorProcess) -> None:
    # The test cluster enforces OwnerReferencesPermissionEnforcement (hack/cluster.sh): the operator's
    # Jobs (owned by their run) and scheduled runs (owned by their Pipeline) set blockOwnerDeletion.
    cluster.apply(pipeline("chart-rbac", [step("extract"), step("load", "extract")], schedule="* * * * *",
                           concurrencyPolicy="Allow"),
                  run("chart-rbac-1", "chart-rbac"), namespace=namespace)
    done = wait_run(cluster, namespace, "chart-rbac-1")
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert done["status"]["progress"] == "2/2"
    jobs = cluster.list("jobs", namespace, "headwater.dev/run=chart-rbac-1")
    assert sorted(j["metadata"]["labels"]["headwater.dev/step"] for j in jobs) == ["extract", "load"]
    assert all(j["metadata"]["ownerReferences"][0]["blockOwnerDeletion"] for j in jobs)
    [scheduled] = wait_for(lambda: cluster.list("pipelineruns", namespace, "headwater.dev/trigger=schedule"),
                           timeout=90, interval=1, message="the first scheduled run (at the next minute)")
    [owner] = scheduled["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["blockOwnerDeletion"]) == ("Pipeline", "chart-rbac", True)
    done = wait_run(cluster, namespace, scheduled["metadata"]["name"], timeout=120)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    ready = wait_for(lambda: _ready_condition(cluster, namespace, "chart-rbac"), timeout=120,
                     message="the Pipeline's Ready condition")
    assert ready["status"] == "True"

    def events() -> list[dict[str, Any]]:
        out = cluster.kubectl("-n", namespace, "get", "events", "-o", "json",
                              "--field-selector", "involvedObject.name=chart-rbac-1").stdout
        items: list[dict[str, Any]] = yaml.safe_load(out)["items"]
        return items

    # Events are posted from a background queue, after the status that the run's wait saw
    wait_for(events, timeout=120, message="the operator's Events about the run (can it post them?)")
    _assert_no_rbac_denials(chart_operator)
    lease = cluster.get("lease", chart_operator.env["HEADWATER_LEASE_NAME"], namespace)
    assert lease["spec"]["holderIdentity"]


def _ready_condition(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    conditions = (cluster.get("pipeline", name, namespace).get("status") or {}).get("conditions", [])
    return next((c for c in conditions if c["type"] == "Ready"), None)


# --- (3) and nothing broader -----------------------------------------------------------------------------

def test_the_charts_rbac_grants_nothing_broader(chart_access: ChartAccess, request: pytest.FixtureRequest) -> None:
    ns = chart_access.namespace
    can = chart_access.can_i
    # What the operator needs, in its namespace.
    for verb, resource in [("watch", "pipelines.headwater.dev"), ("delete", "pipelineruns.headwater.dev"),
                           ("create", "jobs.batch"),
                           ("list", "pods"), ("create", "events"), ("create", "events.events.k8s.io")]:
        assert can(verb, resource, "-n", ns) == "yes", f"{verb} {resource}"
    # Subresources (kubectl would read "resource/x" as the object named x).
    for resource, subresource in [("pipelineruns.headwater.dev", "status"), ("pipelines.headwater.dev", "finalizers"),
                                  ("pipelineruns.headwater.dev", "finalizers")]:
        assert can("update", resource, f"--subresource={subresource}", "-n", ns) == "yes", f"{resource}/{subresource}"
    assert can("update", "jobs.batch", "--subresource=finalizers", "-n", ns) == "no"
    assert can("watch", "customresourcedefinitions.apiextensions.k8s.io") == "yes"
    # Never: Secrets, other workloads, writing pods, RBAC, CRDs.
    for verb, resource in [("get", "secrets"), ("list", "secrets"), ("watch", "secrets"),
                           ("create", "deployments.apps"), ("create", "pods"), ("delete", "pods"),
                           ("update", "jobs.batch"), ("create", "roles.rbac.authorization.k8s.io"),
                           ("create", "customresourcedefinitions.apiextensions.k8s.io"),
                           ("create", "serviceaccounts/token")]:
        assert can(verb, resource, "-n", ns) == "no", f"{verb} {resource}"
    assert can("get", "secrets", "--all-namespaces") == "no"
    # Leader election: its own Lease in the release's namespace, no other Lease, nowhere else.
    own_lease = f"leases.coordination.k8s.io/{chart_access.service_account}"
    assert can("create", "leases.coordination.k8s.io", "-n", ns) == "yes"
    assert can("get", own_lease, "-n", ns) == "yes" and can("update", own_lease, "-n", ns) == "yes"
    assert can("update", "leases.coordination.k8s.io/someone-else", "-n", ns) == "no"
    assert can("delete", own_lease, "-n", ns) == "no"
    assert can("list", "leases.coordination.k8s.io", "-n", ns) == "no"
    assert can("create", "leases.coordination.k8s.io", "-n", "default") == "no"
    assert can("create", "namespaces") == "no" and can("delete", "namespaces") == "no"
    if request.node.callspec.params["chart_access"] == "namespaced":
        # Nothing outside the watched namespace (kopf may list and watch namespaces, to match its patterns).
        assert can("get", "pipelines.headwater.dev", "-n", "default") == "no"
        assert can("create", "jobs.batch", "-n", "default") == "no"
        assert can("list", "pods", "-n", "default") == "no"
        assert can("list", "pipelineruns.headwater.dev", "--all-namespaces") == "no"
        assert can("watch", "namespaces") == "yes"
    else:
        # Cluster-wide, kopf never looks at namespaces.
        assert can("get", "pipelines.headwater.dev", "-n", "default") == "yes"
        assert can("list", "namespaces") == "no"


# --- the chart installed with helm ---------------------------------------------------------------------------

def test_helm_install_and_upgrade_keep_the_generated_postgresql_password(cluster: Cluster, namespace: str) -> None:
    release = namespace
    values = ["--namespace", namespace, "--set", f"watchNamespaces={{{namespace}}}"]
    helm(cluster, "install", release, str(CHART), *values)
    try:
        secret = f"{release}-headwater-postgresql"
        before = cluster.get("secret", secret, namespace)["data"]
        helm(cluster, "upgrade", release, str(CHART), *values, "--set", "operator.resyncSeconds=15")
        after = cluster.get("secret", secret, namespace)["data"]
        assert after == before, "the upgrade changed the PostgreSQL password"
        password = base64.b64decode(after["postgres-password"]).decode()
        assert password in base64.b64decode(after["database-url"]).decode()
        deployment = cluster.get("deployment", f"{release}-headwater", namespace)
        env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["HEADWATER_RESYNC_SECONDS"] == "15"
        assert env["HEADWATER_NAMESPACES"] == namespace
    finally:
        helm(cluster, "uninstall", release, "--namespace", namespace)
    # The password Secret outlives the release, like the data volume initialised with it.
    assert cluster.get("secret", f"{release}-headwater-postgresql", namespace)["data"] == after
    leftovers = cluster.kubectl("get", "clusterroles", "-o", "name", "-l", f"app.kubernetes.io/instance={release}")
    assert not leftovers.stdout.strip()


# --- the lineage API as the chart configures it ---------------------------------------------------------

def _http(port: int, method: str, path: str, token: str | None = None, body: object = None) -> int:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _container_env(cluster: Cluster, namespace: str, container: dict[str, Any]) -> dict[str, str]:
    """The operator container's environment as the kubelet would build it (Secrets resolved)."""
    out: dict[str, str] = {}
    for var in container["env"]:
        if "value" in var:
            out[var["name"]] = var["value"]
            continue
        ref = var["valueFrom"]["secretKeyRef"]
        data = cluster.get("secret", ref["name"], namespace)["data"]
        out[var["name"]] = base64.b64decode(data[ref["key"]]).decode()
    return out


def test_the_chart_installed_with_defaults_serves_the_lineage_api_only_with_its_tokens(
        cluster: Cluster, namespace: str, database_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """No pod really runs on the simulated nodes: the operator runs here, configured exactly as the chart's
    Deployment configures it (its environment, Secrets resolved, and its ServiceAccount's token), except
    for the database (the bundled PostgreSQL has no real pod) and the address (loopback, a free port)."""
    release = namespace
    helm(cluster, "install", release, str(CHART), "--namespace", namespace)
    try:
        deployment = cluster.get("deployment", f"{release}-headwater", namespace)
        pod = deployment["spec"]["template"]["spec"]
        [container] = pod["containers"]
        env = _container_env(cluster, namespace, container)
        assert env["HEADWATER_API_AUTH_ENABLED"] == "true" and env["HEADWATER_API_HOST"] == "0.0.0.0"
        read, write = env["HEADWATER_API_TOKEN"], env["HEADWATER_API_WRITE_TOKEN"]
        token = cluster.kubectl("-n", namespace, "create", "token", pod["serviceAccountName"],
                                "--duration=1h").stdout.strip()
        kubeconfig = _token_kubeconfig(cluster, token, tmp_path / "sa.kubeconfig")
        port = free_port()
        with fresh_database(database_url) as url:
            operator = ClusterWideOperator(cluster, namespace, tmp_path / "operator.log", **{
                **env, "KUBECONFIG": str(kubeconfig), "HEADWATER_DATABASE_URL": url,
                "HEADWATER_API_HOST": "127.0.0.1", "HEADWATER_API_PORT": str(port), "HEADWATER_METRICS_PORT": "0"})
            operator.start()
            try:
                liveness = container["livenessProbe"]["httpGet"]["path"]
                readiness = container["readinessProbe"]["httpGet"]["path"]
                wait_for(lambda: _http(port, "GET", readiness) == 200, timeout=60,
                         message="the readiness path to answer 200 without a token")
                assert _http(port, "GET", liveness) == 200  # without a token: no restarts
                assert _http(port, "GET", "/v1/datasets") == 401
                assert _http(port, "GET", "/v1/datasets", "not-the-token") == 401
                assert _http(port, "GET", "/v1/datasets", read) == 200
                event = build_run_event("COMPLETE", run_id="e2e/r1", pipeline="etl", step="load",
                                        event_time=datetime.now(UTC),
                                        inputs=[DatasetRef("postgres://w", "raw.a")],
                                        outputs=[DatasetRef("postgres://w", "clean.a")])
                assert _http(port, "POST", "/api/v1/lineage", None, event) == 401  # a pod without the token
                assert _http(port, "POST", "/api/v1/lineage", read, event) == 403  # a dashboard's token
                assert _http(port, "POST", "/api/v1/lineage", write, event) == 201
                assert _http(port, "GET", "/v1/lineage/upstream/clean.a", write) == 403
                assert _http(port, "GET", "/v1/lineage/upstream/clean.a", read) == 200
                assert "WITHOUT authentication" not in operator.logs()
            finally:
                operator.stop()
                report = getattr(request.node, "rep_call", None)
                if report is not None and report.failed:
                    print(f"--- operator log ---\n{operator.logs()[-20000:]}")
        secret = cluster.get("secret", f"{release}-headwater-api-token", namespace)["data"]
        helm(cluster, "upgrade", release, str(CHART), "--namespace", namespace, "--set", "operator.resyncSeconds=15")
        assert cluster.get("secret", f"{release}-headwater-api-token", namespace)["data"] == secret, (
            "the upgrade changed the API's tokens")
    finally:
        helm(cluster, "uninstall", release, "--namespace", namespace)
