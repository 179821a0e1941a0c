#!/usr/bin/env bash
# Runs inside the VM of test/vm/kernel-wg.test.ts, as root, on Debian's kernel (which has WireGuard), over this
# machine's userspace (read-only, with a tmpfs overlay). It prints facts as `WEFTVM key=value` lines; the test on
# the host asserts on them.
#
#   root namespace: `weft server` (control, DERP, STUN) on 10.9.1.1, routing between three hosts
#   ha (10.9.1.2) ── va ── root ── vb ── hb (10.9.2.2)      each runs `weft up`, which picks kernel WireGuard
#                           └──── vc ── hc (10.9.3.2)        the official tailscaled (the lab's pinned build)
#
# Then: tunnel pings both ways between the Weft nodes and between Weft and tailscaled, WireGuard's own endpoint is
# each peer's address (kernel data path, no proxy), status,
# a clean stop (no link, no rules), and a SIGKILL (a kernel link outlives its owner) followed by a restart whose
# stale cleanup removes the orphan. Every wait is bounded.
#
# Environment: WEFTVM_REPO (the checkout), WEFTVM_SRV (a prepared `weft server` data directory), WEFTVM_KEY (a
# reusable pre-auth key in it), WEFTVM_TAILSCALE (the directory with tailscaled and tailscale).
set -u
T0=$(date +%s)
fact() { echo "WEFTVM $1=$2"; }
stage() { echo "WEFTVM t_$1=$(($(date +%s) - T0))"; }
W=(node "$WEFTVM_REPO/src-main/cli/bin.mjs")
ST=/run/weftvm
mkdir -p "$ST"

# wait_for FILE REGEX SECONDS: 0 once FILE has a line matching REGEX, 1 after SECONDS.
wait_for() {
  local i
  for ((i = 0; i < $3; i++)); do
    grep -qE "$2" "$1" 2>/dev/null && return 0
    sleep 1
  done
  return 1
}

# stop PID SECONDS: SIGTERM, then wait (bounded); $STOPPED is then the exit code, or "timeout" (then SIGKILL).
# PID must be a child of this shell, so this is never called in a subshell.
stop() {
  local i
  kill -TERM "$1" 2>/dev/null
  for ((i = 0; i < $2; i++)); do
    if ! kill -0 "$1" 2>/dev/null; then
      wait "$1"
      STOPPED=$?
      return
    fi
    sleep 1
  done
  kill -KILL "$1" 2>/dev/null
  STOPPED=timeout
}

# wait_link NS DEV SECONDS: 0 once the link exists (it is made when the first netmap arrives).
wait_link() {
  local i
  for ((i = 0; i < $3; i++)); do
    ip -n "$1" link show dev "$2" >/dev/null 2>&1 && return 0
    sleep 1
  done
  return 1
}

present() { if "$@" >/dev/null 2>&1; then echo present; else echo absent; fi; }

fact kernel "$(uname -r)"
ip link set lo up
ip netns add ha
ip netns add hb
ip link add va type veth peer name eth0 netns ha
ip netns add hc
ip link add vb type veth peer name eth0 netns hb
ip link add vc type veth peer name eth0 netns hc
ip addr add 10.9.1.1/24 dev va
ip addr add 10.9.2.1/24 dev vb
ip addr add 10.9.3.1/24 dev vc
ip link set va up
ip link set vb up
ip link set vc up
for h in ha hb hc; do
  n=1
  [ "$h" = hb ] && n=2
  [ "$h" = hc ] && n=3
  ip -n "$h" link set lo up
  ip -n "$h" addr add "10.9.$n.2/24" dev eth0
  ip -n "$h" link set eth0 up
  ip -n "$h" route add default via "10.9.$n.1"
done
sysctl -qw net.ipv4.ip_forward=1

cp -a "$WEFTVM_SRV" "$ST/srv"
"${W[@]}" server --listen 10.9.1.1:8080 --server-url http://10.9.1.1:8080 --data "$ST/srv" --derp --stun 10.9.1.1:3478 >"$ST/srv.log" 2>&1 &
SRV=$!
if ! wait_for "$ST/srv.log" 'weft server: ready on' 180; then
  fact server failed
  tail -c 2000 "$ST/srv.log"
  exit 1
fi
fact server ready
stage server

