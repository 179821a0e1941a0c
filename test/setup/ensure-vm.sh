#!/usr/bin/env bash
# The kernel-WireGuard VM test (test/vm/kernel-wg.test.ts) boots Debian's own kernel under qemu, because the
# machines the tests run on have a kernel without WireGuard. This puts in place, once:
#   - qemu-system-x86, busybox-static (the initramfs) and kmod (depmod; modprobe inside the VM), from Debian;
#   - Debian's current linux-image-*-amd64 package, unpacked (not installed) with its module index built, in
#     $WEFT_VM_DIR (default ~/.cache/weft-vm/linux-<version>); `current` points at it.
# Idempotent and quiet when present. Needs root (apt).
set -euo pipefail

declare -A need=([qemu-system-x86_64]=qemu-system-x86 [depmod]=kmod)
missing=()
for cmd in "${!need[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
done
# The initramfs needs the static busybox (Debian's plain `busybox` is dynamically linked and cannot run there).
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed' || missing+=(busybox-static)
if [ ${#missing[@]} -gt 0 ]; then
  echo "ensure-vm: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

VM_DIR="${WEFT_VM_DIR:-${HOME:?set HOME or WEFT_VM_DIR}/.cache/weft-vm}"
mkdir -p "$VM_DIR"
# The image package linux-image-amd64 depends on today (e.g. linux-image-6.1.0-57-amd64).
kernel_pkg() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }' || true; }
pkg="$(kernel_pkg)"
if [ -z "$pkg" ] && [ ! -f "$VM_DIR/current/ready" ]; then
  apt-get update -qq # a machine whose package lists were never fetched
  pkg="$(kernel_pkg)"
fi
if [ -z "$pkg" ] && [ -f "$VM_DIR/current/ready" ]; then
  exit 0 # no package lists, but a kernel from an earlier run is there
fi
if [ -z "$pkg" ]; then
  echo "ensure-vm: cannot find Debian's kernel image package (apt-cache depends linux-image-amd64)" >&2
  exit 1
fi
release="${pkg#linux-image-}"
dest="$VM_DIR/linux-$release"
if [ ! -f "$dest/ready" ]; then
  echo "ensure-vm: fetching $pkg"
  tmp="$(mktemp -d "$VM_DIR/.fetch.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  if ! (cd "$tmp" && apt-get download -qq "$pkg" 2>"$tmp/err"); then
    echo "ensure-vm: apt-get download $pkg failed: $(cat "$tmp/err")" >&2
    [ -f "$VM_DIR/current/ready" ] && exit 0 # stale package lists: keep the kernel from an earlier run
    exit 1
  fi
  mkdir -p "$tmp/root"
  dpkg-deb -x "$tmp"/*.deb "$tmp/root"
  PATH="$PATH:/usr/sbin:/sbin" depmod -b "$tmp/root" "$release"
  rm -rf "$dest"
  mv "$tmp/root" "$dest"
  echo "$release" > "$dest/ready"
fi
ln -sfn "linux-$release" "$VM_DIR/current"
