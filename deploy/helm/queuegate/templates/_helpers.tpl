{{/* Names and labels shared by every object of the release. */}}

{{- define "queuegate.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "queuegate.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "queuegate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "queuegate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels; call with (dict "ctx" $ "component" "gateway"). */}}
{{- define "queuegate.selector" -}}
app.kubernetes.io/name: {{ include "queuegate.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end -}}

{{- define "queuegate.secretName" -}}
{{- .Values.secrets.existingSecret | default (include "queuegate.fullname" .) -}}
{{- end -}}

{{- define "queuegate.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* Consumers beyond the partition count would sit idle: capped. */}}
{{- define "queuegate.consumerReplicas" -}}
{{- min (int .Values.consumer.replicas) (int .Values.kafka.partitions) -}}
{{- end -}}

{{/* Values the schema cannot judge alone. */}}
{{- define "queuegate.check" -}}
{{- $drain := add (int .Values.preStopSleepSeconds) (mul 3 (int .Values.shutdownGraceSeconds)) -}}
{{- if le (int .Values.terminationGracePeriodSeconds) (int $drain) -}}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be longer than preStopSleepSeconds plus three shutdownGraceSeconds (%d): Kubernetes would kill pods mid-drain" (int .Values.terminationGracePeriodSeconds) (int $drain)) -}}
{{- end -}}
{{- if and (eq .Values.fanIdentity "jwt") (not .Values.jwt.jwks) (not .Values.secrets.fanJwtSecret) (not .Values.secrets.existingSecret) -}}
{{- fail "fanIdentity jwt needs jwt.jwks or secrets.fanJwtSecret" -}}
{{- end -}}
{{- if and .Values.behindProxy (not .Values.trustedProxies) -}}
{{- fail "trustedProxies is empty while behindProxy is true: every fan would share the proxy's one per-address join budget (QUEUEGATE_RATE_LIMIT_PER_IP); set trustedProxies to the CIDRs of your ingress controller's pods (e.g. 10.0.0.0/8), or behindProxy=false when fans connect to the gateways directly" -}}
{{- end -}}
{{- if and (eq .Values.fanIdentity "trusted-header") (not .Values.fanIdHeader) -}}
{{- fail "fanIdentity trusted-header needs fanIdHeader" -}}
{{- end -}}
{{- end -}}

{{/* The pod spec both roles share; call with (dict "ctx" $ "role" "gateway" "values" .Values.gateway). */}}
{{- define "queuegate.pod" -}}
{{- $ := .ctx -}}
{{- $v := .values -}}
{{- $role := .role -}}
{{- with $.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
automountServiceAccountToken: false
terminationGracePeriodSeconds: {{ $.Values.terminationGracePeriodSeconds }}
securityContext:
  {{- toYaml $.Values.podSecurityContext | nindent 2 }}
{{- if $.Values.topologySpread }}
topologySpreadConstraints:
  {{- range list "kubernetes.io/hostname" "topology.kubernetes.io/zone" }}
  - maxSkew: 1
    topologyKey: {{ . }}
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "queuegate.selector" (dict "ctx" $ "component" $role) | nindent 8 }}
  {{- end }}
{{- end }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  - name: queuegate
    image: {{ include "queuegate.image" $ }}
    imagePullPolicy: {{ $.Values.image.pullPolicy }}
    args: [{{ .role | quote }}]
    securityContext:
      {{- toYaml $.Values.securityContext | nindent 6 }}
    ports:
      {{- if eq .role "gateway" }}
      - name: http
        containerPort: 8080
        protocol: TCP
      {{- end }}
      - name: admin
        containerPort: 8081
        protocol: TCP
    env:
      {{- include "queuegate.env" (dict "ctx" $ "role" .role) | nindent 6 }}
    # Kafka or Redis trouble never restarts a pod: liveness asks only whether the process
    # answers; readiness (/readyz) takes it out of the Service only when it can do nothing
    # (Redis down, draining): Kafka down is 200 "degraded", so the gate stays up
    # (docs/reference-metrics.md#readiness).
    startupProbe:
      httpGet: { path: /healthz, port: admin }
      periodSeconds: 2
      failureThreshold: 30
    livenessProbe:
      httpGet: { path: /healthz, port: admin }
      periodSeconds: 10
      timeoutSeconds: 3
      failureThreshold: 6
    readinessProbe:
      httpGet: { path: /readyz, port: admin }
      periodSeconds: 5
      timeoutSeconds: 3
      failureThreshold: 3
    lifecycle:
      # Endpoints are removed while the pod still serves: nobody is sent to a closed socket.
      preStop:
        exec:
          command: ["sleep", {{ $.Values.preStopSleepSeconds | quote }}]
    resources:
      {{- toYaml $v.resources | nindent 6 }}
    volumeMounts:
      - name: keys
        mountPath: /keys
        readOnly: true
      - name: tmp
        mountPath: /tmp
volumes:
  - name: keys
    secret:
      secretName: {{ include "queuegate.secretName" $ }}
      # 0440: read-only, for the pod's group (fsGroup)
      defaultMode: 288
      items:
        - key: admission-key.pem
          path: admission-key.pem
        {{- if include "queuegate.adminTokens" $ }}
        - key: admin-tokens.json
          path: admin-tokens.json
        {{- end }}
  - name: tmp
    emptyDir:
      sizeLimit: 64Mi
{{- end -}}

{{- define "queuegate.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "queuegate.secretName" .ctx }}
      key: {{ .key }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end -}}

{{- define "queuegate.env" -}}
{{- $ := .ctx -}}
- name: QUEUEGATE_HTTP_ADDR
  value: "0.0.0.0:8080"
- name: QUEUEGATE_ADMIN_ADDR
  value: "0.0.0.0:{{ $.Values.admin.port }}"
- name: QUEUEGATE_LOG
  value: {{ $.Values.log | quote }}
- name: QUEUEGATE_LOG_FORMAT
  value: json
- name: QUEUEGATE_SHUTDOWN_GRACE_SECONDS
  value: {{ $.Values.shutdownGraceSeconds | quote }}
- name: QUEUEGATE_KAFKA_BROKERS
  value: {{ $.Values.kafka.brokers | quote }}
- name: QUEUEGATE_KAFKA_TOPIC
  value: {{ $.Values.kafka.topic | quote }}
- name: QUEUEGATE_KAFKA_GROUP
  value: {{ $.Values.kafka.group | quote }}
- name: QUEUEGATE_EVENTS_TOPIC
  value: {{ $.Values.kafka.eventsTopic | quote }}
- name: QUEUEGATE_EVENTS_OUTBOX_MAX
  value: {{ $.Values.kafka.eventsOutboxMax | quote }}
- name: QUEUEGATE_REDIS_PREFIX
  value: {{ $.Values.redis.prefix | quote }}
{{- if not (kindIs "invalid" $.Values.redis.minReplicas) }}
- name: QUEUEGATE_REDIS_MIN_REPLICAS
  value: {{ $.Values.redis.minReplicas | quote }}
{{- end }}
- name: QUEUEGATE_ADMISSION_KEY_FILE
  value: /keys/admission-key.pem
{{- if include "queuegate.adminTokens" $ }}
- name: QUEUEGATE_ADMIN_TOKENS_FILE
  value: /keys/admin-tokens.json
{{- end }}
{{- if eq .role "gateway" }}
- name: QUEUEGATE_FAN_IDENTITY
  value: {{ $.Values.fanIdentity | quote }}
{{- with $.Values.jwt.jwks }}
- name: QUEUEGATE_FAN_JWT_JWKS
  value: {{ . | quote }}
{{- end }}
{{- with $.Values.jwt.issuer }}
- name: QUEUEGATE_FAN_JWT_ISSUER
  value: {{ . | quote }}
{{- end }}
{{- with $.Values.jwt.audience }}
- name: QUEUEGATE_FAN_JWT_AUDIENCE
  value: {{ . | quote }}
{{- end }}
{{- with $.Values.fanIdHeader }}
- name: QUEUEGATE_FAN_ID_HEADER
  value: {{ . | quote }}
{{- end }}
{{- with $.Values.trustedProxies }}
- name: QUEUEGATE_TRUSTED_PROXIES
  value: {{ . | quote }}
{{- end }}
- name: QUEUEGATE_CLIENT_IP_HEADER
  value: {{ $.Values.clientIpHeader | quote }}
{{- with $.Values.publicUrl }}
- name: QUEUEGATE_PUBLIC_URL
  value: {{ . | quote }}
{{- end }}
{{- with $.Values.gateway.maxStreamMemoryMB }}
- name: QUEUEGATE_MAX_STREAM_MEMORY_MB
  value: {{ . | quote }}
{{- end }}
{{- if eq $.Values.fanIdentity "jwt" }}
{{ include "queuegate.secretEnv" (dict "ctx" $ "name" "QUEUEGATE_FAN_JWT_SECRET" "key" "fan-jwt-secret" "optional" true) }}
{{- end }}
{{ include "queuegate.secretEnv" (dict "ctx" $ "name" "QUEUEGATE_SITE_TOKEN" "key" "site-token" "optional" true) }}
{{- end }}
{{ include "queuegate.secretEnv" (dict "ctx" $ "name" "QUEUEGATE_ADMIN_TOKEN" "key" "admin-token") }}
{{ include "queuegate.secretEnv" (dict "ctx" $ "name" "QUEUEGATE_TOKEN_SECRET" "key" "token-secret") }}
{{ include "queuegate.secretEnv" (dict "ctx" $ "name" "QUEUEGATE_REDIS_URL" "key" "redis-url") }}
{{ include "queuegate.secretEnv" (dict "ctx" $ "name" "QUEUEGATE_KAFKA_PROPERTIES" "key" "kafka-properties" "optional" true) }}
{{- with $.Values.webhookAllowNetworks }}
- name: QUEUEGATE_WEBHOOK_ALLOW_NETWORKS
  value: {{ join "," . | quote }}
{{- end }}
{{- with $.Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- /* "true" when the Secret carries admin-tokens.json (the chart's own: secrets.adminTokens;
       an existing one: secrets.adminTokensInExistingSecret), else empty. */ -}}
{{- define "queuegate.adminTokens" -}}
{{- if .Values.secrets.existingSecret -}}
{{- if .Values.secrets.adminTokensInExistingSecret }}true{{ end -}}
{{- else if .Values.secrets.adminTokens -}}
true
{{- end -}}
{{- end -}}
