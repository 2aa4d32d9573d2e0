#!/bin/bash
# Build the provisioner initramfs with dracut, independent of the host's
# dracut configuration.  Normally called by initramfs/Makefile, which
# documents the variables; every input comes from the environment:
#
#   KVER           kernel version (modules from /lib/modules/$KVER)   [required]
#   AGENT          provisioner-agent binary to embed                    [required]
#   OUTPUT         initramfs image to write                             [required]
#   EXTRA_MODULES  extra dracut modules, e.g. "provisioner-test"
#   CA_CERT CLIENT_CERT CLIENT_KEY   optional files embedded under /etc/provisioner/
#   KERNEL_IMAGE   kernel copied next to OUTPUT as vmlinuz-$KVER
#                  (default /boot/vmlinuz-$KVER; empty string: don't copy)
#   NO_KERNEL=1    the kernel-independent base (dracut --no-kernel): no
#                  kernel modules and no kernel copied. The server adds the
#                  modules of each image kernel as a second initrd
#                  (docs/boot.md, "The image's kernel"); KVER is then unused.
#
# Our dracut modules live in initramfs/dracut/modules.d of the repository.
# dracut only looks for modules in "$dracutbasedir/modules.d", and
# dracut.sh/dracut-init.sh keep a dracutbasedir that is already set in the
# environment ("[[ $dracutbasedir ]] || dracutbasedir=/usr/lib/dracut"), so
# we build a throw-away symlink farm: every entry of /usr/lib/dracut plus a
# modules.d holding links to all system modules and to ours.  Nothing is
# installed into the host's /usr/lib/dracut.
set -euo pipefail

die() { echo "mkinitramfs: error: $*" >&2; exit 1; }

: "${KVER:?KVER is not set}"
: "${AGENT:?AGENT is not set}"
: "${OUTPUT:?OUTPUT is not set}"
EXTRA_MODULES=${EXTRA_MODULES:-}
CA_CERT=${CA_CERT:-}
CLIENT_CERT=${CLIENT_CERT:-}
CLIENT_KEY=${CLIENT_KEY:-}
NO_KERNEL=${NO_KERNEL:-}
KERNEL_IMAGE=${KERNEL_IMAGE-/boot/vmlinuz-$KVER}
[[ -n $NO_KERNEL ]] && KERNEL_IMAGE=
SYSTEM_DRACUT=${SYSTEM_DRACUT:-/usr/lib/dracut}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUR_MODULES=$HERE/dracut/modules.d

command -v dracut > /dev/null || die "dracut not found (apt-get install dracut-core dracut-network, or: make -C initramfs deps)"
[[ -f $SYSTEM_DRACUT/dracut-init.sh ]] || die "$SYSTEM_DRACUT/dracut-init.sh not found (is dracut-core installed?)"
[[ -n $NO_KERNEL || -d /lib/modules/$KVER ]] || die "no kernel modules for '$KVER' in /lib/modules (apt-get install linux-image-amd64)"
[[ -f $AGENT ]] || die "agent binary '$AGENT' does not exist; run 'make agent' at the top of the repository"
for v in CA_CERT CLIENT_CERT CLIENT_KEY; do
    if [[ -n ${!v} && ! -f ${!v} ]]; then die "$v='${!v}' is not a file"; fi
done

# Absolute paths: dracut runs module-setup.sh from its own working directory.
AGENT=$(readlink -f "$AGENT")
OUTPUT=$(readlink -f -m "$OUTPUT")
for v in CA_CERT CLIENT_CERT CLIENT_KEY; do
    if [[ -n ${!v} ]]; then printf -v "$v" '%s' "$(readlink -f "${!v}")"; fi
done

work=$(mktemp -d "${TMPDIR:-/var/tmp}/provisioner-dracut.XXXXXX")
trap 'rm -rf -- "$work"' EXIT

# --- dracutbasedir symlink farm -------------------------------------------
base=$work/dracutbase
mkdir -p "$base/modules.d" "$work/confdir" "$work/tmp"
for f in "$SYSTEM_DRACUT"/*; do
    [[ ${f##*/} == modules.d ]] && continue
    ln -s "$f" "$base/${f##*/}"
done
for m in "$SYSTEM_DRACUT"/modules.d/*; do
    ln -s "$m" "$base/modules.d/${m##*/}"
done
for m in "$OUR_MODULES"/*; do
    [[ -d $m ]] || continue
    rm -f "$base/modules.d/${m##*/}"
    ln -s "$m" "$base/modules.d/${m##*/}"
done

