#!/usr/bin/env bash
# Builds (once) the binaries of the local Kubernetes control plane used by Kondukt's e2e tests, from the Go
# module proxy, and caches them outside the repository under
#   ${KONDUKT_CACHE:-$HOME/.cache/kondukt}/bin/<version-key>/
# kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd, kwok, helm, and the kubelet of the
# real-node e2e tier (tests/e2e/realnode.py). See DESIGN.md §9.
# With a warm cache this is a no-op that returns in well under a second. Concurrent runs (several engineers'
# `make e2e`) take turns on a lock, so a binary is never built twice at once.
#
#   bash hack/control-plane/build.sh            build what is missing, print where the binaries are
#   bash hack/control-plane/build.sh --bin-dir  only print the binary directory (builds nothing)
#   bash hack/control-plane/build.sh --key      only print the version key
set -euo pipefail

# ---- pinned versions (kwok v0.8.0 is built against the Kubernetes 1.36 libraries; 1.36 pairs with etcd 3.6)
K8S_VERSION=v1.36.3
ETCD_VERSION=v3.6.16
KWOK_VERSION=v0.8.0
HELM_VERSION=v3.21.4
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok helm kubelet)
RECIPE=1  # bump when the way the binaries are built changes, to rebuild caches keyed by the versions alone

CACHE="${KONDUKT_CACHE:-$HOME/.cache/kondukt}"
KEY="k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_helm-${HELM_VERSION}_r${RECIPE}"
BIN_DIR="$CACHE/bin/$KEY"
SRC_DIR="$CACHE/src/$KEY"
STAMP="$BIN_DIR/.complete"

case "${1:-}" in
  --bin-dir) echo "$BIN_DIR"; exit 0 ;;
  --key) echo "$KEY"; exit 0 ;;
  "") ;;
  *) echo "usage: $0 [--bin-dir|--key]" >&2; exit 2 ;;
esac

log() { printf '[control-plane] %s\n' "$*" >&2; }
die() { printf '[control-plane] ERROR: %s\n' "$*" >&2; exit 1; }

all_present() {
  local b
  for b in "${BINARIES[@]}"; do [[ -x "$BIN_DIR/$b" ]] || return 1; done
}

if [[ -f "$STAMP" ]] && all_present; then
  log "cached: $KEY"
  echo "binaries are in $BIN_DIR"
  exit 0
fi

# ---- one build at a time per cache: a second run waits here, then finds the binaries built (or resumes)
mkdir -p "$CACHE/bin"
exec 9>"$CACHE/bin/.build.lock"
if command -v flock >/dev/null 2>&1 && ! flock -n 9; then
  log "another build is running (lock $CACHE/bin/.build.lock); waiting for it"
  flock 9
  if [[ -f "$STAMP" ]] && all_present; then
    log "cached: $KEY"
    echo "binaries are in $BIN_DIR"
    exit 0
  fi
fi

# ---- prerequisites
command -v go >/dev/null 2>&1 || die "Go is not installed (need go >= 1.26 on PATH); the control plane is built from the Go module proxy"
GO_VER="$(go env GOVERSION)"                       # e.g. go1.26.8
GO_MINOR="$(sed -E 's/^go1\.([0-9]+).*/\1/' <<<"$GO_VER")"
[[ "$GO_MINOR" =~ ^[0-9]+$ && "$GO_MINOR" -ge 26 ]] || die "need Go >= 1.26 (Kubernetes ${K8S_VERSION} and kwok ${KWOK_VERSION} require it), found $GO_VER"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOWORK=off GOFLAGS=-buildvcs=false
NICE=(nice -n 10)
command -v nice >/dev/null 2>&1 || NICE=()
GOBUILD=(go build -p 2 -trimpath)

mkdir -p "$BIN_DIR" "$SRC_DIR"
log "building into $BIN_DIR (go $GO_VER; this takes a while on a cold cache)"
TOTAL_START=$SECONDS

# A binary with its .built-NAME stamp was built by a previous (possibly interrupted) run: skip it.
built() { [[ -x "$BIN_DIR/$1" && -f "$BIN_DIR/.built-$1" ]]; }
finish() { # NAME START
  touch "$BIN_DIR/.built-$1"
  log "built $1 in $((SECONDS - $2))s"
}

