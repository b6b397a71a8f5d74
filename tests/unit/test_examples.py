"""The manifests in examples/ are valid and tell the story they are meant to tell."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from headwater.spec import dag
from headwater.spec.constants import DEFAULT_IMAGE
from headwater.spec.models import Dataset, PipelineRunSpec, PipelineSpec, StepType
from headwater.spec.validation import validate_paths

pytestmark = pytest.mark.unit

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FILES = sorted(EXAMPLES.glob("*.yaml"))


def load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    return doc


def spec(name: str) -> PipelineSpec:
    return PipelineSpec.model_validate(load(name)["spec"])


def outputs(pipeline: PipelineSpec) -> set[Dataset]:
    return {Dataset(namespace=o.namespace, name=o.name) for s in pipeline.steps for o in s.outputs}


def inputs(pipeline: PipelineSpec) -> set[Dataset]:
    return {i for s in pipeline.steps for i in s.inputs}


def test_the_expected_examples_exist() -> None:
    assert {f.name for f in FILES} >= {
        "revenue-pipeline.yaml", "revenue-reporting.yaml", "manual-run.yaml", "marketing-attribution.yaml"
    }


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_example_passes_headwater_validate(path: Path) -> None:
    findings, documents = validate_paths([str(path)])
    assert [str(f) for f in findings] == []
    assert documents >= 1


def test_all_examples_together_are_valid_including_cross_references() -> None:
    findings, documents = validate_paths([str(EXAMPLES)])
    assert (findings, documents) == ([], len(FILES))


def test_the_revenue_pipeline_is_the_use_case() -> None:
    revenue = spec("revenue-pipeline.yaml")
    assert (revenue.owner, revenue.schedule, revenue.time_zone) == ("data-team@company.com", "0 6 * * *",
                                                                      "Europe/Berlin")
    assert dag.topological_order(revenue.steps) == [
        "extract-orders", "extract-payments", "transform-revenue", "aggregate-metrics"
    ]
    assert revenue.step("transform-revenue").depends_on == ["extract-orders", "extract-payments"]
    extract = revenue.step("extract-orders")
    assert extract.inputs == [Dataset(namespace="postgres://production", name="public.orders")]
    assert (extract.outputs[0].namespace, extract.outputs[0].name) == ("postgres://warehouse", "raw.orders")
    payments = revenue.step("extract-payments")
    assert (payments.type, payments.inputs[0].namespace) == (StepType.API_EXTRACT, "api://stripe")
    daily = revenue.step("transform-revenue").outputs[0]
    assert daily.name == "analytics.daily_revenue"
    assert daily.freshness is not None and daily.freshness.deadline == "07:00"
    assert revenue.step("aggregate-metrics").outputs[0].name == "analytics.business_metrics"


def test_lineage_crosses_from_the_revenue_pipeline_into_reporting() -> None:
    shared = outputs(spec("revenue-pipeline.yaml")) & inputs(spec("revenue-reporting.yaml"))
    assert Dataset(namespace="postgres://warehouse", name="analytics.daily_revenue") in shared


def test_marketing_attribution_is_large_with_fan_out_and_fan_in() -> None:
    marketing = spec("marketing-attribution.yaml")
    assert len(marketing.steps) >= 12
    fan_in = max(len(s.depends_on) for s in marketing.steps)
    fan_out = max(sum(s.id in t.depends_on for t in marketing.steps) for s in marketing.steps)
    assert fan_in >= 3
    assert fan_out >= 3
    assert len(dag.topological_order(marketing.steps)) == len(marketing.steps)
    assert Dataset(namespace="postgres://warehouse", name="raw.orders") in inputs(marketing)


def test_the_manual_run_runs_the_revenue_pipeline() -> None:
    run = PipelineRunSpec.model_validate(load("manual-run.yaml")["spec"])
    revenue = load("revenue-pipeline.yaml")["metadata"]["name"]
    assert (run.pipeline_ref.name, run.trigger) == (revenue, "manual")


PIPELINES = ["revenue-pipeline.yaml", "revenue-reporting.yaml", "marketing-attribution.yaml"]


@pytest.mark.parametrize("name", PIPELINES)
def test_sql_steps_use_the_headwater_image_and_other_steps_pin_a_tag(name: str) -> None:
    for step in spec(name).steps:
        if step.type == StepType.SQL:
            assert step.resolved_image() == DEFAULT_IMAGE
        else:
            assert step.image is not None and ":" in step.image and not step.image.endswith(":latest")
