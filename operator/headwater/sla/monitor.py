"""Freshness SLAs and cascading alerts, kept on the Pipelines' status.

``Pipeline.status.datasets`` is the level state: when each output was last written, whether it is
stale, and whether (and why) it is at risk.  Metrics are set from it on every evaluation, so they
survive operator restarts.  An incident (a failed run, or a dataset going stale) marks every dataset
downstream of it, across pipelines, at risk and is announced in one grouped notification; the next
successful run of the pipeline at fault clears the risk.

Notifications are never only in memory: an incident is written to ``status.alerts`` of the pipeline
at fault in the same status write that records its cause (the run's outcome, the dataset turning
stale), and sent from there until the webhook acknowledges it (``notifiedAt``).  Each evaluation
sends again whatever is still pending, so an operator killed between the write and the send, or a
receiver away for hours, delays an alert but never loses it.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from pydantic import ValidationError

from headwater.adapters.delivery import JsonPoster, Outcome
from headwater.adapters.isolation import Isolation
from headwater.adapters.kube import Kube
from headwater.adapters.metrics import Metrics
from headwater.runs import checks
from headwater.runs.jobs import RunRef
from headwater.runs.settling import finished_later
from headwater.sla.alerts import (
    DatasetGraph,
    Incident,
    acknowledge,
    add_alert,
    alert_for,
    check_alert_id,
    is_pending,
    notification,
    prune_alerts,
    run_alert_id,
    stale_alert_id,
    step_cause,
)
from headwater.sla.freshness import evaluate
from headwater.spec import constants as c
from headwater.spec.conditions import set_condition
from headwater.spec.models import (
    Alert,
    DatasetStatus,
    PipelineRunStatus,
    PipelineSpec,
    PipelineStatus,
    RunPhase,
    StepPhase,
    StepReason,
)
from headwater.spec.times import parse_time

__all__ = ["SlaMonitor"]

log = logging.getLogger(__name__)

Key = tuple[str, str]
Mutation = Callable[[PipelineSpec, list[DatasetStatus], list[Alert]], None]
"""Changes a pipeline's datasets and alerts in place."""
AlertKey = tuple[str, str, str]  # (namespace, pipeline, alert id)


def _channel(spec: PipelineSpec) -> str | None:
    return spec.notifications.slack_channel if spec.notifications else None


def _entries(spec: PipelineSpec, old: list[DatasetStatus]) -> list[DatasetStatus]:
    """One entry per declared output, keeping what was known."""
    known = {(d.namespace, d.name): d for d in old}
    keys = dict.fromkeys((o.namespace, o.name) for s in spec.steps for o in s.outputs)
    return [known.get(k, DatasetStatus(namespace=k[0], name=k[1])).model_copy() for k in keys]


