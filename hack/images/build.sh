#!/usr/bin/env bash
# Builds Kondukt's two images (docker/operator.Dockerfile, docker/workers.Dockerfile) without touching a
# container registry and without network access during the build:
#
#   1. a wheelhouse is made on the host from constraints.txt (the wheels of kondukt and kondukt-workers plus
#      every pinned dependency); the Dockerfiles install from it with `pip --no-index --find-links`;
#   2. the base image is a build argument: the official python slim image by default (for kind users, whose
#      Docker pulls it), or `debootstrap`: a Debian bookworm minbase root filesystem with python3 made here
#      with debootstrap and imported (for machines that reach no registry, like CI's);
#   3. the images are built with podman (or docker) with `--network=none`.
#
# With --archives (the real-node e2e tier) each image is also saved as an OCI archive, with the node's pause
# image, under ${KONDUKT_CACHE:-$HOME/.cache/kondukt}/images/<key>/, keyed by a hash of everything an image is
# built from, so a warm run builds nothing (well under a second).
#
#   bash hack/images/build.sh [--tool podman|docker] [--base IMAGE|debootstrap] [--archives]
#   bash hack/images/build.sh --base debootstrap --print-dir   print the archive directory only (builds nothing)
#
# Image names: kondukt/operator:<key> and kondukt/workers:<key> (podman stores them as localhost/...), and
# with --tag-release also kondukt/operator:<version> and kondukt/workers:<version> (the chart's defaults).
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO="$PWD"

TOOL=podman
BASE=python:3.11.13-slim-bookworm
ARCHIVES=0
PRINT_DIR=0
RELEASE_TAGS=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --tool) TOOL=$2; shift 2 ;;
    --base) BASE=$2; shift 2 ;;
    --archives) ARCHIVES=1; shift ;;
    --print-dir) PRINT_DIR=1; shift ;;
    --tag-release) RELEASE_TAGS=1; shift ;;
    *) echo "usage: $0 [--tool podman|docker] [--base IMAGE|debootstrap] [--archives] [--tag-release] [--print-dir]" >&2
       exit 2 ;;
  esac
done

log() { printf '[images] %s\n' "$*" >&2; }
die() { printf '[images] ERROR: %s\n' "$*" >&2; exit 1; }

