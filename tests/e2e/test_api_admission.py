"""The CRDs on a real apiserver: bad manifests are rejected at admission naming the field and the problem,
the examples are accepted, and kubectl get / explain answer the common questions.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from headwater.spec.validation import validate_text
from helpers import Cluster
from manifests import BAD_CASES, BadCase, pipeline, run

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


@pytest.fixture(scope="module")
def api(cluster: Cluster) -> Cluster:
    """The cluster with the current CRDs installed (idempotent: server-side apply)."""
    crds = str(ROOT / "crds")
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", crds)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", crds)
    return cluster


def dry_run(api: Cluster, *manifests: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """Server-side dry-run create/apply in the default namespace: full admission, nothing stored."""
    return api.kubectl("apply", "--dry-run=server", "-n", "default", "-f", "-",
                       input=yaml.safe_dump_all(manifests), check=False)


@pytest.mark.parametrize("case", [c for c in BAD_CASES if c.api_field], ids=lambda c: c.id)
def test_a_bad_manifest_is_rejected_at_admission_naming_the_field_and_the_problem(
    api: Cluster, case: BadCase
) -> None:
    result = dry_run(api, case.copy())
    assert result.returncode != 0, f"{case.id} was admitted"
    assert case.api_field is not None
    assert case.api_field in result.stderr, result.stderr
    assert case.api_words in result.stderr, result.stderr


@pytest.mark.parametrize("case", [c for c in BAD_CASES if c.same_message], ids=lambda c: c.id)
def test_cross_field_rules_say_the_same_words_at_admission_and_in_validate(
    api: Cluster, case: BadCase
) -> None:
    stderr = dry_run(api, case.copy()).stderr
    [finding] = [f for f in validate_text(yaml.safe_dump(case.copy())) if f.problem.path == case.field]
    assert finding.problem.message in stderr


@pytest.mark.parametrize("case", [c for c in BAD_CASES if not c.api_field], ids=lambda c: c.id)
def test_what_cel_cannot_check_is_admitted_and_left_to_the_operator(api: Cluster, case: BadCase) -> None:
    result = dry_run(api, case.copy())
    assert result.returncode == 0, result.stderr
    assert validate_text(yaml.safe_dump(case.copy())), "headwater validate must still catch it"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_is_admitted(api: Cluster, path: Path) -> None:
    result = api.kubectl("apply", "--dry-run=server", "-n", "default", "-f", str(path), check=False)
    assert result.returncode == 0, result.stderr
    assert "(server dry run)" in result.stdout


def test_defaults_are_filled_in_by_the_apiserver(api: Cluster, namespace: str) -> None:
    api.apply(pipeline(), namespace=namespace)
    spec = api.get("pipeline", "orders", namespace)["spec"]
    assert (spec["concurrencyPolicy"], spec["suspend"], spec["failFast"]) == ("Forbid", False, False)
    assert (spec["successfulRunsHistoryLimit"], spec["failedRunsHistoryLimit"]) == (10, 10)
    first = spec["steps"][0]
    assert (first["retries"], first["timeoutSeconds"], first["dependsOn"]) == (2, 300, [])


def test_get_shows_the_printer_columns_and_the_category_and_short_names(api: Cluster, namespace: str) -> None:
    api.apply(pipeline(schedule="0 6 * * *"), run(), namespace=namespace)
    status = {"observedGeneration": 1, "steps": 3, "lastRun": "orders-1", "lastRunPhase": "Running",
              "conditions": [{"type": "Ready", "status": "True", "reason": "Valid", "message": "",
                              "lastTransitionTime": "2026-11-23T06:00:00Z"}]}
    run_status = {"phase": "Running", "progress": "1/3", "startedAt": "2026-11-23T06:00:00Z",
                  "duration": "1m32s"}
    api.kubectl("-n", namespace, "patch", "pipeline", "orders", "--subresource=status", "--type=merge",
                "-p", json.dumps({"status": status}))
    api.kubectl("-n", namespace, "patch", "pipelinerun", "orders-1", "--subresource=status", "--type=merge",
                "-p", json.dumps({"status": run_status}))

    out = api.kubectl("-n", namespace, "get", "pipelines,pipelineruns").stdout
    lines = [" ".join(line.split()) for line in out.splitlines() if line.strip()]
    assert lines[0] == "NAME SCHEDULE STEPS LAST RUN LAST PHASE READY AGE"
    assert lines[1].startswith("pipeline.headwater.dev/orders 0 6 * * * 3 orders-1 Running True ")
    assert lines[2].startswith("NAME PIPELINE PHASE PROGRESS STARTED DURATION AGE")
    assert lines[3].startswith("pipelinerun.headwater.dev/orders-1 orders Running 1/3 ")
    assert " 1m32s " in lines[3]
    by_category = sorted(api.kubectl("-n", namespace, "get", "headwater", "-o", "name").stdout.split())
    assert by_category == ["pipeline.headwater.dev/orders", "pipelinerun.headwater.dev/orders-1"]
    assert sorted(api.kubectl("-n", namespace, "get", "pl,plr", "-o", "name").stdout.split()) == by_category


def test_explain_teaches_the_fields(api: Cluster) -> None:
    out = api.kubectl("explain", "pipeline.spec.steps").stdout
    assert "DESCRIPTION:" in out
    assert "dependsOn\t<[]string>" in out
    assert "Ids of the steps that must succeed before this one starts." in out
    assert "Unique id of the step in the pipeline" in out
    freshness = api.kubectl("explain", "pipeline.spec.steps.outputs.freshness").stdout
    assert "maxAge" in freshness and "deadline" in freshness
    result = api.kubectl("explain", "pipelinerun.status.steps.result").stdout
    assert "termination message" in result


def test_only_cancel_can_change_after_a_run_is_created(api: Cluster, namespace: str) -> None:
    api.apply(run(), namespace=namespace)

    def patch(spec: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return api.kubectl("-n", namespace, "patch", "pipelinerun", "orders-1", "--type=merge",
                           "-p", json.dumps({"spec": spec}), check=False)

    moved = patch({"pipelineRef": {"name": "other"}})
    assert moved.returncode != 0
    assert "only spec.cancel can change after a PipelineRun is created" in moved.stderr
    assert patch({"cancel": True}).returncode == 0
    undone = patch({"cancel": False})
    assert undone.returncode != 0
    assert "spec.cancel cannot be set back to false" in undone.stderr


def test_the_operator_can_store_a_run_status_with_the_pipeline_snapshot(api: Cluster, namespace: str) -> None:
    api.apply(run(), namespace=namespace)
    snapshot = yaml.safe_load((ROOT / "examples" / "marketing-attribution.yaml").read_text())["spec"]
    status = {"phase": "Running", "pipelineSpec": snapshot,
              "steps": [{"name": "extract-google-ads", "phase": "Succeeded", "attempts": 1,
                         "result": {"rowsAffected": 1234, "nested": {"ok": True}}}]}
    api.kubectl("-n", namespace, "patch", "pipelinerun", "orders-1", "--subresource=status", "--type=merge",
                "-p", json.dumps({"status": status}))
    stored = api.get("pipelinerun", "orders-1", namespace)["status"]
    assert stored["steps"][0]["result"] == {"rowsAffected": 1234, "nested": {"ok": True}}
    assert len(stored["pipelineSpec"]["steps"]) == len(snapshot["steps"])
