"""Every Prometheus metric of the operator, in one place.

Labels are bounded: pipeline names, phases and step ids; never run ids.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from headwater.spec.models import RunPhase

__all__ = ["Metrics"]

_DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)
_HANDOFF_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)
_TRIGGER_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800)


class Metrics:
    """The operator's metrics on their own registry (so tests and embedded use never collide)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.runs = Counter("headwater_runs", "PipelineRuns that reached a final phase.", ["pipeline", "phase"],
                            registry=r)
        self.run_duration = Histogram("headwater_run_duration_seconds", "Duration of finished runs.",
                                      ["pipeline"], buckets=_DURATION_BUCKETS, registry=r)
        self.step_duration = Histogram("headwater_step_duration_seconds", "Duration of finished steps.",
                                       ["pipeline", "step"], buckets=_DURATION_BUCKETS, registry=r)
        self.step_attempts = Counter("headwater_step_attempts", "Attempts (pods) of finished steps.",
                                     ["pipeline", "step"], registry=r)
        self.step_retries = Counter("headwater_step_retries", "Attempts beyond the first of finished steps.",
                                    ["pipeline", "step"], registry=r)
        self.handoff = Histogram("headwater_step_handoff_seconds",
                                 "From the operator seeing a step's last dependency succeed to creating its Job.",
                                 ["pipeline"], buckets=_HANDOFF_BUCKETS, registry=r)
        self.checks = Counter("headwater_checks", "Verdicts of data checks on written dataset versions, by check "
                              "and outcome (Passed, Failed, Skipped).",
                              ["pipeline", "dataset", "check", "severity", "outcome"], registry=r)
        self.trigger_firings = Counter("headwater_trigger_firings", "PipelineRuns created by dataset triggers.",
                                       ["namespace", "pipeline"], registry=r)
        self.trigger_failures = Counter(
            "headwater_trigger_failures",
            "Evaluations of a Pipeline's dataset triggers that failed (it backs off; its Triggered condition says "
            "why).", ["namespace", "pipeline"], registry=r)
        self.trigger_latency = Histogram(
            "headwater_trigger_latency_seconds",
            "From a dataset version committed in the lineage store (the newest one a firing consumes) to the "
            "PipelineRun it triggered being created, on the store's clock.",
            ["namespace", "pipeline"], buckets=_TRIGGER_BUCKETS, registry=r)
        self.reconcile_errors = Counter("headwater_reconcile_errors", "Reconciles that raised an error.",
                                        ["kind"], registry=r)
        self.reconcile_errors.labels("PipelineRun")  # exported as 0 before the first error
        self.leader = Gauge("headwater_leader",
                            "1 while this process acts (it holds the Lease, or runs without leader election); "
                            "0 while it stands by.", registry=r)
        self.lineage_backlog = Gauge("headwater_lineage_backlog",
                                     "Finished runs not yet written to the lineage store.", registry=r)
        self.record_failures = Counter(
            "headwater_lineage_record_failures",
            "Failures to record finished runs: RecordFailed (one run's records refused; the run is marked "
            "Recorded=False and backed off), DeclarationFailed (one Pipeline's declared outputs refused; a Warning "
            "Event on it, backed off), StoreUnavailable, ApiUnavailable (the whole pass backs off).",
            ["reason"], registry=r)
        for reason in ("RecordFailed", "DeclarationFailed", "StoreUnavailable", "ApiUnavailable"):
            self.record_failures.labels(reason)  # exported as 0 before the first failure
        self.dataset_last_updated = Gauge("headwater_dataset_last_updated_timestamp_seconds",
                                          "When a dataset was last written successfully.", ["dataset"], registry=r)
        self.dataset_sla = Gauge("headwater_dataset_freshness_sla_seconds",
                                 "The freshness SLA of a dataset (maximum age).", ["dataset"], registry=r)
        self.dataset_at_risk = Gauge("headwater_dataset_at_risk",
                                     "1 when a dataset is downstream of a failed step or a stale source.",
                                     ["dataset"], registry=r)
        self.freshness_met_ratio = Gauge(
            "headwater_freshness_sla_met_ratio",
            "Share of freshness checks that found their dataset fresh, over HEADWATER_FRESHNESS_WINDOW_SECONDS "
            "(since the operator started, when that is shorter).", registry=r)
        self.dataset_stale = Gauge("headwater_dataset_stale", "1 when a dataset is past its freshness SLA.",
                                   ["dataset"], registry=r)
        self.alerts_pending = Gauge("headwater_alerts_pending",
                                    "Incidents in Pipelines' status not yet acknowledged by the alert webhook.",
                                    registry=r)
        self.delivery_sent = Counter("headwater_delivery_sent", "Payloads a receiver acknowledged (2xx).",
                                     ["sender"], registry=r)
        self.delivery_errors = Counter("headwater_delivery_errors",
                                       "Failed delivery attempts, by cause (3xx, 4xx, 5xx, timeout, connection, "
                                       "network, protocol).", ["sender", "reason"], registry=r)
        self.delivery_dropped = Counter("headwater_delivery_dropped",
                                        "Payloads abandoned: queue_full, rejected (4xx or redirect), gave_up "
                                        "(every attempt failed), stopped.", ["sender", "reason"], registry=r)
        self.delivery_queue_bytes = Gauge("headwater_delivery_queue_bytes", "Bytes of payloads waiting to be sent.",
                                          ["sender"], registry=r)

    def pipeline_seen(self, pipeline: str) -> None:
        """Export the pipeline's run outcome counters at 0 before its first run ends.

        A counter born at 1 shows no increase() to Prometheus, so without its 0 the first failed run of a
        pipeline would never fire an alert on increase(headwater_runs_total{phase="Failed"}).
        """
        for phase in RunPhase:
            if phase.final:
                self.runs.labels(pipeline, phase.value)

    def triggers_seen(self, namespace: str, pipeline: str) -> None:
        """Export a Pipeline's trigger series at 0 from the first pass that sees its dataset triggers (so the
        first failure or firing shows as an increase())."""
        self.trigger_firings.labels(namespace, pipeline)
        self.trigger_failures.labels(namespace, pipeline)
        self.trigger_latency.labels(namespace, pipeline)
