#!/usr/bin/env bash
# Builds the pinned real peers the lab tests run against, when they are missing:
#   ${WEFT_PEERS_DIR:-$HOME/.cache/weft-peers}/headscale-<version>/headscale   for each pinned headscale version;
#   ${WEFT_PEERS_DIR:-$HOME/.cache/weft-peers}/tailscale-<version>/{tailscaled,tailscale,derper}   for the pinned
#   Tailscale (derper is tailscale.com/cmd/derper from the same module: the lab's real DERP relay).
# Usage: ensure-peers.sh [PEER...]   (default: every pinned peer)
#   PEER is headscale@v0.29.2, tailscale@v1.100.0, `tailscale` (the pinned tag), or a bare headscale version
#   (v0.29.2 or 0.29.2, the older form).
#
# `go install module@version` does not work here (the module proxy refuses `@v/list`, which go install needs for its
# deprecation check), so each version is fetched with `go mod download` and built from the module cache with its own
# go.mod/go.sum. Only Go is needed. Idempotent (an existing binary is kept), bounded (every download and build runs
# under `timeout`), and atomic (each binary is written to a temp file in the same directory, then renamed).
set -euo pipefail

HEADSCALE_VERSIONS=(v0.29.2 v0.26.1)
TAILSCALE_VERSIONS=(v1.100.0)
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

command -v go >/dev/null 2>&1 || die "Go is not installed (need it to build headscale and tailscale; see https://go.dev/dl/)"
command -v timeout >/dev/null 2>&1 || die "coreutils 'timeout' is missing"
# GOTOOLCHAIN=local: never let the go command download another toolchain; fail clearly instead (below).
export GOTOOLCHAIN=local
GO_VERSION="$(go env GOVERSION)" # e.g. go1.26.8
GO_VERSION_NUM="${GO_VERSION#go}"
GO_VERSION_NUM="${GO_VERSION_NUM%%[!0-9.]*}" # drop suffixes like "rc1" or " X:..."

