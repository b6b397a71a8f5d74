"""Cascading alerts: from a failed step or a stale source to every dataset downstream of it, across
pipelines, grouped into one notification per incident that names the cause, the affected datasets
and their owners.  Incidents are kept as :class:`~headwater.spec.models.Alert` entries in their
pipeline's status before they are sent, with a stable id, until the receiver acknowledges them.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from pydantic import ValidationError

from headwater.spec.models import MAX_ALERT_DATASETS, Alert, AlertDataset, PipelineSpec, StepReason, StepStatus
from headwater.spec.text import clean
from headwater.spec.times import isotime

__all__ = [
    "DatasetGraph", "Incident", "acknowledge", "add_alert", "alert_for", "check_alert_id", "is_pending",
    "notification", "prune_alerts", "run_alert_id", "stale_alert_id", "step_cause",
]

MAX_ALERTS: Final = 32
"""Alerts a pipeline's status keeps (its CRD's limit)."""
KEEP_DONE: Final = 10
"""Delivered or refused alerts kept (so an incident applied again is recognised and not sent twice)."""

Key = tuple[str, str]  # (namespace, name)


def _label(key: Key) -> str:
    return f"{key[0]}/{key[1]}"


@dataclass
class DatasetGraph:
    """Declared datasets of every Pipeline: what each step reads and writes, and who owns what."""

    downstream: dict[Key, set[Key]] = field(default_factory=dict)
    producers: dict[Key, tuple[str, str]] = field(default_factory=dict)  # dataset -> (namespace/pipeline, owner)
    outputs_of_step: dict[tuple[str, str, str], list[Key]] = field(default_factory=dict)

    @classmethod
    def from_pipelines(cls, pipelines: list[dict[str, Any]]) -> DatasetGraph:
        graph = cls()
        for obj in pipelines:
            try:
                spec = PipelineSpec.model_validate(obj["spec"])
            except ValidationError:
                continue  # not Ready (its condition says why): it declares nothing
            meta = obj["metadata"]
            owner = spec.owner or ""
            for step in spec.steps:
                outs = [(d.namespace, d.name) for d in step.outputs]
                graph.outputs_of_step[(meta["namespace"], meta["name"], step.id)] = outs
                for out in outs:
                    graph.producers[out] = (f"{meta['namespace']}/{meta['name']}", owner)
                for src in step.inputs:
                    graph.downstream.setdefault((src.namespace, src.name), set()).update(outs)
        return graph

    def closure(self, roots: list[Key]) -> list[Key]:
        """Every dataset downstream of ``roots`` (roots included), cycle-safe, in breadth-first order."""
        seen, order, todo = set(roots), list(roots), deque(roots)
        while todo:
            for nxt in sorted(self.downstream.get(todo.popleft(), ())):
                if nxt not in seen:
                    seen.add(nxt)
                    order.append(nxt)
                    todo.append(nxt)
        return order


@dataclass(frozen=True)
class Incident:
    """One root cause and everything it puts at risk."""

    cause: str  # for people: "revenue/extract-payments failed in run data/revenue-1: BackoffLimitExceeded"
    source: str  # namespace/pipeline whose next successful run clears the risk
    affected: tuple[Key, ...]
    owners: tuple[str, ...]

    @classmethod
    def build(cls, graph: DatasetGraph, cause: str, source: str, roots: list[Key]) -> Incident:
        affected = tuple(graph.closure(roots))
        owners = tuple(sorted({graph.producers[k][1] for k in affected if k in graph.producers} - {""}))
        return cls(cause, source, affected, owners)


def alert_for(incident: Incident, alert_id: str, now: datetime, channel: str | None = None) -> Alert:
    """The incident as it is kept in its pipeline's status until it is delivered."""
    return Alert(
        id=alert_id, raised_at=isotime(now), cause=clean(incident.cause, 1024), source=incident.source[:253],
        affected_datasets=[AlertDataset(namespace=k[0], name=k[1]) for k in incident.affected[:MAX_ALERT_DATASETS]],
        affected_count=len(incident.affected), owners=list(incident.owners[:32]), channel=channel)


_LAST_ATTEMPT = "; last attempt: "


