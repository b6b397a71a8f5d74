"""The Helm chart (charts/headwater): lint, rendering, least-privilege RBAC, restricted pods, values schema.

No cluster is needed: the chart is rendered with the helm binary that hack/build-tools.sh builds
(these tests skip, saying so, when it is not built). tests/e2e/test_chart.py checks the rendered
chart against a real apiserver and runs a pipeline with the chart's RBAC.
"""

from __future__ import annotations

import json
import re
import subprocess
from base64 import b64decode
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from headwater.controller.config import Settings
from headwater.pipelines.scheduler import scheduled_run
from headwater.runs.jobs import JobSettings, RunRef, build_job
from headwater.spec import constants as c
from headwater.spec.models import StepSpec

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "headwater"
CRDS = ROOT / "crds"
HACK = ROOT / "hack"

# The metrics the operator serves (operator/headwater/adapters/metrics.py); alerts and the dashboard use only these.
METRICS = {
    "headwater_runs_total", "headwater_run_duration_seconds", "headwater_step_duration_seconds",
    "headwater_step_attempts_total", "headwater_step_handoff_seconds", "headwater_reconcile_errors_total",
    "headwater_lineage_backlog", "headwater_dataset_last_updated_timestamp_seconds",
    "headwater_dataset_freshness_sla_seconds", "headwater_dataset_stale", "headwater_lineage_record_failures_total",
    "headwater_alerts_pending", "headwater_leader", "headwater_trigger_firings_total",
    "headwater_trigger_failures_total", "headwater_trigger_latency_seconds",
}

# Everything the operator may do in a namespace it watches: (apiGroup, resource) -> verbs.
NAMESPACED_ACCESS = {
    ("headwater.dev", "pipelines"): {"get", "list", "watch", "create", "patch", "update", "delete"},
    ("headwater.dev", "pipelineruns"): {"get", "list", "watch", "create", "patch", "update", "delete"},
    ("headwater.dev", "pipelines/status"): {"get", "patch", "update"},
    ("headwater.dev", "pipelineruns/status"): {"get", "patch", "update"},
    ("headwater.dev", "backfills"): {"get", "list", "watch"},
    ("headwater.dev", "backfills/status"): {"get", "patch", "update"},
    # blockOwnerDeletion on what the operator owns, where OwnerReferencesPermissionEnforcement is on
    ("headwater.dev", "pipelines/finalizers"): {"update"},
    ("headwater.dev", "pipelineruns/finalizers"): {"update"},
    ("headwater.dev", "backfills/finalizers"): {"update"},
    ("batch", "jobs"): {"get", "list", "watch", "create", "delete"},
    ("", "pods"): {"get", "list"},
    ("", "events"): {"create", "patch", "list"},
    ("events.k8s.io", "events"): {"create", "patch"},
}
# What kopf itself reads at cluster scope: CRDs always; namespaces only when it watches some namespaces
# (kopf lists and watches them to match its namespace patterns; cluster-wide it never looks at them).
CRD_ACCESS = {("apiextensions.k8s.io", "customresourcedefinitions"): {"get", "list", "watch"}}
NAMESPACES_ACCESS = {("", "namespaces"): {"list", "watch"}}
# Leader election, in the release's namespace only: create any Lease, get and update only its own.
LEASE_ACCESS = {("coordination.k8s.io", "leases"): {"create", "get", "update"}}

EXTERNAL_DB = ("--set", "postgresql.enabled=false", "--set", "database.existingSecret=lineage-db")
# helm template cannot read a generated password back from the cluster: the bundled PostgreSQL needs one given.
PASSWORD = "chart-test-password"
GIVEN_PASSWORD = ("--set", f"postgresql.password={PASSWORD}")
EVERYTHING = ("--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.prometheusRule.enabled=true",
              "--set", "metrics.dashboard.enabled=true")


def _helm_path() -> Path:
    out = subprocess.run(["bash", "-c", f'source "{HACK}/versions.sh" && helm_bin_dir'],
                         check=True, capture_output=True, text=True).stdout.strip()
    return Path(out) / "helm"


HELM = _helm_path()


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the built helm; the calling test is skipped, saying why, when it is not built."""
    if not HELM.exists():
        pytest.skip(f"helm is not built ({HELM} is missing): run hack/build-tools.sh")
    return subprocess.run([str(HELM), *args], capture_output=True, text=True, check=False, timeout=120)


def render(*args: str, namespace: str = "headwater-system", password: bool = True) -> list[dict[str, Any]]:
    """``helm template`` of the chart with ``args`` (and postgresql.password, unless ``password`` is False)."""
    given = GIVEN_PASSWORD if password else ()
    proc = helm("template", "hw", str(CHART), "--namespace", namespace, *given, *args)
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    [found] = [d for d in of_kind(docs, kind) if name is None or d["metadata"]["name"] == name]
    return found


def operator_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    [container] = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(container)


def env(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in operator_container(docs)["env"]}


def access(rules: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource) -> verbs granted by ``rules``."""
    out: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


