#!/usr/bin/env bash
# The no-change boot of make demo (two NVMe disks, RAID1 + LVM, the Debian image, QEMU TCG), with two
# initramfs builds taking turns on the same disks: one install, then ROUNDS second boots of each,
# interleaved (A, B, A, B, ...), so that both see the same host load. Prints each boot's agent share
# and phases and the medians: how docs/boot.md's before/after table is measured.
#
#   KERNEL=... INITRD_A=before.img INITRD_B=after.img BIN=.build/debug TLS=build/cluster/tls \
#       IMAGES=build/images scripts/boot-compare.sh
#
# Both initramfs builds must embed the CA in TLS (make initramfs-test does). The install uses B.
# EXTRA_ARGS: more kernel arguments for the node, space-separated (provisioner.trace shows every tool run).
# MODE=stateless compares scenario (e) instead: the same image into RAM, no disks, every boot a full sync.
# With BASE_A and BASE_B (two base initramfs builds, make initramfs-test's initramfs-test-base.img),
# the node boots as make demo's does: the image's own kernel and what the server's iPXE script names
# (its kernel command line, provisioner.modules= included), with the side's base initramfs and the
# server's modules initrd for that kernel. The server serves B's base, so the ESP's boot files stay
# the same from boot to boot.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
: "${KERNEL:?}" "${INITRD_A:?}" "${INITRD_B:?}" "${BIN:?}" "${TLS:?}" "${IMAGES:?}"
ROUNDS=${ROUNDS:-3}
MODE=${MODE:-stateful}
work=$REPO/build/boot-compare
STATE=$work/state
rm -rf "$work"
mkdir -p "$work"
# shellcheck source=lib/cluster.sh
source "$REPO/scripts/lib/cluster.sh"
trap server_stop EXIT

mac=52:54:00:00:00:01
disks=(--disk "nvme,size=4000000000,serial=CMP-NVME-A,file=$work/nvme-a.img"
    --disk "nvme,size=4000000000,serial=CMP-NVME-B,file=$work/nvme-b.img")

cluster_prepare "$KERNEL" "$INITRD_B" "${BASE_B:-}"
server_start
ctl image import debian --from "$IMAGES/debian.tar" --store "$STATE/images" > /dev/null
extra=()
for arg in ${EXTRA_ARGS:-}; do extra+=(--kernel-arg "$arg"); done
if [[ $MODE == stateless ]]; then
    disks=()
    ctl nodes add n1 --mac "$mac" --image debian --mode stateless --plugin hostname \
        --kernel-arg console=ttyS0,115200 --kernel-arg provisioner-ready.poweroff "${extra[@]}" > /dev/null
else
    ctl nodes add n1 --mac "$mac" --image debian --layout "$REPO/docs/examples/layout-simple-mirror.yaml" \
        --plugin hostname --plugin network --kernel-arg console=ttyS0,115200 \
        --kernel-arg provisioner-ready.poweroff "${extra[@]}" > /dev/null
fi
cmdline=$(ipxe_cmdline "$mac")
boot_kernel=$KERNEL
if [[ -n ${BASE_A:-} && -n ${BASE_B:-} ]]; then
    ipxe_boot "$mac" "$work/boot-files"
    boot_kernel=$BOOT_KERNEL
    cmdline=$BOOT_APPEND
    script=$(curl -fsS -H "Host: 10.0.2.2:$BOOT_PORT" "http://127.0.0.1:$BOOT_PORT/boot/ipxe?mac=$mac")
    modules=$(awk '$1 == "initrd" { print $NF }' <<< "$script" | sed -n 2p)
    [[ -n $modules ]] || { echo "the iPXE script for $mac names no modules initrd" >&2; exit 1; }
    curl -fsS -o "$work/modules.img" "${modules/http:\/\/10.0.2.2:$BOOT_PORT/http://127.0.0.1:$BOOT_PORT}"
    for side in A B; do
        base=BASE_$side
        cp "${!base}" "$work/initrd-$side.img"
        truncate -s %4 "$work/initrd-$side.img"
        cat "$work/modules.img" >> "$work/initrd-$side.img"
    done
    INITRD_A=$work/initrd-A.img INITRD_B=$work/initrd-B.img
fi

# boot LABEL INITRD: one boot up to the image's multi-user.target and its own power-off (so the next
# boot finds clean filesystems); console in $work/LABEL.log. A boot that pivoted and then hung in
# the image's systemd (QEMU 7.2's TCG with 2 vCPUs, now and then: a soft lockup of systemd in
# sk_filter_trim_cap after switch-root, past what the agent measures) still counts; the VM was cut
# off, so the writes it had not flushed are gone, and one more boot (not counted) repairs them
# before the next one that is.
boot() {
    "$BIN/provisioner-vm" boot --kernel "$boot_kernel" --initrd "$2" --append "$cmdline" \
        --uefi-vars "$work/n1-vars.fd" --mac "$mac" "${disks[@]}" --console "$work/$1.log" \
        --until 'PROVISIONER-READY: n1 reached multi-user.target' --grace 60 --timeout 300 \
        --fail-when 'giving up after|Entering emergency mode|Kernel panic' --show '^$' --work-dir "$work" > /dev/null \
        && return 0
    grep -q 'switching root into' "$work/$1.log" || return 1
    echo "    ($1: the image's boot hung after the pivot; one more boot repairs what it did not write)"
    "$BIN/provisioner-vm" boot --kernel "$boot_kernel" --initrd "$INITRD_B" --append "$cmdline" \
        --uefi-vars "$work/n1-vars.fd" --mac "$mac" "${disks[@]}" --console "$work/$1-repair.log" \
        --until 'PROVISIONER-READY: n1 reached multi-user.target' --grace 60 --timeout 300 \
        --fail-when 'giving up after|Entering emergency mode|Kernel panic' --show '^$' --work-dir "$work" > /dev/null
}
agent_share() { sed -nE 's/.*switching root into .*\(agent ([0-9.]+) s\).*/\1/p' "$1" | tail -n 1; }
median() { sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

if [[ $MODE == stateful ]]; then
    say "install (B)"
    boot install "$INITRD_B"
    grep -q 'switching root into' "$work/install.log" || { echo "the install did not finish" >&2; exit 1; }
    expected='nothing was rewritten'
else
    expected='n1 ready: '
fi

declare -A SHARES
for round in $(seq "$ROUNDS"); do
    for side in A B; do
        initrd=INITRD_$side
        boot "$side-$round" "${!initrd}"
        log=$work/$side-$round.log
        grep -q "$expected" "$log" || { echo "$side-$round: no \"$expected\" (see $log)" >&2; exit 1; }
        share=$(agent_share "$log")
        SHARES[$side]+="$share"$'\n'
        echo "$side round $round: agent ${share} s"
        grep -aE 'provisioner: (disks: (arrays|LVM|matched|the disks already)|image: .*(up to date|applied)|image:   phases)' "$log" \
            | sed -E 's/.*provisioner: /    /'
    done
done
say "medians of $ROUNDS $MODE boots each"
for side in A B; do
    echo "$side: agent $(printf '%s' "${SHARES[$side]}" | median) s (every boot: $(printf '%s' "${SHARES[$side]}" | tr '\n' ' '))"
done