def step_cause(pipeline: str, run: str, step: StepStatus) -> str:
    """Why a step failed, for people: a failed check as the check said it (observed value and baseline), and
    otherwise the step's own error (its termination message) first, the Job's reason after it."""
    if step.reason == StepReason.CHECK_FAILED:
        return f"{pipeline}/{step.name} in run {run}: {step.message or 'a check failed'}"
    error = (step.result or {}).get("error")
    message = step.message or ""
    own = error if isinstance(error, str) and error.strip() else \
        (message.split(_LAST_ATTEMPT, 1)[1] if _LAST_ATTEMPT in message else None)
    if own:
        job = message.split(_LAST_ATTEMPT, 1)[0] if _LAST_ATTEMPT in message else message
        detail = f"{step.reason}: {job}" if job and job != own else step.reason
        return f"{pipeline}/{step.name} failed in run {run}: {clean(own)} ({detail})"
    return f"{pipeline}/{step.name} failed in run {run}: {step.reason}: {message}".strip()


def check_alert_id(uid: str, step: str, dataset: str, check: str) -> str:
    """One announcement per warning check verdict on a version."""
    digest = hashlib.sha256(json.dumps([uid, step, dataset, check]).encode()).hexdigest()
    return f"check-{digest[:24]}"


def run_alert_id(uid: str) -> str:
    """One incident per failed run, whatever happens to its name."""
    return f"run-{uid}"


def stale_alert_id(source: str, dataset: Key, last_updated: str | None) -> str:
    """One incident per dataset going stale after a given write (``source``: namespace/pipeline)."""
    digest = hashlib.sha256(json.dumps([source, *dataset, last_updated]).encode()).hexdigest()
    return f"stale-{digest[:24]}"


def is_pending(alert: Alert) -> bool:
    return alert.notified_at is None and alert.refused is None


def add_alert(alerts: list[Alert], alert: Alert) -> None:
    """Add ``alert`` unless an alert with its id is there (pending or done): an incident is announced once."""
    if all(a.id != alert.id for a in alerts):
        alerts.append(alert)


def acknowledge(alerts: list[Alert], alert_id: str, now: datetime, refused: str | None = None) -> None:
    """Mark an alert delivered (or refused by the receiver: not to be sent again)."""
    for i, alert in enumerate(alerts):
        if alert.id == alert_id and is_pending(alert):
            alerts[i] = alert.model_copy(update={"refused": refused} if refused else {"notified_at": isotime(now)})


def prune_alerts(alerts: list[Alert], limit: int = MAX_ALERTS, keep_done: int = KEEP_DONE) -> tuple[list[Alert], int]:
    """What a pipeline's status keeps: every pending alert and the latest ``keep_done`` done ones, at most
    ``limit`` in all (the oldest go first, done ones before pending ones); and how many pending were dropped."""
    pending = [a for a in alerts if is_pending(a)]
    done = [a for a in alerts if not is_pending(a)][-keep_done:]
    done = done[max(len(done) + len(pending) - limit, 0):]
    dropped = max(len(pending) - (limit - len(done)), 0)
    kept = {a.id for a in done + pending[dropped:]}
    return [a for a in alerts if a.id in kept], dropped


def notification(alert: Alert) -> dict[str, Any]:
    """A Slack-compatible message (``text``) that generic receivers can read as JSON (``incident``)."""
    names = [f"{d.namespace}/{d.name}" for d in alert.affected_datasets]
    more = alert.affected_count - len(names)
    lines = [f":rotating_light: Headwater: {alert.cause}",
             f"{alert.affected_count} dataset(s) at risk: {', '.join(names)}" + (f" and {more} more" if more > 0
                                                                                  else "")]
    if alert.owners:
        lines.append(f"Owners: {', '.join(alert.owners)}")
    incident: dict[str, Any] = {
        "id": alert.id, "raisedAt": alert.raised_at, "cause": alert.cause, "source": alert.source,
        "affectedDatasets": [{"namespace": d.namespace, "name": d.name} for d in alert.affected_datasets],
        "affectedCount": alert.affected_count, "owners": list(alert.owners)}
    if alert.channel:
        incident["channel"] = alert.channel
    return {"text": "\n".join(lines), "incident": incident}