# --- what goes in ----------------------------------------------------------
# Only what a provisioning node needs.  Dependencies (dbus, kernel-network-
# modules, systemd-udevd, ...) are pulled in by dracut itself.
modules="bash systemd systemd-initrd dracut-systemd systemd-networkd udev-rules base fs-lib kernel-modules mdraid lvm dm provisioner"
for m in $EXTRA_MODULES; do
    compgen -G "$base/modules.d/[0-9][0-9]$m" > /dev/null \
        || die "unknown dracut module '$m' (not in $SYSTEM_DRACUT/modules.d or $OUR_MODULES)"
    modules+=" $m"
done

# --drivers is the exclusive driver list of the kernel-modules module and is
# installed with "instmods" without -c, i.e. a module missing from this kernel
# is skipped silently (unlike --add-drivers, which uses "instmods -c").
drivers=(
    # NVMe, SATA/AHCI/PATA, SCSI disks
    nvme ahci ata_piix libata sd_mod sr_mod sg
    # SAS / hardware RAID HBAs
    mpt3sas megaraid_sas hpsa smartpqi aacraid
    # virtio
    virtio_pci virtio_blk virtio_scsi virtio_net virtio_console
    # NICs (systemd-networkd also pulls in kernel-network-modules: all wired NICs)
    e1000 e1000e igb ixgbe i40e ice mlx4_en mlx5_core bnxt_en tg3 r8169 qede
    # MD RAID and device mapper
    md_mod raid0 raid1 raid10 raid456 dm_mod
    # file systems (+ code pages for vfat/ESP)
    ext4 xfs vfat nls_cp437 nls_ascii nls_iso8859_1 efivarfs
    # QEMU firmware config (read by the VM tests)
    qemu_fw_cfg
    # TPM 2.0: where a stateless node keeps its key (built in on Debian's kernels; modules elsewhere)
    tpm tpm_tis tpm_crb
)

# zstd -9: dracut's own zstd default is -15, which costs ~20 s more on two
# cores for 1.5 % smaller output.  gzip when zstd is not installed.
compress=gzip
command -v zstd > /dev/null && compress="zstd -9 -q -T0"

mkdir -p "$(dirname "$OUTPUT")"

export dracutbasedir=$base
export PROVISIONER_AGENT=$AGENT
export PROVISIONER_CA_CERT=$CA_CERT
export PROVISIONER_CLIENT_CERT=$CLIENT_CERT
export PROVISIONER_CLIENT_KEY=$CLIENT_KEY

kernel_args=(--kver "$KVER" --drivers "${drivers[*]}" --filesystems "ext4 xfs vfat")
[[ -n $NO_KERNEL ]] && kernel_args=(--kver "$KVER" --no-kernel)
echo "mkinitramfs: dracut $(dracut --version 2> /dev/null | awk '{print $2}'), ${NO_KERNEL:+no kernel (base), }kernel $KVER, modules: $modules" >&2
start=$(date +%s.%N)
dracut \
    --conf /dev/null --confdir "$work/confdir" \
    --tmpdir "$work/tmp" \
    --no-hostonly --no-hostonly-cmdline \
    --force "${kernel_args[@]}" \
    --modules "$modules" \
    --compress "$compress" \
    --no-early-microcode \
    "$OUTPUT"
end=$(date +%s.%N)

# dracut does not fail when a module's install() fails, so check the result.
listing=$(lsinitrd "$OUTPUT")
need=(usr/bin/provisioner-agent usr/lib/systemd/system/provisioner-boot.service)
[[ " $EXTRA_MODULES " == *" provisioner-test "* ]] && need+=(usr/lib/provisioner-test/runner)
for f in "${need[@]}"; do
    grep -Eq " ($f|${f#usr/})\$" <<< "$listing" || die "$f is missing from $OUTPUT (see dracut output above)"
done

if [[ -n $KERNEL_IMAGE ]]; then
    [[ -r $KERNEL_IMAGE ]] || die "kernel image '$KERNEL_IMAGE' not readable"
    cp -p "$KERNEL_IMAGE" "$(dirname "$OUTPUT")/vmlinuz-$KVER"
fi

size=$(stat -c %s "$OUTPUT")
printf 'mkinitramfs: built %s (%s bytes, %s MiB, %s) in %.1f s\n' \
    "$OUTPUT" "$size" "$(awk -v s="$size" 'BEGIN{printf "%.1f", s/1048576}')" "${compress%% *}" \
    "$(awk -v a="$start" -v b="$end" 'BEGIN{print b-a}')"
[[ -n $KERNEL_IMAGE ]] && echo "mkinitramfs: kernel   $(dirname "$OUTPUT")/vmlinuz-$KVER"
exit 0
