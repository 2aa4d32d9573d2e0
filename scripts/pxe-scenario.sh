#!/usr/bin/env bash
# Network boot end to end, with nothing handed to QEMU but firmware (part of `make test`;
# docs/pxe-boot.md describes the chain):
#
#   a network namespace of its own with a bridge and a tap (no real interface is touched);
#   dnsmasq (Debian's) in it, with the configuration `provisionerctl configure dhcp` wrote and
#   Debian's iPXE binaries it copied to the TFTP root; the server in it at 10.0.2.2 (the address
#   the test CA's server certificate names);
#   (x1) full DHCP: a QEMU VM with OVMF and no -kernel PXE-boots on the tap: DHCP, TFTP (iPXE),
#       iPXE's DHCP gets the server's script URL, the script for its unknown MAC waits in a loop,
#       the machine is listed as pending; assigned, iPXE goes on, boots kernel and initramfs over
#       HTTP, and the agent enrolls, installs and pivots into the image's systemd;
#   (x2) BIOS: SeaBIOS with QEMU's option ROM (iPXE) gets the script from the same dnsmasq and waits;
#   (x3) proxy DHCP: another dnsmasq (the network's own DHCP server, in a second namespace on the
#       same bridge) leases the address; ours, configured with --mode proxy, only adds the boot
#       answers; a second unknown machine gets as far as the iPXE wait loop.
#
# Prints the PXE-to-pivot times: from QEMU's start and from the assignment.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
: "${KERNEL:?}" "${INITRD:?}" "${BASE_INITRD:?}" "${BIN:?}" "${TLS:?}" "${IMAGES:?}"
work=$REPO/build/pxe-tests
STATE=$work/state
rm -rf "$work"
mkdir -p "$work"

# Names are per run: a second run on the same machine cannot meet this one's namespaces.
NS=provpxe-$$
NS_DHCP=provpxe-dhcp-$$
BRIDGE=pxebr0
TAP=pxetap0
SERVER_NETNS=$NS
# The test CA's server certificate names 10.0.2.2 (Makefile, $(CLUSTER_TLS)); the agent checks it.
SERVER_HOST=10.0.2.2
SUBNET=10.0.2.0/24
API_PORT=8443
BOOT_PORT=8080
# shellcheck source=lib/cluster.sh
source "$REPO/scripts/lib/cluster.sh"

VM_PID=
DNSMASQ_PID=
DHCP_PID=
cleanup() {
    set +e
    # provisioner-vm stops its QEMU when it is stopped.
    if [[ -n $VM_PID ]]; then kill "$VM_PID"; wait "$VM_PID"; fi 2> /dev/null
    for pid in $DNSMASQ_PID $DHCP_PID; do kill "$pid" && wait "$pid"; done 2> /dev/null
    server_stop
    ip netns del "$NS" 2> /dev/null
    ip netns del "$NS_DHCP" 2> /dev/null
}
trap cleanup EXIT

# wait_for FILE PATTERN SECONDS: until a line of FILE matches (0), the VM ended or time ran out (1).
# Sets SEEN_AT to the time it was seen ($EPOCHREALTIME, polled every 0.2 s).
wait_for() {
    local file=$1 pattern=$2 limit=$(($(date +%s) + $3))
    while (($(date +%s) < limit)); do
        if grep -Eq -- "$pattern" "$file" 2> /dev/null; then
            SEEN_AT=$EPOCHREALTIME
            return 0
        fi
        kill -0 "$VM_PID" 2> /dev/null || return 1
        sleep 0.2
    done
    return 1
}
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$2"; }

layout=$REPO/docs/examples/layout-simple-mirror.yaml
common_args=(--kernel-arg console=ttyS0,115200 --kernel-arg provisioner-ready.poweroff
    --kernel-arg provisioner.server-wait=20 --kernel-arg provisioner.retry-delay=3)
SHOW='provisioner: |PROVISIONER-READY|Entering emergency|Kernel panic|iPXE|http://|tftp|PXE|Start PXE|Station IP'
FAIL='giving up after|Entering emergency mode|Kernel panic|provisioner: ERROR|No more network devices'

