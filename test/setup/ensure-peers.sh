#!/usr/bin/env bash
# Builds the pinned real peers the lab tests run against, when they are missing:
#   ${WEFT_PEERS_DIR:-$HOME/.cache/weft-peers}/headscale-<version>/headscale   for each pinned headscale version.
# Usage: ensure-peers.sh [VERSION...]   (default: every pinned version; VERSION like v0.29.2 or 0.29.2)
#
# `go install module@version` does not work here (the module proxy refuses `@v/list`, which go install needs for its
# deprecation check), so each version is fetched with `go mod download` and built from the module cache with its own
# go.mod/go.sum. Only Go is needed. Idempotent (an existing binary is kept), bounded (every download and build runs
# under `timeout`), and atomic (the binary is written to a temp file in the same directory, then renamed).
set -euo pipefail

HEADSCALE_VERSIONS=(v0.29.2 v0.26.1)
PEERS_DIR="${WEFT_PEERS_DIR:-${HOME:?set HOME or WEFT_PEERS_DIR}/.cache/weft-peers}"
DOWNLOAD_TIMEOUT="${WEFT_PEERS_DOWNLOAD_TIMEOUT:-900}" # seconds
BUILD_TIMEOUT="${WEFT_PEERS_BUILD_TIMEOUT:-1800}"       # seconds

log() { echo "ensure-peers: $*"; }
die() { echo "ensure-peers: error: $*" >&2; exit 1; }

# "1.26.8" >= "1.26.4"? (numeric, component-wise; missing components count as 0)
version_ge() {
  local IFS=.
  local -a a=($1) b=($2)
  local i
  for ((i = 0; i < 3; i++)); do
    local x="${a[i]:-0}" y="${b[i]:-0}"
    if ((10#$x > 10#$y)); then return 0; fi
    if ((10#$x < 10#$y)); then return 1; fi
  done
  return 0
}

command -v go >/dev/null 2>&1 || die "Go is not installed (need it to build headscale; see https://go.dev/dl/)"
command -v timeout >/dev/null 2>&1 || die "coreutils 'timeout' is missing"
# GOTOOLCHAIN=local: never let the go command download another toolchain; fail clearly instead (below).
export GOTOOLCHAIN=local
GO_VERSION="$(go env GOVERSION)" # e.g. go1.26.8
GO_VERSION_NUM="${GO_VERSION#go}"
GO_VERSION_NUM="${GO_VERSION_NUM%%[!0-9.]*}" # drop suffixes like "rc1" or " X:..."

WORK_DIRS=()
cleanup() { if [ ${#WORK_DIRS[@]} -gt 0 ]; then rm -rf "${WORK_DIRS[@]}"; fi; }
trap cleanup EXIT

build_headscale() {
  local version="$1"
  local dir="$PEERS_DIR/headscale-$version"
  local dest="$dir/headscale"
  if [ -x "$dest" ] && [ -s "$dest" ]; then
    return 0
  fi
  mkdir -p "$dir"

  # One builder per version at a time (a second caller waits for the first, then finds the binary).
  local lockfd
  exec {lockfd}>"$dir/.lock"
  if command -v flock >/dev/null 2>&1 && ! flock -w "$BUILD_TIMEOUT" "$lockfd"; then
    die "timed out waiting for another build of headscale $version ($dir/.lock)"
  fi
  if [ -x "$dest" ] && [ -s "$dest" ]; then
    exec {lockfd}>&-
    return 0
  fi

  local work start end
  work="$(mktemp -d)"
  WORK_DIRS+=("$work")
  start=$(date +%s)
  log "building headscale $version -> $dest"

  local module="github.com/juanfont/headscale@$version"
  if ! (cd "$work" && GOFLAGS=-mod=mod timeout "$DOWNLOAD_TIMEOUT" go mod download -json "$module" >"$work/dl.json" 2>"$work/dl.err"); then
    cat "$work/dl.json" "$work/dl.err" >&2 || true
    die "go mod download $module failed (or took more than ${DOWNLOAD_TIMEOUT}s)"
  fi
  local src
  src="$(sed -n 's/^[[:space:]]*"Dir":[[:space:]]*"\(.*\)",\{0,1\}$/\1/p' "$work/dl.json" | head -n1)"
  [ -n "$src" ] && [ -f "$src/go.mod" ] || die "go mod download $module printed no usable Dir: $(cat "$work/dl.json")"

  # The module's own minimum Go version (its go.mod `go` line; a `toolchain` line is only a preference).
  local need
  need="$(sed -n 's/^go[[:space:]]\{1,\}\([0-9][0-9.]*\).*$/\1/p' "$src/go.mod" | head -n1)"
  if [ -n "$need" ] && ! version_ge "$GO_VERSION_NUM" "$need"; then
    die "headscale $version needs Go >= $need (its go.mod says 'go $need'), but 'go' is $GO_VERSION. Install a newer Go from https://go.dev/dl/."
  fi

  # Stamp the version where the source has a link-time variable for it (<= 0.28: hscontrol/types.Version;
  # 0.29+ reads the module version from build info, which a build inside the module cache reports as "dev").
  local ldflags="-s -w"
  if grep -q '^var Version = ' "$src/hscontrol/types/version.go" 2>/dev/null; then
    ldflags="$ldflags -X github.com/juanfont/headscale/hscontrol/types.Version=$version"
  fi

  local tmp="$dir/.headscale.tmp.$$"
  WORK_DIRS+=("$tmp")
  # The module cache is read-only, so the build writes nothing into $src; -mod=readonly keeps go.mod/go.sum as pinned.
  if ! (cd "$src" && GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0 \
    timeout "$BUILD_TIMEOUT" go build -trimpath -ldflags "$ldflags" -o "$tmp" ./cmd/headscale >"$work/build.log" 2>&1); then
    rm -f "$tmp"
    tail -n 50 "$work/build.log" >&2 || true
    die "go build of headscale $version failed (or took more than ${BUILD_TIMEOUT}s)"
  fi
  HEADSCALE_DISABLE_CHECK_UPDATES=true "$tmp" version >/dev/null 2>&1 || { rm -f "$tmp"; die "the built headscale $version does not run"; }
  chmod 0755 "$tmp"
  mv -f "$tmp" "$dest"
  rm -rf "$work"
  end=$(date +%s)
  log "built headscale $version in $((end - start))s ($GO_VERSION)"
  exec {lockfd}>&-
}

versions=("$@")
if [ ${#versions[@]} -eq 0 ]; then versions=("${HEADSCALE_VERSIONS[@]}"); fi
for v in "${versions[@]}"; do
  case "$v" in v*) ;; *) v="v$v" ;; esac
  known=0
  for p in "${HEADSCALE_VERSIONS[@]}"; do [ "$p" = "$v" ] && known=1; done
  [ $known -eq 1 ] || die "headscale $v is not a pinned version (pinned: ${HEADSCALE_VERSIONS[*]})"
  build_headscale "$v"
done
