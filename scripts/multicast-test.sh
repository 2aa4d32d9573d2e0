#!/usr/bin/env bash
# Multicast delivery proven (part of `make test`; docs/multicast.md): the server and four agents
# on a bridge inside network namespaces this script makes (no real interface is touched). The
# server runs udpcast's udp-sender; each agent is the real static agent booting a stateless node
# (register, enroll, ask, receive with udp-receiver, sync, plugins) into a directory of its own.
#
#   m1, m2   listen at once and receive the first round; m2's link drops 2% of its packets
#   m3       boots after that round: it gets the next one (udp-sender --daemon-mode)
#   m4       its session is stopped in the middle of the round: it keeps what arrived and fetches
#            the rest over HTTPS
#   m5       not in the range: no offer, the whole image over HTTPS
#
# Checks: every root is the image; the complete receivers fetched no object over HTTPS; the cut
# one fetched some; the server's object route carried about one image for all of them.
#
# Needs: BIN (provisioner-server, provisionerctl), AGENT (static provisioner-agent), TLS (the test
# cluster's `provisionerctl ca init` directory), udpcast, iproute2, nftables.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
: "${BIN:?}" "${AGENT:?}" "${TLS:?}"
for tool in udp-sender udp-receiver ip nft; do
    command -v "$tool" > /dev/null || { echo "multicast-test: $tool is not installed (apt-get install udpcast iproute2 nftables)" >&2; exit 1; }
done
work=$REPO/build/multicast-test
STATE=$work/state
rm -rf "$work"
mkdir -p "$work"
# The server's certificate names 10.0.2.2 (the address QEMU's user network gives the host).
NS=pmc-srv-$$
SERVER_NETNS=$NS
SERVER_HOST=10.0.2.2
# shellcheck source=lib/cluster.sh
source "$REPO/scripts/lib/cluster.sh"

AGENT_NS=()
AGENT_PIDS=()
cleanup() {
    set +e
    for pid in "${AGENT_PIDS[@]}"; do kill "$pid" 2> /dev/null; done
    server_stop
    for ns in "${AGENT_NS[@]}"; do ip netns del "$ns" 2> /dev/null; done
    ip netns del "$NS" 2> /dev/null
}
trap cleanup EXIT


say "setup: a bridge in namespace $NS with the server on it; five agent namespaces"
ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" link add prov0 type bridge
# No IGMP snooping: the bridge floods multicast like the unmanaged switch of a small rack.
ip -n "$NS" link set prov0 type bridge mcast_snooping 0
ip -n "$NS" addr add "$SERVER_HOST/24" dev prov0
ip -n "$NS" link set prov0 up
# add_agent I: namespace pmc-I-PID with eth0 (MAC 52:54:00:0c:00:0I, 10.0.2.(10+I)) on the bridge.
add_agent() {
    local i=$1 ns=pmc-$1-$$
    ip netns add "$ns"
    AGENT_NS+=("$ns")
    ip -n "$NS" link add "pmc$i" type veth peer name eth0 netns "$ns"
    ip -n "$NS" link set "pmc$i" master prov0 up
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 address "52:54:00:0c:00:0$i" up
    ip -n "$ns" addr add "10.0.2.$((10 + i))/24" dev eth0
}
for i in 1 2 3 4 5; do add_agent "$i"; done
# m2 loses 2% of the UDP packets that reach it (nftables: this kernel has no netem); udpcast asks
# again for what it missed.
ip netns exec "pmc-2-$$" nft -f - << 'EOF'
table inet loss {
    chain input {
        type filter hook input priority filter; policy accept;
        meta l4proto udp numgen random mod 100 < 2 counter drop
    }
}
EOF

say "setup: the server (multicast on prov0, 40 Mbit/s) and an image of 300 files (about 30 MB)"
mkdir -p "$STATE/tls" "$STATE/images"
cp "$TLS"/{ca.pem,ca-key.pem,server.pem,server-key.pem} "$STATE/tls/"
cat > "$STATE/server.yaml" << EOF
stateDir: $STATE
sshHostKeys: false
multicast:
  interface: prov0
  maxBitrate: 40m
  maxWaitSeconds: 5
  timeLimitSeconds: 600
EOF
SERVER_CONFIG=$STATE/server.yaml server_start
tree=$work/tree
mkdir -p "$tree/etc" "$tree/usr/lib/data"
for i in $(seq 1 300); do head -c $((i * 650)) /dev/urandom > "$tree/usr/lib/data/file-$i.bin"; done
echo "multicast test" > "$tree/etc/motd"
(cd "$tree" && find etc/motd usr/lib/data -type f | sort | xargs sha256sum > "$work/sums-image")
ctl image import mc --from "$tree" > /dev/null
version=$(ctl image show mc --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["image"]["branches"][0]["head"])')
echo "  version $version"
for i in 1 2 3 4 5; do
    ctl nodes add "m$i" --mac "52:54:00:0c:00:0$i" --image mc --mode stateless --plugin hostname > /dev/null
done

