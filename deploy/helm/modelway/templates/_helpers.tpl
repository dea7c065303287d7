{{- define "modelway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "modelway.fullname" -}}
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

{{- define "modelway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "modelway.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "modelway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "modelway.secretName" -}}
{{- default (include "modelway.fullname" .) .Values.masterKey.existingSecret -}}
{{- end -}}

{{/* The gateway config, with the store URLs taken from the environment when set. */}}
{{- define "modelway.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- if .Values.stores.existingSecret -}}
{{- if .Values.stores.databaseUrlKey -}}{{- $_ := set $config "database_url" "${MODELWAY_DATABASE_URL}" -}}{{- end -}}
{{- if .Values.stores.redisUrlKey -}}{{- $_ := set $config "redis_url" "${MODELWAY_REDIS_URL}" -}}{{- end -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}
