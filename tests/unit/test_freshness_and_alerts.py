"""Freshness SLAs and the datasets a cascading alert names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from headwater.sla.alerts import (
    DatasetGraph,
    Incident,
    acknowledge,
    add_alert,
    alert_for,
    is_pending,
    notification,
    prune_alerts,
)
from headwater.sla.exporting import MetWindow
from headwater.sla.freshness import evaluate
from headwater.spec.models import Alert, Freshness

pytestmark = pytest.mark.unit

WH = "postgres://warehouse"
NOW = datetime(2026, 11, 23, 7, 30, tzinfo=UTC)  # 08:30 in Berlin


def test_max_age_is_stale_once_older_than_allowed_or_never_written() -> None:
    rule = Freshness.model_validate({"maxAge": "6h"})
    assert not evaluate(rule, NOW - timedelta(hours=5), NOW).stale
    assert evaluate(rule, NOW - timedelta(hours=6, seconds=1), NOW).stale
    assert evaluate(rule, None, NOW).stale
    assert evaluate(rule, NOW, NOW).sla_seconds == 6 * 3600


def test_a_daily_deadline_needs_a_write_in_the_day_before_the_last_deadline() -> None:
    rule = Freshness.model_validate({"deadline": "07:00", "timeZone": "Europe/Berlin"})
    today_0600_berlin = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)
    yesterday_0600_berlin = today_0600_berlin - timedelta(days=1)
    assert not evaluate(rule, today_0600_berlin, NOW).stale
    assert evaluate(rule, yesterday_0600_berlin, NOW).stale  # today's 07:00 passed without a write
    before_deadline = datetime(2026, 11, 23, 5, 30, tzinfo=UTC)  # 06:30 in Berlin
    assert not evaluate(rule, yesterday_0600_berlin, before_deadline).stale
    assert "07:00 Europe/Berlin" in evaluate(rule, None, NOW).message


def _pipeline(name: str, owner: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "data"}, "spec": {"owner": owner, "steps": steps}}


def _step(step_id: str, inputs: list[str], outputs: list[str]) -> dict[str, Any]:
    return {"id": step_id, "type": "sql", "sql": "SELECT 1",
            "inputs": [{"namespace": WH, "name": n} for n in inputs],
            "outputs": [{"namespace": WH, "name": n} for n in outputs]}


GRAPH = DatasetGraph.from_pipelines([
    _pipeline("revenue", "data@co.com", [_step("extract", [], ["raw.payments"]),
                                          _step("transform", ["raw.payments"], ["analytics.revenue"])]),
    _pipeline("reporting", "finance@co.com", [_step("report", ["analytics.revenue"], ["reporting.daily"]),
                                              _step("loop", ["reporting.daily"], ["analytics.revenue"])]),
])


def test_an_incident_reaches_every_downstream_dataset_across_pipelines_and_their_owners() -> None:
    incident = Incident.build(GRAPH, "revenue/extract failed", "data/revenue", [(WH, "raw.payments")])
    assert [name for _, name in incident.affected] == ["raw.payments", "analytics.revenue", "reporting.daily"]
    assert incident.owners == ("data@co.com", "finance@co.com")
    message = notification(alert_for(incident, "run-uid-1", NOW, channel="#data-alerts"))
    assert "revenue/extract failed" in message["text"]
    assert "3 dataset(s) at risk" in message["text"]
    assert [d["name"] for d in message["incident"]["affectedDatasets"]] == [
        "raw.payments", "analytics.revenue", "reporting.daily"]
    assert (message["incident"]["id"], message["incident"]["channel"]) == ("run-uid-1", "#data-alerts")


def test_an_incident_is_kept_once_until_acknowledged_and_the_status_stays_bounded() -> None:
    incident = Incident.build(GRAPH, "revenue/extract failed", "data/revenue", [(WH, "raw.payments")])
    alerts: list[Alert] = []
    add_alert(alerts, alert_for(incident, "run-1", NOW))
    add_alert(alerts, alert_for(incident, "run-1", NOW))  # the same incident applied again
    assert [a.id for a in alerts] == ["run-1"] and is_pending(alerts[0])
    acknowledge(alerts, "run-1", NOW)
    assert alerts[0].notified_at == "2026-11-23T07:30:00Z" and not is_pending(alerts[0])
    add_alert(alerts, alert_for(incident, "run-1", NOW))  # still known: not announced twice
    assert len(alerts) == 1
    acknowledge(alerts, "run-1", NOW, refused="HTTP 400")
    assert alerts[0].refused is None  # a delivered alert stays delivered
    many = [alert_for(incident, f"done-{i}", NOW) for i in range(15)] + \
           [alert_for(incident, f"pending-{i}", NOW) for i in range(30)]
    for alert in many[:15]:
        acknowledge(many, alert.id, NOW)
    kept, dropped = prune_alerts(many)
    assert len(kept) == 32 and dropped == 0
    assert [a.id for a in kept if not is_pending(a)] == ["done-13", "done-14"]
    kept, dropped = prune_alerts([alert_for(incident, f"p-{i}", NOW) for i in range(40)])
    assert dropped == 8 and kept[0].id == "p-8"


def test_an_incident_with_many_datasets_keeps_the_first_fifty_and_the_count() -> None:
    incident = Incident("x failed", "data/x", tuple((WH, f"t{i}") for i in range(80)), ())
    message = notification(alert_for(incident, "run-2", NOW))
    assert len(message["incident"]["affectedDatasets"]) == 50
    assert message["incident"]["affectedCount"] == 80
    assert "80 dataset(s) at risk" in message["text"] and message["text"].endswith("and 30 more")


def test_the_sla_met_share_counts_checks_inside_the_window_only() -> None:
    window = MetWindow(seconds=100)
    assert window.record(0, met=0, total=4) == 0.0
    assert window.record(50, met=4, total=4) == 0.5
    assert window.record(150, met=4, total=4) == 1.0  # the check at t=0 left the window
    assert window.record(151, met=0, total=0) == 1.0
