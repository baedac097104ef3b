#!/usr/bin/env bash
# A NAT traversal testbed in network namespaces: a public segment and two private hosts,
# each behind its own NAT router, for testing peers that must find and reach each other
# through NAT (relay, hole punching, external address discovery).
#
#   testbed.sh up <prefix> [--symmetric]   build it (fails if any part already exists)
#   testbed.sh down <prefix>                remove it (idempotent)
#   testbed.sh check <prefix>               verify reachability and NAT behaviour
#
# <prefix>: 1-6 characters [a-z0-9]; it keeps parallel testbeds apart. Run as root.
#
#   <prefix>-pub   bridge 10.77.0.1/24: the public segment (run the relay/bootstrap here)
#      |-- <prefix>-nat1  WAN 10.77.0.11/24, LAN 192.168.1.1/24 -- <prefix>-a  192.168.1.2/24
#      `-- <prefix>-nat2  WAN 10.77.0.12/24, LAN 192.168.2.1/24 -- <prefix>-b  192.168.2.2/24
#
# The routers masquerade their LAN out of their WAN. By default that is Linux's plain
# `masquerade`: conntrack keeps the inside source port when it is free, so one inside
# endpoint keeps one outside endpoint whatever it talks to (endpoint-independent mapping,
# hole punching works). With --symmetric it is `masquerade fully-random`: every new flow gets
# a random outside port (endpoint-dependent, "symmetric" NAT: hole punching fails, relays
# are needed). Either way the routers forward only established/related traffic from WAN to
# LAN and drop anything new, and drop new inbound connections to themselves (ICMP echo
# excepted). The routers have no route to the other LAN: as on the Internet, a private
# address behind another NAT is unreachable. IPv6 is disabled on every testbed link.
#
# Everything lives inside the five namespaces: veth ends are created directly in them, and
# the host's own namespace, routes and firewall are never touched. Interface names derive
# from a hash of the prefix and stay under 15 characters. `down` stops any process still
# running inside the namespaces (they can only be the test's own) and deletes them.
#
# Run a program in a node with `ip netns exec <prefix>-a <program>`.
set -Eeuo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
nodes=(pub nat1 nat2 a b)

die() { echo "testbed.sh: $*" >&2; exit 2; }
usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

# Sets the global names for prefix $1.
names() {
  local prefix="$1"
  [[ "$prefix" =~ ^[a-z0-9]{1,6}$ ]] || die "prefix '$prefix' must be 1-6 characters [a-z0-9]"
  local h
  h="t$(printf '%s' "$prefix" | sha256sum | cut -c1-6)"   # 7 characters
  ns_pub="$prefix-pub" ns_nat1="$prefix-nat1" ns_nat2="$prefix-nat2" ns_a="$prefix-a" ns_b="$prefix-b"
  if_br="${h}br"                       # the bridge in pub
  if_p1="${h}p1" if_w1="${h}w1"        # pub port <-> nat1 WAN
  if_p2="${h}p2" if_w2="${h}w2"        # pub port <-> nat2 WAN
  if_l1="${h}l1" if_ha="${h}a"         # nat1 LAN <-> a
  if_l2="${h}l2" if_hb="${h}b"         # nat2 LAN <-> b
}

ns_exists() { [[ -e "/run/netns/$1" ]]; }
in_ns() { local ns="$1"; shift; ip netns exec "$ns" "$@"; }