# up HOST NAME IFACE: starts `weft up` in HOST, as a child of this shell; its PID is then in $UP.
up() {
  ip netns exec "$1" "${W[@]}" up --login-server http://10.9.1.1:8080 --auth-key "$WEFTVM_KEY" --hostname "$2" --state-dir "$ST/$2" --iface "$3" >>"$ST/$2.log" 2>&1 &
  UP=$!
}
# wait_up NAME PID SECONDS: 0 once NAME's log says connected; 2 at once if its process has exited; 1 after SECONDS.
wait_up() {
  local i
  for ((i = 0; i < $3; i++)); do
    grep -qE 'weft: connected as' "$ST/$1.log" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || return 2
    sleep 1
  done
  return 1
}
# connect NAME HOST IFACE: waits (240 s) for the `weft up` just started as NAME to connect; $UP is then its PID.
# Under software emulation (QEMU's TCG, no KVM here) CI saw node die now and then with SIGILL (exit 132) or
# SIGSEGV (139) before connecting, at a first start and at a restart alike, under `-cpu max` and Westmere; the
# same code runs cleanly on hardware and in most VM runs. Such a death is the emulator's, not Weft's: it is
# recorded as the fact crash_NAME (the test prints it) with the log, and the node is started once more. Any other
# exit fails.
connect() {
  local rc code
  wait_up "$1" "$UP" 240
  rc=$?
  if [ "$rc" = 2 ]; then
    wait "$UP"
    code=$?
    fact "crash_$1" "$code"
    tail -c 3000 "$ST/$1.log"
    if [ "$code" = 132 ] || [ "$code" = 139 ]; then
      up "$2" "$1" "$3"
      wait_up "$1" "$UP" 240
      rc=$?
    fi
  fi
  return "$rc"
}
# tailscaled in hc (TUN tsvm0; DERP over plain HTTP, as weft server serves it without TLS).
TS=(env TS_NO_LOGS_NO_SUPPORT=true TS_LOGS_DIR="$ST/ts" TS_DEBUG_USE_DERP_HTTP=true)
mkdir -p "$ST/ts"
ip netns exec hc "${TS[@]}" "$WEFTVM_TAILSCALE/tailscaled" --state "$ST/ts/state" --statedir "$ST/ts" --socket "$ST/ts/sock" --tun tsvm0 --port 41641 --no-logs-no-support >"$ST/ts.log" 2>&1 &
TSD=$!
up ha vma weftka
PA=$UP
up hb vmb weftkb
PB=$UP
for n in vma vmb; do
  if [ $n = vma ]; then UP=$PA; connect vma ha weftka; else UP=$PB; connect vmb hb weftkb; fi
  if [ $? = 0 ]; then fact "connected_$n" yes; else
    fact "connected_$n" no
    tail -c 3000 "$ST/$n.log"
    exit 1
  fi
  if [ $n = vma ]; then PA=$UP; else PB=$UP; fi
done
stage connected
for i in $(seq 1 60); do [ -S "$ST/ts/sock" ] && break; sleep 1; done
ip netns exec hc "${TS[@]}" "$WEFTVM_TAILSCALE/tailscale" --socket "$ST/ts/sock" up --login-server http://10.9.1.1:8080 --auth-key "$WEFTVM_KEY" --hostname vmt --accept-dns=false --netfilter-mode=off --timeout 180s >"$ST/tsup.log" 2>&1
fact ts_up "$?"
IPT=$(ip netns exec hc "${TS[@]}" "$WEFTVM_TAILSCALE/tailscale" --socket "$ST/ts/sock" ip -4 2>/dev/null | head -1)
fact ip_vmt "$IPT"
ipof() { sed -n 's/.*weft: connected as [^ ]* \["\(100\.[0-9.]*\)\/32".*/\1/p' "$ST/$1.log" | head -1; }
IPA=$(ipof vma)
IPB=$(ipof vmb)
fact ip_vma "$IPA"
fact ip_vmb "$IPB"
fact device_log_vma "$(grep -o 'WireGuard device: [a-z-]*' "$ST/vma.log" | head -1)"
linktype() { ip -n "$1" -d link show dev "$2" | grep -owE 'wireguard|tun' | head -1; }
wait_link ha weftka 120
wait_link hb weftkb 120
fact linktype_vma "$(linktype ha weftka)"
fact linktype_vmb "$(linktype hb weftkb)"