class SlaMonitor:
    """Evaluates freshness, raises incidents and keeps Pipeline.status.datasets; thread-safe."""

    def __init__(self, kube: Kube, metrics: Metrics, post_event: Callable[..., None],
                 alerts: JsonPoster | None, scopes: list[str | None], window_seconds: float = 7 * 86400,
                 isolation: Isolation | None = None) -> None:
        self.kube, self.metrics, self.post_event, self.alerts, self.scopes = kube, metrics, post_event, alerts, scopes
        self.isolation = isolation or Isolation(post_event)
        self._lock = threading.Lock()
        self._flight_guard = threading.Lock()
        self._in_flight: set[AlertKey] = set()
        self.window_seconds = window_seconds
        self._samples: deque[tuple[float, int, int]] = deque()  # (time, datasets met, datasets with an SLA)

    def _update(self, namespace: str, name: str, mutate: Mutation, now: datetime) -> PipelineStatus | None:
        """Apply ``mutate`` to the Pipeline's datasets and alerts and write them, with the Fresh and AtRisk
        conditions, onto the version read (the conditions list is shared with other writers); the status as
        written (None when the Pipeline is gone)."""
        written: list[PipelineStatus] = []
        with self._lock:
            self.kube.update_pipeline_status(namespace, name, lambda obj: self._change(obj, mutate, now, written))
        return written[-1] if written else None

    def _change(self, obj: dict[str, Any], mutate: Mutation, now: datetime,
                written: list[PipelineStatus]) -> dict[str, Any] | None:
        namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        spec = PipelineSpec.model_validate(obj["spec"])
        status = PipelineStatus.model_validate(obj.get("status") or {})
        datasets = _entries(spec, status.datasets)
        alerts = list(status.alerts)
        mutate(spec, datasets, alerts)
        alerts, dropped = prune_alerts(alerts)
        if dropped:
            log.warning("Pipeline %s/%s: %d undelivered alert(s) dropped to keep its status bounded",
                        namespace, name, dropped)
            self.metrics.delivery_dropped.labels("alerts", "status_full").inc(dropped)
        conditions = list(status.conditions)
        stale = [f"{d.namespace}/{d.name}" for d in datasets if d.stale]
        set_condition(conditions, "Fresh", "False" if stale else "True", "Stale" if stale else "Fresh",
                      f"past their freshness SLA: {', '.join(stale)}" if stale
                      else "every output with a freshness SLA is fresh", now)
        risky = [d for d in datasets if d.at_risk]
        set_condition(conditions, "AtRisk", "True" if risky else "False",
                      "UpstreamIncident" if risky else "NoIncident",
                      "; ".join(f"{d.namespace}/{d.name}: {d.at_risk}" for d in risky)[:4096] if risky
                      else "no output is downstream of a failed step or a stale dataset", now)
        new = status.model_copy(update={"datasets": datasets, "conditions": conditions, "alerts": alerts})
        written.append(new)
        if (datasets, conditions, alerts) == (status.datasets, status.conditions, status.alerts):
            return None
        return new.model_dump(by_alias=True, exclude_none=True, mode="json",
                              include={"datasets", "conditions", "alerts"})

    # --- runs -------------------------------------------------------------------------------
    def run_finished(self, ref: RunRef, status: PipelineRunStatus, latest: bool = True,
                     now: datetime | None = None) -> None:
        """Record the outputs a finished run wrote; clear risks it resolves; raise an incident if it failed.

        Idempotent, so that it can be applied again after a crash: a dataset's lastUpdated only moves
        forward, and only the pipeline's ``latest`` run (none finished after it) clears or sets risks.
        Each Pipeline touched is written on its own, one's failure kept from the others; any failure is
        raised at the end, so that the run stays unsettled and all of this is applied again.
        """
        now = now or datetime.now(UTC)
        done = {s.name: s for s in status.steps if s.phase == StepPhase.SUCCEEDED and s.reason != StepReason.REUSED}

        source = f"{ref.namespace}/{ref.pipeline}"
        incident = None
        if status.phase == RunPhase.FAILED:
            graph = DatasetGraph.from_pipelines(self._pipelines())
            failed = [s for s in status.steps if s.phase == StepPhase.FAILED]
            roots = [k for s in failed for k in graph.outputs_of_step.get((ref.namespace, ref.pipeline, s.name), [])]
            cause = "; ".join(step_cause(ref.pipeline, f"{ref.namespace}/{ref.name}", s) for s in failed)
            incident = Incident.build(graph, cause, source, roots)
        # a version held back is announced by the run's incident; warnings are for published versions
        warnings = [(s, r) for s in status.steps if s.phase == StepPhase.SUCCEEDED
                    for r in checks.failed_warnings(s.checks or [])]
        warned: list[tuple[str, Incident]] = []
        if warnings:
            graph = DatasetGraph.from_pipelines(self._pipelines())
            for step, verdict in warnings:
                key = checks.split_label(verdict.dataset)
                cause = f"{ref.pipeline}/{step.name} in run {ref.namespace}/{ref.name}: {checks.describe(verdict)} " \
                        f"(warning: the version is published)"
                warned.append((check_alert_id(ref.uid, step.name, verdict.dataset, verdict.name),
                               Incident.build(graph, cause, source, [key])))

        def wrote(spec: PipelineSpec, datasets: list[DatasetStatus], alerts: list[Alert]) -> None:
            by_key = {(d.namespace, d.name): d for d in datasets}
            for step in spec.steps:
                if step.id in done:
                    for out in step.outputs:
                        entry = by_key[(out.namespace, out.name)]
                        written = done[step.id].finished_at
                        if not entry.last_updated or finished_later(written, entry.last_updated):
                            entry.last_updated, entry.last_run = written, ref.name
            if incident is not None and incident.affected and self.alerts is not None:
                add_alert(alerts, alert_for(incident, run_alert_id(ref.uid), now, _channel(spec)))
            if self.alerts is not None:
                for alert_id, warning in warned:  # announced, never marking anything at risk
                    add_alert(alerts, alert_for(warning, alert_id, now, _channel(spec)))

        after = self._update(ref.namespace, ref.pipeline, wrote, now)
        missed: list[str] = []
        if status.phase == RunPhase.SUCCEEDED and latest:
            missed = self._clear_risk(source, now)
        elif incident is not None:
            missed = self._raise(incident, now, put_at_risk=latest)
        if (incident is not None or warned) and after is not None:
            self._send_pending(ref.namespace, ref.pipeline, after.alerts)
        if missed:
            raise RuntimeError(f"could not update the datasets of Pipeline(s) {', '.join(missed)}")

    # --- freshness --------------------------------------------------------------------------
    def evaluate_all(self, now: datetime | None = None) -> None:
        """One freshness pass over every Pipeline, each on its own (a failure stays with its Pipeline);
        sets the dataset metrics from the status and sends the alerts still pending."""
        now = now or datetime.now(UTC)
        pipelines = self._pipelines()
        graph = DatasetGraph.from_pipelines(pipelines)
        for obj in pipelines:
            if not any(o.get("freshness") for s in obj["spec"].get("steps", []) for o in s.get("outputs", [])):
                continue  # no SLA to evaluate: skip the read and the write
            self.isolation.run(obj, "freshness evaluation", partial(self._evaluate, obj, graph, now),
                               reason="FreshnessFailed")
        pipelines = self._pipelines()  # after this pass's writes
        self._export(pipelines, now)
        self.deliver_pending(pipelines)

    def _evaluate(self, obj: dict[str, Any], graph: DatasetGraph, now: datetime) -> None:
        meta = obj["metadata"]
        source = f"{meta['namespace']}/{meta['name']}"
        went_stale: list[tuple[Incident, str]] = []  # and the DatasetStale Event's message

        def check(spec: PipelineSpec, datasets: list[DatasetStatus], alerts: list[Alert],
                  out: list[tuple[Incident, str]] = went_stale) -> None:
            out.clear()  # asked again after a write conflict: only the last answer counts
            rules = {(o.namespace, o.name): o.freshness for s in spec.steps for o in s.outputs if o.freshness}
            for d in datasets:
                rule = rules.get((d.namespace, d.name))
                if rule is None:
                    d.stale = False
                    continue
                verdict = evaluate(rule, parse_time(d.last_updated) if d.last_updated else None, now)
                if verdict.stale and not d.stale and d.last_updated:  # never written is no incident
                    key = (d.namespace, d.name)
                    incident = Incident.build(graph, f"{d.namespace}/{d.name} is stale: it {verdict.message}",
                                              source, [key])
                    out.append((incident, f"{d.namespace}/{d.name} is past its freshness SLA ({verdict.message})"))
                    if self.alerts is not None:
                        alert_id = stale_alert_id(source, key, d.last_updated)
                        add_alert(alerts, alert_for(incident, alert_id, now, _channel(spec)))
                d.stale = verdict.stale
                self.metrics.dataset_sla.labels(f"{d.namespace}/{d.name}").set(verdict.sla_seconds)

        self._update(meta["namespace"], meta["name"], check, now)
        for incident, message in went_stale:
            self.post_event(obj, "Warning", "DatasetStale", message[:1024])
            self._raise(incident, now)

    # --- incidents --------------------------------------------------------------------------
    def _raise(self, incident: Incident, now: datetime, put_at_risk: bool = True) -> list[str]:
        """Mark an incident's datasets at risk (its alert is already in its pipeline's status).  A failed run
        settled after a newer run of its pipeline is still announced, but puts nothing at risk any more.
        The Pipelines that could not be marked (each reported on itself)."""
        if not incident.affected:
            return []
        log.warning("Incident: %s; %d dataset(s) at risk", incident.cause, len(incident.affected))
        if not put_at_risk:
            return []
        at_risk = set(incident.affected)

        def mark(spec: PipelineSpec, datasets: list[DatasetStatus], alerts: list[Alert]) -> None:
            for d in datasets:
                if (d.namespace, d.name) in at_risk:
                    d.at_risk, d.at_risk_source = incident.cause[:1024], incident.source
        return self._on_each("marking datasets at risk", mark, now)

    def _clear_risk(self, source: str, now: datetime) -> list[str]:
        def clear(spec: PipelineSpec, datasets: list[DatasetStatus], alerts: list[Alert]) -> None:
            for d in datasets:
                if d.at_risk_source == source:
                    d.at_risk = d.at_risk_source = None
        return self._on_each("clearing a risk", clear, now)

    def _on_each(self, what: str, mutate: Mutation, now: datetime) -> list[str]:
        """Apply ``mutate`` to every Pipeline, each on its own; the ones that failed (reported on themselves)."""
        failed: list[str] = []
        for obj in self._pipelines():
            namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
            if not self._isolated(namespace, name, what, partial(self._update, namespace, name, mutate, now)):
                failed.append(f"{namespace}/{name}")
        return failed

    def _isolated(self, namespace: str, name: str, what: str, work: Callable[[], object]) -> bool:
        """Work on one Pipeline that must not be skipped (run effects), its failure kept to that Pipeline;
        whether it was done."""
        def done() -> bool:
            work()
            return True
        obj = {"apiVersion": c.API_VERSION, "kind": c.PIPELINE_KIND, "metadata": {"namespace": namespace, "name": name}}
        return bool(self.isolation.run(obj, what, done, reason="SlaUpdateFailed", kind=f"{c.PIPELINE_KIND}/sla",
                                       respect_backoff=False))

    # --- delivery ---------------------------------------------------------------------------
    def deliver_pending(self, pipelines: list[dict[str, Any]] | None = None) -> None:
        """Send every alert still pending in the Pipelines' status that is not on its way already (after a
        restart: all of them).  Called after each evaluation, so a failed delivery is tried again."""
        for obj in self._pipelines() if pipelines is None else pipelines:
            try:
                alerts = PipelineStatus.model_validate(obj.get("status") or {}).alerts
            except ValidationError:
                continue  # unreadable status: nothing can be sent from it (the export logged it)
            self._send_pending(obj["metadata"]["namespace"], obj["metadata"]["name"], alerts)

    def _send_pending(self, namespace: str, name: str, alerts: list[Alert]) -> None:
        if self.alerts is None:
            return
        for alert in alerts:
            key = (namespace, name, alert.id)
            with self._flight_guard:
                if not is_pending(alert) or key in self._in_flight:
                    continue
                self._in_flight.add(key)
            self.alerts.send(notification(alert), on_done=partial(self._delivered, key))

    def _delivered(self, key: AlertKey, outcome: Outcome) -> None:
        """The sender's answer about one alert (on its thread): a 2xx or a refusal is written to the status."""
        with self._flight_guard:
            self._in_flight.discard(key)
        namespace, name, alert_id = key
        if outcome not in (Outcome.DELIVERED, Outcome.REJECTED):
            log.info("alert %s of Pipeline %s/%s not delivered (%s); sent again after the next evaluation",
                     alert_id, namespace, name, outcome.value)
            return
        refused = "the alert webhook refused it (a 4xx or a redirect)" if outcome == Outcome.REJECTED else None

        def ack(spec: PipelineSpec, datasets: list[DatasetStatus], alerts: list[Alert]) -> None:
            acknowledge(alerts, alert_id, datetime.now(UTC), refused)
        try:
            self._update(namespace, name, ack, datetime.now(UTC))
        except Exception as exc:  # it stays pending and is sent again: the id lets receivers drop the repeat
            log.warning("could not mark alert %s of Pipeline %s/%s as sent: %s", alert_id, namespace, name, exc)

    def _pipelines(self) -> list[dict[str, Any]]:
        """Every Pipeline whose spec the operator can read: the others are not Ready, and their condition
        says why; a namespace that cannot be listed is skipped (and logged) without stopping the rest."""
        found: list[dict[str, Any]] = []
        for scope in self.scopes:
            scope_obj = {"kind": "Namespace", "metadata": {"name": scope or "(all namespaces)"}}
            listed = self.isolation.run(scope_obj, "listing Pipelines", partial(self.kube.list_pipelines, scope),
                                        reason="ListFailed", respect_backoff=False)
            found += [p for p in listed or [] if _readable(p)]
        return found

    def _export(self, pipelines: list[dict[str, Any]], now: datetime) -> None:
        """Dataset metrics from the Pipelines' status (level-based: right after a restart too), and the
        share of SLA checks met over the window."""
        met = total = pending = 0
        for obj in pipelines:
            try:
                status = PipelineStatus.model_validate(obj.get("status") or {})
            except ValidationError:
                log.debug("Pipeline %s/%s: status unreadable; no dataset metrics", obj["metadata"].get("namespace"),
                          obj["metadata"].get("name"))
                continue
            pending += sum(1 for a in status.alerts if is_pending(a))
            with_sla = {(o.namespace, o.name) for s in PipelineSpec.model_validate(obj["spec"]).steps
                        for o in s.outputs if o.freshness}
            for d in status.datasets:
                if (d.namespace, d.name) in with_sla:
                    total, met = total + 1, met + (0 if d.stale else 1)
                label = f"{d.namespace}/{d.name}"
                if d.last_updated:
                    self.metrics.dataset_last_updated.labels(label).set(parse_time(d.last_updated).timestamp())
                self.metrics.dataset_stale.labels(label).set(1 if d.stale else 0)
                self.metrics.dataset_at_risk.labels(label).set(1 if d.at_risk else 0)
        self.metrics.freshness_met_ratio.set(self.record_sample(now.timestamp(), met, total))
        self.metrics.alerts_pending.set(pending)

    def record_sample(self, at: float, met: int, total: int) -> float:
        """Add one evaluation; the share of (dataset, evaluation) pairs that met their SLA in the window."""
        self._samples.append((at, met, total))
        while self._samples and self._samples[0][0] < at - self.window_seconds:
            self._samples.popleft()
        checked = sum(t for _, _, t in self._samples)
        return sum(m for _, m, _ in self._samples) / checked if checked else 1.0


def _readable(pipeline: dict[str, Any]) -> bool:
    try:
        PipelineSpec.model_validate(pipeline.get("spec") or {})
    except ValidationError:
        return False
    return True