def all_rules(docs: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for doc in docs:
        if doc["kind"] in ("Role", "ClusterRole"):
            yield from doc.get("rules", [])


# --- CRDs ---------------------------------------------------------------------------------------

def test_the_charts_crds_are_byte_for_byte_copies_of_crds() -> None:
    """The one check that charts/headwater/crds/ and crds/ never drift apart."""
    source = {p.name: p.read_bytes() for p in CRDS.glob("*.yaml")}
    chart = {p.name: p.read_bytes() for p in (CHART / "crds").iterdir()}
    assert source, "crds/ has no CRDs"
    assert sorted(chart) == sorted(source), "the chart's crds/ holds other files than crds/"
    drifted = [name for name in source if chart[name] != source[name]]
    assert not drifted, f"differ from crds/: {drifted}; run: cp crds/*.yaml charts/headwater/crds/"


def test_the_chart_is_version_0_1_0_of_apiversion_v2() -> None:
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert (meta["apiVersion"], meta["name"], meta["version"], meta["appVersion"]) == (
        "v2", "headwater", "0.1.0", "0.1.0")


# --- lint and schema ------------------------------------------------------------------------------

@pytest.mark.parametrize("extra", [(), ("--strict",)], ids=["lint", "lint-strict"])
@pytest.mark.parametrize("values", [GIVEN_PASSWORD, ("--set", "watchNamespaces={a,b}", *EXTERNAL_DB, *EVERYTHING)],
                         ids=["defaults", "namespaced-external-db-monitoring"])
def test_helm_lint_passes(extra: tuple[str, ...], values: tuple[str, ...]) -> None:
    proc = helm("lint", *extra, str(CHART), *values)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("values", [("--set", "bogus=1"), ("--set", "operator.bogus=1"),
                                    ("--set", "postgresql.persistence.bogus=1")],
                         ids=["top-level", "operator", "nested"])
def test_the_values_schema_rejects_unknown_keys(values: tuple[str, ...]) -> None:
    proc = helm("template", "hw", str(CHART), *values)
    assert proc.returncode != 0
    assert "additional properties 'bogus' not allowed" in proc.stderr


@pytest.mark.parametrize("values", [("--set", "api.port=0"), ("--set", "image.pullPolicy=Sometimes"),
                                    ("--set", "watchNamespaces={Not_A_Namespace}"),
                                    ("--set", "operator.jobTTLSeconds=-1"),
                                    ("--set", "probes.liveness.path=healthz"),
                                    ("--set", "operator.allowedServiceAccounts={Not/An/Account}"),
                                    ("--set", "postgresql.existingSecret=Not_A_Secret")])
def test_the_values_schema_rejects_invalid_values(values: tuple[str, ...]) -> None:
    assert helm("template", "hw", str(CHART), *GIVEN_PASSWORD).returncode == 0
    assert helm("template", "hw", str(CHART), *GIVEN_PASSWORD, *values).returncode != 0


def test_the_schema_is_strict_everywhere_it_describes_an_object() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node: dict[str, Any], value: Any, path: str) -> None:
        if "properties" in node:
            assert node.get("additionalProperties") is False, f"{path or '.'} accepts unknown keys"
            assert set(value) <= set(node["properties"]), f"{path}: keys missing from the schema"
            for key, sub in node["properties"].items():
                if key in value:
                    walk(sub, value[key], f"{path}.{key}")

    walk(schema, values, "")


# --- default rendering ------------------------------------------------------------------------------