need_tools() {
  local tool missing=()
  for tool in ip nft sha256sum; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  ((${#missing[@]} == 0)) || die "missing ${missing[*]} (apt-get install iproute2 nftables coreutils)"
  ((EUID == 0)) || die "must run as root (it creates network namespaces)"
}

# A veth pair with one end in each namespace, both created there directly.
veth() { ip link add "$2" netns "$1" type veth peer name "$4" netns "$3"; }

no_ipv6() {
  local ns="$1" ifname="$2"
  if [[ -e /proc/sys/net/ipv6 ]]; then
    in_ns "$ns" sysctl -qw "net.ipv6.conf.$ifname.disable_ipv6=1"
  fi
}

# The NAT router's rules: $1 namespace, $2 WAN, $3 LAN, $4 LAN subnet, $5 masquerade flags.
nat_rules() {
  in_ns "$1" nft -f - <<EOF
table inet aurae_testbed {
	counter wan_new_dropped { }

	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr $4 oifname "$2" masquerade $5
	}

	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		iifname "$3" oifname "$2" accept
		counter name "wan_new_dropped" drop
	}

	chain input {
		type filter hook input priority filter; policy accept;
		iifname "$2" ct state established,related accept
		iifname "$2" icmp type echo-request accept
		iifname "$2" counter name "wan_new_dropped" drop
	}
}
EOF
}

# A router: $1 ns, $2 WAN if, $3 WAN addr, $4 pub port if, $5 LAN if, $6 LAN addr,
# $7 host ns, $8 host if, $9 host addr, ${10} LAN subnet, ${11} masquerade flags.
router() {
  local ns="$1" wan="$2" wan_addr="$3" port="$4" lan="$5" lan_addr="$6"
  local host_ns="$7" host_if="$8" host_addr="$9" subnet="${10}" flags="${11}"
  veth "$ns_pub" "$port" "$ns" "$wan"
  veth "$ns" "$lan" "$host_ns" "$host_if"
  ip -n "$ns_pub" link set "$port" master "$if_br"
  ip -n "$ns_pub" link set "$port" up
  local ifname
  for ifname in "$wan" "$lan"; do no_ipv6 "$ns" "$ifname"; done
  no_ipv6 "$host_ns" "$host_if"
  in_ns "$ns" sysctl -qw net.ipv4.ip_forward=1
  in_ns "$ns" sysctl -qw net.ipv4.conf.all.send_redirects=0
  ip -n "$ns" addr add "$wan_addr/24" dev "$wan"
  ip -n "$ns" addr add "$lan_addr/24" dev "$lan"
  ip -n "$ns" link set "$wan" up
  ip -n "$ns" link set "$lan" up
  nat_rules "$ns" "$wan" "$lan" "$subnet" "$flags"
  in_ns "$host_ns" sysctl -qw net.ipv4.ip_forward=0
  ip -n "$host_ns" addr add "$host_addr/24" dev "$host_if"
  ip -n "$host_ns" link set "$host_if" up
  ip -n "$host_ns" route add default via "$lan_addr" dev "$host_if"
}

cmd_up() {
  local prefix="$1" mode="$2" flags=""
  names "$prefix"
  need_tools
  [[ "$mode" == symmetric ]] && flags="fully-random"
  local node
  for node in "${nodes[@]}"; do
    ns_exists "$prefix-$node" && die "namespace $prefix-$node already exists: run 'testbed.sh down $prefix' first"
  done
  trap 'echo "testbed.sh: up failed; removing what was built" >&2; cmd_down "$prefix" >/dev/null 2>&1 || true' ERR
  for node in "${nodes[@]}"; do
    ip netns add "$prefix-$node"
    ip -n "$prefix-$node" link set lo up
  done
  in_ns "$ns_pub" sysctl -qw net.ipv4.ip_forward=0
  ip -n "$ns_pub" link add "$if_br" type bridge
  no_ipv6 "$ns_pub" "$if_br"
  ip -n "$ns_pub" addr add 10.77.0.1/24 dev "$if_br"
  ip -n "$ns_pub" link set "$if_br" up
  router "$ns_nat1" "$if_w1" 10.77.0.11 "$if_p1" "$if_l1" 192.168.1.1 "$ns_a" "$if_ha" 192.168.1.2 192.168.1.0/24 "$flags"
  router "$ns_nat2" "$if_w2" 10.77.0.12 "$if_p2" "$if_l2" 192.168.2.1 "$ns_b" "$if_hb" 192.168.2.2 192.168.2.0/24 "$flags"
  trap - ERR
  echo "testbed $prefix is up ($([[ $mode == symmetric ]] && echo symmetric || echo endpoint-independent) NAT):"
  echo "  $ns_pub   10.77.0.1 (public segment)"
  echo "  $ns_nat1  10.77.0.11 / 192.168.1.1   $ns_a  192.168.1.2"
  echo "  $ns_nat2  10.77.0.12 / 192.168.2.1   $ns_b  192.168.2.2"
}

cmd_down() {
  local prefix="$1" node ns pids
  names "$prefix"
  for node in "${nodes[@]}"; do
    ns="$prefix-$node"
    ns_exists "$ns" || continue
    pids="$(ip netns pids "$ns" 2>/dev/null || true)"
    if [[ -n "$pids" ]]; then
      # shellcheck disable=SC2086 # one pid per word
      kill -TERM $pids 2>/dev/null || true
      for _ in 1 2 3 4 5 6 7 8 9 10; do
        [[ -z "$(ip netns pids "$ns" 2>/dev/null || true)" ]] && break
        sleep 0.2
      done
      pids="$(ip netns pids "$ns" 2>/dev/null || true)"
      if [[ -n "$pids" ]]; then
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
      fi
    fi
    ip netns del "$ns" 2>/dev/null || true
  done
  for node in "${nodes[@]}"; do
    if ns_exists "$prefix-$node"; then
      echo "testbed.sh: namespace $prefix-$node is still there" >&2
      return 1
    fi
  done
  echo "testbed $prefix is down"
}

# --- check -----------------------------------------------------------------------------

passed=0 failed=0 listeners=() temp_routes=()

ok() { passed=$((passed + 1)); echo "ok   $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
expect() { local what="$1"; shift; if "$@"; then ok "$what"; else fail "$what"; fi; }

probe() { local ns="$1"; shift; in_ns "$ns" python3 "$here/probe.py" "$@"; }

check_cleanup() {
  local pid route
  for pid in "${listeners[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${listeners[@]}"; do wait "$pid" 2>/dev/null || true; done
  listeners=()
  for route in "${temp_routes[@]}"; do
    # shellcheck disable=SC2086 # "<ns> <subnet> <gateway>"
    set -- $route
    ip -n "$1" route del "$2" via "$3" 2>/dev/null || true
  done
  temp_routes=()
}

# Starts a probe listener in $1 (the rest: proto host ports); its output goes to $out.
listen() {
  local ns="$1"; shift
  out="$(mktemp)"
  # A simple command, so that $! is the listener itself (ip netns exec execs python3).
  ip netns exec "$ns" python3 "$here/probe.py" listen "$@" 30 >"$out" 2>&1 &
  listeners+=("$!")
  local _
  for _ in $(seq 50); do
    grep -q '^ready$' "$out" && return 0
    sleep 0.1
  done
  echo "testbed.sh: the listener in $ns did not start: $(cat "$out")" >&2
  return 1
}

# Stops the listener started last and prints what it saw.
heard() {
  local pid="${listeners[-1]}"
  sleep 0.3
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset 'listeners[-1]'
  grep -v '^ready$' "$out" || true
  rm -f "$out"
}

connects() { probe "$1" connect "$2" "$3" 2 >/dev/null; }
refused() { ! connects "$@"; }
pings() { in_ns "$1" ping -c 1 -W 2 -q "$2" >/dev/null 2>&1; }
# Listener output $1 shows both WAN addresses and no private one.
saw_both_wans() { [[ "$1" == *"10.77.0.11 "* && "$1" == *"10.77.0.12 "* && "$1" != *192.168.* ]]; }
# Listener output $1 shows nothing from the public segment.
saw_no_wan() { [[ "$1" != *10.77.0.* ]]; }

dropped_count() {
  in_ns "$1" nft list counter inet aurae_testbed wan_new_dropped | awk '/packets/ { print $2 }'
}

# Unsolicited traffic from the public side to private host $2 behind router $1 ($3 its
# address, $4 the LAN subnet, $5 the router's WAN): dropped by the router's firewall. pub gets
# a route to the LAN for the duration, so that the firewall, not routing, is what is tested.
check_inbound_dropped() {
  local router_ns="$1" host_ns="$2" host_addr="$3" subnet="$4" wan="$5" before after seen
  ip -n "$ns_pub" route add "$subnet" via "$wan"
  temp_routes+=("$ns_pub $subnet $wan")
  before="$(dropped_count "$router_ns")"
  expect "the listener in $host_ns accepts its own connection (the probe is real)" \
    connects "$host_ns" "$host_addr" 47005
  expect "pub cannot open a TCP connection to $host_addr (routed to $wan, dropped)" \
    refused "$ns_pub" "$host_addr" 47005
  listen "$host_ns" udp 0.0.0.0 47006
  probe "$ns_pub" udp-send "$host_addr" 47006 >/dev/null
  seen="$(heard)"
  expect "a UDP datagram from pub to $host_addr does not arrive" test -z "$seen"
  after="$(dropped_count "$router_ns")"
  expect "$router_ns's firewall counted the dropped packets ($before -> $after)" test "$after" -gt "$before"
  check_cleanup
}

cmd_check() {
  local prefix="$1" node mode seen ports
  names "$prefix"
  need_tools
  command -v python3 >/dev/null 2>&1 || die "missing python3 (apt-get install python3)"
  command -v ping >/dev/null 2>&1 || die "missing ping (apt-get install iputils-ping)"
  for node in "${nodes[@]}"; do
    ns_exists "$prefix-$node" || die "namespace $prefix-$node is missing: run 'testbed.sh up $prefix' first"
  done
  mode=eim
  # Read whole, then match: `nft ... | grep -q` under pipefail fails whenever grep exits
  # before nft has written everything (SIGPIPE), which made the mode flip under load.
  local chain
  chain="$(in_ns "$ns_nat1" nft list chain inet aurae_testbed postrouting)"
  [[ $chain == *fully-random* ]] && mode=symmetric
  trap check_cleanup EXIT
  echo "checking testbed $prefix ($([[ $mode == symmetric ]] && echo symmetric || echo endpoint-independent) NAT)"

  expect "a pings the public node 10.77.0.1" pings "$ns_a" 10.77.0.1
  expect "b pings the public node 10.77.0.1" pings "$ns_b" 10.77.0.1

  # Outbound TCP works and is masqueraded to the router's WAN address.
  listen "$ns_pub" tcp 10.77.0.1 47001
  expect "a opens a TCP connection to 10.77.0.1" connects "$ns_a" 10.77.0.1 47001
  expect "b opens a TCP connection to 10.77.0.1" connects "$ns_b" 10.77.0.1 47001
  seen="$(heard)"
  expect "pub sees a as 10.77.0.11 and b as 10.77.0.12 (masqueraded)" \
    saw_both_wans "$seen"

  # The mapping: one inside UDP endpoint talking to three outside ports.
  listen "$ns_pub" udp 10.77.0.1 47002,47003,47004
  probe "$ns_a" udp-send 10.77.0.1 47002,47003,47004 40001 >/dev/null
  seen="$(heard)"
  ports="$(awk '{ print $4 }' <<<"$seen" | sort -u | tr '\n' ' ')"
  expect "pub receives a's UDP datagrams on all three ports" \
    test "$(awk '{ print $2 }' <<<"$seen" | sort -u | wc -l)" -eq 3
  if [[ $mode == symmetric ]]; then
    expect "symmetric NAT: a's one socket appears from different ports (${ports% })" \
      test "$(wc -w <<<"$ports")" -gt 1
  else
    expect "endpoint-independent NAT: a's socket keeps port 40001 for every destination (${ports% })" \
      test "$ports" = "40001 "
  fi

  # Nothing reaches a private host unsolicited.
  listen "$ns_b" tcp 0.0.0.0 47005
  expect "b's listener accepts its own connection (the probe is real)" connects "$ns_b" 192.168.2.2 47005
  expect "a cannot connect to b's private address 192.168.2.2" refused "$ns_a" 192.168.2.2 47005
  expect "a cannot connect to b's router WAN 10.77.0.12 (no port forward)" refused "$ns_a" 10.77.0.12 47005
  expect "pub cannot connect to b's router WAN 10.77.0.12" refused "$ns_pub" 10.77.0.12 47005
  seen="$(heard)"
  expect "b's listener heard only b itself" saw_no_wan "$seen"

  listen "$ns_a" tcp 0.0.0.0 47005
  check_inbound_dropped "$ns_nat1" "$ns_a" 192.168.1.2 192.168.1.0/24 10.77.0.11
  listen "$ns_b" tcp 0.0.0.0 47005
  check_inbound_dropped "$ns_nat2" "$ns_b" 192.168.2.2 192.168.2.0/24 10.77.0.12

  check_cleanup
  echo "testbed $prefix: $passed passed, $failed failed"
  ((failed == 0))
}

(($# >= 2)) || usage
case "$1" in
  up)
    case "${3:-}" in
      "") (($# == 2)) || usage; cmd_up "$2" eim ;;
      --symmetric) (($# == 3)) || usage; cmd_up "$2" symmetric ;;
      *) usage ;;
    esac
    ;;
  down) (($# == 2)) || usage; cmd_down "$2" ;;
  check) (($# == 2)) || usage; cmd_check "$2" ;;
  *) usage ;;
esac