# boot_agent I: the static agent boots node mI into $work/rootI, in its namespace and a mount
# namespace of its own (its RAM root and a /run of its own stay there: the agent keeps the node's
# certificate in /run/provisioner); console in $work/mI.log.
boot_agent() {
    local i=$1
    mkdir -p "$work/root$i"
    printf 'provisioner.server=https://%s:%s provisioner.mac=52:54:00:0c:00:0%s provisioner.root=%s provisioner.tmpfs-size=256m provisioner.retries=1\n' \
        "$SERVER_HOST" "$API_PORT" "$i" "$work/root$i" > "$work/cmdline$i"
    # The RAM root lives only as long as this mount namespace: its files are summed inside it.
    ip netns exec "pmc-$i-$$" unshare -m --propagation private sh -c '
        mount -t tmpfs -o size=16m provisioner-run /run || exit 1
        "$0" boot --cmdline "$1" --ca "$2/ca.pem" --cert "$2/client.pem" --key "$2/client-key.pem" || exit $?
        cd "$3" && find etc/motd usr/lib/data -type f | sort | xargs sha256sum > "$4"' \
        "$AGENT" "$work/cmdline$i" "$TLS" "$work/root$i" "$work/sums$i" > "$work/m$i.log" 2>&1
}
root_is_image() { # root_is_image I: mI reached the pivot, and its files are the image's
    has "$work/m$1.log" "m$1 ready:" && cmp -s "$work/sums$1" "$work/sums-image"
}
objects_bytes() { # bytes the server's object routes sent so far (single objects and packs)
    in_server_netns curl -fsS --cacert "$TLS/ca.pem" --cert "$TLS/admin.pem" --key "$TLS/admin-key.pem" \
        "https://$SERVER_HOST:$API_PORT/metrics" |
        awk 'index($0, "provisioner_http_response_bytes_total{listener=\"api\",route=\"/v1/objects") == 1 { n += $2 } END { printf "%d\n", n }'
}

say "m1 and m2 at once, in a session for m[1-4] that starts with two listening"
ctl image multicast mc --nodes 'm[1-4]' --min-receivers 2 --max-wait 5
before=$(objects_bytes)
boot_agent 1 &
AGENT_PIDS+=($!)
boot_agent 2 &
AGENT_PIDS+=($!)
check "m1 booted" wait "${AGENT_PIDS[0]}"
check "m2 booted" wait "${AGENT_PIDS[1]}"
dropped=$(ip netns exec "pmc-2-$$" nft list table inet loss | sed -nE 's/.*counter packets ([0-9]+).*/\1/p')
check "m2's link dropped packets ($dropped)" test "${dropped:-0}" -gt 0
AGENT_PIDS=()
for i in 1 2; do
    check "m$i received every object of the stream" has "$work/m$i.log" 'multicast: received ([0-9]+) of \1 objects'
    check "m$i fetched nothing over HTTPS" has "$work/m$i.log" 'multicast: [0-9]+ objects came from the multicast, 0 over HTTPS'
    check "m$i is the image" root_is_image "$i"
done
after=$(objects_bytes)
check "the server's object routes sent m1 and m2 nothing ($((after - before)) bytes)" test $((after - before)) -eq 0

say "m3 boots after that round: the session sends it the next"
boot_agent 3
check "m3 received every object in a later round" has "$work/m3.log" 'multicast: received ([0-9]+) of \1 objects'
check "m3 fetched nothing over HTTPS" has "$work/m3.log" 'multicast: [0-9]+ objects came from the multicast, 0 over HTTPS'
check "m3 is the image" root_is_image 3

say "m4: its round is cut (the admin stops the session): the rest comes over HTTPS"
rounds() { cat "$STATE"/multicast/*.log 2> /dev/null | tr '\r' '\n' | grep -c 'Starting transfer' || true; }
before_rounds=$(rounds)
boot_agent 4 &
pid=$!
# A round starts maxWait (5 s) after its only listener (udp-sender logs it); cut it 2 s into its 6 s.
for _ in $(seq 1 600); do
    [[ $(rounds) -gt $before_rounds ]] && break
    sleep 0.1
done
sleep 2
ctl image multicast-stop mc
check "m4 booted" wait "$pid"
cut=$(objects_bytes)
check "m4 kept part of the stream" has "$work/m4.log" 'multicast: received [1-9][0-9]* of [0-9]+ objects .*\(incomplete\)'
check "m4 fetched the rest over HTTPS" has "$work/m4.log" 'multicast: [0-9]+ objects came from the multicast, [1-9][0-9]* over HTTPS'
check "m4 is the image" root_is_image 4
check "the server's object routes sent m4 the rest ($((cut - after)) of $(du -sb "$STATE/images/objects" | cut -f1) bytes stored)" \
    test $((cut - after)) -gt 0

say "m5 is in no session: the image over HTTPS"
ctl image multicast mc --nodes 'm[1-4]' --max-wait 5 > /dev/null
boot_agent 5
check "m5 did not wait for a multicast" bash -c "! grep -q 'multicast:' '$work/m5.log'"
check "m5 is the image" root_is_image 5
ctl image multicasts
check "the server counted the sessions" test "$(metric 'provisioner_multicast_sessions_total{trigger="admin"}')" = 2

if [[ $failures -gt 0 ]]; then
    for i in 1 2 3 4 5; do echo "--- m$i"; tail -n 15 "$work/m$i.log"; done
    echo "multicast-test: $failures check(s) failed"
    exit 1
fi
in_server_netns curl -fsS --cacert "$TLS/ca.pem" --cert "$TLS/admin.pem" --key "$TLS/admin-key.pem" "https://$SERVER_HOST:$API_PORT/metrics" | grep -E "response_bytes.*objects|multicast" || true
echo "multicast-test: all checks passed"