def test_the_defaults_render_the_operator_rbac_services_and_the_bundled_postgresql() -> None:
    docs = render()
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in docs)
    assert kinds == sorted([
        ("ServiceAccount", "hw-headwater"),
        ("ClusterRole", "hw-headwater"), ("ClusterRoleBinding", "hw-headwater"),
        ("ClusterRole", "hw-headwater-kopf"), ("ClusterRoleBinding", "hw-headwater-kopf"),
        ("Role", "hw-headwater-leader-election"), ("RoleBinding", "hw-headwater-leader-election"),
        ("Deployment", "hw-headwater"),
        ("Service", "hw-headwater-api"), ("Service", "hw-headwater-metrics"),
        ("Secret", "hw-headwater-postgresql"), ("Service", "hw-headwater-postgresql"),
        ("Secret", "hw-headwater-api-token"),
        ("StatefulSet", "hw-headwater-postgresql"),
    ])
    for doc in docs:
        if doc["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert doc["metadata"]["namespace"] == "headwater-system", doc["metadata"]["name"]


def test_the_operator_runs_one_replica_of_the_app_version_image_with_the_operator_command() -> None:
    docs = render()
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate",
                                              "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    container = operator_container(docs)
    assert container["image"] == "ghcr.io/headwater-dev/headwater:0.1.0"
    assert container["args"] == ["operator"]
    assert "command" not in container  # the image's entrypoint is `headwater`
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == one(docs, "ServiceAccount")["metadata"]["name"]


def test_the_image_can_be_overridden_by_tag_or_digest() -> None:
    digest = "sha256:" + "a" * 64
    assert operator_container(render("--set", "image.repository=reg.example/hw", "--set", "image.tag=dev")
                              )["image"] == "reg.example/hw:dev"
    assert operator_container(render("--set", f"image.digest={digest}"))["image"] == (
        f"ghcr.io/headwater-dev/headwater@{digest}")


def test_the_environment_maps_values_to_the_operators_settings_and_their_defaults_agree() -> None:
    docs = render()
    variables = env(docs)
    assert variables["HEADWATER_DATABASE_URL"] == {
        "secretKeyRef": {"name": "hw-headwater-postgresql", "key": "database-url"}}
    assert "HEADWATER_NAMESPACES" not in variables  # cluster-wide
    # Outside a pod the API listens on loopback only; in the pod it must answer on the pod's address.
    assert variables.pop("HEADWATER_API_HOST") == "0.0.0.0"
    # Outside a pod the operator is the only one and acts at once; the chart's pods elect a leader on a
    # Lease of the release's own name, in its namespace.
    assert variables.pop("HEADWATER_LEADER_ELECTION") == "true"
    assert variables.pop("HEADWATER_LEASE_NAME") == "hw-headwater"
    assert variables.pop("HEADWATER_LEASE_NAMESPACE") == "headwater-system"
    for name, value in variables.items():
        field = name.removeprefix("HEADWATER_").lower()
        assert name.startswith("HEADWATER_") and field in Settings.model_fields, f"{name} is no operator setting"
        if isinstance(value, str):
            default = Settings.model_fields[field].default
            assert getattr(Settings(**{field: value}), field) == default, (
                f"the chart's default {name}={value} differs from the operator's {default!r}")
    assert {"HEADWATER_STEP_IMAGE", "HEADWATER_JOB_TTL_SECONDS", "HEADWATER_RESYNC_SECONDS",
            "HEADWATER_METRICS_PORT", "HEADWATER_API_PORT", "HEADWATER_API_AUTH_ENABLED", "HEADWATER_API_THREADS",
            "HEADWATER_API_STATEMENT_TIMEOUT_SECONDS", "HEADWATER_API_MAX_WAITING"} <= set(variables)


def test_operator_settings_come_from_values() -> None:
    variables = env(render("--set", "operator.stepImage=steps:1", "--set", "operator.jobTTLSeconds=600",
                           "--set-json", "operator.resyncSeconds=2.5", "--set", "metrics.port=9191",
                           "--set", "api.port=8181", "--set", "api.existingSecret=api-tokens",
                           "--set", "api.threads=8", "--set-json", "api.statementTimeoutSeconds=2.5",
                           "--set", "operator.allowedServiceAccounts={etl,data/loader}"))
    assert variables["HEADWATER_ALLOWED_SERVICE_ACCOUNTS"] == "etl,data/loader"
    assert Settings(allowed_service_accounts=variables["HEADWATER_ALLOWED_SERVICE_ACCOUNTS"]
                    ).allowed_service_accounts == ["etl", "data/loader"]
    assert variables["HEADWATER_STEP_IMAGE"] == "steps:1"
    assert variables["HEADWATER_JOB_TTL_SECONDS"] == "600"
    assert variables["HEADWATER_RESYNC_SECONDS"] == "2.5"
    assert variables["HEADWATER_METRICS_PORT"] == "9191"
    assert variables["HEADWATER_API_PORT"] == "8181"
    assert variables["HEADWATER_API_TOKEN"] == {"secretKeyRef": {"name": "api-tokens", "key": "read-token"}}
    assert variables["HEADWATER_API_WRITE_TOKEN"] == {"secretKeyRef": {"name": "api-tokens", "key": "write-token"}}
    assert variables["HEADWATER_API_THREADS"] == "8"
    assert variables["HEADWATER_API_STATEMENT_TIMEOUT_SECONDS"] == "2.5"


def test_large_numbers_from_a_values_file_are_rendered_without_an_exponent(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("operator:\n  jobTTLSeconds: 10000000\n  resyncSeconds: 3000000\n")
    variables = env(render("-f", str(values)))
    assert (variables["HEADWATER_JOB_TTL_SECONDS"], variables["HEADWATER_RESYNC_SECONDS"]) == ("10000000", "3000000")


def test_ports_are_named_and_the_probes_get_livez_and_healthz_on_the_api_port() -> None:
    docs = render()
    container = operator_container(docs)
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"http": 8080, "metrics": 9090}
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    services = {s["metadata"]["name"]: s["spec"] for s in of_kind(docs, "Service")}
    assert services["hw-headwater-api"]["type"] == "ClusterIP"
    assert services["hw-headwater-api"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http",
                                                      "protocol": "TCP"}]
    assert services["hw-headwater-metrics"]["type"] == "ClusterIP"
    assert services["hw-headwater-metrics"]["ports"] == [{"name": "metrics", "port": 9090,
                                                          "targetPort": "metrics", "protocol": "TCP"}]


def test_the_probe_paths_are_values_and_probes_can_be_turned_off() -> None:
    container = operator_container(render("--set", "probes.liveness.path=/livez",
                                          "--set", "probes.readiness.path=/readyz"))
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    container = operator_container(render("--set", "probes.liveness.enabled=false",
                                          "--set", "probes.readiness.enabled=false"))
    assert "livenessProbe" not in container and "readinessProbe" not in container


def _assert_restricted(pod: dict[str, Any]) -> None:
    """The fields the "restricted" Pod Security Standard checks."""
    pod_sc = pod.get("securityContext", {})
    assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault"
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    for volume in pod.get("volumes", []):
        assert set(volume) - {"name"} <= {"emptyDir", "configMap", "secret", "persistentVolumeClaim", "projected",
                                          "downwardAPI", "ephemeral", "csi"}, volume
    for container in pod["containers"] + pod.get("initContainers", []):
        sc = container["securityContext"]
        assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True
        assert sc.get("runAsUser", pod_sc.get("runAsUser")) not in (None, 0)
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add")
        assert sc.get("seccompProfile", pod_sc.get("seccompProfile"))["type"] == "RuntimeDefault"
        assert sc["readOnlyRootFilesystem"] is True
        assert not sc.get("privileged")


