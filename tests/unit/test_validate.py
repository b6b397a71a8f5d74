"""``headwater validate``: every bad manifest is rejected naming the field and the problem."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import yaml

from headwater.cli import main as cli
from headwater.spec.validation import pipeline_spec_problems, validate_text
from manifests import BAD_CASES, BadCase, pipeline, run

pytestmark = pytest.mark.unit


def write(tmp_path: Path, *docs: dict[str, Any], name: str = "manifests.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def validate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    code = cli.main(["validate", *args])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


@pytest.mark.parametrize("case", BAD_CASES, ids=lambda c: c.id)
def test_a_bad_manifest_is_rejected_naming_the_field_and_the_problem(
    case: BadCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, case.copy())
    code, lines, _ = validate(capsys, str(path))
    assert code == 1
    kind, name = case.manifest["kind"], case.manifest["metadata"]["name"]
    expected_start = f"{path}:1: {kind}/{name}: {case.field}: "
    assert any(line.startswith(expected_start) and case.validate_words in line for line in lines), lines


def test_duplicate_step_id_is_rejected_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    [case] = [c for c in BAD_CASES if c.id == "duplicate-step-id"]
    _, lines, _ = validate(capsys, str(write(tmp_path, case.copy())))
    assert lines == [f"{tmp_path}/manifests.yaml:1: Pipeline/orders: spec.steps[2].id: "
                     "step id 'extract' is used by more than one step; step ids must be unique"]


def test_unknown_dependency_lists_the_known_steps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    [case] = [c for c in BAD_CASES if c.id == "unknown-dependency"]
    _, lines, _ = validate(capsys, str(write(tmp_path, case.copy())))
    assert lines == [f"{tmp_path}/manifests.yaml:1: Pipeline/orders: spec.steps[1].dependsOn: "
                     "step 'transform' "
                     "depends on unknown step 'extrct'; known steps: extract, transform, load"]


def test_a_valid_file_exits_zero_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, err = validate(capsys, str(write(tmp_path, pipeline(), run())))
    assert (code, lines) == (0, [])
    assert "checked 2 document(s): all valid" in err


def test_every_problem_of_a_manifest_is_reported_at_once() -> None:
    bad = pipeline(owner="nobody", schedule="often")
    bad["spec"]["steps"][2].pop("image")
    bad["spec"]["steps"][1]["dependsOn"] = ["transform"]
    fields = [f.problem.path for f in validate_text(yaml.safe_dump(bad))]
    assert fields == ["spec.owner", "spec.schedule", "spec.steps[2].image", "spec.steps[1].dependsOn"]


def test_documents_are_numbered_and_unknown_kinds_are_reported(tmp_path: Path) -> None:
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}}
    text = yaml.safe_dump_all([pipeline(), config_map, pipeline(name="Bad_Name")])
    assert [str(f) for f in validate_text(text, "all.yaml")] == [
        "all.yaml:2: ConfigMap/settings: kind: unknown kind 'ConfigMap': headwater validate checks Pipeline, "
        "PipelineRun, Backfill (headwater.dev/v1alpha1)",
        "all.yaml:3: Pipeline/Bad_Name: metadata.name: Invalid value: 'Bad_Name': must be a DNS-1123 "
        "subdomain: lowercase letters, digits, '-' and '.' (at most 253)",
    ]


def test_the_api_version_and_name_are_required() -> None:
    doc = pipeline()
    doc["apiVersion"] = "headwater.dev/v1"
    del doc["metadata"]["name"]
    problems = [str(f.problem) for f in validate_text(yaml.safe_dump(doc))]
    assert problems == [
        "apiVersion: Unsupported value: 'headwater.dev/v1': supported values: 'headwater.dev/v1alpha1'",
        "metadata.name: Required value: name or generateName is required",
    ]


def test_invalid_yaml_and_missing_files_are_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: Pipeline\n  spec: [\n")
    code, lines, _ = validate(capsys, str(broken), str(tmp_path / "missing.yaml"))
    assert code == 1
    assert lines == [
        f"{broken}: invalid YAML at line 2, column 7: mapping values are not allowed here",
        f"{tmp_path}/missing.yaml: cannot read the file: No such file or directory",
    ]


def test_a_directory_and_stdin_can_be_validated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, pipeline(), name="a.yaml")
    monkeypatch.setattr("sys.stdin", io.StringIO(yaml.safe_dump(run(trigger="retry"))))
    code, lines, err = validate(capsys, str(tmp_path), "-")
    assert code == 1
    assert lines == ["<stdin>:1: PipelineRun/orders-1: spec.retryOf: trigger: retry needs retryOf, the name "
                     "of the run to retry"]
    assert "checked 2 document(s): 1 problem(s)" in err


def test_a_run_from_an_unknown_step_of_a_pipeline_in_the_same_files_is_reported() -> None:
    text = yaml.safe_dump_all([pipeline(), run(fromStep="transfrom")])
    assert [str(f) for f in validate_text(text, "x.yaml")] == [
        "x.yaml:2: PipelineRun/orders-1: spec.fromStep: unknown step 'transfrom'; known steps: extract, "
        "transform, load"
    ]


def test_quiet_mode_prints_only_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, err = validate(capsys, "-q", str(write(tmp_path, pipeline())))
    assert (code, lines, err) == (0, [], "")


def test_the_operator_gets_cycles_with_the_invalid_dag_reason() -> None:
    spec = pipeline()["spec"]
    spec["steps"][0]["dependsOn"] = ["load"]
    [problem] = pipeline_spec_problems(spec)
    assert (problem.path, problem.reason) == ("spec.steps", "InvalidDAG")
    assert problem.message == "dependency cycle: extract -> transform -> load -> extract"
