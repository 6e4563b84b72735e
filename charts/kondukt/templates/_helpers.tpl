{{/*
Names, labels and image references shared by every template.
*/}}

{{- define "kondukt.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's base name: the release name, prefixed by the chart name unless it already contains it. */}}
{{- define "kondukt.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/*
Name of the RBAC objects: cluster-scoped ones and the Roles placed in watched namespaces are shared by every
release of the cluster, so their name carries the release's namespace too.
*/}}
{{- define "kondukt.rbacName" -}}
{{- printf "%s-%s" (include "kondukt.fullname" .) .Release.Namespace | trunc 253 | trimSuffix "-" }}
{{- end }}

{{- define "kondukt.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kondukt.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kondukt.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "kondukt.labels" -}}
helm.sh/chart: {{ include "kondukt.chart" . }}
{{ include "kondukt.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kondukt
{{- end }}

{{- define "kondukt.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kondukt.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Lease the replicas of this release elect their leader with (--lease), in the release's namespace. */}}
{{- define "kondukt.leaseName" -}}
{{- default (include "kondukt.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/*
Values that are each valid but unsafe together: refused at install time, with the fix, instead of an operator
that exits at start (lease timing) or a PodDisruptionBudget that blocks every node drain.
*/}}
{{- define "kondukt.validate" -}}
{{- $le := .Values.leaderElection }}
{{- $duration := float64 $le.leaseDurationSeconds }}
{{- $deadline := float64 $le.renewDeadlineSeconds }}
{{- $retry := float64 $le.retryPeriodSeconds }}
{{- if ge $deadline $duration }}
{{- fail (printf "leaderElection.renewDeadlineSeconds (%v) must be shorter than leaderElection.leaseDurationSeconds (%v): the leader must stop acting before a standby may take the Lease" $le.renewDeadlineSeconds $le.leaseDurationSeconds) }}
{{- end }}
{{- if le $deadline (mulf 1.2 $retry) }}
{{- fail (printf "leaderElection.renewDeadlineSeconds (%v) must be longer than 1.2 x leaderElection.retryPeriodSeconds (%v): a renewal needs time for a retry" $le.renewDeadlineSeconds $le.retryPeriodSeconds) }}
{{- end }}
{{- if and .Values.podDisruptionBudget.enabled (gt (int .Values.replicas) 1) (ge (int .Values.podDisruptionBudget.minAvailable) (int .Values.replicas)) }}
{{- fail (printf "podDisruptionBudget.minAvailable (%v) must be less than replicas (%v): otherwise no operator pod may ever be evicted and every node drain blocks" .Values.podDisruptionBudget.minAvailable .Values.replicas) }}
{{- end }}
{{- if and .Values.archive.enabled (not .Values.archive.secretName) }}
{{- fail "archive.enabled needs archive.secretName: the Secret (in the release's namespace) whose key archive.secretKey holds the PostgreSQL connection string; it is never a value" }}
{{- end }}
{{- end }}

{{/* repository:tag or repository@digest; the tag defaults to the chart's appVersion. Argument: (dict "image" X "chart" .Chart) */}}
{{- define "kondukt.imageRef" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .chart.AppVersion .image.tag) }}
{{- end }}
{{- end }}

{{- define "kondukt.operatorImage" -}}
{{- include "kondukt.imageRef" (dict "image" .Values.image "chart" .Chart) }}
{{- end }}

{{- define "kondukt.workersImage" -}}
{{- include "kondukt.imageRef" (dict "image" .Values.workers.image "chart" .Chart) }}
{{- end }}

{{/*
The permissions the operator needs inside every namespace it serves (a ClusterRole grants them everywhere,
a Role in each watched namespace otherwise). Least privilege: no Secrets, no ConfigMaps, no wildcards, and
nothing is ever deleted but the task attempts' Jobs and finished Workflows (TTL ran out, or beyond a
CronWorkflow's history limits).
*/}}
{{- define "kondukt.namespacedRules" -}}
# Kondukt's resources: definitions are read, and only their status is written (their health, checked
# against each other: kondukt.kube.definitions); CronWorkflows are read and only their status is written;
# Workflows are read and watched, created (SUB_WORKFLOW, START_WORKFLOW, failureWorkflow children, the runs
# of CronWorkflows), patched (Kopf's bookkeeping annotations and finalizer, operation nonces, a child's or a
# replaced run's spec.terminate), and deleted once finished, archived (when the archive is on) and past their
# ttlStrategy, or as a CronWorkflow's finished runs beyond its history limits (children go with their parent
# through owner references).
- apiGroups: ["kondukt.io"]
  resources: ["taskdefs", "workflowdefs", "workflows", "cronworkflows"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["kondukt.io"]
  resources: ["workflows"]
  verbs: ["create", "patch", "delete"]
- apiGroups: ["kondukt.io"]
  resources: ["workflows/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["kondukt.io"]
  resources: ["taskdefs/status", "workflowdefs/status"]
  verbs: ["patch"]
- apiGroups: ["kondukt.io"]
  resources: ["cronworkflows/status"]
  verbs: ["patch"]
# Owner references with blockOwnerDeletion (a task attempt's Job, a child Workflow, a CronWorkflow's run)
# need this where the OwnerReferencesPermissionEnforcement admission plugin is on (e.g. OpenShift).
- apiGroups: ["kondukt.io"]
  resources: ["workflows/finalizers", "cronworkflows/finalizers"]
  verbs: ["update"]
# Every SIMPLE task attempt is a Job; cancelled or terminated attempts are deleted.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete"]
# A finished attempt's result is its pod's termination message; pods are never created or changed directly.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
# Events on task transitions (the operator and Kopf post core/v1 Events; they never update them).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- if gt (int .Values.shards) 1 }}
# With shards: a limited TaskDef's attempts are claimed in its claim Lease (kondukt-limit-<taskdef>-<hash>),
# read fresh and replaced with resourceVersion guards, so rate and concurrency limits hold across replicas.
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "create", "update"]
{{- end }}
{{- end }}

{{/* The web UI's labels (ui.enabled): the operator's, with its own component so that selectors never mix. */}}
{{- define "kondukt.uiSelectorLabels" -}}
app.kubernetes.io/name: {{ include "kondukt.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: ui
{{- end }}

{{- define "kondukt.uiLabels" -}}
helm.sh/chart: {{ include "kondukt.chart" . }}
{{ include "kondukt.uiSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kondukt
{{- end }}

{{/*
What the web UI's ServiceAccount may do (ui.enabled): read, nothing else. Kondukt's resources for the pages,
the attempts' pods and their logs for the log view. No Secrets, no writes: operations go out with the user's
own bearer token.
*/}}
{{- define "kondukt.uiRules" -}}
- apiGroups: ["kondukt.io"]
  resources: ["taskdefs", "workflowdefs", "workflows"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list"]
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
{{- end }}