def test_the_operator_pod_satisfies_the_restricted_pod_security_standard() -> None:
    pod = one(render(), "Deployment")["spec"]["template"]["spec"]
    _assert_restricted(pod)
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["containers"][0]["securityContext"]["runAsUser"] == 65532


def test_the_bundled_postgresql_pod_satisfies_the_restricted_pod_security_standard() -> None:
    _assert_restricted(one(render(), "StatefulSet")["spec"]["template"]["spec"])


def test_resources_scheduling_and_pod_annotations_come_from_values() -> None:
    pod_template = one(render("--set", "nodeSelector.pool=ops", "--set", "podAnnotations.team=data",
                              "--set", "tolerations[0].key=dedicated", "--set", "tolerations[0].operator=Exists",
                              "--set", "affinity.nodeAffinity.x=y", "--set", "resources.limits.memory=1Gi"),
                       "Deployment")["spec"]["template"]
    assert pod_template["metadata"]["annotations"] == {"team": "data"}
    spec = pod_template["spec"]
    assert spec["nodeSelector"] == {"pool": "ops"}
    assert spec["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    assert spec["affinity"] == {"nodeAffinity": {"x": "y"}}
    assert spec["containers"][0]["resources"]["limits"] == {"memory": "1Gi"}
    assert operator_container(render())["resources"]["requests"]


# --- RBAC ---------------------------------------------------------------------------------------

def test_cluster_wide_rbac_grants_exactly_what_the_operator_needs() -> None:
    docs = render()
    assert [r["metadata"]["name"] for r in of_kind(docs, "Role")] == ["hw-headwater-leader-election"]
    roles = {r["metadata"]["name"]: access(r["rules"]) for r in of_kind(docs, "ClusterRole")}
    assert roles == {"hw-headwater": NAMESPACED_ACCESS, "hw-headwater-kopf": CRD_ACCESS}
    for binding in of_kind(docs, "ClusterRoleBinding"):
        assert binding["roleRef"]["name"] in roles
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "hw-headwater",
                                        "namespace": "headwater-system"}]


def test_namespaced_rbac_is_a_role_in_each_watched_namespace_and_no_cluster_role_for_the_main_rules() -> None:
    docs = render("--set", "watchNamespaces={a,b}")
    assert env(docs)["HEADWATER_NAMESPACES"] == "a,b"
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]): access(r["rules"]) for r in of_kind(docs, "Role")}
    assert roles == {("a", "hw-headwater"): NAMESPACED_ACCESS, ("b", "hw-headwater"): NAMESPACED_ACCESS,
                     ("headwater-system", "hw-headwater-leader-election"): LEASE_ACCESS}
    bindings = {(b["metadata"]["namespace"], b["roleRef"]["kind"], b["roleRef"]["name"]): b["subjects"]
                for b in of_kind(docs, "RoleBinding")}
    subject = [{"kind": "ServiceAccount", "name": "hw-headwater", "namespace": "headwater-system"}]
    assert bindings == {("a", "Role", "hw-headwater"): subject, ("b", "Role", "hw-headwater"): subject,
                        ("headwater-system", "Role", "hw-headwater-leader-election"): subject}
    # Only kopf's reading of cluster-scoped CRDs and namespaces stays cluster-wide.
    assert [(r["metadata"]["name"], access(r["rules"])) for r in of_kind(docs, "ClusterRole")] == [
        ("hw-headwater-kopf", CRD_ACCESS | NAMESPACES_ACCESS)]
    assert [b["roleRef"]["name"] for b in of_kind(docs, "ClusterRoleBinding")] == ["hw-headwater-kopf"]


@pytest.mark.parametrize("values", [(), ("--set", "watchNamespaces={a,b}")], ids=["cluster-wide", "namespaced"])
def test_rbac_may_set_block_owner_deletion_on_every_owner_the_operator_names(values: tuple[str, ...]) -> None:
    """OwnerReferencesPermissionEnforcement (e.g. OpenShift) needs update on the owner's finalizers."""
    job = build_job(RunRef("r-1", "a", "uid-r", "p"), StepSpec.model_validate(
        {"id": "s", "type": "container", "image": "busybox"}), JobSettings(step_image="img"))
    run = scheduled_run({"metadata": {"name": "p", "namespace": "a", "uid": "uid-p"}},
                        datetime(2026, 11, 23, 6, 0, tzinfo=UTC))
    plurals = {c.PIPELINE_KIND: c.PIPELINE_PLURAL, c.PIPELINERUN_KIND: c.PIPELINERUN_PLURAL}
    owners = {(ref["apiVersion"].split("/")[0], plurals[ref["kind"]])
              for obj in (job, run) for ref in obj["metadata"]["ownerReferences"] if ref["blockOwnerDeletion"]}
    assert owners == {("headwater.dev", "pipelines"), ("headwater.dev", "pipelineruns")}
    for role in [d for d in render(*values) if d["kind"] in ("Role", "ClusterRole")
                 and d["metadata"]["name"] == "hw-headwater"]:
        granted = access(role["rules"])
        for group, plural in owners:
            assert "update" in granted.get((group, f"{plural}/finalizers"), set()), (role["kind"], plural)


