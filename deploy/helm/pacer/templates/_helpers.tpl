{{/* Labels of every object: the ones deploy/k8s gives (part-of) and Helm's own. */}}
{{- define "pacer.labels" -}}
app.kubernetes.io/part-of: pacer
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* A service's image: (list $ "control") -> ghcr.io/pacer/pacer-control:<tag>, or @<digest> when one is given. */}}
{{- define "pacer.image" -}}
{{- $root := index . 0 -}}
{{- $service := index . 1 -}}
{{- $image := $root.Values.image -}}
{{- $digest := get ($image.digests | default dict) $service -}}
{{- if $digest -}}
{{ printf "%s/pacer-%s@%s" $image.repository $service $digest }}
{{- else -}}
{{ printf "%s/pacer-%s:%s" $image.repository $service (toString ($image.tag | default $root.Chart.AppVersion)) }}
{{- end -}}
{{- end }}

{{- define "pacer.secretName" -}}
{{ required "secrets.name: the Secret holding PACER_DATABASE_URL and the other credentials" .Values.secrets.name }}
{{- end }}

{{/* KEY=value lines of one of config/*.env (comments and blank lines skipped) as a dict. */}}
{{- define "pacer.envFile" -}}
{{- $data := dict -}}
{{- range $line := splitList "\n" ((index . 0).Files.Get (printf "config/%s.env" (index . 1))) -}}
{{- $line = trim $line -}}
{{- if and $line (not (hasPrefix "#" $line)) -}}
{{- $pair := regexSplit "=" $line 2 -}}
{{- $_ := set $data (index $pair 0) (index $pair 1) -}}
{{- end -}}
{{- end -}}
{{- toYaml $data -}}
{{- end }}

{{- define "pacer.tlsDir" -}}/etc/pacer/tls{{- end }}

{{/* Settings of TLS for a service (empty without tls.secretName): servers require client certificates and
serve health on a plaintext port for the probes; every client trusts the CA and presents the certificate. */}}
{{- define "pacer.tlsSettings" -}}
{{- $root := index . 0 -}}
{{- $service := index . 1 -}}
{{- $dir := include "pacer.tlsDir" $root -}}
{{- $settings := dict -}}
{{- if $root.Values.tls.secretName -}}
{{- if has $service (list "control" "scheduler") -}}
{{- $_ := set $settings "PACER_TLS_CERT_FILE" (printf "%s/tls.crt" $dir) -}}
{{- $_ := set $settings "PACER_TLS_KEY_FILE" (printf "%s/tls.key" $dir) -}}
{{- $_ := set $settings "PACER_TLS_CLIENT_CA_FILE" (printf "%s/ca.crt" $dir) -}}
{{- $_ := set $settings "PACER_HEALTH_ADDR" (printf "0.0.0.0:%s" (include "pacer.probePort" (list $root $service))) -}}
{{- end -}}
{{- if has $service (list "scheduler" "executor" "gateway" "mcp") -}}
{{- $_ := set $settings "PACER_TLS_CA_FILE" (printf "%s/ca.crt" $dir) -}}
{{- $_ := set $settings "PACER_TLS_CLIENT_CERT_FILE" (printf "%s/tls.crt" $dir) -}}
{{- $_ := set $settings "PACER_TLS_CLIENT_KEY_FILE" (printf "%s/tls.key" $dir) -}}
{{- end -}}
{{- end -}}
{{- toYaml $settings -}}
{{- end }}

{{/* The data of a service's ConfigMap ("common" for the shared one): its env file, TLS, then the values' env. */}}
{{- define "pacer.configData" -}}
{{- $root := index . 0 -}}
{{- $service := index . 1 -}}
{{- $data := include "pacer.envFile" (list $root $service) | fromYaml -}}
{{- if eq $service "common" -}}
{{- $data = merge ($root.Values.env | default dict) $data -}}
{{- else -}}
{{- $data = merge ((get $root.Values $service).env | default dict) (include "pacer.tlsSettings" (list $root $service) | fromYaml) $data -}}
{{- end -}}
{{- range $key, $value := $data }}
{{ $key }}: {{ toString $value | quote }}
{{- end -}}
{{- end }}

{{/* A hash of the settings a service's pods read: a changed setting rolls them, as kustomize's hashed names do. */}}
{{- define "pacer.configChecksum" -}}
{{- $root := index . 0 -}}
{{- $service := index . 1 -}}
{{- printf "%s\n%s" (include "pacer.configData" (list $root "common")) (include "pacer.configData" (list $root $service)) | sha256sum -}}
{{- end }}

{{/* The port kubelet probes: the API port, or with TLS the plaintext health-only port. */}}
{{- define "pacer.probePort" -}}
{{- $root := index . 0 -}}
{{- $service := index . 1 -}}
{{- $ports := dict "control" (list 50051 50054) "scheduler" (list 50052 50055) -}}
{{- index (get $ports $service) (ternary 1 0 (not (empty $root.Values.tls.secretName))) -}}
{{- end }}

{{- define "pacer.tlsMount" -}}
{{- if .Values.tls.secretName -}}
- name: tls
  mountPath: {{ include "pacer.tlsDir" . }}
  readOnly: true
{{- end -}}
{{- end }}

{{- define "pacer.tlsVolume" -}}
{{- if .Values.tls.secretName -}}
- name: tls
  secret:
    secretName: {{ .Values.tls.secretName }}
    defaultMode: 0440
{{- end -}}
{{- end }}
