#!/usr/bin/env bash
# Installs what the tests need when it is missing: Debian packages for the NAT lab (nftables, conntrack,
# coturn, miniupnpd, ...), the Go-built peers (headscale, tailscaled, derper; ensure-peers.sh) and the pinned
# wireguard-go (scripts/build-wireguard-go.sh).
# Idempotent and quiet when everything is present. Needs root (the lab uses network namespaces).
set -euo pipefail

# command -> Debian package
declare -A need=(
  [ip]=iproute2
  [systemd-analyze]=systemd # checks weftd.service (test/unit/host/service.test.ts)
  [runuser]=util-linux # the local API as an unprivileged user (test/lab/weftd.test.ts)
  [getent]=libc-bin
  [nft]=nftables
  [conntrack]=conntrack
  [iptables]=iptables
  [turnserver]=coturn
  [turnutils_natdiscovery]=coturn
  [stun]=stun-client
  [miniupnpd]=miniupnpd
  [ping]=iputils-ping
  [tcpdump]=tcpdump
  [wireguard-go]=wireguard-go # Debian's 0.0.20220316: the fallback when the pinned build is missing, and the bench's reference
  [wg]=wireguard-tools
  [iperf3]=iperf3
  [dnsmasq]=dnsmasq-base # the lab tailnet's upstream and split-DNS resolvers (test/lab/tailnet.test.ts)
  [chromium]=chromium # the end-to-end UI test (test/lab/app-e2e.test.ts) drives Debian's Chromium
)
missing=()
for cmd in "${!need[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
done
# miniupnpd needs its nftables backend to manage nft rules.
dpkg-query -W -f='${Status}' miniupnpd-nftables 2>/dev/null | grep -q 'install ok installed' || missing+=(miniupnpd-nftables)
# A font for Chromium's screenshots (without recommends, chromium pulls in none).
dpkg-query -W -f='${Status}' fonts-dejavu-core 2>/dev/null | grep -q 'install ok installed' || missing+=(fonts-dejavu-core)

if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t pkgs < <(printf '%s\n' "${missing[@]}" | sort -u)
  if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-deps: missing Debian packages: ${pkgs[*]} (run as root, or: sudo apt-get install ${pkgs[*]})" >&2
    exit 1
  fi
  echo "ensure-deps: installing ${pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Debian's miniupnpd asks a debconf question at install; the defaults are fine (we never start its service).
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi
bash "$(dirname "${BASH_SOURCE[0]}")/ensure-peers.sh"
# The pinned wireguard-go the engine runs (resources/bin; `npm ci` builds it too when Go is there). Here a failed
# build is fatal, so the tests never run against Debian's old one by accident.
bash "$(dirname "${BASH_SOURCE[0]}")/../../scripts/build-wireguard-go.sh"
# qemu and Debian's kernel for the kernel-WireGuard VM test (test/vm/kernel-wg.test.ts): this machine's kernel has no
# WireGuard module.
bash "$(dirname "${BASH_SOURCE[0]}")/ensure-vm.sh"
