"""Names and label values derived from user names fit their limits, stay distinct, and say the limit."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from headwater.pipelines.scheduler import scheduled_run
from headwater.pipelines.scheduling import run_name_for_slot
from headwater.runs.jobs import JobSettings, RunRef, build_job
from headwater.spec.crdgen import pipeline_crd
from headwater.spec.models import StepSpec
from headwater.spec.names import MAX_PIPELINE_NAME, bounded, label_value
from headwater.spec.validation import validate_text
from manifests import step

pytestmark = pytest.mark.unit

LABEL_VALUE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
SLOT = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)


def test_a_value_that_fits_is_kept_as_it_is() -> None:
    assert bounded("revenue") == "revenue"
    assert label_value("x" * 63) == "x" * 63


@given(st.from_regex(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", fullmatch=True))
def test_every_label_value_of_a_name_is_a_valid_label_value_of_at_most_63(name: str) -> None:
    value = label_value(name)
    assert len(value) <= 63
    assert LABEL_VALUE.match(value)
    assert label_value(name) == value


def test_long_names_with_a_common_prefix_get_distinct_label_values() -> None:
    first, second = "p" * 70 + "-a", "p" * 70 + "-b"
    assert label_value(first) != label_value(second)


def test_a_step_job_of_a_long_pipeline_and_run_has_labels_that_fit() -> None:
    pipeline = "a" * 70
    run = RunRef(name=run_name_for_slot(pipeline, SLOT), namespace="data", uid="u", pipeline=pipeline)
    job = build_job(run, StepSpec.model_validate(step("load", image="busybox")), JobSettings("img"))
    for labels in (job["metadata"]["labels"], job["spec"]["template"]["metadata"]["labels"]):
        assert all(len(value) <= 63 and LABEL_VALUE.match(value) for value in labels.values())
        assert labels["headwater.dev/pipeline"] == label_value(pipeline)
        assert labels["headwater.dev/run"] == label_value(run.name)
    assert len(job["metadata"]["name"]) <= 63


def test_a_scheduled_run_of_a_long_pipeline_carries_the_shortened_pipeline_label() -> None:
    pipeline = {"metadata": {"name": "b" * 70, "namespace": "data", "uid": "u"}}
    body = scheduled_run(pipeline, SLOT)
    assert body["metadata"]["name"] == "b" * 70 + "-202611230600"
    assert body["metadata"]["labels"]["headwater.dev/pipeline"] == label_value("b" * 70)


def test_scheduled_run_names_of_the_longest_pipelines_fit_and_stay_distinct() -> None:
    first, second = "c" * (MAX_PIPELINE_NAME - 1) + "x", "c" * (MAX_PIPELINE_NAME - 1) + "y"
    assert len(run_name_for_slot(first, SLOT)) == 253
    assert run_name_for_slot(first, SLOT) != run_name_for_slot(second, SLOT)


def test_the_crd_states_the_longest_pipeline_name_and_validate_says_the_same() -> None:
    rules = pipeline_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["x-kubernetes-validations"]
    assert rules[0]["rule"] == f"self.metadata.name.size() <= {MAX_PIPELINE_NAME}"
    doc = {"apiVersion": "headwater.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": "d" * 241},
           "spec": {"steps": [step("a", image="busybox")]}}
    findings = [str(f) for f in validate_text(yaml.safe_dump(doc))]
    assert len(findings) == 1
    assert findings[0].endswith(rules[0]["message"])
    doc["metadata"]["name"] = "d" * MAX_PIPELINE_NAME
    assert validate_text(yaml.safe_dump(doc)) == []
