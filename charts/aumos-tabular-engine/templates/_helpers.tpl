{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "ate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: release-chart unless the release name already holds the chart name. */}}
{{- define "ate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels every object carries, without the component (callers add theirs). */}}
{{- define "ate.baseLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "ate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: aumos-tabular-engine
{{- end -}}

{{/* Labels of the operator's objects. */}}
{{- define "ate.labels" -}}
{{ include "ate.baseLabels" . }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "ate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "ate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "ate.runnerServiceAccountName" -}}
{{- default (printf "%s-runner" (include "ate.fullname" .) | trunc 63 | trimSuffix "-") .Values.runner.serviceAccount.name -}}
{{- end -}}

{{/* image: repository plus @digest, or :tag (default: appVersion with an optional suffix). */}}
{{- define "ate.image" -}}
{{- $img := index . 0 -}}{{- $default := index . 1 -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default $default $img.tag) -}}
{{- end -}}
{{- end -}}
