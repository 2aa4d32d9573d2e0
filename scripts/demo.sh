#!/usr/bin/env bash
# make demo: boot one VM with five disks on four buses and show what the agent
# finds and how a sample layout maps onto them; then boot again with the disks
# in another order and show that the layout lands on the same physical disks.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
: "${KERNEL:?}" "${INITRD:?}" "${VM:?}"
work=$(mktemp -d "$repo/build/demo.XXXXXX")
trap 'rm -rf "$work"' EXIT

layout="$repo/docs/examples/layout-mirror.yaml"
script="$work/script.sh"
{
    echo "cat > /tmp/layout.yaml <<'LAYOUT'"
    cat "$layout"
    echo "LAYOUT"
    echo "step disks provisioner-agent disks"
    echo "step match provisioner-agent match --layout /tmp/layout.yaml"
    echo "step match-json provisioner-agent match --layout /tmp/layout.yaml --json"
} > "$script"

disks=(
    "nvme,size=20000000000,serial=NVME-A,file=$work/a.img"
    "nvme,size=20000004096,serial=NVME-B,file=$work/b.img"
    "sata,size=8G,serial=SATA-0001,model=PROV-SATA-HDD,file=$work/c.img"
    "virtio,size=4G,serial=VIRTIO-7,file=$work/d.img"
    "scsi,size=8G,serial=SCSI-42,vendor=ACME,model=PROVDISK,ssd,file=$work/e.img"
)

echo "== layout ($layout)"
cat "$layout"
echo
echo "== boot 1: disks attached in order A B SATA virtio SCSI"
args=()
for d in "${disks[@]}"; do args+=(--disk "$d"); done
"$VM" --kernel "$KERNEL" --initrd "$INITRD" --script "$script" --work-dir "$work" "${args[@]}"

echo
echo "== boot 2: the same disks, NVMe order swapped and the SCSI disk first"
args=(--disk "${disks[4]}" --disk "${disks[1]}" --disk "${disks[0]}" --disk "${disks[2]}" --disk "${disks[3]}")
"$VM" --kernel "$KERNEL" --initrd "$INITRD" --script "$script" --work-dir "$work" "${args[@]}"
echo
echo "disk0 and disk1 are NVME-A and NVME-B in both boots: matching follows serials, not slots."
