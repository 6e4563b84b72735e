#!/usr/bin/env bash
# Builds (once) Argo Workflows' workflow-controller for the peers benchmark (`python -m bench peers`, issue 12)
# from the Go module proxy and caches it, with Argo's minimal CRDs taken from the same module source, outside the
# repository under
#   ${KONDUKT_CACHE:-$HOME/.cache/kondukt}/bin/<version-key>/
# workflow-controller and crds/*.yaml. No argo CLI is needed: Workflows are plain API objects.
# With a warm cache this is a no-op that returns in well under a second. Concurrent runs take turns on a lock.
#
#   bash hack/argo/build.sh            build what is missing, print where the binary is
#   bash hack/argo/build.sh --bin-dir  only print the directory (builds nothing)
#   bash hack/argo/build.sh --key      only print the version key
set -euo pipefail

# v4 is the first major version the module proxy serves with no replace directives (v3 is not served).
ARGO_MODULE=github.com/argoproj/argo-workflows/v4
ARGO_VERSION=v4.0.5
RECIPE=1  # bump when the way the binary is built changes

CACHE="${KONDUKT_CACHE:-$HOME/.cache/kondukt}"
KEY="argo-workflows-${ARGO_VERSION}_r${RECIPE}"
BIN_DIR="$CACHE/bin/$KEY"
STAMP="$BIN_DIR/.complete"

case "${1:-}" in
  --bin-dir) echo "$BIN_DIR"; exit 0 ;;
  --key) echo "$KEY"; exit 0 ;;
  "") ;;
  *) echo "usage: $0 [--bin-dir|--key]" >&2; exit 2 ;;
esac

log() { printf '[argo] %s\n' "$*" >&2; }
die() { printf '[argo] ERROR: %s\n' "$*" >&2; exit 1; }

present() { [[ -f "$STAMP" && -x "$BIN_DIR/workflow-controller" ]] && compgen -G "$BIN_DIR/crds/*.yaml" >/dev/null; }

if present; then
  log "cached: $KEY"
  echo "workflow-controller is in $BIN_DIR"
  exit 0
fi

mkdir -p "$CACHE/bin"
exec 9>"$CACHE/bin/.argo-build.lock"
if command -v flock >/dev/null 2>&1 && ! flock -n 9; then
  log "another build is running (lock $CACHE/bin/.argo-build.lock); waiting for it"
  flock 9
  if present; then
    log "cached: $KEY"
    echo "workflow-controller is in $BIN_DIR"
    exit 0
  fi
fi

command -v go >/dev/null 2>&1 || die "Go is not installed (need go >= 1.26 on PATH); Argo's controller is built from the Go module proxy"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOWORK=off GOFLAGS=-buildvcs=false
NICE=(nice -n 10)
command -v nice >/dev/null 2>&1 || NICE=()

mkdir -p "$BIN_DIR"
START=$SECONDS
log "building workflow-controller ${ARGO_VERSION} into $BIN_DIR (go $(go env GOVERSION); ~10 min on a cold cache)"

# ---- the CRDs: from the module's source, the same version as the controller
SRC="$(go mod download -json "${ARGO_MODULE}@${ARGO_VERSION}" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')"
[[ -d "$SRC/manifests/base/crds/minimal" ]] || die "could not download ${ARGO_MODULE}@${ARGO_VERSION} (no manifests/base/crds/minimal in '$SRC')"
mkdir -p "$BIN_DIR/crds"
cp -f "$SRC"/manifests/base/crds/minimal/*.yaml "$BIN_DIR/crds/"
chmod -R u+w "$BIN_DIR/crds"
rm -f "$BIN_DIR/crds/kustomization.yaml"

# ---- the controller
if [[ ! -x "$BIN_DIR/workflow-controller" ]]; then
  tmp="$(mktemp -d "$BIN_DIR/.gobin.XXXXXX")"
  GOBIN="$tmp" "${NICE[@]}" go install -p 2 -trimpath -ldflags "-s -w" "${ARGO_MODULE}/cmd/workflow-controller@${ARGO_VERSION}" \
    || { rm -rf "$tmp"; die "building workflow-controller failed (go install ${ARGO_MODULE}/cmd/workflow-controller@${ARGO_VERSION})"; }
  mv -f "$tmp/workflow-controller" "$BIN_DIR/workflow-controller"
  rm -rf "$tmp"
fi
"$BIN_DIR/workflow-controller" --help >/dev/null 2>&1 || die "the built workflow-controller does not run"
date -u +%Y-%m-%dT%H:%M:%SZ > "$STAMP"
log "done in $((SECONDS - START))s"
echo "workflow-controller is in $BIN_DIR"