@pytest.mark.parametrize("values", [(), ("--set", "watchNamespaces={a,b}")], ids=["cluster-wide", "namespaced"])
def test_rbac_has_no_wildcards_and_no_access_to_secrets(values: tuple[str, ...]) -> None:
    rules = list(all_rules(render(*values)))
    assert rules
    for rule in rules:
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule.get(key, []), rule
        assert "secrets" not in rule.get("resources", []), rule
        assert not rule.get("nonResourceURLs"), rule
        # names narrow a rule; only the Lease rule needs them (its own Leases)
        assert not rule.get("resourceNames") or rule["resources"] == ["leases"], rule
        assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), rule


def test_rbac_and_the_service_account_can_be_left_to_someone_else() -> None:
    docs = render("--set", "rbac.create=false", "--set", "serviceAccount.create=false",
                  "--set", "serviceAccount.name=ops-headwater")
    assert not [d for d in docs if d["kind"] in ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding",
                                                 "ServiceAccount")]
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ops-headwater"


# --- the database -----------------------------------------------------------------------------------

def test_without_the_bundled_postgresql_an_existing_secret_is_required() -> None:
    proc = helm("template", "hw", str(CHART), "--set", "postgresql.enabled=false")
    assert proc.returncode != 0
    assert "database.existingSecret is required when postgresql.enabled=false" in proc.stderr


def test_an_existing_database_secret_is_used_and_nothing_of_postgresql_is_rendered() -> None:
    docs = render(*EXTERNAL_DB, "--set", "database.existingSecretKey=url")
    assert env(docs)["HEADWATER_DATABASE_URL"] == {"secretKeyRef": {"name": "lineage-db", "key": "url"}}
    assert not of_kind(docs, "StatefulSet")
    assert [s["metadata"]["name"] for s in of_kind(docs, "Secret")] == ["hw-headwater-api-token"]
    assert "hw-headwater-postgresql" not in {s["metadata"]["name"] for s in of_kind(docs, "Service")}


def test_the_bundled_postgresql_is_the_official_image_with_a_volume_and_the_given_password() -> None:
    docs = render()
    statefulset = one(docs, "StatefulSet")
    [container] = statefulset["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "postgres:15"
    [claim] = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "8Gi"
    assert {"name": "data", "mountPath": "/var/lib/postgresql/data"} in container["volumeMounts"]
    secret = one(docs, "Secret", "hw-headwater-postgresql")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert b64decode(secret["data"]["postgres-password"]).decode() == PASSWORD
    url = b64decode(secret["data"]["database-url"]).decode()
    assert url == f"postgresql://headwater:{PASSWORD}@hw-headwater-postgresql.headwater-system.svc:5432/headwater"
    assert env(docs)["HEADWATER_DATABASE_URL"]["secretKeyRef"]["name"] == secret["metadata"]["name"]
    env_pg = {e["name"]: e for e in container["env"]}
    assert env_pg["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": secret["metadata"]["name"],
                                                                         "key": "postgres-password"}
    service = one(docs, "Service", "hw-headwater-postgresql")
    assert service["spec"]["ports"][0]["port"] == 5432


# --- the lineage API's tokens and network ----------------------------------------------------------

def test_by_default_the_api_needs_tokens_from_a_secret_the_chart_generates() -> None:
    docs = render()
    variables = env(docs)
    assert variables["HEADWATER_API_AUTH_ENABLED"] == "true"
    secret = one(docs, "Secret", "hw-headwater-api-token")
    assert variables["HEADWATER_API_TOKEN"] == {"secretKeyRef": {"name": "hw-headwater-api-token",
                                                                 "key": "read-token"}}
    assert variables["HEADWATER_API_WRITE_TOKEN"] == {"secretKeyRef": {"name": "hw-headwater-api-token",
                                                                       "key": "write-token"}}
    read, write = (b64decode(secret["data"][k]).decode() for k in ("read-token", "write-token"))
    assert len(read) >= 32 and len(write) >= 32 and read != write
    assert re.fullmatch(r"[A-Za-z0-9]+", read + write)


def test_the_tokens_are_read_back_with_lookup_to_survive_upgrades() -> None:
    template = (CHART / "templates" / "api-token.yaml").read_text()
    assert re.search(r'lookup "v1" "Secret" \.Release\.Namespace \$name', template)


def test_an_existing_token_secret_is_used_and_none_is_generated() -> None:
    docs = render("--set", "api.existingSecret=tokens", "--set", "api.readTokenKey=r",
                  "--set", "api.writeTokenKey=w")
    assert "hw-headwater-api-token" not in {s["metadata"]["name"] for s in of_kind(docs, "Secret")}
    variables = env(docs)
    assert variables["HEADWATER_API_TOKEN"] == {"secretKeyRef": {"name": "tokens", "key": "r"}}
    assert variables["HEADWATER_API_WRITE_TOKEN"] == {"secretKeyRef": {"name": "tokens", "key": "w"}}


def test_switching_auth_off_is_explicit_and_passes_no_token() -> None:
    docs = render("--set", "api.auth.enabled=false")
    variables = env(docs)
    assert variables["HEADWATER_API_AUTH_ENABLED"] == "false"
    assert "HEADWATER_API_TOKEN" not in variables and "HEADWATER_API_WRITE_TOKEN" not in variables
    assert "hw-headwater-api-token" not in {s["metadata"]["name"] for s in of_kind(docs, "Secret")}
    assert "WARNING: api.auth.enabled=false" in (CHART / "templates" / "NOTES.txt").read_text()


def test_the_network_policy_is_optional_and_admits_only_the_listed_peers() -> None:
    assert not of_kind(render(), "NetworkPolicy")
    airflow = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "airflow"}}}
    docs = render("--set", "networkPolicy.enabled=true", "--set-json", f"networkPolicy.apiFrom=[{json.dumps(airflow)}]")
    policy = one(docs, "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"] == one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}], "from": [airflow]}]
    closed = one(render("--set", "networkPolicy.enabled=true"), "NetworkPolicy")
    assert closed["spec"]["ingress"] is None or closed["spec"]["ingress"] == []


