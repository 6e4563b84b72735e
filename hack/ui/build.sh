#!/usr/bin/env bash
# Builds the web UI's front end (ui/src, TypeScript) into the static files `kondukt ui` serves from the
# Python package (operator/kondukt/cli/ui/static/: index.html, app.js, app.css). Run by `make setup`.
#
# The npm packages (ui/package-lock.json pins them: @dagrejs/dagre for the graph layout, esbuild to bundle)
# are installed with `npm ci` into the cache, never into the repository:
# ${KONDUKT_CACHE:-$HOME/.cache/kondukt}/ui/<hash of the lock file>/node_modules, behind a lock, with a stamp,
# so a warm machine does no npm call at all. The npm registry is used at build time only; the built files
# fetch nothing at run time. Idempotent: rebuilds only when a source or the lock file is newer than the output.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
CACHE=${KONDUKT_CACHE:-$HOME/.cache/kondukt}
OUT=operator/kondukt/cli/ui/static
KEY=$( (cat ui/package-lock.json; echo "node $(node --version)") | sha256sum | cut -c1-16)
MODULES=$CACHE/ui/$KEY
command -v npm >/dev/null 2>&1 || { echo "[ui] ERROR: npm is needed to build the web UI (apt-get install npm)" >&2; exit 1; }
mkdir -p "$CACHE/ui"
(
  flock 9
  if [[ ! -f $MODULES/.installed ]]; then
    echo "[ui] installing the front end's npm packages into $MODULES"
    rm -rf "$MODULES" && mkdir -p "$MODULES"
    cp ui/package.json ui/package-lock.json "$MODULES/"
    (cd "$MODULES" && npm ci --no-audit --no-fund --cache "$CACHE/npm-cache" --loglevel=error)
    touch "$MODULES/.installed"
  fi
) 9>"$CACHE/ui/.lock"

newest_source=$(find ui/src ui/package-lock.json hack/ui/build.sh -type f -newer "$OUT/app.js" 2>/dev/null | head -1 || true)
if [[ -f $OUT/app.js && -f $OUT/index.html && -z $newest_source ]]; then
  echo "[ui] static files up to date ($OUT)"
  exit 0
fi
mkdir -p "$OUT"
NODE_PATH=$MODULES/node_modules "$MODULES/node_modules/.bin/esbuild" ui/src/app.ts --bundle --minify \
  --format=iife --target=es2020 --legal-comments=external --log-level=warning --outfile="$OUT/app.js"
cp ui/src/index.html ui/src/app.css "$OUT/"
echo "[ui] built $OUT ($(du -sk "$OUT" | cut -f1) KiB)"
