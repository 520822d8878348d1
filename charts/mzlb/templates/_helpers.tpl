{{- define "mzlb.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "mzlb.labels" -}}
app.kubernetes.io/name: mzlb
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "mzlb.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The ALB ID of a zone: its albId, else alb-<zone name>. */}}
{{- define "mzlb.albId" -}}
{{- .albId | default (printf "alb-%s" .name) -}}
{{- end -}}

{{/* Container security: non-root, read-only root, every capability dropped except
     NET_BIND_SERVICE when the port given is below 1024. */}}
{{- define "mzlb.securityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
  {{- if lt (int .) 1024 }}
  add: [NET_BIND_SERVICE]
  {{- end }}
{{- end -}}

{{/* The rules of the first document of kind $kind in an RBAC file. */}}
{{- define "mzlb.rules" -}}
{{- $root := index . 0 -}}
{{- $file := index . 1 -}}
{{- $kind := index . 2 -}}
{{- range ($root.Files.Get $file | splitList "\n---\n") }}
{{- $doc := fromYaml . }}
{{- if eq (get $doc "kind") $kind }}
{{- toYaml (get $doc "rules") }}
{{- end }}
{{- end }}
{{- end -}}