say "setup: network namespace $NS (bridge $BRIDGE $SERVER_HOST/24, tap $TAP), server, image"
ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" link add "$BRIDGE" type bridge
ip -n "$NS" addr add "$SERVER_HOST/24" dev "$BRIDGE"
ip -n "$NS" tuntap add dev "$TAP" mode tap
ip -n "$NS" link set "$TAP" master "$BRIDGE"
ip -n "$NS" link set "$TAP" up
ip -n "$NS" link set "$BRIDGE" up

cluster_prepare "$KERNEL" "$INITRD" "$BASE_INITRD"
cat > "$STATE/server.yaml" << EOF
stateDir: $STATE
pollAfterSeconds: 3
unknownMachines: wait
EOF
SERVER_CONFIG=$STATE/server.yaml server_start
start=$SECONDS
ctl image import debian --from "$IMAGES/debian.tar" | tail -n 1
echo "  image imported in $((SECONDS - start)) s"
ctl nodes add pxe1 --image debian --layout "$layout" --plugin hostname "${common_args[@]}"

say "configure dhcp: full DHCP on $BRIDGE, Debian's iPXE binaries to the TFTP root"
"$BIN/provisionerctl" configure dhcp --interface "$BRIDGE" --server-ip "$SERVER_HOST" --subnet "$SUBNET" \
    --range 10.0.2.100,10.0.2.149 --boot-url "http://$SERVER_HOST:$BOOT_PORT" --tftp-root "$work/tftp" \
    --output "$work/dnsmasq-full.conf" --yes | tee "$work/configure-full.txt"
check "configure dhcp wrote the configuration and both iPXE binaries" \
    test -s "$work/dnsmasq-full.conf" -a -s "$work/tftp/undionly.kpxe" -a -s "$work/tftp/ipxe.efi"
# dnsmasq reads only this file (--conf-file), logs every DHCP exchange, and stays ours (foreground, by pid).
dnsmasq_start() { # dnsmasq_start CONF LOG
    ip netns exec "$NS" dnsmasq --keep-in-foreground --conf-file="$1" --log-dhcp --log-facility="$2" \
        --dhcp-leasefile="$work/$(basename "$1" .conf).leases" --pid-file= --user=root &
    DNSMASQ_PID=$!
    sleep 1
    kill -0 "$DNSMASQ_PID" || { cat "$2" >&2; return 1; }
}
dnsmasq_start "$work/dnsmasq-full.conf" "$work/dnsmasq-full.log"

say "(x1) an unknown machine PXE-boots (OVMF, no -kernel), waits in iPXE, is assigned, installs and pivots"
mac=52:54:00:00:0a:01
log=$work/pxe1.log
t_qemu=$EPOCHREALTIME
ip netns exec "$NS" "$BIN/provisioner-vm" boot --network-boot --tap "$TAP" --mac "$mac" \
    --uefi-vars "$work/pxe1-vars.fd" --console "$log" --work-dir "$work" \
    --disk "nvme,size=4000000000,serial=PXE1-A,file=$work/pxe1-a.img" \
    --disk "nvme,size=4000000000,serial=PXE1-B,file=$work/pxe1-b.img" \
    --show "$SHOW" --fail-when "$FAIL" --until 'PROVISIONER-READY' --timeout 420 &
# (Stopped at the ready line: its disks are not booted again, so no clean power-off is waited for.)
VM_PID=$!
if wait_for "$log" 'is not assigned yet' 180; then t_wait=$SEEN_AT; else t_wait=; fi
check "(x1) the firmware fetched iPXE over TFTP from dnsmasq" has "$work/dnsmasq-full.log" 'sent .*/ipxe\.efi to 10\.0\.2\.'
check "(x1) iPXE's DHCP request was answered with the server's script URL" \
    has "$work/dnsmasq-full.log" "bootfile[ -]name:? +http://$SERVER_HOST:$BOOT_PORT/boot/start\.ipxe"