def test_the_bundled_postgresql_can_be_pinned_by_digest() -> None:
    digest = "sha256:" + "b" * 64
    [container] = one(render("--set", f"postgresql.image.digest={digest}"), "StatefulSet")["spec"]["template"][
        "spec"]["containers"]
    assert container["image"] == f"postgres@{digest}"


def test_the_password_is_read_back_with_lookup_to_survive_upgrades() -> None:
    template = (CHART / "templates" / "postgresql.yaml").read_text()
    assert re.search(r'lookup "v1" "Secret" \.Release\.Namespace \$name', template)


def _passwords(docs: list[dict[str, Any]]) -> tuple[str, str]:
    [secret] = [d for d in of_kind(docs, "Secret") if d["metadata"]["name"].endswith("-postgresql")]
    data = secret["data"]
    return b64decode(data["postgres-password"]).decode(), b64decode(data["database-url"]).decode()


def test_helm_template_never_renders_a_password_that_changes_from_one_render_to_the_next() -> None:
    """Argo CD renders with helm template on every sync: a new password each time locks the operator out."""
    renders = [helm("template", "hw", str(CHART)) for _ in range(2)]
    if all(proc.returncode == 0 for proc in renders):
        first, second = (_passwords([d for d in yaml.safe_load_all(p.stdout) if d]) for p in renders)
        assert first == second, "each render generated another password"
    else:
        for proc in renders:
            assert proc.returncode != 0
            assert "postgresql.password or postgresql.existingSecret is required when the chart is rendered " \
                   "without access to the cluster" in proc.stderr, proc.stderr
            assert "hw-headwater-postgresql" in proc.stderr


def test_a_given_password_is_url_encoded_in_the_database_url_and_the_same_on_every_render() -> None:
    docs = render("--set-string", "postgresql.password=p@ss w+rd/é", password=False)
    password, url = _passwords(docs)
    assert password == "p@ss w+rd/é"
    assert url.startswith("postgresql://headwater:p%40ss%20w%2Brd%2F%C3%A9@hw-headwater-postgresql.")
    assert _passwords(render("--set-string", "postgresql.password=p@ss w+rd/é", password=False)) == (password, url)


def test_an_existing_postgresql_secret_is_used_by_postgresql_and_the_operator_and_no_secret_is_rendered() -> None:
    docs = render("--set", "postgresql.existingSecret=pg-credentials", password=False)
    assert [d["metadata"]["name"] for d in of_kind(docs, "Secret")] == ["hw-headwater-api-token"]
    [container] = one(docs, "StatefulSet")["spec"]["template"]["spec"]["containers"]
    env_pg = {e["name"]: e for e in container["env"]}
    assert env_pg["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "pg-credentials",
                                                                         "key": "postgres-password"}
    assert env(docs)["HEADWATER_DATABASE_URL"] == {"secretKeyRef": {"name": "pg-credentials", "key": "database-url"}}


# --- monitoring ---------------------------------------------------------------------------------

def _metric_names(text: str) -> set[str]:
    names = set(re.findall(r"\bheadwater_[a-z_]+\b", text))
    return {re.sub(r"_(bucket|count|sum)$", "", n) for n in names}


