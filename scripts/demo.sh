#!/usr/bin/env bash
# make demo: a one-node cluster on this machine.
#
#   1. start provisioner-server (loopback only) with a fresh state directory
#   2. import a Debian image built with mmdebstrap
#   3. define node n1: two NVMe disks, RAID1 + LVM (docs/examples/layout-simple-mirror.yaml)
#   4. boot n1 in QEMU (UEFI) with what the server's iPXE script for it names: the image's own
#      kernel, our base initramfs and that kernel's modules (docs/boot.md), and watch its session
#      live; it installs itself and reaches the image's multi-user.target, and usually its serial
#      login prompt, before the image's provisioner-ready unit powers it off 8 s later
#   5. boot it again: nothing is rewritten
# Every process is stopped at the end (by its pid); the disks stay in build/demo.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
: "${KERNEL:?}" "${INITRD:?}" "${BASE_INITRD:?}" "${BIN:?}" "${TLS:?}" "${IMAGES:?}"
work=$REPO/build/demo
STATE=$work/state
rm -rf "$work"
mkdir -p "$work"
# shellcheck source=lib/cluster.sh
source "$REPO/scripts/lib/cluster.sh"

WATCH_PID=
cleanup() {
    set +e
    if [[ -n $WATCH_PID ]]; then pkill -P "$WATCH_PID" 2> /dev/null; kill "$WATCH_PID" 2> /dev/null; wait "$WATCH_PID" 2> /dev/null; fi
    server_stop
}
trap cleanup EXIT

mac=52:54:00:00:00:01
disks=(--disk "nvme,size=4000000000,serial=DEMO-NVME-A,file=$work/nvme-a.img"
    --disk "nvme,size=4000000000,serial=DEMO-NVME-B,file=$work/nvme-b.img")

say "1. provisioner-server (state in $STATE)"
cluster_prepare "$KERNEL" "$INITRD" "$BASE_INITRD"
server_start

say "2. the image: Debian bookworm from mmdebstrap ($IMAGES/debian.tar), published through the server"
ctl image import debian --from "$IMAGES/debian.tar"
ctl image list

say "3. node n1 through the profile demo: two NVMe disks mirrored, LVM on top"
cat "$REPO/docs/examples/layout-simple-mirror.yaml"
ctl profiles add demo --image debian --layout "$REPO/docs/examples/layout-simple-mirror.yaml" \
    --plugin hostname --plugin network --kernel-arg console=ttyS0,115200 --kernel-arg provisioner-ready.poweroff \
    --overlay hosts
ctl nodes add 'n[1]' --profile demo --mac "$mac" --ip 10.0.2.15
ctl nodes show n1 --effective
echo
ctl image show debian | sed -n '/^kernels of/,$p'
echo
echo "the server's iPXE script for n1:"
curl -fsS -H "Host: 10.0.2.2:$BOOT_PORT" "http://127.0.0.1:$BOOT_PORT/boot/ipxe?mac=$mac" | sed 's/^/  │ /'
ipxe_boot "$mac" "$work/boot-files"

boot() {
    local n=$1
    say "$((n + 3)). boot $n of n1: console (agent lines and the end) and the live session"
    (ctl sessions watch n1 --next 2>&1 | sed 's/^/  session │ /') &
    WATCH_PID=$!
    "$BIN/provisioner-vm" boot --kernel "$BOOT_KERNEL" --initrd "$BOOT_INITRD" --append "$BOOT_APPEND" \
        --uefi-vars "$work/n1-vars.fd" --mac "$mac" "${disks[@]}" --console "$work/console-$n.log" \
        --until 'Debian GNU/Linux [0-9]+ n1 ttyS0|PROVISIONER-READY: n1 reached multi-user.target' \
        --grace 60 --timeout 900 \
        --fail-when 'giving up after|Entering emergency mode|Kernel panic' \
        --show 'provisioner: |PROVISIONER-READY|login:|Reached target.*Multi-User' --work-dir "$work"
    # The image powers off 8 s after multi-user.target; its serial login prompt usually comes first.
    grep -a -h -E 'n1 login:' "$work/console-$n.log" | head -n 1 | sed 's/^/  │ /' || true
    sleep 1
    pkill -P "$WATCH_PID" 2> /dev/null || true
    kill "$WATCH_PID" 2> /dev/null || true
    wait "$WATCH_PID" 2> /dev/null || true
    WATCH_PID=
}

boot 1
boot 2

say "the sessions"
ctl sessions list
echo
grep -h 'ready:' "$work"/console-*.log | sed 's/^/  /'
echo
grep -a -h -o 'PROVISIONER-READY: .*' "$work/console-1.log" | head -n 1 | sed 's/^/  /'
image_kernel=$(tar -tf "$IMAGES/debian.tar" | sed -n 's|^\./boot/vmlinuz-||p' | head -n 1)
if grep -a -q "PROVISIONER-READY: n1 .*kernel: $image_kernel;" "$work/console-1.log"; then
    echo "n1 runs its image's own kernel, $image_kernel (the server's default kernel, for unknown machines, is $(basename "$KERNEL" | sed 's/^vmlinuz-//'))."
else
    echo "n1 does not run its image's kernel $image_kernel (see $work/console-1.log)" >&2
    exit 1
fi
echo
if grep -q 'n1 ready: nothing was rewritten' "$work/console-2.log"; then
    echo "Boot 2 rewrote nothing: same layout, image up to date, plugin files and boot files unchanged."
else
    echo "Boot 2 changed something (see $work/console-2.log)" >&2
    exit 1
fi
echo "Disks and consoles are in $work."