CACHE="${KONDUKT_CACHE:-$HOME/.cache/kondukt}"
DEBIAN_SUITE=bookworm
DEBIAN_MIRROR="${KONDUKT_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DEBIAN_PACKAGES=python3,python3-venv,ca-certificates
BASE_RECIPE=1    # bump when the debootstrap base is made differently
PAUSE_RECIPE=1   # bump when the pause image is made differently
VERSION="$(sed -nE 's/^version = "([^"]+)".*/\1/p' pyproject.toml | head -1)"

# ---- keys: a hash of every file an image is built from (sources as they are on disk, committed or not)
# (README.md files are left out: they only become the wheels' descriptions, and they change often.)
hash_files() { # PATH... -> one sha256 over the paths and contents of the files under them
  find "$@" -type f ! -name '*.pyc' ! -name README.md ! -path '*/__pycache__/*' ! -path '*.egg-info/*' -print0 \
    | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16
}
SOURCES_KEY="$(hash_files pyproject.toml constraints.txt operator workers docker)"
DEBOOTSTRAP_KEY="$(printf '%s\n' "$DEBIAN_SUITE" "$DEBIAN_PACKAGES" "$BASE_RECIPE" | sha256sum | cut -c1-12)"
DEBOOTSTRAP_IMAGE="localhost/kondukt/debian-python:${DEBIAN_SUITE}-${DEBOOTSTRAP_KEY}"
PAUSE_KEY="$(printf '%s\n' "$PAUSE_RECIPE" "$(hash_files hack/real-node/pause)" | sha256sum | cut -c1-12)"
if [[ "$BASE" == debootstrap ]]; then BASE_IMAGE="$DEBOOTSTRAP_IMAGE"; else BASE_IMAGE="$BASE"; fi
KEY="$(printf '%s\n' "$SOURCES_KEY" "$BASE_IMAGE" "$TOOL" | sha256sum | cut -c1-16)"
OUT="$CACHE/images/oci-$KEY"
if [[ $PRINT_DIR == 1 ]]; then echo "$OUT"; exit 0; fi
if [[ $ARCHIVES == 1 && -f "$OUT/.complete" ]]; then
  log "cached: $OUT"
  echo "images are in $OUT"
  exit 0
fi

# One build at a time per cache (several checkouts share it, and podman's storage): a second run waits here.
mkdir -p "$CACHE/images"
exec 9>"$CACHE/images/.build.lock"
if command -v flock >/dev/null 2>&1 && ! flock -n 9; then
  log "another image build is running (lock $CACHE/images/.build.lock); waiting for it"
  flock 9
  if [[ $ARCHIVES == 1 && -f "$OUT/.complete" ]]; then
    log "cached: $OUT"
    echo "images are in $OUT"
    exit 0
  fi
fi

command -v "$TOOL" >/dev/null 2>&1 || die "$TOOL is not installed (apt-get install podman, or --tool docker)"
if [[ "$TOOL" == podman ]]; then
  # This machine kind: no systemd, cgroup v1 (hybrid), crun unusable there; see hack/images/containers.conf.
  export CONTAINERS_CONF="${CONTAINERS_CONF:-$REPO/hack/images/containers.conf}"
fi
NICE=(nice -n 10)
START=$SECONDS
mkdir -p "$CACHE/images"

# ---- 1. the wheelhouse (the host's Python must be the images' minor version: the wheels are for its ABI)
PY="${PYTHON:-$REPO/.venv/bin/python}"
[[ -x "$PY" ]] || PY="$(command -v python3)"
PY_MINOR="$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
[[ "$PY_MINOR" == 3.11 ]] || die "the wheelhouse needs Python 3.11 on the host (the images' Python), found $PY_MINOR at $PY (set PYTHON=...)"
WHEELS="$CACHE/images/wheels-$SOURCES_KEY"
if [[ ! -f "$WHEELS/.complete" ]]; then
  log "making the wheelhouse $WHEELS (pip wheel -c constraints.txt './workers[builtin]' .)"
  rm -rf "$WHEELS" && mkdir -p "$WHEELS"
  # From a copy of the sources: an in-tree build would reuse (and leave) a stale build/ directory.
  SRC="$(mktemp -d "$CACHE/images/src.XXXXXX")"
  tar -c --exclude=__pycache__ --exclude='*.pyc' --exclude='*.egg-info' \
      pyproject.toml constraints.txt README.md operator workers | tar -x -C "$SRC"
  "${NICE[@]}" "$PY" -m pip wheel -q --disable-pip-version-check -c constraints.txt --wheel-dir "$WHEELS" \
      "$SRC/workers[builtin]" "$SRC" \
    || { rm -rf "$SRC"; die "pip wheel failed (see above)"; }
  rm -rf "$SRC"
  touch "$WHEELS/.complete"
fi

# ---- 2. the base image
if [[ "$BASE" == debootstrap ]] && ! "$TOOL" image inspect "$DEBOOTSTRAP_IMAGE" >/dev/null 2>&1; then
  command -v debootstrap >/dev/null 2>&1 || die "debootstrap is not installed (apt-get install debootstrap)"
  ROOTFS="$CACHE/images/rootfs-$DEBOOTSTRAP_KEY"
  log "making the base image $DEBOOTSTRAP_IMAGE with debootstrap (minbase $DEBIAN_SUITE + $DEBIAN_PACKAGES)"
  rm -rf "$ROOTFS"
  "${NICE[@]}" debootstrap --variant=minbase --include="$DEBIAN_PACKAGES" "$DEBIAN_SUITE" "$ROOTFS" "$DEBIAN_MIRROR" \
    > "$CACHE/images/debootstrap.log" 2>&1 || die "debootstrap failed; see $CACHE/images/debootstrap.log"
  # An image needs no package lists, caches or logs; python3 must be there for the Dockerfiles' `python3`.
  rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/* "$ROOTFS"/var/log/* "$ROOTFS"/tmp/*
  [[ -x "$ROOTFS/usr/bin/python3" ]] || die "the debootstrap root filesystem has no /usr/bin/python3"
  tar -C "$ROOTFS" --numeric-owner -c . | "$TOOL" import \
      --change 'CMD ["python3"]' --change 'ENV LANG=C.UTF-8' - "$DEBOOTSTRAP_IMAGE" >/dev/null \
    || die "$TOOL import of $ROOTFS failed"
  rm -rf "$ROOTFS"
fi

# ---- 3. the images, from a build context that holds only what they are made of
CONTEXT="$(mktemp -d "$CACHE/images/context.XXXXXX")"
trap 'rm -rf "$CONTEXT"' EXIT
cp constraints.txt "$CONTEXT/"
cp -r "$WHEELS" "$CONTEXT/wheels" && rm -f "$CONTEXT/wheels/.complete"
for name in operator workers; do
  tags=(-t "kondukt/$name:$KEY")
  [[ $RELEASE_TAGS == 1 ]] && tags+=(-t "kondukt/$name:$VERSION")
  log "building kondukt/$name:$KEY from docker/$name.Dockerfile (base $BASE_IMAGE, no network)"
  "${NICE[@]}" "$TOOL" build -q --network=none --pull=false --build-arg "BASE_IMAGE=$BASE_IMAGE" \
      -f "docker/$name.Dockerfile" "${tags[@]}" "$CONTEXT" >/dev/null \
    || die "building kondukt/$name failed (see above)"
done

# Images of older keys (older sources) are of no use any more: keep the tool's storage to the current ones.
"$TOOL" images --format '{{.Repository}}:{{.Tag}}' 2>/dev/null \
  | grep -E '^(localhost/)?kondukt/(operator|workers):[0-9a-f]{16}$' | grep -v ":$KEY\$" \
  | xargs -r "$TOOL" rmi -f >/dev/null 2>&1 || true

if [[ $ARCHIVES == 1 ]]; then
  # ---- 4. the real node's pause image: a static Go program in an image of its own
  PAUSE_IMAGE="localhost/kondukt/pause:$PAUSE_KEY"
  if ! "$TOOL" image inspect "$PAUSE_IMAGE" >/dev/null 2>&1; then
    command -v go >/dev/null 2>&1 || die "Go is needed to build the pause image"
    PAUSE_CTX="$CONTEXT/pause"
    mkdir -p "$PAUSE_CTX"
    (cd hack/real-node/pause && CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=local \
        go build -trimpath -ldflags '-s -w' -o "$PAUSE_CTX/pause" .) || die "building the pause program failed"
    cp hack/real-node/pause/Dockerfile "$PAUSE_CTX/"
    "$TOOL" build -q --network=none --pull=false -t "$PAUSE_IMAGE" "$PAUSE_CTX" >/dev/null \
      || die "building the pause image failed"
  fi
  rm -rf "$OUT" && mkdir -p "$OUT"
  for name in operator workers; do
    "$TOOL" save -q --format oci-archive -o "$OUT/$name.tar" "localhost/kondukt/$name:$KEY" \
      || die "saving kondukt/$name failed"
  done
  "$TOOL" save -q --format oci-archive -o "$OUT/pause.tar" "$PAUSE_IMAGE" || die "saving the pause image failed"
  "$TOOL" image prune -f >/dev/null 2>&1 || true  # the builder stages
  printf '{"operator": "localhost/kondukt/operator:%s", "workers": "localhost/kondukt/workers:%s", "pause": "%s"}\n' \
    "$KEY" "$KEY" "$PAUSE_IMAGE" > "$OUT/images.json"
  touch "$OUT/.complete"
  # Older keys' archives are of no use any more: keep the cache to the newest three.
  ls -1dt "$CACHE"/images/oci-*/.complete 2>/dev/null | tail -n +4 | xargs -r -n1 dirname | xargs -r rm -rf
  ls -1dt "$CACHE"/images/wheels-* 2>/dev/null | tail -n +4 | xargs -r rm -rf
fi
log "done in $((SECONDS - START))s"
for name in operator workers; do
  log "kondukt/$name:$KEY $("$TOOL" image inspect --format '{{.Size}}' "kondukt/$name:$KEY" 2>/dev/null | numfmt --to=iec) bytes"
done
[[ $ARCHIVES == 1 ]] && echo "images are in $OUT"
exit 0