WORK_DIRS=()
cleanup() { if [ ${#WORK_DIRS[@]} -gt 0 ]; then rm -rf "${WORK_DIRS[@]}"; fi; }
trap cleanup EXIT

# have_all DIR PKG:BIN...: every BIN exists in DIR (non-empty, executable).
have_all() {
  local dir="$1" t
  shift
  for t in "$@"; do
    [ -x "$dir/${t#*:}" ] && [ -s "$dir/${t#*:}" ] || return 1
  done
  return 0
}

# build_module NAME MODULE VERSION PKG:BIN...
# Builds each ./PKG of MODULE@VERSION into $PEERS_DIR/NAME-VERSION/BIN (link flags from ldflags_for, smoke test
# from smoke_test), unless all those binaries already exist.
build_module() {
  local name="$1" modpath="$2" version="$3"
  shift 3
  local -a targets=("$@")
  local dir="$PEERS_DIR/$name-$version"
  local t bin
  if have_all "$dir" "${targets[@]}"; then
    return 0
  fi
  mkdir -p "$dir"

  # One builder per version at a time (a second caller waits for the first, then finds the binaries).
  local lockfd
  exec {lockfd}>"$dir/.lock"
  if command -v flock >/dev/null 2>&1 && ! flock -w "$BUILD_TIMEOUT" "$lockfd"; then
    die "timed out waiting for another build of $name $version ($dir/.lock)"
  fi
  if have_all "$dir" "${targets[@]}"; then
    exec {lockfd}>&-
    return 0
  fi

  local work start end
  work="$(mktemp -d)"
  WORK_DIRS+=("$work")
  start=$(date +%s)
  log "building $name $version -> $dir/{$(for t in "${targets[@]}"; do printf '%s,' "${t#*:}"; done | sed 's/,$//')}"

  local module="$modpath@$version"
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
    die "$name $version needs Go >= $need (its go.mod says 'go $need'), but 'go' is $GO_VERSION. Install a newer Go from https://go.dev/dl/."
  fi

  local ldflags
  ldflags="$(ldflags_for "$name" "$version" "$src")"

  local pkg tmp
  for t in "${targets[@]}"; do
    pkg="${t%%:*}"
    bin="${t#*:}"
    [ -x "$dir/$bin" ] && [ -s "$dir/$bin" ] && continue
    tmp="$dir/.$bin.tmp.$$"
    WORK_DIRS+=("$tmp")
    # The module cache is read-only, so the build writes nothing into $src; -mod=readonly keeps go.mod/go.sum as pinned.
    if ! (cd "$src" && GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0 \
      timeout "$BUILD_TIMEOUT" go build -trimpath -ldflags "$ldflags" -o "$tmp" "./$pkg" >"$work/build.log" 2>&1); then
      rm -f "$tmp"
      tail -n 50 "$work/build.log" >&2 || true
      die "go build of $name $version ./$pkg failed (or took more than ${BUILD_TIMEOUT}s)"
    fi
    smoke_test "$name" "$bin" "$tmp" || { rm -f "$tmp"; die "the built $name $version $bin does not run"; }
    chmod 0755 "$tmp"
    mv -f "$tmp" "$dir/$bin"
  done
  rm -rf "$work"
  end=$(date +%s)
  log "built $name $version in $((end - start))s ($GO_VERSION)"
  exec {lockfd}>&-
}

# ldflags_for NAME VERSION SRC: the link flags for one peer build.
ldflags_for() {
  local name="$1" version="$2" src="$3"
  local ldflags="-s -w"
  case "$name" in
    headscale)
      # Stamp the version where the source has a link-time variable for it (<= 0.28: hscontrol/types.Version;
      # 0.29+ reads the module version from build info, which a build inside the module cache reports as "dev").
      if grep -q '^var Version = ' "$src/hscontrol/types/version.go" 2>/dev/null; then
        ldflags="$ldflags -X github.com/juanfont/headscale/hscontrol/types.Version=$version"
      fi
      ;;
    tailscale)
      # As build_dist.sh does: without the stamps a build from the module cache (no VCS info) calls itself
      # "1.100.0-ERR-BuildInfo".
      ldflags="$ldflags -X tailscale.com/version.longStamp=${version#v} -X tailscale.com/version.shortStamp=${version#v}"
      ;;
  esac
  printf '%s' "$ldflags"
}

# smoke_test NAME BIN PATH: the freshly built binary runs (no network use: version commands only).
smoke_test() {
  local name="$1" bin="$2" path="$3"
  case "$bin" in
    headscale) HEADSCALE_DISABLE_CHECK_UPDATES=true timeout 30 "$path" version >/dev/null 2>&1 ;;
    tailscaled) TS_NO_LOGS_NO_SUPPORT=true timeout 30 "$path" --version >/dev/null 2>&1 ;;
    tailscale) timeout 30 "$path" version >/dev/null 2>&1 ;;
    derper) timeout 30 "$path" -version >/dev/null 2>&1 ;; # prints the version and exits before listening
    *) timeout 30 "$path" --help >/dev/null 2>&1 || true ;;
  esac
}

build_headscale() {
  build_module headscale github.com/juanfont/headscale "$1" cmd/headscale:headscale
}

build_tailscale() {
  build_module tailscale tailscale.com "$1" cmd/tailscaled:tailscaled cmd/tailscale:tailscale cmd/derper:derper
}

is_pinned() {
  local v="$1" p
  shift
  for p in "$@"; do [ "$p" = "$v" ] && return 0; done
  return 1
}

peers=("$@")
if [ ${#peers[@]} -eq 0 ]; then
  for v in "${HEADSCALE_VERSIONS[@]}"; do peers+=("headscale@$v"); done
  for v in "${TAILSCALE_VERSIONS[@]}"; do peers+=("tailscale@$v"); done
fi
for p in "${peers[@]}"; do
  case "$p" in
    headscale@*) name=headscale v="${p#*@}" ;;
    tailscale@*) name=tailscale v="${p#*@}" ;;
    headscale) name=headscale v="${HEADSCALE_VERSIONS[0]}" ;;
    tailscale) name=tailscale v="${TAILSCALE_VERSIONS[0]}" ;;
    *) name=headscale v="$p" ;;
  esac
  case "$v" in v*) ;; *) v="v$v" ;; esac
  case "$name" in
    headscale)
      is_pinned "$v" "${HEADSCALE_VERSIONS[@]}" || die "headscale $v is not a pinned version (pinned: ${HEADSCALE_VERSIONS[*]})"
      build_headscale "$v"
      ;;
    tailscale)
      is_pinned "$v" "${TAILSCALE_VERSIONS[@]}" || die "tailscale $v is not a pinned version (pinned: ${TAILSCALE_VERSIONS[*]})"
      build_tailscale "$v"
      ;;
  esac
done
