{{- define "xevf.name" -}}xevf-agent{{- end -}}
{{- define "xevf.labels" -}}
app.kubernetes.io/name: xevf-agent
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
{{- define "xevf.selector" -}}
app.kubernetes.io/name: xevf-agent
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- define "xevf.config" -}}
{{- $pools := list -}}
{{- $seen := dict -}}
{{- range $i, $pool := .Values.pools -}}
{{- with $pool -}}
{{- $domain := first (splitList "/" .resourceName) -}}
{{- if or (eq $domain "kubernetes.io") (hasSuffix ".kubernetes.io" $domain) -}}
{{- fail (printf "pools[%d].resourceName %q: the kubernetes.io domain is reserved for Kubernetes' own resources; use a domain of yours, e.g. intel.com/xe_vf" $i .resourceName) -}}
{{- end -}}
{{- if hasKey $seen .resourceName -}}
{{- fail (printf "pools[%d].resourceName %q: already used by another pool; each pool needs its own resource name" $i .resourceName) -}}
{{- end -}}
{{- $_ := set $seen .resourceName true -}}
{{- $p := dict "resourceName" .resourceName "allocationPolicy" (default "pack" .allocationPolicy) "fallback" (default "none" .fallback) -}}
{{- if hasKey . "numVFs" }}{{ $_ := set $p "numVFs" .numVFs }}{{ end -}}
{{- if .selector }}{{ $_ := set $p "selector" .selector }}{{ end -}}
{{- if .profile -}}
{{- /* numbers as integers: YAML gives helm floats, which JSON would print as 4.294967296e+09 */ -}}
{{- $prof := dict -}}
{{- range $k, $v := .profile }}{{ if eq $k "schedPriority" }}{{ $_ := set $prof $k $v }}{{ else }}{{ $_ := set $prof $k (int64 $v) }}{{ end }}{{ end -}}
{{- $_ := set $p "profile" $prof -}}
{{- end -}}
{{- $pools = append $pools $p -}}
{{- end -}}
{{- end -}}
{{- $cfg := dict
  "pluginDir" .Values.kubelet.pluginDir
  "logLevel" .Values.logLevel
  "rescanIntervalMs" (int .Values.rescanIntervalMs)
  "sysfsRoot" "/sys"
  "devRoot" "/dev"
  "modulesRoot" "/lib/modules"
  "procRoot" "/host/proc"
  "bootRoot" "/host/boot"
  "podResourcesSocket" "/var/lib/kubelet/pod-resources/kubelet.sock"
  "httpAddress" "0.0.0.0"
  "httpPort" (int .Values.metrics.port)
  "statusSocket" (printf "%s/status.sock" .Values.statusSocketDir)
  "stateDir" .Values.stateDir
  "pools" $pools -}}
{{- if .Values.migration.enabled }}
{{- $_ := set $cfg "migrationSocket" (printf "%s/migration.sock" .Values.statusSocketDir) -}}
{{- $_ := set $cfg "watchMigrations" .Values.migration.watchMigrations -}}
{{- if .Values.migration.nodeHooks.enabled }}
{{- $_ := set $cfg "nodeHookSocket" (include "xevf.nodeHookSocket" .) -}}
{{- end }}
{{- if include "xevf.tlsSecret" . }}
{{- $_ := set $cfg "peerIdentities" (join "," .Values.migration.peerIdentities) -}}
{{- with include "xevf.tlsServerName" . }}
{{- $_ := set $cfg "tlsServerName" . -}}
{{- end }}
{{- $_ := set $cfg "migrationAddress" (printf "0.0.0.0:%d" (int .Values.migration.port)) -}}
{{- $_ := set $cfg "tlsCA" "/etc/xevf/tls/ca.crt" -}}
{{- $_ := set $cfg "tlsCert" "/etc/xevf/tls/tls.crt" -}}
{{- $_ := set $cfg "tlsKey" "/etc/xevf/tls/tls.key" -}}
{{- $_ := set $cfg "migrationTargets" .Values.migration.targets.enabled -}}
{{- $_ := set $cfg "peerNamespace" .Release.Namespace -}}
{{- $_ := set $cfg "peerSelector" (printf "app.kubernetes.io/name=xevf-agent,app.kubernetes.io/instance=%s" .Release.Name) -}}
{{- end }}
{{- else }}
{{- $_ := set $cfg "migrationSocket" "" -}}
{{- end }}
{{- toPrettyJson $cfg -}}
{{- end -}}

{{/* The Secret with the agents' certificates: the one named, or the one the
cert-manager Certificate writes; empty: no TCP port. */}}
{{- define "xevf.tlsSecret" -}}
{{- if .Values.migration.enabled -}}
{{- if .Values.migration.tlsSecret -}}
{{ .Values.migration.tlsSecret }}
{{- else if .Values.migration.certManager.enabled -}}
{{ include "xevf.name" . }}-migration-tls
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The name the agents' certificates carry when it is not their node's. */}}
{{- define "xevf.tlsServerName" -}}
{{- if .Values.migration.tlsServerName -}}
{{ .Values.migration.tlsServerName }}
{{- else if .Values.migration.certManager.enabled -}}
xevf-agent
{{- end -}}
{{- end -}}

{{/* The node hooks' socket, on the host: the Plugin object names it for virt-handler. */}}
{{- define "xevf.nodeHookSocket" -}}
{{- printf "%s/node-hooks.sock" .Values.migration.nodeHooks.socketDir -}}
{{- end -}}
