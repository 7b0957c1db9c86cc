{{/* The name of every object: the release name, or release-palisade. */}}
{{- define "palisade.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "palisade.labels" -}}
{{ include "palisade.labelsWithoutManager" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "palisade.labelsWithoutManager" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "palisade.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "palisade.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "palisade.replicas" -}}
{{- if .Values.ha }}{{ .Values.controller.haReplicas }}{{ else }}1{{ end -}}
{{- end -}}

{{- define "palisade.controllerSA" -}}
{{- .Values.serviceAccount.name | default (include "palisade.fullname" .) -}}
{{- end -}}

{{- define "palisade.adminSecret" -}}
{{- .Values.admin.existingSecret | default (printf "%s-admin" (include "palisade.fullname" .)) -}}
{{- end -}}

{{/* A Secret value kept across upgrades: the given one, else the one in the
     cluster, else a new random one. Arguments: root context, secret name, key,
     given value. */}}
{{- define "palisade.keptSecret" -}}
{{- $root := index . 0 -}}
{{- $name := index . 1 -}}
{{- $key := index . 2 -}}
{{- $given := index . 3 -}}
{{- if $given -}}
{{- $given | b64enc -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" $root.Release.Namespace $name -}}
{{- if and $existing (index $existing.data $key) -}}
{{- index $existing.data $key -}}
{{- else -}}
{{- randAlphaNum 24 | b64enc -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "palisade.excludeNamespaces" -}}
{{- $ns := .Values.admission.excludeNamespaces | default list -}}
{{- if not (has .Release.Namespace $ns) }}{{ $ns = append $ns .Release.Namespace }}{{ end -}}
{{- join "," $ns -}}
{{- end -}}
