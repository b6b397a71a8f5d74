"""The CRDs: generated from the models, structural, described, and never drifting from crds/."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, Field

from headwater.cli import main as cli
from headwater.spec import crdgen, rules
from headwater.spec.crdgen import CrdGenError

pytestmark = pytest.mark.unit

CRDS_DIR = Path(__file__).resolve().parents[2] / "crds"


def version(crd: dict[str, Any]) -> dict[str, Any]:
    [only] = crd["spec"]["versions"]
    return dict(only)


def schema(crd: dict[str, Any]) -> dict[str, Any]:
    return dict(version(crd)["schema"]["openAPIV3Schema"])


def nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its path, e.g. ``.spec.steps[].outputs[].freshness``."""
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from nodes(sub, f"{path}.{name}")
    if "items" in node:
        yield from nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from nodes(node["additionalProperties"], f"{path}{{}}")


def default_columns(crd: dict[str, Any]) -> dict[str, str]:
    """Printer columns kubectl shows without -o wide: name -> JSONPath."""
    return {c["name"]: c["jsonPath"] for c in version(crd)["additionalPrinterColumns"] if "priority" not in c}


PIPELINE = crdgen.pipeline_crd()
RUN = crdgen.pipelinerun_crd()


def test_crds_directory_matches_the_models() -> None:
    assert crdgen.main(["--check", "--output", str(CRDS_DIR)]) == 0, "run: python -m headwater.spec.crdgen"
    for name, crd in crdgen.crds().items():
        assert yaml.safe_load((CRDS_DIR / name).read_text()) == crd


def test_the_check_fails_when_a_file_drifted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert crdgen.main(["--output", str(tmp_path)]) == 0
    changed = tmp_path / "headwater.dev_pipelines.yaml"
    changed.write_text(changed.read_text().replace("default: 300", "default: 301"))
    assert crdgen.main(["--check", "--output", str(tmp_path)]) == 1
    assert "headwater.dev_pipelines.yaml is out of date" in capsys.readouterr().err


@pytest.mark.parametrize(("crd", "short"), [(PIPELINE, "pl"), (RUN, "plr")])
def test_names_short_names_category_and_status_subresource(crd: dict[str, Any], short: str) -> None:
    names = crd["spec"]["names"]
    assert names["shortNames"] == [short]
    assert names["categories"] == ["headwater"]
    assert crd["spec"]["group"] == "headwater.dev"
    assert version(crd)["name"] == "v1alpha1"
    assert version(crd)["subresources"] == {"status": {}}


def test_pipeline_printer_columns() -> None:
    assert default_columns(PIPELINE) == {
        "Schedule": ".spec.schedule", "Steps": ".status.steps", "Last Run": ".status.lastRun",
        "Last Phase": ".status.lastRunPhase", "Ready": '.status.conditions[?(@.type=="Ready")].status',
        "Age": ".metadata.creationTimestamp",
    }


def test_pipelinerun_printer_columns() -> None:
    assert default_columns(RUN) == {
        "Pipeline": ".spec.pipelineRef.name", "Phase": ".status.phase", "Progress": ".status.progress",
        "Started": ".status.startedAt", "Duration": ".status.duration", "Age": ".metadata.creationTimestamp",
    }


@pytest.mark.parametrize("crd", [PIPELINE, RUN], ids=["Pipeline", "PipelineRun"])
def test_schemas_are_structural(crd: dict[str, Any]) -> None:
    for path, node in nodes(schema(crd)):
        assert not {"$ref", "$defs", "title", "allOf", "oneOf", "nullable", "const"} & set(node), path
        if node.get("x-kubernetes-int-or-string"):
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
        else:
            assert "anyOf" not in node, path
            assert node.get("type") in {"object", "array", "string", "integer", "boolean"}, path


@pytest.mark.parametrize("crd", [PIPELINE, RUN], ids=["Pipeline", "PipelineRun"])
def test_every_field_has_a_description(crd: dict[str, Any]) -> None:
    for path, node in nodes(schema(crd)):
        for name, sub in node.get("properties", {}).items():
            if f"{path}.{name}" != ".metadata":
                assert sub.get("description"), f"{path}.{name} has no description"


def test_only_the_step_result_keeps_unknown_fields() -> None:
    kept = [path for crd in (PIPELINE, RUN) for path, node in nodes(schema(crd))
            if node.get("x-kubernetes-preserve-unknown-fields")]
    assert kept == [".status.steps[].result"]


