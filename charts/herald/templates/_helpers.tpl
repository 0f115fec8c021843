{{/* Shared names, labels and pod pieces of the Herald chart; value checks the schema cannot express. */}}

{{- define "herald.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "herald.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "herald.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "herald.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "herald.selectorLabels" -}}
app.kubernetes.io/name: {{ include "herald.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "herald.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "herald.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: herald
{{- end }}

{{/* Selector of every Herald server pod of this release (gateway and publisher). */}}
{{- define "herald.serverSelector" -}}
matchLabels:
  {{- include "herald.selectorLabels" . | nindent 2 }}
matchExpressions:
  - key: app.kubernetes.io/component
    operator: In
    values: [gateway, publisher]
{{- end }}

{{- define "herald.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "herald.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "herald.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "herald.secretName" -}}
{{- .Values.auth.existingSecret | default (include "herald.fullname" .) }}
{{- end }}

{{/* "true" when the in-chart trial Redis is used. */}}
{{- define "herald.inChartRedis" -}}
{{- if not (or .Values.redis.url .Values.redis.cluster .Values.redis.urlSecret.name) }}true{{ end }}
{{- end }}

{{- define "herald.validate" -}}
{{- if gt (int .Values.gateway.drain.spreadSeconds) (int .Values.gateway.drain.timeoutSeconds) }}
{{- fail "gateway.drain.spreadSeconds must not exceed gateway.drain.timeoutSeconds" }}
{{- end }}
{{- if and .Values.redis.url .Values.redis.cluster }}
{{- fail "redis.url and redis.cluster: set one, not both" }}
{{- end }}
{{- end }}

{{- define "herald.terminationGracePeriodSeconds" -}}
{{- add .Values.gateway.drain.preStopSeconds .Values.gateway.drain.timeoutSeconds 5 }}
{{- end }}

{{- define "herald.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "herald.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Environment of every Herald container; the ConfigMap (envFrom) carries the rest. The API key
goes to publishers only: gateways face the internet and never need it. */}}
{{- define "herald.env" -}}
- name: HERALD_SERVER__NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: HERALD_LOG_FORMAT
  value: json
- name: HERALD_AUTH__HMAC_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "herald.secretName" . }}
      key: hmac-secret
{{- if .Values.redis.urlSecret.name }}
- name: HERALD_ENGINE__REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.urlSecret.name }}
      key: {{ .Values.redis.urlSecret.key }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "herald.envFrom" -}}
- configMapRef:
    name: {{ include "herald.fullname" . }}
{{- end }}

{{- define "herald.ports" -}}
- name: client
  containerPort: 8000
  protocol: TCP
- name: internal
  containerPort: 8001
  protocol: TCP
{{- end }}

{{- define "herald.probes" -}}
readinessProbe:
  httpGet:
    path: /readyz
    port: internal
  periodSeconds: 5
  timeoutSeconds: 2
  failureThreshold: 2
livenessProbe:
  httpGet:
    path: /livez
    port: internal
  initialDelaySeconds: 5
  periodSeconds: 10
  timeoutSeconds: 2
  failureThreshold: 3
{{- end }}

{{/* Pod-level settings shared by gateway and publisher pods. */}}
{{- define "herald.podCommon" -}}
serviceAccountName: {{ include "herald.serviceAccountName" . }}
automountServiceAccountToken: false
# No Docker-link variables (HERALD_REDIS_PORT=tcp://...) beside Herald's own HERALD_* settings.
enableServiceLinks: false
securityContext:
  {{- include "herald.podSecurityContext" . | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: 16Mi
{{- end }}

{{/* Pod annotations: config checksum (rolls pods when settings change) and the user's. */}}
{{- define "herald.podAnnotations" -}}
checksum/config: {{ printf "%s%s" (include (print .Template.BasePath "/configmap.yaml") .) (include (print .Template.BasePath "/secret.yaml") .) | sha256sum }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}
