{{/*
Headwater's Prometheus metrics (operator/headwater/metrics.py), served on /metrics of the metrics port.
This is the only place the chart names them: the PrometheusRule and the Grafana dashboard take them
from "headwater.metrics" below, and tests/unit/test_chart.py checks that both use no other name and
that the operator defines every one of them.

  headwater_runs_total{pipeline,phase}                          counter    runs that reached a final phase
  headwater_run_duration_seconds{pipeline}                      histogram  duration of finished runs
  headwater_step_duration_seconds{pipeline,step}                histogram  duration of finished steps
  headwater_step_attempts_total{pipeline,step}                  counter    attempts (pods) of finished steps
  headwater_step_handoff_seconds{pipeline}                      histogram  last dependency succeeded -> Job created
  headwater_reconcile_errors_total                              counter    reconciles that raised an error
  headwater_lineage_backlog                                     gauge      finished runs not yet in the lineage store
  headwater_dataset_last_updated_timestamp_seconds{dataset}     gauge      when a dataset was last written
  headwater_dataset_freshness_sla_seconds{dataset}              gauge      a dataset's freshness SLA (maximum age)
  headwater_dataset_stale{dataset}                              gauge      1 when a dataset is past its SLA
  headwater_lineage_record_failures_total{reason}               counter    runs that failed to record, by reason
  headwater_alerts_pending                                      gauge      incidents not yet acknowledged by the webhook
  headwater_leader                                              gauge      1 on the pod that acts (holds the Lease), 0 on standbys
  headwater_trigger_firings_total{namespace,pipeline}           counter    runs created by dataset triggers
  headwater_trigger_failures_total{namespace,pipeline}          counter    failed evaluations of a Pipeline's dataset triggers
  headwater_trigger_latency_seconds{namespace,pipeline}         histogram  version committed in the store -> triggered run created
*/}}
{{- define "headwater.metrics" -}}
runsTotal: headwater_runs_total
runDuration: headwater_run_duration_seconds
stepDuration: headwater_step_duration_seconds
stepAttemptsTotal: headwater_step_attempts_total
stepHandoff: headwater_step_handoff_seconds
reconcileErrorsTotal: headwater_reconcile_errors_total
lineageBacklog: headwater_lineage_backlog
datasetLastUpdated: headwater_dataset_last_updated_timestamp_seconds
datasetFreshnessSla: headwater_dataset_freshness_sla_seconds
datasetStale: headwater_dataset_stale
recordFailuresTotal: headwater_lineage_record_failures_total
alertsPending: headwater_alerts_pending
leader: headwater_leader
triggerFiringsTotal: headwater_trigger_firings_total
triggerFailuresTotal: headwater_trigger_failures_total
triggerLatency: headwater_trigger_latency_seconds
{{- end }}
