{{/* The chart name, overridable. */}}
{{- define "hookline.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name of every resource: the release name, with the chart's when it is not already in it. */}}
{{- define "hookline.fullname" -}}
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

{{- define "hookline.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "hookline.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: hookline
{{- end }}

{{- define "hookline.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hookline.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "hookline.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "hookline.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository[:tag][@digest], the tag defaulting to the appVersion. */}}
{{- define "hookline.image" -}}
{{- $tag := default .root.Chart.AppVersion .image.tag }}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository $tag }}
{{- end }}
{{- end }}

{{/* "true" when the install manages listed namespaces only (namespaced RBAC), empty when cluster-wide. */}}
{{- define "hookline.namespaced" -}}
{{- if .Values.watchNamespaces }}true{{ end }}
{{- end }}

{{/* What the operator does in a namespace with Webhooks. */}}
{{- define "hookline.namespacedRules" -}}
# Webhooks are watched, and changed only by patches (finalizer, status).
- apiGroups: [hookline.dev]
  resources: [webhooks]
  verbs: [get, list, watch, patch]
- apiGroups: [hookline.dev]
  resources: [webhooks/status]
  verbs: [patch]
# Owner references with blockOwnerDeletion on the worker objects need this.
- apiGroups: [hookline.dev]
  resources: [webhooks/finalizers]
  verbs: [update]
# Worker Deployments and ServiceAccounts are written with server-side apply (a
# patch; `create` too, because an apply that creates is also authorized as one).
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch]
- apiGroups: [apps]
  resources: [deployments/scale]
  verbs: [patch]
# `list`: a Webhook being deleted finds the shared worker ServiceAccounts it owns a
# share of (workerIdentity.serviceAccount: PerNamespace); the garbage collector,
# not the operator, deletes them.
- apiGroups: [""]
  resources: [serviceaccounts]
  verbs: [list, create, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- if .Values.rbac.keda }}
- apiGroups: [keda.sh]
  resources: [scaledobjects]
  verbs: [create, patch, delete]
- apiGroups: [keda.sh]
  resources: [triggerauthentications]
  verbs: [create, patch]
{{- end }}
{{- end }}

{{/* A Webhook's signing Secret (read) and API key Secret (read, or created). */}}
{{- define "hookline.secretRules" -}}
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, create]
{{- end }}
