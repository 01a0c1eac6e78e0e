{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "hybrid-router.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: <release>-<chart>, or the release name when it already contains the chart name. */}}
{{- define "hybrid-router.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "hybrid-router.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "hybrid-router.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hybrid-router.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "hybrid-router.labels" -}}
helm.sh/chart: {{ include "hybrid-router.chart" . }}
{{ include "hybrid-router.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: router
{{- end }}

{{- define "hybrid-router.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "hybrid-router.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding frontier API keys as env vars, or "" when there is none. */}}
{{- define "hybrid-router.frontierSecretName" -}}
{{- if .Values.frontierKeys.existingSecret }}
{{- .Values.frontierKeys.existingSecret }}
{{- else if .Values.frontierKeys.create }}
{{- printf "%s-frontier-keys" (include "hybrid-router.fullname" .) }}
{{- end }}
{{- end }}

{{/* The Secret holding the tenant keys file. */}}
{{- define "hybrid-router.tenantKeysSecretName" -}}
{{- if .Values.tenantKeys.existingSecret }}
{{- .Values.tenantKeys.existingSecret }}
{{- else }}
{{- printf "%s-tenant-keys" (include "hybrid-router.fullname" .) }}
{{- end }}
{{- end }}

{{/* The Secret holding the scrape token for /metrics. */}}
{{- define "hybrid-router.metricsTokenSecretName" -}}
{{- if .Values.metrics.scrapeToken.existingSecret }}
{{- .Values.metrics.scrapeToken.existingSecret }}
{{- else }}
{{- printf "%s-metrics-token" (include "hybrid-router.fullname" .) }}
{{- end }}
{{- end }}

{{/* Fail early on values that cannot work together. */}}
{{- define "hybrid-router.validate" -}}
{{- $s := .Values.shutdown }}
{{- $needed := add (int $s.preStopSleepSeconds) (int $s.drainTimeoutSeconds) }}
{{- if le (int $s.terminationGracePeriodSeconds) (int $needed) }}
{{- fail (printf "shutdown.terminationGracePeriodSeconds (%d) must exceed preStopSleepSeconds + drainTimeoutSeconds (%d), or in-flight streams are killed mid-drain" (int $s.terminationGracePeriodSeconds) (int $needed)) }}
{{- end }}
{{- if .Values.autoscaling.enabled }}
{{- $a := .Values.autoscaling }}
{{- if not (or $a.inFlight.enabled $a.queueDepth.enabled $a.cpu.enabled) }}
{{- fail "autoscaling.enabled needs at least one of autoscaling.inFlight, autoscaling.queueDepth, autoscaling.cpu enabled" }}
{{- end }}
{{- if gt (int $a.minReplicas) (int $a.maxReplicas) }}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- end }}
{{- if and .Values.tenantKeys.enabled (not .Values.tenantKeys.existingSecret) (not .Values.tenantKeys.content) }}
{{- fail "tenantKeys.enabled needs tenantKeys.existingSecret or tenantKeys.content (the keys file written by `hybrid-router keys add`)" }}
{{- end }}
{{- if and .Values.frontierKeys.create .Values.frontierKeys.existingSecret }}
{{- fail "set frontierKeys.create or frontierKeys.existingSecret, not both" }}
{{- end }}
{{- end }}
