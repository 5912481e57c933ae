{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "pod-identity.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-<chart> unless the release name already contains the chart name. */}}
{{- define "pod-identity.fullname" -}}
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

{{- define "pod-identity.webhookName" -}}
{{- printf "%s-webhook" (include "pod-identity.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pod-identity.agentName" -}}
{{- printf "%s-agent" (include "pod-identity.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pod-identity.associationsName" -}}
{{- printf "%s-associations" (include "pod-identity.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pod-identity.tlsSecretName" -}}
{{- if eq .Values.certificates.mode "existingSecret" }}
{{- required "certificates.existingSecret.name is required with certificates.mode=existingSecret" .Values.certificates.existingSecret.name }}
{{- else }}
{{- printf "%s-tls" (include "pod-identity.webhookName" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "pod-identity.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "pod-identity.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "pod-identity.webhookSelectorLabels" -}}
app.kubernetes.io/name: {{ include "pod-identity.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: webhook
{{- end }}

{{- define "pod-identity.agentSelectorLabels" -}}
app.kubernetes.io/name: {{ include "pod-identity.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: agent
{{- end }}

{{- define "pod-identity.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The four names the serving certificate must carry. */}}
{{- define "pod-identity.webhookDnsNames" -}}
{{- $svc := include "pod-identity.webhookName" . -}}
{{- $ns := .Release.Namespace -}}
{{- list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) | toJson }}
{{- end }}

{{/* The associations file both binaries read. */}}
{{- define "pod-identity.associationsYaml" -}}
clusterName: {{ .Values.clusterName | quote }}
associations:
{{- if .Values.associations }}
{{- range .Values.associations }}
  - namespace: {{ required "associations[].namespace is required" .namespace | quote }}
    serviceAccount: {{ required "associations[].serviceAccount is required" .serviceAccount | quote }}
    roleArn: {{ required "associations[].roleArn is required" .roleArn | quote }}
    {{- if .targetRoleArn }}
    targetRoleArn: {{ .targetRoleArn | quote }}
    {{- end }}
    {{- if hasKey . "disableSessionTags" }}
    disableSessionTags: {{ .disableSessionTags }}
    {{- end }}
    {{- if .policy }}
    policy: {{ .policy | quote }}
    {{- end }}
    {{- if .tags }}
    tags:
      {{- range $k, $v := .tags }}
      {{ $k | quote }}: {{ $v | quote }}
      {{- end }}
    {{- end }}
{{- end }}
{{- else }} []
{{- end }}
{{- end }}

{{/* Pod-level and container-level security settings shared by both components. */}}
{{- define "pod-identity.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
seccompProfile:
  type: RuntimeDefault
{{- end }}