check "(x1) the unknown machine waits in the iPXE loop" test -n "$t_wait"
check "(x1) the server lists it as pending" is_pending "$mac"
# One more round of the loop before the assignment: the loop goes on by itself.
sleep 4
check "(x1) iPXE asked again (the wait loop)" test "$(grep -c 'is not assigned yet' "$log")" -ge 2
ctl nodes assign "$mac" pxe1
t_assign=$EPOCHREALTIME
if wait_for "$log" 'switching root into' 300; then t_pivot=$SEEN_AT; else t_pivot=; fi
wait "$VM_PID" || true
VM_PID=
check "(x1) once assigned, iPXE booted the kernel and initramfs and the agent took the node" \
    has "$log" 'this machine is node pxe1'
check "(x1) pxe1 enrolled with a key it made" has "$log" 'node pxe1 enrolled \(first\)'
check "(x1) the image was installed" has "$log" 'applied [0-9]+ entries'
check "(x1) the agent pivoted into the image" test -n "$t_pivot"
check "(x1) the image's multi-user.target was reached" has "$log" 'PROVISIONER-READY: pxe1 reached multi-user.target'
check "(x1) the session succeeded on the server" last_session_is pxe1 succeeded
# The script iPXE ran for pxe1, as the server gives it (docs/pxe-boot.md shows it).
in_server_netns curl -fsS "http://$SERVER_HOST:$BOOT_PORT/boot/ipxe?mac=$mac" > "$work/pxe1.ipxe"

say "(x2) BIOS: SeaBIOS with QEMU's iPXE option ROM, the same dnsmasq"
# QEMU's PXE ROMs are all iPXE, so this client asks as iPXE at once: it checks the BIOS side of the
# tags (client arch 0), not undionly.kpxe over TFTP (docs/pxe-boot.md). SeaBIOS and the ROM's iPXE
# write to the screen, not the serial console: dnsmasq's log and the server's pending list tell.
mac3=52:54:00:00:0a:03
ip netns exec "$NS" "$BIN/provisioner-vm" boot --network-boot --tap "$TAP" --mac "$mac3" --console "$work/pxe3.log" \
    --work-dir "$work" --timeout 150 > /dev/null &
VM_PID=$!
for _ in $(seq 1 120); do
    is_pending "$mac3" && break
    kill -0 "$VM_PID" 2> /dev/null || break
    sleep 1
done
check "(x2) the BIOS machine is listed as pending: its iPXE fetched the script for its MAC" is_pending "$mac3"
kill "$VM_PID" 2> /dev/null && wait "$VM_PID" 2> /dev/null || true
VM_PID=
# The DHCP exchange of that machine (dnsmasq numbers each one) shows what it said and got.
xid=$(sed -nE "s/.* ([0-9]+) DHCPACK\(pxebr0\) [0-9.]+ $mac3.*/\1/p" "$work/dnsmasq-full.log" | tail -n 1)
grep -E " ${xid:-none} " "$work/dnsmasq-full.log" > "$work/pxe3-dhcp.log" || true
check "(x2) it asked dnsmasq as a BIOS client (arch 0) running iPXE" \
    bash -c "grep -q 'vendor class: PXEClient:Arch:00000' '$work/pxe3-dhcp.log' && grep -q 'user class: iPXE' '$work/pxe3-dhcp.log'"
check "(x2) dnsmasq answered it with the server's script URL" \
    has "$work/pxe3-dhcp.log" "bootfile-name +http://$SERVER_HOST:$BOOT_PORT/boot/start\.ipxe"
kill "$DNSMASQ_PID" && wait "$DNSMASQ_PID" 2> /dev/null || true
DNSMASQ_PID=