def test_monitoring_objects_are_optional_and_off_by_default() -> None:
    kinds = {d["kind"] for d in render()}
    assert not kinds & {"ServiceMonitor", "PrometheusRule", "ConfigMap"}
    docs = render(*EVERYTHING)
    monitor = one(docs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    metrics_service = one(docs, "Service", "hw-headwater-metrics")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= metrics_service["metadata"]["labels"].items()
    api_service = one(docs, "Service", "hw-headwater-api")
    assert not monitor["spec"]["selector"]["matchLabels"].items() <= api_service["metadata"]["labels"].items()


def test_the_alerts_watch_staleness_failures_the_operator_and_the_lineage_backlog() -> None:
    [group] = one(render(*EVERYTHING), "PrometheusRule")["spec"]["groups"]
    alerts = {r["alert"]: r for r in group["rules"]}
    assert set(alerts) == {"HeadwaterDatasetStale", "HeadwaterRunsFailing", "HeadwaterOperatorDown",
                           "HeadwaterLineageBacklogGrowing", "HeadwaterRunNotRecorded", "HeadwaterAlertsUndelivered",
                           "HeadwaterNoLeader", "HeadwaterTriggersFailing"}
    no_leader = alerts["HeadwaterNoLeader"]
    assert (no_leader["expr"], no_leader["for"]) == ("sum(headwater_leader) < 1", "2m")
    [sharded] = one(render(*EVERYTHING, "--set", "sharding.shards=3"), "PrometheusRule")["spec"]["groups"]
    assert {r["alert"]: r["expr"] for r in sharded["rules"]}["HeadwaterNoLeader"] == "sum(headwater_leader) < 3"
    assert alerts["HeadwaterDatasetStale"]["expr"] == "headwater_dataset_stale == 1"
    assert alerts["HeadwaterDatasetStale"]["for"] == "5m"
    assert 'increase(headwater_runs_total{phase="Failed"}[1h])' in alerts["HeadwaterRunsFailing"]["expr"]
    assert alerts["HeadwaterRunsFailing"]["expr"].endswith("> 0")
    assert alerts["HeadwaterOperatorDown"]["expr"] == (
        'absent(up{job=~".*headwater.*"}) or up{job=~".*headwater.*"} == 0')
    assert alerts["HeadwaterLineageBacklogGrowing"]["expr"] == (
        "headwater_lineage_backlog > 0 and deriv(headwater_lineage_backlog[15m]) > 0")
    assert alerts["HeadwaterLineageBacklogGrowing"]["for"] == "15m"
    assert alerts["HeadwaterRunNotRecorded"]["expr"] == (
        'increase(headwater_lineage_record_failures_total{reason="RecordFailed"}[15m]) > 0')
    assert (alerts["HeadwaterAlertsUndelivered"]["expr"], alerts["HeadwaterAlertsUndelivered"]["for"]) == (
        "headwater_alerts_pending > 0", "30m")
    assert (alerts["HeadwaterTriggersFailing"]["expr"], alerts["HeadwaterTriggersFailing"]["for"]) == (
        "sum by (namespace, pipeline) (increase(headwater_trigger_failures_total[10m])) > 0", "15m")
    for alert in alerts.values():
        assert alert["labels"]["severity"] in ("warning", "critical")
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]


def test_each_alert_s_for_is_a_value_and_its_description_says_it() -> None:
    docs = render(*EVERYTHING, "--set", "metrics.prometheusRule.for.datasetStale=15s",
                  "--set", "metrics.prometheusRule.for.runsFailing=2m")
    [group] = one(docs, "PrometheusRule")["spec"]["groups"]
    alerts = {r["alert"]: r for r in group["rules"]}
    assert (alerts["HeadwaterDatasetStale"]["for"], alerts["HeadwaterRunsFailing"]["for"]) == ("15s", "2m")
    assert "freshness SLA for 15s." in alerts["HeadwaterDatasetStale"]["annotations"]["description"]
    assert alerts["HeadwaterOperatorDown"]["for"] == "5m"
    refused = helm("template", "hw", str(CHART), *GIVEN_PASSWORD, *EVERYTHING,
                   "--set", "metrics.prometheusRule.for.datasetStale=5 minutes")
    assert refused.returncode != 0 and "datasetStale" in refused.stderr


def test_the_dashboard_is_a_grafana_sidecar_configmap_with_the_expected_panels() -> None:
    configmap = one(render(*EVERYTHING), "ConfigMap")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(configmap["data"]["headwater.json"])
    titles = [p["title"] for p in dashboard["panels"]]
    assert titles == ["Runs by phase", "Run duration p50 / p95", "Step failures", "Step handoff p99",
                      "Dataset freshness", "Stale datasets", "Lineage backlog", "Dataset triggers",
                      "Trigger latency p50 / p99"]
    exprs = {p["title"]: " ".join(t["expr"] for t in p["targets"]) for p in dashboard["panels"]}
    assert "headwater_runs_total" in exprs["Runs by phase"]
    assert "histogram_quantile(0.5" in exprs["Run duration p50 / p95"]
    assert "histogram_quantile(0.95" in exprs["Run duration p50 / p95"]
    assert "histogram_quantile(0.99, sum by (le) (rate(headwater_step_handoff_seconds_bucket" in (
        exprs["Step handoff p99"])
    assert "headwater_dataset_stale" in exprs["Stale datasets"]
    assert "headwater_lineage_backlog" in exprs["Lineage backlog"]
    assert "increase(headwater_trigger_firings_total" in exprs["Dataset triggers"]
    assert "increase(headwater_trigger_failures_total" in exprs["Dataset triggers"]
    assert "histogram_quantile(0.99, sum by (le) (rate(headwater_trigger_latency_seconds_bucket" in (
        exprs["Trigger latency p50 / p99"])
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(set(ids)) == len(ids)
    assert dashboard["uid"] == "headwater"


def test_alerts_and_dashboard_use_only_the_listed_metrics_and_the_list_is_in_one_place() -> None:
    docs = render(*EVERYTHING)
    used = _metric_names(json.dumps(one(docs, "PrometheusRule")) + one(docs, "ConfigMap")["data"]["headwater.json"])
    assert used == METRICS, f"not served by the operator: {used - METRICS}; unused: {METRICS - used}"
    listed = (CHART / "templates" / "_metrics.tpl").read_text()
    assert _metric_names(listed) == METRICS
    for path in (CHART / "templates").glob("*"):
        if path.name != "_metrics.tpl":
            assert not _metric_names(path.read_text()), f"{path.name} names a metric; take it from _metrics.tpl"


