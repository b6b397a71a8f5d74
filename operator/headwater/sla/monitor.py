"""Freshness SLAs and cascading alerts, kept on the Pipelines' status: the I/O around the pure SLA rules.

``Pipeline.status.datasets`` is the level state: when each output was last written, whether it is
stale, and whether (and why) it is at risk.  What changes it is decided by pure functions
(``evaluation`` for freshness passes, ``incidents`` for finished runs, ``exporting`` for the metrics);
this module reads Pipelines, applies those decisions in resourceVersion-guarded writes, posts Events
and sends alerts.

Notifications are never only in memory: an incident is written to ``status.alerts`` of the pipeline
at fault in the same status write that records its cause (the run's outcome, the dataset turning
stale), and sent from there until the webhook acknowledges it (``notifiedAt``).  Each evaluation
sends again whatever is still pending, so an operator killed between the write and the send, or a
receiver away for hours, delays an alert but never loses it.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from pydantic import ValidationError

from headwater.adapters.delivery import JsonPoster, Outcome
from headwater.adapters.grouping import GroupCommit
from headwater.adapters.isolation import Isolation
from headwater.adapters.kube import Kube
from headwater.adapters.metrics import Metrics
from headwater.runs.jobs import RunRef
from headwater.sla.alerts import (
    DatasetGraph,
    Incident,
    acknowledge,
    add_alert,
    alert_for,
    is_pending,
    notification,
    prune_alerts,
    run_alert_id,
)
from headwater.sla.evaluation import FreshnessPass, Mutation, channel, check_freshness, dataset_entries, sla_conditions
from headwater.sla.exporting import MetWindow, summarize
from headwater.sla.incidents import (
    check_warnings,
    clear_risk,
    failure_incident,
    mark_at_risk,
    record_writes,
    steps_that_wrote,
)
from headwater.spec import constants as c
from headwater.spec.models import Alert, DatasetStatus, PipelineRunStatus, PipelineSpec, PipelineStatus, RunPhase

__all__ = ["SlaMonitor"]

log = logging.getLogger(__name__)

AlertKey = tuple[str, str, str]  # (namespace, pipeline, alert id)

ACKNOWLEDGED_MEMORY = 4096
"""Alerts remembered as acknowledged, so that a pass holding a list read before an acknowledgement
does not send that alert again; beyond it the oldest are forgotten (their status says notifiedAt)."""


class SlaMonitor:
    """Evaluates freshness, raises incidents and keeps Pipeline.status.datasets; thread-safe."""

    def __init__(self, kube: Kube, metrics: Metrics, post_event: Callable[..., None],
                 alerts: JsonPoster | None, scopes: list[str | None], window_seconds: float = 7 * 86400,
                 isolation: Isolation | None = None) -> None:
        self.kube, self.metrics, self.post_event, self.alerts, self.scopes = kube, metrics, post_event, alerts, scopes
        self.isolation = isolation or Isolation(post_event)
        self._writes: GroupCommit[tuple[Mutation, datetime], PipelineStatus | None] = GroupCommit()
        self._lists: GroupCommit[None, list[dict[str, Any]]] = GroupCommit()
        self._flight_guard = threading.Lock()
        self._in_flight: set[AlertKey] = set()
        self._acknowledged: OrderedDict[AlertKey, None] = OrderedDict()
        self._met = MetWindow(window_seconds)

    def _update(self, namespace: str, name: str, mutate: Mutation, now: datetime) -> PipelineStatus | None:
        """Apply ``mutate`` to the Pipeline's datasets and alerts and write them, with the Fresh and AtRisk
        conditions, onto the version read (the conditions list is shared with other writers); the status as
        written (None when the Pipeline is gone).

        The changes of one Pipeline made at the same time (its runs finishing together) are written together,
        in one read and one write (:class:`~headwater.adapters.grouping.GroupCommit`); each caller returns once
        its own change is written, or raises its error.
        """
        return self._writes.submit((namespace, name), (mutate, now), partial(self._write, namespace, name))

    def _write(self, namespace: str, name: str, changes: list[tuple[Mutation, datetime]]) -> PipelineStatus | None:
        def mutate_all(spec: PipelineSpec, datasets: list[DatasetStatus], alerts: list[Alert]) -> None:
            for mutate, _ in changes:
                mutate(spec, datasets, alerts)
        now = max(when for _, when in changes)
        written: list[PipelineStatus] = []
        self.kube.update_pipeline_status(namespace, name, lambda obj: self._change(obj, mutate_all, now, written))
        return written[-1] if written else None

    def _change(self, obj: dict[str, Any], mutate: Mutation, now: datetime,
                written: list[PipelineStatus]) -> dict[str, Any] | None:
        namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        spec = PipelineSpec.model_validate(obj["spec"])
        status = PipelineStatus.model_validate(obj.get("status") or {})
        datasets = dataset_entries(spec, status.datasets)
        alerts = list(status.alerts)
        mutate(spec, datasets, alerts)
        alerts, dropped = prune_alerts(alerts)
        if dropped:
            log.warning("Pipeline %s/%s: %d undelivered alert(s) dropped to keep its status bounded",
                        namespace, name, dropped)
            self.metrics.delivery_dropped.labels("alerts", "status_full").inc(dropped)
        conditions = list(status.conditions)
        sla_conditions(conditions, datasets, now)
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
        wrote = steps_that_wrote(status)
        incident, warned = None, []
        if status.phase == RunPhase.FAILED or any(s.checks for s in status.steps):
            graph = DatasetGraph.from_pipelines(self._pipelines())
            incident = failure_incident(graph, ref.namespace, ref.pipeline, ref.name, status)
            warned = check_warnings(graph, ref.namespace, ref.pipeline, ref.name, ref.uid, status)

        def written(spec: PipelineSpec, datasets: list[DatasetStatus], alerts: list[Alert]) -> None:
            record_writes(spec, datasets, wrote, ref.name)
            if incident is not None and incident.affected and self.alerts is not None:
                add_alert(alerts, alert_for(incident, run_alert_id(ref.uid), now, channel(spec)))
            if self.alerts is not None:
                for alert_id, warning in warned:  # announced, never marking anything at risk
                    add_alert(alerts, alert_for(warning, alert_id, now, channel(spec)))

        after = self._update(ref.namespace, ref.pipeline, written, now)
        missed: list[str] = []
        if status.phase == RunPhase.SUCCEEDED and latest:
            source = f"{ref.namespace}/{ref.pipeline}"
            # only the Pipelines whose status shows a risk of this source: not a read of every Pipeline per run
            missed = self._on_each("clearing a risk", lambda _s, datasets, _a: clear_risk(datasets, source), now,
                                   only=partial(_shows_risk_of, source))
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
        found: list[FreshnessPass] = []

        def check(spec: PipelineSpec, datasets: list[DatasetStatus], alerts: list[Alert]) -> None:
            found[:] = [check_freshness(spec, datasets, alerts, graph=graph, source=source, now=now,
                                        alerting=self.alerts is not None)]  # asked again after a conflict

        self._update(meta["namespace"], meta["name"], check, now)
        for result in found:
            for label, seconds in result.sla_seconds.items():
                self.metrics.dataset_sla.labels(label).set(seconds)
            for incident, message in result.went_stale:
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
        # only the Pipelines that declare one of its datasets: not a read of every Pipeline per incident
        return self._on_each("marking datasets at risk", lambda _s, datasets, _a: mark_at_risk(datasets, incident),
                             now, only=partial(_declares_any, frozenset(incident.affected)))

    def _on_each(self, what: str, mutate: Mutation, now: datetime,
                 only: Callable[[dict[str, Any]], bool] = lambda _: True) -> list[str]:
        """Apply ``mutate`` to every Pipeline (of those listed, the ones ``only`` selects), each on its own; the
        ones that failed (reported on themselves)."""
        failed: list[str] = []
        for obj in filter(only, self._pipelines()):
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
                if not is_pending(alert) or key in self._in_flight or key in self._acknowledged:
                    continue
                self._in_flight.add(key)
            self.alerts.send(notification(alert), on_done=partial(self._delivered, key))

    def _delivered(self, key: AlertKey, outcome: Outcome) -> None:
        """The sender's answer about one alert (on its thread): a 2xx or a refusal is written to the status,
        and remembered, before the alert stops being in flight."""
        namespace, name, alert_id = key
        answered = outcome in (Outcome.DELIVERED, Outcome.REJECTED)
        if not answered:
            log.info("alert %s of Pipeline %s/%s not delivered (%s); sent again after the next evaluation",
                     alert_id, namespace, name, outcome.value)
        else:
            refused = "the alert webhook refused it (a 4xx or a redirect)" if outcome == Outcome.REJECTED else None

            def ack(spec: PipelineSpec, datasets: list[DatasetStatus], alerts: list[Alert]) -> None:
                acknowledge(alerts, alert_id, datetime.now(UTC), refused)
            try:
                self._update(namespace, name, ack, datetime.now(UTC))
            except Exception as exc:  # it stays pending and is sent again: the id lets receivers drop the repeat
                log.warning("could not mark alert %s of Pipeline %s/%s as sent: %s", alert_id, namespace, name, exc)
                answered = False
        with self._flight_guard:
            if answered:
                self._acknowledged[key] = None
                while len(self._acknowledged) > ACKNOWLEDGED_MEMORY:
                    self._acknowledged.popitem(last=False)
            self._in_flight.discard(key)

    def _pipelines(self) -> list[dict[str, Any]]:
        """Every Pipeline whose spec the operator can read, listed after the call: the callers that arrive
        while a listing is under way (runs finishing together) share the next one, so a burst of finished
        runs costs two listings, not one per run.  Shared: read it, never change it."""
        return list(self._lists.submit("pipelines", None, self._list_pipelines) or [])

    def _list_pipelines(self, _callers: list[None]) -> list[dict[str, Any]]:
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
        summary = summarize(pipelines)
        for d in summary.datasets:
            if d.last_updated is not None:
                self.metrics.dataset_last_updated.labels(d.label).set(d.last_updated)
            self.metrics.dataset_stale.labels(d.label).set(1 if d.stale else 0)
            self.metrics.dataset_at_risk.labels(d.label).set(1 if d.at_risk else 0)
        self.metrics.freshness_met_ratio.set(self._met.record(now.timestamp(), summary.met, summary.total))
        self.metrics.alerts_pending.set(summary.pending_alerts)


def _readable(pipeline: dict[str, Any]) -> bool:
    try:
        PipelineSpec.model_validate(pipeline.get("spec") or {})
    except ValidationError:
        return False
    return True


def _declares_any(datasets: frozenset[tuple[str, str]], pipeline: dict[str, Any]) -> bool:
    """Whether a listed Pipeline declares one of ``datasets`` (namespace, name) as an output: the datasets its
    status keeps (:func:`~headwater.sla.evaluation.dataset_entries`)."""
    steps = (pipeline.get("spec") or {}).get("steps") or []
    return any(isinstance(o, dict) and (o.get("namespace"), o.get("name")) in datasets
               for s in steps if isinstance(s, dict) for o in s.get("outputs") or [])


def _shows_risk_of(source: str, pipeline: dict[str, Any]) -> bool:
    """Whether a listed Pipeline's status shows a dataset at risk because of ``source`` (a risk set after the
    list was read is cleared by the source's next success)."""
    return any(d.get("atRiskSource") == source for d in (pipeline.get("status") or {}).get("datasets") or [])