say "(x3) proxy DHCP: the network's DHCP server leases, ours adds only the boot answers"
# The network's own DHCP server: a plain dnsmasq in another namespace, on the bridge through a veth pair.
ip netns add "$NS_DHCP"
ip -n "$NS" link add pxedhcp0 type veth peer name eth0 netns "$NS_DHCP"
ip -n "$NS" link set pxedhcp0 master "$BRIDGE"
ip -n "$NS" link set pxedhcp0 up
ip -n "$NS_DHCP" addr add 10.0.2.3/24 dev eth0
ip -n "$NS_DHCP" link set eth0 up
ip netns exec "$NS_DHCP" dnsmasq --keep-in-foreground --conf-file=/dev/null --port=0 --interface=eth0 \
    --bind-interfaces --dhcp-range=10.0.2.150,10.0.2.199,255.255.255.0,1h --dhcp-leasefile="$work/network-dhcp.leases" \
    --log-dhcp --log-facility="$work/network-dhcp.log" --pid-file= --user=root &
DHCP_PID=$!
"$BIN/provisionerctl" configure dhcp --mode proxy --interface "$BRIDGE" --server-ip "$SERVER_HOST" --subnet "$SUBNET" \
    --boot-url "http://$SERVER_HOST:$BOOT_PORT" --tftp-root "$work/tftp" --output "$work/dnsmasq-proxy.conf" --yes \
    | tee "$work/configure-proxy.txt"
dnsmasq_start "$work/dnsmasq-proxy.conf" "$work/dnsmasq-proxy.log"
mac2=52:54:00:00:0a:02
log=$work/pxe2.log
ip netns exec "$NS" "$BIN/provisioner-vm" boot --network-boot --tap "$TAP" --mac "$mac2" \
    --uefi-vars "$work/pxe2-vars.fd" --console "$log" --work-dir "$work" \
    --show "$SHOW" --fail-when "$FAIL" --until 'is not assigned yet' --timeout 240 &
VM_PID=$!
wait "$VM_PID" || true
VM_PID=
check "(x3) the network's DHCP server leased the address" has "$work/network-dhcp.log" "DHCPACK\(eth0\) 10\.0\.2\.1[5-9][0-9] $mac2"
check "(x3) our proxy answered the firmware with iPXE" has "$work/dnsmasq-proxy.log" 'sent .*/ipxe\.efi to 10\.0\.2\.1[5-9][0-9]'
check "(x3) our proxy answered iPXE with the server's script URL" \
    has "$work/dnsmasq-proxy.log" "bootfile[ -]name:? +http://$SERVER_HOST:$BOOT_PORT/boot/start\.ipxe"
check "(x3) iPXE got the server's script and waits in its loop" has "$log" 'is not assigned yet'
check "(x3) the server lists it as pending" is_pending "$mac2"
in_server_netns curl -fsS "http://$SERVER_HOST:$BOOT_PORT/boot/ipxe?mac=$mac2" > "$work/pxe2.ipxe"

say "PXE-to-pivot (QEMU TCG, 2 cores)"
if [[ -n $t_wait && -n $t_pivot ]]; then
    kernel_pivot=$(sed -nE 's/.*switching root into .* at ([0-9.]+) s after power-on.*/\1/p' "$work/pxe1.log" | tail -n 1)
    {
        echo "| measure | seconds |"
        echo "|---|---|"
        echo "| QEMU start to the iPXE wait loop (firmware, DHCP, TFTP, iPXE, script) | $(elapsed "$t_qemu" "$t_wait") |"
        echo "| assignment to pivot (iPXE's next ask, kernel + initramfs over HTTP, agent: enroll, partition, install) | $(elapsed "$t_assign" "$t_pivot") |"
        echo "| QEMU start to pivot, the wait included | $(elapsed "$t_qemu" "$t_pivot") |"
        echo "| kernel start to pivot (the agent's own count) | ${kernel_pivot:-?} |"
    } | tee "$work/pxe-times.md"
fi

echo "the whole scenario took $SECONDS s"

if ((failures > 0)); then
    echo "PXE scenario: $failures check(s) failed; consoles and dnsmasq logs in $work"
    exit 1
fi
# The disks hold an installed system (GBs): the logs are what a reader needs.
rm -f "$work"/pxe1-[ab].img
echo "PXE scenario: all checks passed"