def test_the_operator_defines_every_metric_the_chart_uses() -> None:
    metrics = pytest.importorskip("headwater.adapters.metrics")
    registry = metrics.Metrics().registry
    served = {f.name + "_total" if f.type == "counter" else f.name for f in registry.collect()}
    assert served >= METRICS, f"the chart uses metrics the operator does not define: {METRICS - served}"


# --- notes --------------------------------------------------------------------------------------

def test_the_notes_tell_how_to_upgrade_the_crds() -> None:
    notes = (CHART / "templates" / "NOTES.txt").read_text()
    assert "kubectl apply --server-side -f crds/" in notes


# --- high availability and sharding ---------------------------------------------------------------

def test_two_replicas_elect_a_leader_roll_one_pod_at_a_time_and_have_a_disruption_budget() -> None:
    docs = render("--set", "replicaCount=2")
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    variables = env(docs)
    assert variables["HEADWATER_LEADER_ELECTION"] == "true"
    timing = Settings(lease_duration_seconds=variables["HEADWATER_LEASE_DURATION_SECONDS"],
                      lease_renew_deadline_seconds=variables["HEADWATER_LEASE_RENEW_DEADLINE_SECONDS"],
                      lease_retry_seconds=variables["HEADWATER_LEASE_RETRY_SECONDS"])
    assert (timing.lease_duration_seconds, timing.lease_renew_deadline_seconds, timing.lease_retry_seconds) == (
        Settings.model_fields["lease_duration_seconds"].default,
        Settings.model_fields["lease_renew_deadline_seconds"].default,
        Settings.model_fields["lease_retry_seconds"].default)
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["metadata"]["name"] == "hw-headwater"
    assert pdb["spec"] == {"maxUnavailable": 1,
                           "selector": {"matchLabels": deployment["spec"]["selector"]["matchLabels"]}}
    assert deployment["spec"]["template"]["metadata"]["labels"].items() >= \
        pdb["spec"]["selector"]["matchLabels"].items()


def test_one_replica_has_no_disruption_budget_that_could_block_a_drain() -> None:
    assert not of_kind(render(), "PodDisruptionBudget")
    assert not of_kind(render("--set", "replicaCount=2", "--set", "podDisruptionBudget.enabled=false"),
                       "PodDisruptionBudget")


def test_without_leader_election_the_operator_is_recreated_and_more_replicas_are_refused() -> None:
    docs = render("--set", "leaderElection.enabled=false")
    assert one(docs, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}
    assert "HEADWATER_LEADER_ELECTION" not in env(docs)
    assert not [r for r in of_kind(docs, "Role") if r["metadata"]["name"].endswith("leader-election")]
    proc = helm("template", "hw", str(CHART), *GIVEN_PASSWORD, "--set", "leaderElection.enabled=false",
                "--set", "replicaCount=2")
    assert proc.returncode != 0 and "replicaCount > 1 needs leaderElection.enabled" in proc.stderr


def test_the_lease_rbac_is_limited_to_the_releases_namespace_and_its_own_lease_names() -> None:
    for values, names in [((), ["hw-headwater"]),
                          (("--set", "sharding.shards=3"),
                           [f"hw-headwater-shard-{i}-of-3" for i in range(3)])]:
        docs = render(*values)
        role = one(docs, "Role", "hw-headwater-leader-election")
        assert role["metadata"]["namespace"] == "headwater-system"
        assert role["rules"] == [
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": names,
             "verbs": ["get", "update"]}]
        # the names the operator derives from its settings are exactly the ones granted
        for deployment in of_kind(docs, "Deployment"):
            variables = {e["name"]: e.get("value") for e in
                         deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
            settings = Settings(lease_name=variables["HEADWATER_LEASE_NAME"],
                                shard=variables.get("HEADWATER_SHARD"))
            assert settings.lease() in names


def test_shards_are_one_deployment_each_with_its_own_selector_shard_and_budget() -> None:
    docs = render("--set", "sharding.shards=3", "--set", "replicaCount=2")
    deployments = of_kind(docs, "Deployment")
    assert [d["metadata"]["name"] for d in deployments] == [f"hw-headwater-shard-{i}" for i in range(3)]
    selectors = []
    for i, deployment in enumerate(deployments):
        variables = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert variables["HEADWATER_SHARD"] == f"{i}/3"
        assert deployment["spec"]["replicas"] == 2
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector["headwater.dev/shard"] == f"{i}-of-3"
        assert deployment["spec"]["template"]["metadata"]["labels"].items() >= selector.items()
        selectors.append(selector)
    assert len({tuple(sorted(s.items())) for s in selectors}) == 3  # no two Deployments share pods
    budgets = of_kind(docs, "PodDisruptionBudget")
    assert [b["spec"]["selector"]["matchLabels"] for b in budgets] == selectors
    # the Services reach every shard's pods (each serves the lineage API and /metrics)
    for service in of_kind(docs, "Service"):
        if service["metadata"]["name"] in ("hw-headwater-api", "hw-headwater-metrics"):
            assert all(s.items() >= service["spec"]["selector"].items() for s in selectors)


def test_one_shard_keeps_the_deployment_name_and_selector_of_an_unsharded_install() -> None:
    # a Deployment's selector cannot change: an upgrade to this chart must not touch it
    deployment = one(render(), "Deployment")
    assert deployment["metadata"]["name"] == "hw-headwater"
    assert "headwater.dev/shard" not in deployment["spec"]["selector"]["matchLabels"]
    assert "HEADWATER_SHARD" not in env(render())