# ---- Kubernetes: a wrapper module around k8s.io/kubernetes whose replace lines point each staging module at
# its published version (k8s.io/kubernetes itself requires them at v0.0.0 and replaces them with ./staging).
K8S_MINOR="$(cut -d. -f2 <<<"${K8S_VERSION#v}")"
K8S_MAJOR="$(cut -d. -f1 <<<"${K8S_VERSION#v}")"
STAGING_VERSION="v0.${K8S_VERSION#v1.}"            # v1.36.3 -> v0.36.3
# The kubelet has a wrapper module of its own (kubelet/): adding it to the first one's tools.go would change a
# module that existing caches have already tidied (its .ready marker), and the kubelet's extra dependencies
# would then be missing from it.
k8s_module() { # DIR COMMAND...
  local dir="$SRC_DIR/$1" modfile cmd imports=""
  shift
  [[ -f "$dir/.ready" ]] && return 0
  for cmd in "$@"; do imports+=$'\t_ "k8s.io/kubernetes/cmd/'"$cmd"$'"\n'; done
  log "preparing the k8s.io/kubernetes@${K8S_VERSION} wrapper module in $dir"
  mkdir -p "$dir"
  modfile="$(go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')"
  [[ -f "$modfile" ]] || die "could not download k8s.io/kubernetes@${K8S_VERSION} from the Go module proxy ($(go env GOPROXY))"
  {
    echo "module kondukt.local/control-plane/kubernetes"
    echo
    grep -E '^(go|godebug) ' "$modfile"
    echo
    echo "require k8s.io/kubernetes ${K8S_VERSION}"
    echo
    echo "replace ("
    sed -nE 's#^[[:space:]]*(k8s\.io/[^[:space:]]+)[[:space:]]+=>[[:space:]]+\./staging/.*#\t\1 => \1 '"${STAGING_VERSION}"'#p' "$modfile"
    echo ")"
  } > "$dir/go.mod"
  grep -q '=> k8s.io/api ' "$dir/go.mod" || die "found no staging replace lines in k8s.io/kubernetes@${K8S_VERSION}'s go.mod"
  cat > "$dir/tools.go" <<GO
//go:build tools

// Package tools pins the Kubernetes commands this wrapper module builds.
package tools

import (
${imports})
GO
  (cd "$dir" && go mod tidy) || die "go mod tidy failed for the k8s.io/kubernetes wrapper in $dir"
  touch "$dir/.ready"
}

k8s_ldflags() {
  local f="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    f+=" -X ${pkg}.gitVersion=${K8S_VERSION} -X ${pkg}.gitMajor=${K8S_MAJOR} -X ${pkg}.gitMinor=${K8S_MINOR}"
    f+=" -X ${pkg}.gitTreeState=clean -X ${pkg}.buildDate=1970-01-01T00:00:00Z"
  done
  echo "$f"
}

build_k8s() { # NAME [MODULE_DIR]
  local name=$1 module=${2:-kubernetes} start=$SECONDS
  built "$name" && return 0
  if [[ "$module" == kubernetes ]]; then
    k8s_module kubernetes kube-apiserver kube-controller-manager kube-scheduler kubectl
  else
    k8s_module "$module" "$name"
  fi
  log "building $name ${K8S_VERSION} ..."
  (cd "$SRC_DIR/$module" && "${NICE[@]}" "${GOBUILD[@]}" -ldflags "$(k8s_ldflags)" \
      -o "$BIN_DIR/$name.tmp" "k8s.io/kubernetes/cmd/$name") || die "building $name failed (see the go output above)"
  mv -f "$BIN_DIR/$name.tmp" "$BIN_DIR/$name"
  finish "$name" "$start"
}

# ---- etcd: a wrapper main around go.etcd.io/etcd/server/v3/etcdmain (the etcd server module has replace
# lines for its sibling modules, which a dependent module ignores: it resolves their published versions).
build_etcd() {
  local start=$SECONDS dir="$SRC_DIR/etcd"
  built etcd && return 0
  log "building etcd ${ETCD_VERSION} ..."
  mkdir -p "$dir"
  if [[ ! -f "$dir/.ready" ]]; then
    cat > "$dir/go.mod" <<MOD
module kondukt.local/control-plane/etcd

go 1.26.0

require go.etcd.io/etcd/server/v3 ${ETCD_VERSION}
MOD
    cat > "$dir/main.go" <<'GO'
// Command etcd is etcd's server, built from the go.etcd.io/etcd/server/v3 module.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
    (cd "$dir" && go mod tidy) || die "go mod tidy failed for the etcd wrapper in $dir"
    touch "$dir/.ready"
  fi
  (cd "$dir" && "${NICE[@]}" "${GOBUILD[@]}" -ldflags "-s -w" -o "$BIN_DIR/etcd.tmp" .) \
    || die "building etcd failed (see the go output above)"
  mv -f "$BIN_DIR/etcd.tmp" "$BIN_DIR/etcd"
  finish etcd "$start"
}

# ---- kwok and helm: plain `go install` of their published commands
go_install() { # NAME PACKAGE@VERSION LDFLAGS
  local name=$1 pkg=$2 ldflags=$3 start=$SECONDS tmp
  built "$name" && return 0
  log "building $name (${pkg}) ..."
  tmp="$(mktemp -d "$BIN_DIR/.gobin.XXXXXX")"
  GOBIN="$tmp" "${NICE[@]}" go install -p 2 -trimpath -ldflags "$ldflags" "$pkg" \
    || { rm -rf "$tmp"; die "building $name failed (go install $pkg)"; }
  mv -f "$tmp/$name" "$BIN_DIR/$name"
  rm -rf "$tmp"
  finish "$name" "$start"
}

build_etcd
build_k8s kube-apiserver
build_k8s kube-controller-manager
build_k8s kube-scheduler
build_k8s kubectl
go_install kwok "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}" "-s -w"
go_install helm "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}" \
  "-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION} -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
# The real node's kubelet (tests/e2e/realnode.py), last: the kwok tier does not need it.
build_k8s kubelet kubelet

all_present || die "some binaries are missing from $BIN_DIR after the build"
"$BIN_DIR/kube-apiserver" --version >/dev/null || die "the built kube-apiserver does not run"
date -u +%Y-%m-%dT%H:%M:%SZ > "$STAMP"
log "done in $((SECONDS - TOTAL_START))s"
echo "binaries are in $BIN_DIR"
