#!/usr/bin/env bash
# Builds the pinned wireguard-go that Weft runs into resources/bin/wireguard-go (gitignored), where the engine looks
# for it first (src-main/engine/wg/resolve.ts) and from where electron-builder ships it (extraResources -> bin/).
#
# Pinned: golang.zx2c4.com/wireguard at the pseudo-version below (upstream has no newer tag; its version.go says
# 0.0.20250522, which `wireguard-go --version` prints). Against Debian's 0.0.20220316 it brings TUN and UDP
# segmentation offloads (GSO/GRO), which carry most of the throughput gain.
#
# Usage: build-wireguard-go.sh [--optional]
#   --optional   (npm's postinstall) when Go is missing, or the build fails, print one line and exit 0: the engine
#                then falls back to `wireguard-go` on PATH. Without it (test/setup/ensure-deps.sh) a failure is fatal.
# Environment: WEFT_WG_OUT (default <repo>/resources/bin/wireguard-go), WEFT_WG_DOWNLOAD_TIMEOUT (s, default 300),
#   WEFT_WG_BUILD_TIMEOUT (s, default 600); GOOS/GOARCH as Go reads them (a cross build for packaging another arch).
#
# `go install module@version` does not work with a module proxy that refuses `@v/list` (go install asks it for its
# deprecation check), so, as test/setup/ensure-peers.sh does, the module is fetched with `go mod download` and built
# from the module cache with its own go.mod/go.sum (-mod=readonly: nothing is re-resolved). Only Go is needed.
# Idempotent (a binary that reports the pinned version and whose stamp names the pinned module version is kept),
# bounded (download and build run under `timeout`), atomic (built to a temp file in the same directory, checked,
# then renamed over the old one), and one builder at a time (flock).
set -euo pipefail

WG_MODULE=golang.zx2c4.com/wireguard
WG_MODULE_VERSION=v0.0.0-20260522210424-ecfc5a8d5446
WG_REPORTED_VERSION=0.0.20250522 # what this commit's `wireguard-go --version` prints

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${WEFT_WG_OUT:-$ROOT/resources/bin/wireguard-go}"
STAMP="$OUT.version" # the module version the binary was built from (--version alone cannot tell two commits apart)
DOWNLOAD_TIMEOUT="${WEFT_WG_DOWNLOAD_TIMEOUT:-300}"
BUILD_TIMEOUT="${WEFT_WG_BUILD_TIMEOUT:-600}"

optional=0
case "${1:-}" in
  --optional) optional=1 ;;
  "") ;;
  *) echo "usage: $0 [--optional]" >&2; exit 2 ;;
esac

log() { echo "build-wireguard-go: $*"; }
# fail MESSAGE: fatal, or (--optional) one line and exit 0.
fail() {
  if [ "$optional" -eq 1 ]; then
    echo "build-wireguard-go: $* -- skipped; Weft will use wireguard-go from PATH (Debian's 0.0.20220316 is slower). Re-run: bash scripts/build-wireguard-go.sh" >&2
    exit 0
  fi
  echo "build-wireguard-go: error: $*" >&2
  exit 1
}

# is_pinned PATH: PATH runs, reports the pinned version, and its stamp names the pinned module version.
is_pinned() {
  [ -x "$1" ] && [ -s "$1" ] || return 1
  [ "$(cat "$1.version" 2>/dev/null || true)" = "$WG_MODULE_VERSION" ] || return 1
  local first
  first="$(timeout 10 "$1" --version 2>/dev/null | head -n1 || true)"
  [ "$first" = "wireguard-go v$WG_REPORTED_VERSION" ]
}

if is_pinned "$OUT"; then
  exit 0
fi

command -v go >/dev/null 2>&1 || fail "Go is not installed (needed once, at build time, for the pinned wireguard-go; https://go.dev/dl/)"
command -v timeout >/dev/null 2>&1 || fail "coreutils 'timeout' is missing"
# GOTOOLCHAIN=local: never let the go command download another toolchain.
export GOTOOLCHAIN=local

dir="$(dirname "$OUT")"
mkdir -p "$dir" || fail "cannot create $dir"
lockfd=""
exec {lockfd}>"$dir/.wireguard-go.lock"
if command -v flock >/dev/null 2>&1 && ! flock -w "$((DOWNLOAD_TIMEOUT + BUILD_TIMEOUT))" "$lockfd"; then
  fail "timed out waiting for another build ($dir/.wireguard-go.lock)"
fi
if is_pinned "$OUT"; then
  exit 0
fi

work="$(mktemp -d)"
tmp="$dir/.wireguard-go.tmp.$$"
trap 'rm -rf "$work" "$tmp" "$tmp.version"' EXIT
start=$(date +%s)
log "building $WG_MODULE@$WG_MODULE_VERSION -> $OUT ($(go env GOVERSION))"

module="$WG_MODULE@$WG_MODULE_VERSION"
if ! (cd "$work" && GOFLAGS=-mod=mod timeout "$DOWNLOAD_TIMEOUT" go mod download -json "$module" >"$work/dl.json" 2>"$work/dl.err"); then
  cat "$work/dl.json" "$work/dl.err" >&2 || true
  fail "go mod download $module failed (or took more than ${DOWNLOAD_TIMEOUT}s)"
fi
src="$(sed -n 's/^[[:space:]]*"Dir":[[:space:]]*"\(.*\)",\{0,1\}$/\1/p' "$work/dl.json" | head -n1)"
[ -n "$src" ] && [ -f "$src/go.mod" ] || fail "go mod download $module printed no usable Dir"

# The module's root is its main package (main.go). The module cache is read-only, so the build writes nothing into
# $src; -mod=readonly keeps go.mod/go.sum as pinned. CGO off: one static binary that runs on any Linux of the arch.
if ! (cd "$src" && GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0 \
  timeout "$BUILD_TIMEOUT" go build -trimpath -ldflags "-s -w" -o "$tmp" . >"$work/build.log" 2>&1); then
  tail -n 50 "$work/build.log" >&2 || true
  fail "go build of $module failed (or took more than ${BUILD_TIMEOUT}s)"
fi
chmod 0755 "$tmp"
printf '%s\n' "$WG_MODULE_VERSION" >"$tmp.version"
# A cross build (GOOS/GOARCH for another target) cannot run here; check it only when it can.
if [ "$(go env GOOS)/$(go env GOARCH)" = "$(go env GOHOSTOS)/$(go env GOHOSTARCH)" ] && ! is_pinned "$tmp"; then
  fail "the built wireguard-go does not report v$WG_REPORTED_VERSION"
fi
# The binary first, then its stamp: cut off between the two, the next run rebuilds rather than trusting a stale stamp.
mv -f "$tmp" "$OUT"
mv -f "$tmp.version" "$STAMP"
log "built wireguard-go v$WG_REPORTED_VERSION in $(($(date +%s) - start))s -> $OUT"
