"""What a freshness pass decides about one Pipeline's datasets: pure.

``Pipeline.status.datasets`` holds one entry per declared output; the pass sets each one's ``stale``
from its SLA and last write, and turns every dataset that just went stale (and was written once) into
an incident with its alert.  ``sla_conditions`` derives the Pipeline's Fresh and AtRisk conditions
from the entries, so that they are always written together.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from headwater.sla.alerts import DatasetGraph, Incident, add_alert, alert_for, stale_alert_id
from headwater.sla.freshness import evaluate
from headwater.spec.conditions import set_condition
from headwater.spec.models import Alert, Condition, DatasetStatus, PipelineSpec
from headwater.spec.times import parse_time

__all__ = ["FreshnessPass", "Mutation", "channel", "check_freshness", "dataset_entries", "sla_conditions"]

Mutation = Callable[[PipelineSpec, list[DatasetStatus], list[Alert]], None]
"""Changes a pipeline's datasets and alerts in place."""


def channel(spec: PipelineSpec) -> str | None:
    """The Slack channel a pipeline's alerts name, if any."""
    return spec.notifications.slack_channel if spec.notifications else None


def dataset_entries(spec: PipelineSpec, old: list[DatasetStatus]) -> list[DatasetStatus]:
    """One entry per declared output (copies), keeping what was known of each."""
    known = {(d.namespace, d.name): d for d in old}
    keys = dict.fromkeys((o.namespace, o.name) for s in spec.steps for o in s.outputs)
    return [known.get(k, DatasetStatus(namespace=k[0], name=k[1])).model_copy() for k in keys]


def sla_conditions(conditions: list[Condition], datasets: list[DatasetStatus], now: datetime) -> None:
    """Set the Fresh and AtRisk conditions from the datasets' entries."""
    stale = [f"{d.namespace}/{d.name}" for d in datasets if d.stale]
    set_condition(conditions, "Fresh", "False" if stale else "True", "Stale" if stale else "Fresh",
                  f"past their freshness SLA: {', '.join(stale)}" if stale
                  else "every output with a freshness SLA is fresh", now)
    risky = [d for d in datasets if d.at_risk]
    set_condition(conditions, "AtRisk", "True" if risky else "False",
                  "UpstreamIncident" if risky else "NoIncident",
                  "; ".join(f"{d.namespace}/{d.name}: {d.at_risk}" for d in risky)[:4096] if risky
                  else "no output is downstream of a failed step or a stale dataset", now)


@dataclass
class FreshnessPass:
    """What one pass over a Pipeline found: datasets that just went stale (each an incident and the
    message of its DatasetStale Event) and every SLA in seconds, by dataset label."""

    went_stale: list[tuple[Incident, str]] = field(default_factory=list)
    sla_seconds: dict[str, float] = field(default_factory=dict)


def check_freshness(spec: PipelineSpec, datasets: list[DatasetStatus], alerts: list[Alert], *,
                    graph: DatasetGraph, source: str, now: datetime, alerting: bool) -> FreshnessPass:
    """Set ``stale`` on every entry; a dataset going stale raises an incident and, when ``alerting``, its
    alert in ``alerts``.  A dataset never written is stale but no incident."""
    found = FreshnessPass()
    rules = {(o.namespace, o.name): o.freshness for s in spec.steps for o in s.outputs if o.freshness}
    for d in datasets:
        rule = rules.get((d.namespace, d.name))
        if rule is None:
            d.stale = False
            continue
        verdict = evaluate(rule, parse_time(d.last_updated) if d.last_updated else None, now)
        if verdict.stale and not d.stale and d.last_updated:
            key = (d.namespace, d.name)
            incident = Incident.build(graph, f"{d.namespace}/{d.name} is stale: it {verdict.message}", source, [key])
            found.went_stale.append(
                (incident, f"{d.namespace}/{d.name} is past its freshness SLA ({verdict.message})"))
            if alerting:
                add_alert(alerts, alert_for(incident, stale_alert_id(source, key, d.last_updated), now, channel(spec)))
        d.stale = verdict.stale
        found.sla_seconds[f"{d.namespace}/{d.name}"] = verdict.sla_seconds
    return found
