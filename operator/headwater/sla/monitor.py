"""Freshness SLAs and cascading alerts, kept on the Pipelines' status.

``Pipeline.status.datasets`` is the level state: when each output was last written, whether it is
stale, and whether (and why) it is at risk.  Metrics are set from it on every evaluation, so they
survive operator restarts.  An incident (a failed run, or a dataset going stale) marks every dataset
downstream of it, across pipelines, at risk and sends one grouped notification; the next successful
run of the pipeline at fault clears the risk.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from headwater.adapters.delivery import JsonPoster
from headwater.adapters.kube import Kube
from headwater.adapters.metrics import Metrics
from headwater.runs.jobs import RunRef
from headwater.runs.settling import finished_later
from headwater.sla.alerts import DatasetGraph, Incident, notification
from headwater.sla.freshness import evaluate
from headwater.spec.conditions import set_condition
from headwater.spec.models import (
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
Mutation = Callable[[PipelineSpec, list[DatasetStatus]], None]


def _entries(spec: PipelineSpec, old: list[DatasetStatus]) -> list[DatasetStatus]:
    """One entry per declared output, keeping what was known."""
    known = {(d.namespace, d.name): d for d in old}
    keys = dict.fromkeys((o.namespace, o.name) for s in spec.steps for o in s.outputs)
    return [known.get(k, DatasetStatus(namespace=k[0], name=k[1])).model_copy() for k in keys]


class SlaMonitor:
    """Evaluates freshness, raises incidents and keeps Pipeline.status.datasets; thread-safe."""

    def __init__(self, kube: Kube, metrics: Metrics, post_event: Callable[..., None],
                 alerts: JsonPoster | None, scopes: list[str | None], window_seconds: float = 7 * 86400) -> None:
        self.kube, self.metrics, self.post_event, self.alerts, self.scopes = kube, metrics, post_event, alerts, scopes
        self._lock = threading.Lock()
        self.window_seconds = window_seconds
        self._samples: deque[tuple[float, int, int]] = deque()  # (time, datasets met, datasets with an SLA)

    def _update(self, namespace: str, name: str, mutate: Mutation, now: datetime) -> None:
        with self._lock:
            obj = self.kube.get_pipeline(namespace, name)
            if obj is None:
                return
            spec = PipelineSpec.model_validate(obj["spec"])
            status = PipelineStatus.model_validate(obj.get("status") or {})
            datasets = _entries(spec, status.datasets)
            mutate(spec, datasets)
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
            if datasets != status.datasets or conditions != status.conditions:
                dump = PipelineStatus(datasets=datasets, conditions=conditions).model_dump(
                    by_alias=True, exclude_none=True, mode="json", include={"datasets", "conditions"})
                self.kube.patch_pipeline_status(namespace, name, dump)

    # --- runs -------------------------------------------------------------------------------
    def run_finished(self, ref: RunRef, status: PipelineRunStatus, latest: bool = True,
                     now: datetime | None = None) -> None:
        """Record the outputs a finished run wrote; clear risks it resolves; raise an incident if it failed.

        Idempotent, so that it can be applied again after a crash: a dataset's lastUpdated only moves
        forward, and only the pipeline's ``latest`` run (none finished after it) clears or sets risks.
        """
        now = now or datetime.now(UTC)
        done = {s.name: s for s in status.steps if s.phase == StepPhase.SUCCEEDED and s.reason != StepReason.REUSED}

        def wrote(spec: PipelineSpec, datasets: list[DatasetStatus]) -> None:
            by_key = {(d.namespace, d.name): d for d in datasets}
            for step in spec.steps:
                if step.id in done:
                    for out in step.outputs:
                        entry = by_key[(out.namespace, out.name)]
                        written = done[step.id].finished_at
                        if not entry.last_updated or finished_later(written, entry.last_updated):
                            entry.last_updated, entry.last_run = written, ref.name

        self._update(ref.namespace, ref.pipeline, wrote, now)
        source = f"{ref.namespace}/{ref.pipeline}"
        if status.phase == RunPhase.SUCCEEDED and latest:
            self._clear_risk(source, now)
        elif status.phase == RunPhase.FAILED:
            graph = DatasetGraph.from_pipelines(self._pipelines())
            failed = [s for s in status.steps if s.phase == StepPhase.FAILED]
            roots = [k for s in failed for k in graph.outputs_of_step.get((ref.namespace, ref.pipeline, s.name), [])]
            cause = "; ".join(f"{ref.pipeline}/{s.name} failed in run {ref.namespace}/{ref.name}: "
                              f"{s.reason}: {s.message or ''}".strip() for s in failed)
            self._raise(Incident.build(graph, cause, source, roots), now, put_at_risk=latest)

    # --- freshness --------------------------------------------------------------------------
    def evaluate_all(self, now: datetime | None = None) -> None:
        """One freshness pass over every Pipeline; sets the dataset metrics from the status."""
        now = now or datetime.now(UTC)
        pipelines = self._pipelines()
        for obj in pipelines:
            if not any(o.get("freshness") for s in obj["spec"].get("steps", []) for o in s.get("outputs", [])):
                continue  # no SLA to evaluate: skip the read and the write
            went_stale: list[tuple[Key, str]] = []

            def check(spec: PipelineSpec, datasets: list[DatasetStatus], out: list[tuple[Key, str]] = went_stale
                      ) -> None:
                rules = {(o.namespace, o.name): o.freshness for s in spec.steps for o in s.outputs if o.freshness}
                for d in datasets:
                    rule = rules.get((d.namespace, d.name))
                    if rule is None:
                        d.stale = False
                        continue
                    verdict = evaluate(rule, parse_time(d.last_updated) if d.last_updated else None, now)
                    if verdict.stale and not d.stale and d.last_updated:  # never written is no incident
                        out.append(((d.namespace, d.name), verdict.message))
                    d.stale = verdict.stale
                    self.metrics.dataset_sla.labels(f"{d.namespace}/{d.name}").set(verdict.sla_seconds)

            meta = obj["metadata"]
            self._update(meta["namespace"], meta["name"], check, now)
            for key, rule in went_stale:
                self._stale(obj, key, rule, now)
        self._export(self._pipelines(), now)  # after this pass's writes

    def _stale(self, pipeline: dict[str, Any], key: Key, rule: str, now: datetime) -> None:
        label = f"{key[0]}/{key[1]}"
        self.post_event(pipeline, "Warning", "DatasetStale", f"{label} is past its freshness SLA ({rule})")
        meta = pipeline["metadata"]
        graph = DatasetGraph.from_pipelines(self._pipelines())
        self._raise(Incident.build(graph, f"{label} is stale: it {rule}", f"{meta['namespace']}/{meta['name']}",
                                   [key]), now)

    # --- incidents --------------------------------------------------------------------------
    def _raise(self, incident: Incident, now: datetime, put_at_risk: bool = True) -> None:
        """Send the incident's notification and, when ``put_at_risk``, mark its datasets at risk (a failed run
        settled after a newer run of its pipeline is still announced, but no longer puts anything at risk)."""
        if not incident.affected:
            return
        log.warning("Incident: %s; %d dataset(s) at risk", incident.cause, len(incident.affected))
        if self.alerts is not None:
            self.alerts.send(notification(incident))
        if not put_at_risk:
            return
        at_risk = set(incident.affected)
        for obj in self._pipelines():
            def mark(spec: PipelineSpec, datasets: list[DatasetStatus]) -> None:
                for d in datasets:
                    if (d.namespace, d.name) in at_risk:
                        d.at_risk, d.at_risk_source = incident.cause[:1024], incident.source
            self._update(obj["metadata"]["namespace"], obj["metadata"]["name"], mark, now)

    def _clear_risk(self, source: str, now: datetime) -> None:
        for obj in self._pipelines():
            def clear(spec: PipelineSpec, datasets: list[DatasetStatus]) -> None:
                for d in datasets:
                    if d.at_risk_source == source:
                        d.at_risk = d.at_risk_source = None
            self._update(obj["metadata"]["namespace"], obj["metadata"]["name"], clear, now)

    def _pipelines(self) -> list[dict[str, Any]]:
        return [p for scope in self.scopes for p in self.kube.list_pipelines(scope)]

    def _export(self, pipelines: list[dict[str, Any]], now: datetime) -> None:
        """Dataset metrics from the Pipelines' status (level-based: right after a restart too), and the
        share of SLA checks met over the window."""
        met = total = 0
        for obj in pipelines:
            with_sla = {(o.namespace, o.name) for s in PipelineSpec.model_validate(obj["spec"]).steps
                        for o in s.outputs if o.freshness}
            for d in PipelineStatus.model_validate(obj.get("status") or {}).datasets:
                if (d.namespace, d.name) in with_sla:
                    total, met = total + 1, met + (0 if d.stale else 1)
                label = f"{d.namespace}/{d.name}"
                if d.last_updated:
                    self.metrics.dataset_last_updated.labels(label).set(parse_time(d.last_updated).timestamp())
                self.metrics.dataset_stale.labels(label).set(1 if d.stale else 0)
                self.metrics.dataset_at_risk.labels(label).set(1 if d.at_risk else 0)
        self.metrics.freshness_met_ratio.set(self.record_sample(now.timestamp(), met, total))

    def record_sample(self, at: float, met: int, total: int) -> float:
        """Add one evaluation; the share of (dataset, evaluation) pairs that met their SLA in the window."""
        self._samples.append((at, met, total))
        while self._samples and self._samples[0][0] < at - self.window_seconds:
            self._samples.popleft()
        checked = sum(t for _, _, t in self._samples)
        return sum(m for _, m, _ in self._samples) / checked if checked else 1.0