def test_every_spec_string_and_list_is_bounded_for_the_cel_cost_budget() -> None:
    for path, node in nodes(schema(PIPELINE)["properties"]["spec"], ".spec"):
        if node.get("type") == "string" and "enum" not in node:
            assert "maxLength" in node, path
        if node.get("type") == "array":
            assert "maxItems" in node, path


def test_defaults_are_in_the_schema() -> None:
    spec = schema(PIPELINE)["properties"]["spec"]["properties"]
    step = spec["steps"]["items"]["properties"]
    retries, timeout = step["retries"], step["timeoutSeconds"]
    assert (retries["default"], timeout["default"], step["dependsOn"]["default"]) == (2, 300, [])
    assert (retries["minimum"], retries["maximum"], timeout["minimum"]) == (0, 10, 1)
    assert spec["concurrencyPolicy"]["default"] == "Forbid"
    assert spec["concurrencyPolicy"]["enum"] == ["Allow", "Forbid", "Replace"]
    assert (spec["suspend"]["default"], spec["failFast"]["default"]) == (False, False)
    assert spec["successfulRunsHistoryLimit"]["default"] == spec["failedRunsHistoryLimit"]["default"] == 10
    assert spec["steps"]["maxItems"] == 200
    assert step["id"]["maxLength"] == 40
    run = schema(RUN)["properties"]["spec"]["properties"]
    assert (run["trigger"]["default"], run["cancel"]["default"]) == ("manual", False)


def test_the_run_snapshot_has_the_pipeline_spec_schema_without_its_cel_rules() -> None:
    snapshot = schema(RUN)["properties"]["status"]["properties"]["pipelineSpec"]
    spec = schema(PIPELINE)["properties"]["spec"]
    assert "x-kubernetes-validations" in json.dumps(spec)  # the spec's rules admitted what the snapshot copies
    assert {k: v for k, v in snapshot.items() if k != "description"} == {
        k: v for k, v in crdgen.without_rules(spec).items() if k != "description"
    }


@pytest.mark.parametrize("crd", [PIPELINE, RUN, crdgen.backfill_crd()], ids=["Pipeline", "PipelineRun", "Backfill"])
def test_no_status_carries_cel_rules_the_apiserver_would_check_on_every_status_write(crd: dict[str, Any]) -> None:
    assert "x-kubernetes-validations" not in json.dumps(schema(crd)["properties"]["status"])


def test_cel_rules_carry_the_messages_of_headwater_rules() -> None:
    steps = schema(PIPELINE)["properties"]["spec"]["properties"]["steps"]
    assert [r["message"] for r in steps["x-kubernetes-validations"]] == [
        "step ids must be unique", "every dependsOn entry must be the id of a step of this pipeline"
    ]
    item_rules = {r["fieldPath"]: r for r in steps["items"]["x-kubernetes-validations"]}
    assert item_rules[".image"] == rules.IMAGE_REQUIRED.to_cel()
    assert item_rules[".dependsOn"]["messageExpression"] == '"step \'" + self.id + "\' depends on itself"'


def _evaluate(expression: str, values: dict[str, str]) -> str:
    """Evaluate a messageExpression made by rules.Rule: string literals and arguments joined by +."""
    parts = [part.strip("()") for part in expression.split(" + ")]
    return "".join(json.loads(part) if part.startswith('"') else values[part] for part in parts)


@pytest.mark.parametrize("rule", [r for r in vars(rules).values() if isinstance(r, rules.Rule) and r.args],
                         ids=lambda r: r.summary)
def test_the_apiserver_and_python_say_the_same_words(rule: rules.Rule) -> None:
    samples = {"self.id": "transform", "self.type": "container", "self.name": "TOKEN"}
    python_side = rule.text(**{name: samples[expr] for name, expr in rule.args.items()})
    assert _evaluate(rule.to_cel()["messageExpression"], samples) == python_side


def test_a_union_that_is_not_optional_cannot_be_generated() -> None:
    class Bad(BaseModel):
        value: int | str = Field(description="either")

    with pytest.raises(CrdGenError, match=r"Bad\.value: a union of 2 types is not structural"):
        crdgen.structural_schema(Bad)


def test_a_field_without_a_description_cannot_be_generated() -> None:
    class Quiet(BaseModel):
        value: int

    with pytest.raises(CrdGenError, match=r"Quiet\.value has no description"):
        crdgen.structural_schema(Quiet)


def test_headwater_crds_prints_every_crd(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["crds"]) == 0
    printed = list(yaml.safe_load_all(capsys.readouterr().out))
    names = [d["metadata"]["name"] for d in printed]
    assert names == ["pipelines.headwater.dev", "pipelineruns.headwater.dev", "backfills.headwater.dev"]
