# shellcheck shell=bash disable=SC2034
# A fleet of real agents on one machine (sourced by scripts/bench-fleet.sh; made to be sourced by any
# test that needs N agents booting at once): network namespaces only, no real interface touched.
#
#   netns FLEET_BR   a bridge (pfbr0), the provisioning network
#   netns FLEET_SRV  the server's end, pf0 = 10.77.0.1/16          (fleet_host_up "$FLEET_SRV" 10.77.0.1)
#   netns FLEET_MIR  a mirror's end, pf0 = 10.77.0.2/16            (fleet_host_up "$FLEET_MIR" 10.77.0.2)
#   netns pf-aI-ID   agent I's end, pf0 = 10.77.1.I/16, MAC 52:54:10:00:HH:LL (I in hex)
#
# Each agent is the real static agent doing a node's boot (register, config, enroll, image, plugins)
# against a stateless node: `ip netns exec NS unshare -m --propagation private fleet-agent.sh ...`,
# so the tmpfs root it mounts (and the /run it keeps its certificate in) exist only in its own
# mount namespace and vanish with it (scripts/lib/fleet-agent.sh says what it guards against).
#
# Needs: AGENT (the static provisioner-agent), FLEET_WORK (a directory for roots, logs, results),
# FLEET_TLS (ca.pem and the bootstrap client.pem/client-key.pem). Names carry FLEET_ID ($$ unless
# set) so two runs never meet. Everything started here is stopped by its own pid (fleet_down).

: "${AGENT:?}" "${FLEET_WORK:?}" "${FLEET_TLS:?}"

FLEET_ID=${FLEET_ID:-$$}
FLEET_BR=pf-br-$FLEET_ID
FLEET_SRV=pf-srv-$FLEET_ID
FLEET_MIR=pf-mir-$FLEET_ID
FLEET_BRIDGE=pfbr0
# The interface every namespace has on the provisioning network (the server's multicast interface).
FLEET_IF=pf0
FLEET_SERVER_IP=10.77.0.1
FLEET_MIRROR_IP=10.77.0.2
FLEET_PREFIX=16
FLEET_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Seconds one agent may take for its whole boot before it is stopped (and counted as failed).
FLEET_AGENT_TIMEOUT=${FLEET_AGENT_TIMEOUT:-600}

FLEET_NAMESPACES=()
declare -A FLEET_AGENT_PID=()

# The network namespace of agent I; its address; its MAC.
fleet_agent_ns() { echo "pf-a$1-$FLEET_ID"; }
fleet_agent_ip() {
    (($1 >= 1 && $1 <= 250)) || { echo "fleet: agent $1: agents are numbered 1-250" >&2; return 1; }
    echo "10.77.1.$1"
}
fleet_agent_mac() { printf '52:54:10:00:%02x:%02x\n' $(($1 / 256)) $(($1 % 256)); }

# fleet_net_up: the bridge, in a namespace of its own.
fleet_net_up() {
    # A stateless agent with a TPM would keep its key in it (docs/certificates.md, "Where the key
    # lives"): on this machine that would be the host's TPM. The agent has no option to keep its
    # hands off one, so no fleet runs on a host that has one.
    if [[ -e /dev/tpmrm0 || -e /dev/tpm0 ]]; then
        echo "fleet: this host has a TPM (/dev/tpmrm0): a stateless agent would write its key into the host's TPM; refusing" >&2
        return 1
    fi
    ip netns add "$FLEET_BR"
    FLEET_NAMESPACES+=("$FLEET_BR")
    ip -n "$FLEET_BR" link set lo up
    ip -n "$FLEET_BR" link add name "$FLEET_BRIDGE" type bridge
    # Multicast goes to every port (no IGMP querier here: snooping would drop groups it never saw joined).
    ip -n "$FLEET_BR" link set "$FLEET_BRIDGE" type bridge mcast_snooping 0
    ip -n "$FLEET_BR" link set "$FLEET_BRIDGE" up
}

# fleet_host_up NS ADDRESS [MAC] [PORT_NAME]: a namespace with lo and FLEET_IF (ADDRESS/16) on the bridge.
fleet_host_up() {
    local ns=$1 address=$2 mac=${3:-} port=${4:-p-$1}
    port=${port:0:15}
    ip netns add "$ns"
    FLEET_NAMESPACES+=("$ns")
    ip -n "$ns" link set lo up
    ip -n "$FLEET_BR" link add name "$port" type veth peer name "$FLEET_IF" netns "$ns"
    ip -n "$FLEET_BR" link set "$port" master "$FLEET_BRIDGE"
    ip -n "$FLEET_BR" link set "$port" up
    if [[ -n $mac ]]; then ip -n "$ns" link set "$FLEET_IF" address "$mac"; fi
    ip -n "$ns" addr add "$address/$FLEET_PREFIX" dev "$FLEET_IF"
    ip -n "$ns" link set "$FLEET_IF" up
    # Multicast (udpcast) leaves through the provisioning network: there is no default route here.
    ip -n "$ns" route add 224.0.0.0/4 dev "$FLEET_IF"
}