# ping_count NS IP SECONDS: how many of one-at-a-time pings (1 s each) got a reply, stopping at the third reply or
# after SECONDS. One ping per try, because ping's own count also ends on send errors (a route or a WireGuard key
# not there yet), and under software emulation a first handshake can take several seconds. The last failed try's
# output is the fact ping_err_NS when no try got a reply.
ping_count() {
  local ok=0 end=$((SECONDS + $3)) out
  while ((ok < 3 && SECONDS < end)); do
    if out=$(ip netns exec "$1" ping -n -c 1 -W 1 "$2" 2>&1); then ok=$((ok + 1)); else
      echo "$out" >"$ST/ping_err_$1"
      sleep 0.5
    fi
  done
  echo "$ok"
  if [ "$ok" = 0 ]; then echo "WEFTVM ping_err_$1=$(tr '\n' ' ' <"$ST/ping_err_$1")" >&2; fi
}
(ping_count hb "$IPA" 20 >"$ST/ping_b") &
PING=$!
fact ping_vma_to_vmb "$(ping_count ha "$IPB" 20)"
wait "$PING"
fact ping_vmb_to_vma "$(cat "$ST/ping_b")"
# Weft (kernel WireGuard) <-> tailscaled, both ways.
(ping_count hc "$IPA" 20 >"$ST/ping_t") &
PING=$!
fact ping_vma_to_vmt "$(ping_count ha "$IPT" 20)"
wait "$PING"
fact ping_vmt_to_vma "$(cat "$ST/ping_t")"
# Direct: Weft's WireGuard sends straight to each peer's address (no 127.0.0.1 proxy).
endpoints() { ip netns exec "$1" wg show "$2" endpoints | cut -f2 | sort | paste -sd, -; }
for i in $(seq 1 20); do
  e=$(endpoints ha weftka)
  case "$e" in *10.9.2.2:*10.9.3.2:*) break ;; esac
  ping_count ha "$IPB" 2 >/dev/null
  ping_count ha "$IPT" 2 >/dev/null
done
fact wg_endpoints_vma "$(endpoints ha weftka)"
fact ts_path_vma "$(ip netns exec hc "${TS[@]}" "$WEFTVM_TAILSCALE/tailscale" --socket "$ST/ts/sock" status --json | node -e '
  let t = ""; process.stdin.on("data", (d) => (t += d)).on("end", () => {
    const s = JSON.parse(t); const p = Object.values(s.Peer ?? {}).find((q) => q.HostName === "vma");
    console.log(p ? (p.CurAddr || (p.Relay ? "relay:" + p.Relay : "none")) : "unknown");
  });')"
fact wg_endpoints_vmb "$(endpoints hb weftkb)"
fact wg_handshake_vma "$(ip netns exec ha wg show weftka latest-handshakes | cut -f2)"
fact dp_table_vma "$(present ip netns exec ha nft list table inet weft_dp_weftka)"
# `weft status` once more (bounded) if its answer is not JSON: the emulated VM is slow, and one CI run got none.
for i in 1 2 3; do
  ip netns exec ha "${W[@]}" status --json --state-dir "$ST/vma" >"$ST/vma.status.json" 2>"$ST/vma.status.err" &&
    node -e 'JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))' "$ST/vma.status.json" 2>/dev/null && break
  sleep 5
done
fact status_err_vma "$(tail -c 400 "$ST/vma.status.err" | tr '\n' ' ')"
fact status_vma "$(node -e '
  const s = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const p = s.peers.find((q) => q.name === "vmb");
  console.log(JSON.stringify({ device: s.dataPath?.device ?? null, mode: s.dataPath?.mode ?? null, path: p?.path?.kind ?? null, rx: p?.rxBytes ?? 0 }));
' "$ST/vma.status.json" 2>&1 | tail -1)"

stage pinged
# A clean stop removes the link, its routes and the data-path table.
stop "$PA" 60
fact exit_vma "$STOPPED"
fact link_after_stop_vma "$(present ip -n ha link show dev weftka)"
fact dp_after_stop_vma "$(present ip netns exec ha nft list table inet weft_dp_weftka)"
fact routes_after_stop_vma "$(ip -n ha route show | grep -c weftka)"

stage stopped
# SIGKILL: the kernel link stays (nothing dies with the process); the next start's stale cleanup deletes it.
kill -KILL "$PB"
wait "$PB" 2>/dev/null
fact link_after_kill_vmb "$(present ip -n hb link show dev weftkb)"
fact alias_vmb "$(ip -n hb -o link show dev weftkb | grep -o 'alias weft-owner=[0-9:]*' | cut -d= -f1)"
: >"$ST/vmb.log"
up hb vmb weftkb
connect vmb hb weftkb
rc=$?
PB=$UP
if [ "$rc" = 0 ]; then fact restarted_vmb yes; else
  fact restarted_vmb no
  tail -c 3000 "$ST/vmb.log"
fi
fact stale_removed_vmb "$(grep -c 'removed what an earlier run left.*weftkb' "$ST/vmb.log")"
wait_link hb weftkb 120
fact linktype_restart_vmb "$(linktype hb weftkb)"
stop "$PB" 60
fact exit_vmb "$STOPPED"
fact link_after_stop_vmb "$(present ip -n hb link show dev weftkb)"
stop "$TSD" 30
fact exit_tailscaled "$STOPPED"
stop "$SRV" 30
fact exit_server "$STOPPED"
stage done
fact done yes
