"""Checks and unwritten datasets in the lineage store: runs planned as the operator plans them, recorded as the
recorder records them, on a real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from headwater.lineage.records import DatasetRef
from headwater.lineage.run_records import records_for_run, run_id
from headwater.lineage.store import LineageStore
from headwater.runs.checks import Baseline
from headwater.runs.jobs import JobObservation, JobSettings, RunRef, job_name
from headwater.runs.planning import plan, start
from headwater.spec.models import PipelineRunSpec, PipelineSpec, StepPhase
from manifests import step

pytestmark = pytest.mark.integration

WH = "postgres://warehouse"
DAY1 = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
SETTINGS = JobSettings(step_image="headwater:test")
PAYMENTS = f"{WH}/raw.payments"


def revenue(warehouse: str = WH) -> PipelineSpec:
    return PipelineSpec.model_validate({"steps": [
        step("extract", outputs=[{"namespace": warehouse, "name": "raw.payments", "checks": [
            {"name": "no-drop", "change": {"maxDropPercent": 30}}]}]),
        step("transform", "extract", inputs=[{"namespace": warehouse, "name": "raw.payments"}],
             outputs=[{"namespace": warehouse, "name": "analytics.revenue"}]),
        step("aggregate", "transform", inputs=[{"namespace": warehouse, "name": "analytics.revenue"}],
             outputs=[{"namespace": warehouse, "name": "analytics.metrics"}]),
    ]})


def finished_run(name: str, at: datetime, outcomes: dict[str, tuple[str, Any]],
                 baselines: dict[str, Baseline] | None = None, *, namespace: str = "data",
                 warehouse: str = WH) -> dict[str, Any]:
    """A run of Pipeline revenue in ``namespace`` (writing to ``warehouse``) planned to its end: ``outcomes``
    maps a step to ("ok", rows) or ("fail", termination error)."""
    ref = RunRef(name, namespace, f"{name}-uid-0000", "revenue")
    spec = PipelineRunSpec.model_validate({"pipelineRef": {"name": "revenue"}})
    status = start(spec, revenue(warehouse), at)
    for _ in range(5):
        observed = {}
        for s in status.steps:
            if s.job and not s.phase.final and s.name in outcomes:
                kind, value = outcomes[s.name]
                finished = (at + timedelta(minutes=1)).isoformat()
                observed[s.name] = JobObservation(
                    job_name(name, s.name), StepPhase.SUCCEEDED, 1, at.isoformat(), finished, "Completed", None,
                    {"rowsAffected": value}) if kind == "ok" else JobObservation(
                    job_name(name, s.name), StepPhase.FAILED, 1, at.isoformat(), finished, "BackoffLimitExceeded",
                    f"Job has reached the specified backoff limit; last attempt: {value}", {"error": value})
        status = plan(ref, spec, status, observed, at, SETTINGS, baselines or {}).status or status
        if status.phase.final:
            break
    assert status.phase.final, status
    return {"metadata": {"namespace": namespace, "name": name, "uid": ref.uid},
            "spec": {"pipelineRef": {"name": "revenue"}},
            "status": status.model_dump(by_alias=True, exclude_none=True, mode="json")}


def record(store: LineageStore, run: dict[str, Any]) -> None:
    store.record(*records_for_run(run))


def test_baselines_come_from_published_versions_only_and_check_results_are_stored(store: LineageStore) -> None:
    everything = {"extract": ("ok", 48000), "transform": ("ok", 30), "aggregate": ("ok", 12)}
    record(store, finished_run("rev-1", DAY1, everything))
    ref = DatasetRef(WH, "raw.payments")
    assert store.baselines([ref]) == {ref: Baseline(rows=(48000,))}

    day2 = finished_run("rev-2", DAY1 + timedelta(days=1), {**everything, "extract": ("ok", 28800)},
                        {PAYMENTS: store.baselines([ref])[ref]})
    assert day2["status"]["phase"] == "Failed"
    record(store, day2)
    assert store.baselines([ref]) == {ref: Baseline(rows=(48000,))}, "a held-back version is no baseline"
    with store.transaction() as conn:
        rows = conn.execute(
            "SELECT v.run_id, v.published, c.name, c.outcome, c.observed, c.baseline FROM dataset_versions v "
            "JOIN datasets d ON d.id = v.dataset_id LEFT JOIN check_results c ON c.version_id = v.id "
            "WHERE d.name = 'raw.payments' ORDER BY v.written_at").fetchall()
    assert rows == [
        ("data/rev-1/rev-1-ui", True, "no-drop", "Skipped", "48000 rows", None),
        ("data/rev-2/rev-2-ui", False, "no-drop", "Failed", "28800 rows (40.0% below)",
         "median 48000 rows of the last 1 published version(s)"),
    ]


def test_explain_ranks_the_failed_check_first(store: LineageStore) -> None:
    everything = {"extract": ("ok", 48000), "transform": ("ok", 30), "aggregate": ("ok", 12)}
    record(store, finished_run("rev-1", DAY1, everything))
    ref = DatasetRef(WH, "raw.payments")
    record(store, finished_run("rev-2", DAY1 + timedelta(days=1), {**everything, "extract": ("ok", 28800)},
                               {PAYMENTS: store.baselines([ref])[ref]}))
    answer = store.explain("analytics.metrics", now=DAY1 + timedelta(days=1, hours=1))
    first = answer.nodes[0]
    assert first.dataset == ref
    assert first.reasons[0].code == "check_failed"
    assert "check no-drop failed on the write of run data/rev-2/rev-2-ui, which is not published" \
        in first.reasons[0].message
    assert "28800 rows, 40.0% below" in first.reasons[0].message


def test_explain_answers_for_outputs_never_written_downstream_of_a_failed_middle_step(store: LineageStore) -> None:
    run = finished_run("rev-1", DAY1, {"extract": ("ok", 48000), "transform": ("fail", "relation raw.fx is missing")})
    record(store, run)
    for name in ("analytics.revenue", "analytics.metrics"):
        answer = store.explain(name, now=DAY1 + timedelta(hours=1))
        first = answer.nodes[0]
        assert first.dataset == DatasetRef(WH, "analytics.revenue"), name
        assert first.latest_version is None
        assert first.reasons[0].code == "producer_failed"
        assert "step transform of revenue is Failed in run data/rev-1/rev-1-ui" in first.reasons[0].message
        assert "relation raw.fx is missing" in first.reasons[0].message
    metrics = next(n for n in store.explain("analytics.metrics", now=DAY1).nodes
                   if n.dataset == DatasetRef(WH, "analytics.metrics"))
    assert [r.code for r in metrics.reasons] == ["producer_skipped", "never_written"]
    assert "upstream step transform failed" in metrics.reasons[0].message


def test_explain_says_a_stale_dataset_is_old_because_its_producer_was_not_scheduled_since(
        store: LineageStore) -> None:
    record(store, finished_run("rev-1", DAY1, {"extract": ("ok", 48000), "transform": ("ok", 30),
                                              "aggregate": ("ok", 12)}))
    three_days_later = DAY1 + timedelta(days=3)
    node = store.explain("analytics.metrics", now=three_days_later).nodes
    metrics = next(n for n in node if n.dataset == DatasetRef(WH, "analytics.metrics"))
    assert [r.code for r in metrics.reasons] == ["not_scheduled", "stale"]
    assert metrics.reasons[0].message == ("step aggregate of revenue last ran in run data/rev-1/rev-1-ui, "
                                          "2 days, 23:59:00 ago (Succeeded); it has not been scheduled since")
    assert [r.code for r in next(n for n in store.explain("analytics.metrics", now=DAY1 + timedelta(hours=2)).nodes
                                 if n.dataset.name == "analytics.metrics").reasons] == []


def test_explain_never_blames_the_step_of_a_same_named_pipeline_in_another_namespace(store: LineageStore) -> None:
    team_a, team_b = "postgres://team-a", "postgres://team-b"
    everything = {"extract": ("ok", 48000), "transform": ("ok", 30), "aggregate": ("ok", 12)}
    record(store, finished_run("rev-a", DAY1, everything, namespace="team-a", warehouse=team_a))
    record(store, finished_run("rev-b", DAY1 + timedelta(hours=1), {"extract": ("fail", "HTTP 401 from the API")},
                               namespace="team-b", warehouse=team_b))
    now = DAY1 + timedelta(hours=2)

    healthy = store.explain("analytics.metrics", namespace=team_a, now=now)
    assert sorted((n.dataset.name, [s.run_id for s in n.failed_steps], [r.code for r in n.reasons])
                  for n in healthy.nodes) == [("analytics.metrics", [], []), ("analytics.revenue", [], []),
                                              ("raw.payments", [], [])]

    broken = store.explain("analytics.metrics", namespace=team_b, now=now)
    assert broken.nodes[0].dataset == DatasetRef(team_b, "raw.payments")
    assert [(s.step, s.phase, s.run_id) for s in broken.nodes[0].failed_steps] == [
        ("extract", "Failed", run_id("team-b", "rev-b", "rev-b-uid-0000"))]
    assert "HTTP 401" in broken.nodes[0].reasons[0].message
