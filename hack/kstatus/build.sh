#!/usr/bin/env bash
# Builds (once) hack/kstatus — a small Go program printing what the kstatus library of
# sigs.k8s.io/cli-utils (Flux's health computation) says of Kubernetes objects — from the Go module proxy,
# and caches it outside the repository under
#   ${KONDUKT_CACHE:-$HOME/.cache/kondukt}/bin/kstatus-<key>/kstatus
# where <key> is a hash of go.mod, go.sum and main.go: a change of any of them builds anew. With a warm
# cache this is a no-op; concurrent runs take turns on a lock (like hack/control-plane/build.sh).
#
#   bash hack/kstatus/build.sh          build if missing; print the binary's path
#   bash hack/kstatus/build.sh --path   only print the binary's path (builds nothing)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${KONDUKT_CACHE:-$HOME/.cache/kondukt}"
KEY="$(cat "$HERE/go.mod" "$HERE/go.sum" "$HERE/main.go" | sha256sum | cut -c1-16)"
BIN_DIR="$CACHE/bin/kstatus-$KEY"
BIN="$BIN_DIR/kstatus"
STAMP="$BIN_DIR/.complete"

case "${1:-}" in
  --path) echo "$BIN"; exit 0 ;;
  "") ;;
  *) echo "usage: $0 [--path]" >&2; exit 2 ;;
esac

log() { printf '[kstatus] %s\n' "$*" >&2; }
die() { printf '[kstatus] ERROR: %s\n' "$*" >&2; exit 1; }

if [[ -f "$STAMP" && -x "$BIN" ]]; then
  echo "$BIN"
  exit 0
fi

mkdir -p "$CACHE/bin"
exec 9>"$CACHE/bin/.kstatus.lock"
if command -v flock >/dev/null 2>&1 && ! flock -n 9; then
  log "another build is running (lock $CACHE/bin/.kstatus.lock); waiting for it"
  flock 9
  if [[ -f "$STAMP" && -x "$BIN" ]]; then
    echo "$BIN"
    exit 0
  fi
fi

command -v go >/dev/null 2>&1 || die "Go is not installed (need go on PATH); kstatus is built from the Go module proxy"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOWORK=off GOFLAGS=-buildvcs=false
NICE=(nice -n 10)
command -v nice >/dev/null 2>&1 || NICE=()
mkdir -p "$BIN_DIR"
start=$SECONDS
log "building into $BIN_DIR ($(go env GOVERSION))"
# -mod=readonly: go.mod and go.sum pin every module; the build never edits them.
(cd "$HERE" && "${NICE[@]}" go build -mod=readonly -p 2 -trimpath -ldflags "-s -w" -o "$BIN.tmp" .) \
  || die "building kstatus failed (see the go output above)"
mv -f "$BIN.tmp" "$BIN"
date -u +%Y-%m-%dT%H:%M:%SZ > "$STAMP"
log "built in $((SECONDS - start))s"
echo "$BIN"
