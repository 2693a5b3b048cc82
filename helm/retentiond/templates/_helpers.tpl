{{/* Names */}}
{{- define "retentiond.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "retentiond.fullname" -}}
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

{{- define "retentiond.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "retentiond.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: retentiond
{{- end -}}

{{- define "retentiond.selectorLabels" -}}
app.kubernetes.io/name: {{ include "retentiond.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "retentiond.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "retentiond.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "retentiond.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Paths inside the container */}}
{{- define "retentiond.stateRoot" -}}/var/lib/retentiond{{- end -}}
{{- define "retentiond.configDir" -}}/etc/retentiond/config{{- end -}}
{{- define "retentiond.policiesDir" -}}/etc/retentiond/policies{{- end -}}
{{- define "retentiond.keysSourceDir" -}}/etc/retentiond/keys-source{{- end -}}
{{- define "retentiond.keysDir" -}}/run/retentiond/keys{{- end -}}
{{- define "retentiond.tokenSourceDir" -}}/etc/retentiond/webhook-token{{- end -}}
{{- define "retentiond.tokenFile" -}}/run/retentiond/webhook.token{{- end -}}

{{- define "retentiond.keysSecretName" -}}
{{- if .Values.keys.existingSecret -}}
{{- .Values.keys.existingSecret -}}
{{- else if .Values.keys.files -}}
{{- printf "%s-keys" (include "retentiond.fullname" .) -}}
{{- else -}}
{{- fail "keys: set keys.existingSecret (a Secret made from a `retentiond init` keys/ folder) or keys.files" -}}
{{- end -}}
{{- end -}}

{{- define "retentiond.awsSecretName" -}}
{{- if .Values.awsCredentials.existingSecret -}}
{{- .Values.awsCredentials.existingSecret -}}
{{- else if or .Values.awsCredentials.accessKeyId .Values.awsCredentials.secretAccessKey -}}
{{- printf "%s-aws" (include "retentiond.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "retentiond.policiesConfigMapName" -}}
{{- default (printf "%s-policies" (include "retentiond.fullname" .)) .Values.policies.existingConfigMap -}}
{{- end -}}

{{/* The store locations, defaulting to folders on the state volume */}}
{{- define "retentiond.inbox" -}}
{{- if .Values.config.inbox -}}
{{- toJson .Values.config.inbox -}}
{{- else -}}
{{- toJson (list (printf "%s/inbox" (include "retentiond.stateRoot" .))) -}}
{{- end -}}
{{- end -}}

{{- define "retentiond.vault" -}}
{{- default (printf "%s/vault" (include "retentiond.stateRoot" .)) .Values.config.vault -}}
{{- end -}}

{{- define "retentiond.proofs" -}}
{{- default (printf "%s/proofs" (include "retentiond.stateRoot" .)) .Values.config.proofs -}}
{{- end -}}

{{/* Folders the init container creates: every location that is not a URL */}}
{{- define "retentiond.folders" -}}
{{- $folders := list (printf "%s/state" (include "retentiond.stateRoot" .)) -}}
{{- range (include "retentiond.inbox" . | fromJsonArray) -}}
{{- if not (contains "://" .) -}}{{- $folders = append $folders . -}}{{- end -}}
{{- end -}}
{{- range (list (include "retentiond.vault" .) (include "retentiond.proofs" .)) -}}
{{- if not (contains "://" .) -}}{{- $folders = append $folders . -}}{{- end -}}
{{- end -}}
{{- toJson $folders -}}
{{- end -}}

{{/* retentiond.yaml: config.extra first, then the chart's own keys win */}}
{{- define "retentiond.configYaml" -}}
{{- $c := .Values.config -}}
{{- $cfg := dict
  "inbox" (include "retentiond.inbox" . | fromJsonArray)
  "vault" (include "retentiond.vault" .)
  "proofs" (include "retentiond.proofs" .)
  "catalog" (printf "sqlite://%s/state/catalog.db" (include "retentiond.stateRoot" .))
  "policies" (include "retentiond.policiesDir" .)
  "state" (printf "%s/state" (include "retentiond.stateRoot" .))
  "keys" (dict "provider" "file" "dir" (include "retentiond.keysDir" .))
  "proof_log" (dict "origin" (required "config.proofLogOrigin is required: the part of keys/proof-log.vkey before the first '+'" $c.proofLogOrigin))
  "ingest" $c.ingest
  "sweep" $c.sweep
  "reconcile" $c.reconcile
  "metrics_addr" (printf "0.0.0.0:%d" (int .Values.metrics.port))
  "log_level" $c.logLevel
-}}
{{- if $c.s3 -}}{{- $_ := set $cfg "s3" $c.s3 -}}{{- end -}}
{{- if $c.residency -}}{{- $_ := set $cfg "residency" $c.residency -}}{{- end -}}
{{- if $c.controllers -}}{{- $_ := set $cfg "controllers" $c.controllers -}}{{- end -}}
{{- $hook := .Values.events.webhook -}}
{{- if gt (int $hook.port) 0 -}}
{{- $events := dict "webhook_addr" (printf "0.0.0.0:%d" (int $hook.port)) -}}
{{- if $hook.tokenSecret -}}{{- $_ := set $events "webhook_token_file" (include "retentiond.tokenFile" .) -}}{{- end -}}
{{- $_ := set $cfg "events" $events -}}
{{- end -}}
{{- $merged := mergeOverwrite (deepCopy $c.extra) $cfg -}}
{{- toYaml $merged -}}
{{- end -}}
