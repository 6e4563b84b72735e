#!/usr/bin/env bash
# `make lint`'s check of the Helm chart: `helm lint --strict` and `helm template` of charts/kondukt with the
# default values and with the other shapes the chart supports (namespaced RBAC, several replicas, the
# NetworkPolicy and the ServiceMonitor, the web UI). Uses the helm that `make control-plane` builds and caches
# (hack/control-plane/build.sh --bin-dir; $KONDUKT_BIN_DIR overrides it, as for the e2e tests).
# A missing helm is an error, never a skip.
set -euo pipefail
cd "$(dirname "$0")/.."

CHART=charts/kondukt
KUBE_VERSION=1.36.0   # the version of the e2e control plane; the chart requires >= 1.29

bin_dir="${KONDUKT_BIN_DIR:-$(bash hack/control-plane/build.sh --bin-dir)}"
helm="$bin_dir/helm"
if [[ ! -x "$helm" ]]; then
  echo "helm-check: ERROR: no helm binary at $helm; run \`make control-plane\` to build it" >&2
  exit 1
fi

# Keep helm away from the user's own configuration, repositories and cache.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
export HELM_CACHE_HOME="$scratch/cache" HELM_CONFIG_HOME="$scratch/config" HELM_DATA_HOME="$scratch/data"

shapes=(
  "defaults:"
  "namespaced:--set watchNamespaces={team-a,team-b} --set replicas=3 --set networkPolicy.enabled=true --set metrics.serviceMonitor.enabled=true"
  "ui:--set ui.enabled=true --set watchNamespaces={team-a} --set ui.allowedHosts={ui.example.com}"
  "no-crds:--set crds.install=false --set rbac.create=false --set serviceAccount.create=false --set serviceAccount.name=existing"
)
status=0
for shape in "${shapes[@]}"; do
  name="${shape%%:*}"
  read -r -a args <<<"${shape#*:}"
  if ! out="$("$helm" lint --strict --kube-version "$KUBE_VERSION" "$CHART" "${args[@]}" 2>&1)"; then
    echo "helm-check: helm lint failed ($name):" >&2; echo "$out" >&2; status=1; continue
  fi
  if ! out="$("$helm" template kondukt "$CHART" --namespace kondukt-system --kube-version "$KUBE_VERSION" "${args[@]}" 2>&1)"; then
    echo "helm-check: helm template failed ($name):" >&2; echo "$out" >&2; status=1; continue
  fi
  echo "helm-check: $name: lint and template ok ($(grep -c '^kind:' <<<"$out") objects)"
done
exit "$status"
