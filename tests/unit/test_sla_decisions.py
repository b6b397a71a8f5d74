"""The SLA monitor's pure decisions: freshness passes, what a finished run changes, the metrics."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from headwater.sla.alerts import DatasetGraph
from headwater.sla.evaluation import check_freshness, dataset_entries, sla_conditions
from headwater.sla.exporting import summarize
from headwater.sla.incidents import clear_risk, failure_incident, mark_at_risk, record_writes, steps_that_wrote
from headwater.spec.models import Alert, Condition, DatasetStatus, PipelineRunStatus, PipelineSpec

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
WH = "postgres://warehouse"


def _pipeline(name: str, steps: list[dict[str, Any]], status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": name},
            "spec": {"owner": "team@example.com", "steps": steps}, "status": status or {}}


def _step(id_: str, outputs: list[dict[str, Any]], inputs: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"id": id_, "type": "container", "image": "busybox",
            "inputs": [{"namespace": WH, "name": n} for n in inputs],
            "outputs": [{"namespace": WH, "name": o["name"], **{k: v for k, v in o.items() if k != "name"}}
                        for o in outputs]}


REVENUE = _pipeline("revenue", [
    _step("extract", [{"name": "raw.charges", "freshness": {"maxAge": "1h"}}]),
    _step("model", [{"name": "analytics.revenue"}], inputs=("raw.charges",)),
])
REPORTS = _pipeline("reports", [_step("report", [{"name": "analytics.report"}], inputs=("analytics.revenue",))])


def _spec(obj: dict[str, Any]) -> PipelineSpec:
    return PipelineSpec.model_validate(obj["spec"])


def test_every_declared_output_gets_one_entry_and_known_entries_are_kept() -> None:
    old = [DatasetStatus(namespace=WH, name="raw.charges", last_updated="2026-11-23T11:30:00Z"),
           DatasetStatus(namespace=WH, name="gone.table")]
    entries = dataset_entries(_spec(REVENUE), old)
    assert [(d.name, d.last_updated) for d in entries] == [("raw.charges", "2026-11-23T11:30:00Z"),
                                                           ("analytics.revenue", None)]
    entries[0].stale = True
    assert old[0].stale is not True  # copies: the status read is not changed


def test_a_dataset_going_stale_raises_one_incident_naming_everything_downstream_across_pipelines() -> None:
    datasets = dataset_entries(_spec(REVENUE), [
        DatasetStatus(namespace=WH, name="raw.charges", last_updated="2026-11-23T10:00:00Z")])
    alerts: list[Alert] = []
    graph = DatasetGraph.from_pipelines([REVENUE, REPORTS])
    found = check_freshness(_spec(REVENUE), datasets, alerts, graph=graph, source="ns/revenue", now=NOW,
                            alerting=True)
    assert [d.stale for d in datasets] == [True, False]
    assert found.sla_seconds == {f"{WH}/raw.charges": 3600}
    [(incident, message)] = found.went_stale
    assert "past its freshness SLA" in message
    assert set(incident.affected) >= {(WH, "analytics.revenue"), (WH, "analytics.report")}
    assert len(alerts) == 1

    again = check_freshness(_spec(REVENUE), datasets, alerts, graph=graph, source="ns/revenue", now=NOW,
                            alerting=True)
    assert again.went_stale == [] and len(alerts) == 1  # still stale: no second incident


def test_a_dataset_never_written_is_stale_but_no_incident() -> None:
    datasets = dataset_entries(_spec(REVENUE), [])
    found = check_freshness(_spec(REVENUE), datasets, [], graph=DatasetGraph.from_pipelines([REVENUE]),
                            source="ns/revenue", now=NOW, alerting=True)
    assert datasets[0].stale and found.went_stale == []


def test_the_fresh_and_at_risk_conditions_name_the_datasets() -> None:
    conditions: list[Condition] = []
    datasets = [DatasetStatus(namespace=WH, name="a", stale=True),
                DatasetStatus(namespace=WH, name="b", at_risk="extract failed")]
    sla_conditions(conditions, datasets, NOW)
    by_type = {c.type: c for c in conditions}
    assert (by_type["Fresh"].status, by_type["AtRisk"].status) == ("False", "True")
    assert f"{WH}/a" in by_type["Fresh"].message and "extract failed" in by_type["AtRisk"].message


def _run(phase: str, steps: list[tuple[str, str, str | None]]) -> PipelineRunStatus:
    return PipelineRunStatus.model_validate({"phase": phase, "steps": [
        {"name": n, "phase": p, "finishedAt": f, "message": "boom" if p == "Failed" else None} for n, p, f in steps]})


def test_a_run_moves_its_outputs_forward_only() -> None:
    datasets = dataset_entries(_spec(REVENUE), [
        DatasetStatus(namespace=WH, name="raw.charges", last_updated="2026-11-23T11:00:00Z", last_run="newer")])
    run = _run("Succeeded", [("extract", "Succeeded", "2026-11-23T10:00:00Z"),
                             ("model", "Succeeded", "2026-11-23T10:05:00Z")])
    record_writes(_spec(REVENUE), datasets, steps_that_wrote(run), "older")
    assert [(d.last_updated, d.last_run) for d in datasets] == [("2026-11-23T11:00:00Z", "newer"),
                                                                ("2026-11-23T10:05:00Z", "older")]


def test_a_failed_run_puts_the_downstream_closure_at_risk_until_its_pipeline_succeeds() -> None:
    graph = DatasetGraph.from_pipelines([REVENUE, REPORTS])
    run = _run("Failed", [("extract", "Failed", "2026-11-23T10:00:00Z"), ("model", "Skipped", None)])
    incident = failure_incident(graph, "ns", "revenue", "revenue-1", run)
    assert incident is not None and "revenue/extract failed in run ns/revenue-1" in incident.cause
    assert failure_incident(graph, "ns", "revenue", "revenue-2", _run("Succeeded", [])) is None

    reports = dataset_entries(_spec(REPORTS), [])
    mark_at_risk(reports, incident)
    assert reports[0].at_risk and reports[0].at_risk_source == "ns/revenue"
    clear_risk(reports, "ns/other")
    assert reports[0].at_risk
    clear_risk(reports, "ns/revenue")
    assert reports[0].at_risk is None and reports[0].at_risk_source is None


def test_the_metrics_come_from_the_status_and_skip_an_unreadable_one() -> None:
    ok = dict(REVENUE, status={"datasets": [
        {"namespace": WH, "name": "raw.charges", "lastUpdated": "2026-11-23T11:00:00Z", "stale": True},
        {"namespace": WH, "name": "analytics.revenue", "atRisk": "upstream"}]})
    broken = dict(REPORTS, status={"datasets": "not a list"})
    summary = summarize([ok, broken])
    assert (summary.met, summary.total) == (0, 1)
    gauges = {d.label: d for d in summary.datasets}
    assert gauges[f"{WH}/raw.charges"].stale and gauges[f"{WH}/raw.charges"].last_updated == NOW.timestamp() - 3600
    assert gauges[f"{WH}/analytics.revenue"].at_risk and gauges[f"{WH}/analytics.revenue"].last_updated is None