# fleet_agent_up I: agent I's namespace (a no-op when it exists).
fleet_agent_up() {
    local ns
    ns=$(fleet_agent_ns "$1")
    [[ -e /run/netns/$ns ]] && return 0
    fleet_host_up "$ns" "$(fleet_agent_ip "$1")" "$(fleet_agent_mac "$1")" "pa$1"
}

# fleet_limit NS RATE: NS's egress onto the provisioning network limited to RATE (tc's units: 300mbit).
# The burst is a few ms at that rate (and at least 64 KiB, one GSO packet); the queue holds 50 ms.
fleet_limit() {
    local ns=$1 rate=$2 bits burst
    bits=$(fleet_bits "$rate")
    burst=$((bits / 8 / 200))
    ((burst >= 65536)) || burst=65536
    ip netns exec "$ns" tc qdisc replace dev "$FLEET_IF" root tbf rate "$rate" burst "$burst" latency 50ms
}

# fleet_bits RATE: tc's rate (300mbit, 1gbit, 500kbit, 1000000) in bits per second.
fleet_bits() {
    local r=${1,,}
    case $r in
        *gbit) echo $((${r%gbit} * 1000000000)) ;;
        *mbit) echo $((${r%mbit} * 1000000)) ;;
        *kbit) echo $((${r%kbit} * 1000)) ;;
        *bit) echo "${r%bit}" ;;
        *) echo "$r" ;;
    esac
}

# fleet_tx_bytes NS: bytes NS sent onto the provisioning network so far (its FLEET_IF's counter).
fleet_tx_bytes() { ip netns exec "$1" cat "/sys/class/net/$FLEET_IF/statistics/tx_bytes"; }

# fleet_agent_start I CMDLINE [EXPECTED]: agent I boots with the kernel command line CMDLINE
# (provisioner.mac= and provisioner.root= are added), in the background. EXPECTED: a listing of
# the image's files (`find -printf '%P %s\n' | sort`) its root must hold afterwards.
# Its log is FLEET_WORK/agent-I.log (each line stamped with the time), its result FLEET_WORK/agent-I.result.
fleet_agent_start() {
    local i=$1 cmdline=$2 expected=${3:-} ns mac
    ns=$(fleet_agent_ns "$i")
    mac=$(fleet_agent_mac "$i")
    mkdir -p "$FLEET_WORK/roots"
    echo "$cmdline provisioner.mac=$mac provisioner.root=$FLEET_WORK/roots/agent-$i" > "$FLEET_WORK/agent-$i.cmdline"
    rm -f "$FLEET_WORK/agent-$i.result" "$FLEET_WORK/agent-$i.log"
    ip netns exec "$ns" unshare -m --propagation private \
        "$FLEET_LIB/fleet-agent.sh" "$AGENT" "$FLEET_WORK/agent-$i.cmdline" "$FLEET_TLS" "$FLEET_WORK/roots/agent-$i" \
        "$FLEET_WORK/agent-$i.log" "$FLEET_WORK/agent-$i.result" "$FLEET_AGENT_TIMEOUT" "$expected" &
    FLEET_AGENT_PID[$i]=$!
}

# fleet_agents_wait: waits for every agent started; 0 when each exited 0 with its tree complete.
# Prints one line per agent that did not.
fleet_agents_wait() {
    local i bad=0 status
    for i in "${!FLEET_AGENT_PID[@]}"; do
        status=0
        wait "${FLEET_AGENT_PID[$i]}" || status=$?
        unset "FLEET_AGENT_PID[$i]"
        if ((status != 0)); then
            echo "fleet: agent $i failed (exit $status; $(cat "$FLEET_WORK/agent-$i.result" 2> /dev/null)):" \
                "$(grep -E 'ERROR|giving up|fleet-agent' "$FLEET_WORK/agent-$i.log" 2> /dev/null | tail -n 2 | cut -d' ' -f2- | tr '\n' ' ')" >&2
            bad=$((bad + 1))
        fi
    done
    ((bad == 0))
}

# fleet_result I FIELD: a field of agent I's result (rc start end synced sync_ms received tree).
fleet_result() {
    awk -v f="$2" '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[1] == f) print kv[2] } }' "$FLEET_WORK/agent-$1.result"
}

# fleet_down: stops every agent still running (by pid) and deletes every namespace made here.
fleet_down() {
    local i ns
    for i in "${!FLEET_AGENT_PID[@]}"; do
        kill "${FLEET_AGENT_PID[$i]}" 2> /dev/null
    done
    for i in "${!FLEET_AGENT_PID[@]}"; do
        wait "${FLEET_AGENT_PID[$i]}" 2> /dev/null
        unset "FLEET_AGENT_PID[$i]"
    done
    for ns in "${FLEET_NAMESPACES[@]}"; do ip netns del "$ns" 2> /dev/null; done
    FLEET_NAMESPACES=()
    return 0
}
