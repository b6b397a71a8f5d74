"""Dataset triggers decided as data: which runs pending input versions fire, and what those runs are called."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from headwater.controller.triggerer import WatchedPipelines
from headwater.lineage.run_records import FINALIZER
from headwater.pipelines.scheduling import run_name_for_slot
from headwater.pipelines.triggering import (
    PendingVersion,
    consumer_key,
    deadline_satisfied,
    decide,
    run_name_for_versions,
    triggered_run,
)
from headwater.spec.models import DatasetTriggers, PipelineRunSpec, PipelineSpec, TriggerMode

pytestmark = pytest.mark.unit

WH = "postgres://warehouse"
T = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
CONSUMER = consumer_key("data", "reporting", "uid-1")


def triggers(mode: str, *names: str) -> DatasetTriggers:
    return DatasetTriggers.model_validate({"mode": mode, "inputs": [{"namespace": WH, "name": n} for n in names]})


def version(outbox_id: int, name: str, pipeline: str = "upstream") -> PendingVersion:
    return PendingVersion(outbox_id, WH, name, 100 + outbox_id, f"data/{pipeline}-run/{outbox_id:08}", pipeline,
                          T + timedelta(seconds=outbox_id))


def test_any_fires_one_run_per_new_version_oldest_first() -> None:
    pending = [version(3, "b"), version(1, "a"), version(2, "a")]
    firings = decide("reporting", CONSUMER, triggers("any", "a", "b"), pending)
    assert [f.outbox_ids for f in firings] == [(1,), (2,), (3,)]
    assert [(v.name, v.version) for f in firings for v in f.versions] == [("a", 101), ("a", 102), ("b", 103)]
    assert len({f.run_name for f in firings}) == 3


def test_all_waits_until_every_input_has_a_new_version_and_consumes_nothing_meanwhile() -> None:
    assert decide("reporting", CONSUMER, triggers("all", "a", "b"), [version(1, "a"), version(2, "a")]) == []


def test_all_fires_once_per_new_input_pair_folding_earlier_versions_of_one_input_into_its_latest() -> None:
    firings = decide("reporting", CONSUMER, triggers("all", "a", "b"), [version(1, "a"), version(2, "a"),
                                                                       version(3, "b")])
    assert len(firings) == 1
    assert firings[0].outbox_ids == (1, 2, 3)
    assert [(v.name, v.version, v.superseded) for v in firings[0].versions] == [("a", 102, 1), ("b", 103, 0)]


def test_the_run_name_derives_from_the_consumed_versions_so_deciding_again_names_the_same_run() -> None:
    pending = [version(1, "a"), version(2, "b")]
    first = decide("reporting", CONSUMER, triggers("all", "a", "b"), pending)
    again = decide("reporting", CONSUMER, triggers("all", "a", "b"), list(reversed(pending)))
    assert first == again
    other_pipeline_object = decide("reporting", consumer_key("data", "reporting", "uid-2"),
                                   triggers("all", "a", "b"), pending)
    assert other_pipeline_object[0].run_name != first[0].run_name


def test_a_run_name_for_versions_fits_and_never_meets_a_schedule_slots_name() -> None:
    name = run_name_for_versions("reporting", CONSUMER, [5, 7])
    assert name.startswith("reporting-d") and len(name) == len("reporting-") + 12
    assert name != run_name_for_slot("reporting", T)
    assert len(run_name_for_versions("x" * 240, CONSUMER, [1])) <= 253


def test_a_suspended_pipeline_fires_nothing_and_keeps_its_pending_versions() -> None:
    assert decide("reporting", CONSUMER, triggers("any", "a"), [version(1, "a")], suspended=True) == []


def test_undeclared_datasets_and_the_pipelines_own_writes_never_fire() -> None:
    pending = [version(1, "c"), version(2, "a", pipeline="reporting")]
    assert decide("reporting", CONSUMER, triggers("any", "a"), pending) == []


def test_one_pass_fires_at_most_its_limit_and_the_rest_wait_for_the_next() -> None:
    pending = [version(i, "a") for i in range(1, 8)]
    firings = decide("reporting", CONSUMER, triggers("any", "a"), pending, limit=5)
    assert [f.outbox_ids[0] for f in firings] == [1, 2, 3, 4, 5]


def test_a_triggered_run_is_owned_by_its_pipeline_and_says_which_versions_triggered_it() -> None:
    pipeline = {"metadata": {"name": "reporting", "namespace": "data", "uid": "uid-1"}}
    firing = decide("reporting", CONSUMER, triggers("all", "a"), [version(1, "a")])[0]
    run = triggered_run(pipeline, firing.run_name, firing.versions)
    spec = PipelineRunSpec.model_validate(run["spec"])
    assert spec.trigger == "dataset"
    assert [(v.name, v.version, v.run) for v in spec.triggered_by] == [("a", 101, "data/upstream-run/00000001")]
    assert run["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert run["metadata"]["labels"]["headwater.dev/trigger"] == "dataset"


def test_a_triggered_run_is_held_by_the_lineage_finalizer_from_its_creation() -> None:
    pipeline = {"metadata": {"name": "reporting", "namespace": "data", "uid": "uid-1"}}
    firing = decide("reporting", CONSUMER, triggers("all", "a"), [version(1, "a")])[0]
    assert triggered_run(pipeline, firing.run_name, firing.versions)["metadata"]["finalizers"] == [FINALIZER]


def test_no_later_than_is_satisfied_only_by_a_dataset_run_created_after_the_slot_before() -> None:
    def run(trigger: str, created: datetime) -> dict[str, object]:
        return {"metadata": {"creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ")}, "spec": {"trigger": trigger}}
    previous = T - timedelta(days=1)
    assert deadline_satisfied([run("dataset", T - timedelta(hours=3))], previous)
    assert not deadline_satisfied([run("dataset", previous - timedelta(hours=1))], previous)
    assert not deadline_satisfied([run("schedule", T - timedelta(hours=3))], previous)


def test_a_pipeline_declares_dataset_triggers_with_a_mode_and_how_they_combine_with_its_schedule() -> None:
    spec = PipelineSpec.model_validate({
        "schedule": "0 7 * * *", "steps": [{"id": "report", "type": "container", "image": "busybox"}],
        "triggers": {"datasets": {"mode": "any", "withSchedule": "NoLaterThan",
                                  "inputs": [{"namespace": WH, "name": "analytics.revenue"}]}},
    })
    assert spec.triggers is not None and spec.triggers.datasets is not None
    assert spec.triggers.datasets.mode == TriggerMode.ANY
    with pytest.raises(ValueError, match="inputs"):
        PipelineSpec.model_validate({"steps": [{"id": "r", "type": "container", "image": "b"}],
                                     "triggers": {"datasets": {"inputs": []}}})


def test_the_watched_pipelines_keep_only_those_with_dataset_triggers_and_forget_one_that_drops_them() -> None:
    watched = WatchedPipelines()
    triggered = {"metadata": {"namespace": "data", "name": "reporting"},
                 "spec": {"triggers": {"datasets": {"inputs": [{"namespace": "wh", "name": "t"}]}}}}
    scheduled = {"metadata": {"namespace": "data", "name": "nightly"}, "spec": {"schedule": "0 3 * * *"}}
    watched.saw(triggered)
    watched.saw(scheduled)
    assert [p["metadata"]["name"] for p in watched.items()] == ["reporting"]
    triggered["spec"]["triggers"]["datasets"]["mode"] = "all"  # the watch's object changes later: a copy is kept
    assert "mode" not in watched.items()[0]["spec"]["triggers"]["datasets"]
    watched.saw({**triggered, "spec": {}})
    assert watched.items() == []
    watched.saw(triggered)
    watched.saw(triggered, deleted=True)
    assert watched.items() == []
