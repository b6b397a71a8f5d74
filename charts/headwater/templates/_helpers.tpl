{{/*
Names, labels and shared fragments of the Headwater chart.
*/}}

{{- define "headwater.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: <release>-<chart>, or <release> when it already contains the chart name; at most 52
characters so that suffixes such as "-postgresql" keep names within 63.
*/}}
{{- define "headwater.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "headwater.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "headwater.labels" -}}
helm.sh/chart: {{ include "headwater.chart" . }}
{{ include "headwater.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: headwater
{{- end }}

{{/* Selector labels of the operator. */}}
{{- define "headwater.selectorLabels" -}}
app.kubernetes.io/name: {{ include "headwater.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Labels of the bundled PostgreSQL. */}}
{{- define "headwater.postgresql.labels" -}}
helm.sh/chart: {{ include "headwater.chart" . }}
{{ include "headwater.postgresql.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.postgresql.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: headwater
{{- end }}

{{- define "headwater.postgresql.selectorLabels" -}}
app.kubernetes.io/name: {{ include "headwater.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: postgresql
{{- end }}

{{- define "headwater.postgresql.fullname" -}}
{{- printf "%s-postgresql" (include "headwater.fullname" .) }}
{{- end }}

{{/* The Secret holding the bundled PostgreSQL's postgres-password and database-url. */}}
{{- define "headwater.postgresql.secretName" -}}
{{- default (include "headwater.postgresql.fullname" .) .Values.postgresql.existingSecret }}
{{- end }}

{{/* The Secret holding the lineage API's tokens: api.existingSecret, or the one the chart generates. */}}
{{- define "headwater.apiTokenSecretName" -}}
{{- default (printf "%s-api-token" (include "headwater.fullname" .)) .Values.api.existingSecret }}
{{- end }}

{{/* The bundled PostgreSQL's image: repository@digest, or repository:tag. */}}
{{- define "headwater.postgresql.image" -}}
{{- if .Values.postgresql.image.digest }}
{{- printf "%s@%s" .Values.postgresql.image.repository .Values.postgresql.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.postgresql.image.repository .Values.postgresql.image.tag }}
{{- end }}
{{- end }}

{{- define "headwater.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "headwater.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator's image: repository@digest, or repository:tag (tag defaults to the appVersion). */}}
{{- define "headwater.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The Secret and key holding HEADWATER_DATABASE_URL: database.existingSecret when set, else the bundled
PostgreSQL's; without either, rendering fails with a message saying what to set.
*/}}
{{- define "headwater.databaseSecretName" -}}
{{- if .Values.database.existingSecret }}
{{- .Values.database.existingSecret }}
{{- else if .Values.postgresql.enabled }}
{{- include "headwater.postgresql.secretName" . }}
{{- else }}
{{- required "database.existingSecret is required when postgresql.enabled=false: the name of a Secret holding the PostgreSQL URL of the lineage store (key database.existingSecretKey, default database-url)" .Values.database.existingSecret }}
{{- end }}
{{- end }}

{{- define "headwater.databaseSecretKey" -}}
{{- if .Values.database.existingSecret }}
{{- .Values.database.existingSecretKey }}
{{- else }}
{{- print "database-url" }}
{{- end }}
{{- end }}

{{/*
The Kubernetes API access the operator needs in the namespaces it watches (derived from
operator/headwater/adapters/kube.py and controller/handlers.py). Nothing else: no Secrets (step Jobs
refer to them by name; the operator never reads them), no wildcards.
*/}}
{{- define "headwater.rbacRules" -}}
# Pipelines and PipelineRuns: watched by kopf; runs created by schedules, patched (cancel, labels,
# the lineage finalizer), deleted by history limits.
- apiGroups: ["headwater.dev"]
  resources: ["pipelines", "pipelineruns"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# Backfills: read, and their runs created for them (owned by them).
- apiGroups: ["headwater.dev"]
  resources: ["backfills"]
  verbs: ["get", "list", "watch"]
# Their status subresources: replaced whole (resourceVersion-guarded) or patched.
- apiGroups: ["headwater.dev"]
  resources: ["pipelines/status", "pipelineruns/status", "backfills/status"]
  verbs: ["get", "patch", "update"]
# Scheduled runs are owned by their Pipeline, and step Jobs by their run, with blockOwnerDeletion;
# where OwnerReferencesPermissionEnforcement is on (e.g. OpenShift), setting it needs update on the
# owner's finalizers.
- apiGroups: ["headwater.dev"]
  resources: ["pipelines/finalizers", "pipelineruns/finalizers", "backfills/finalizers"]
  verbs: ["update"]
# One Job per step: watched by kopf, listed by run label, created and deleted.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete"]
# Pods of step Jobs, read to count attempts and read termination messages.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list"]
# Events about runs and pipelines; the Events of a step Job that has no pod are listed to say why
# (FailedCreate).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch", "list"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
A number as the operator's settings parse it: whole numbers without an exponent (Helm reads values as
floats, and 1000000 would otherwise print as 1e+06).
*/}}
{{- define "headwater.number" -}}
{{- if eq (float64 .) (float64 (int64 .)) }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- end }}

{{/*
The name of shard <index>'s Deployment (and PodDisruptionBudget): the full name, with -shard-<index>
when there are several shards. Called with (list $ index).
*/}}
{{- define "headwater.shardName" -}}
{{- $root := index . 0 }}{{- $index := index . 1 }}
{{- if gt (int $root.Values.sharding.shards) 1 }}
{{- printf "%s-shard-%d" (include "headwater.fullname" $root) (int $index) }}
{{- else }}
{{- include "headwater.fullname" $root }}
{{- end }}
{{- end }}

{{/*
The names of the operator's Leases: the full name, or one per shard (<fullname>-shard-<i>-of-<N>), as
the operator derives them from HEADWATER_LEASE_NAME and HEADWATER_SHARD. A YAML list.
*/}}
{{- define "headwater.leaseNames" -}}
{{- $shards := int .Values.sharding.shards }}
{{- if gt $shards 1 }}
{{- range $index := until $shards }}
- {{ printf "%s-shard-%d-of-%d" (include "headwater.fullname" $) $index $shards | quote }}
{{- end }}
{{- else }}
- {{ include "headwater.fullname" . | quote }}
{{- end }}
{{- end }}
