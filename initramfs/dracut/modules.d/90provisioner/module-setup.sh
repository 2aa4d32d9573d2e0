#!/bin/bash
# dracut module "provisioner": the provisioning agent and what it needs.
#
# Inputs (environment, set by initramfs/mkinitramfs.sh):
#   PROVISIONER_AGENT        path of the static provisioner-agent binary (required)
#   PROVISIONER_CA_CERT      optional, installed as /etc/provisioner/ca.pem
#   PROVISIONER_CLIENT_CERT  optional, installed as /etc/provisioner/client.pem
#   PROVISIONER_CLIENT_KEY   optional, installed as /etc/provisioner/client-key.pem (0600)

# called by dracut
check() {
    # Never included automatically; only with --modules/--add provisioner.
    return 255
}

# called by dracut
depends() {
    echo systemd systemd-initrd dracut-systemd systemd-networkd udev-rules fs-lib mdraid lvm dm
    return 0
}

# called by dracut
installkernel() {
    # The full driver list is passed with --drivers by mkinitramfs.sh; these
    # are the ones the agent cannot work without.
    hostonly='' instmods ext4 xfs vfat nls_cp437 nls_iso8859-1 efivarfs md_mod dm_mod
}

# called by dracut
install() {
    if [[ -z ${PROVISIONER_AGENT-} || ! -f ${PROVISIONER_AGENT} ]]; then
        derror "provisioner: PROVISIONER_AGENT='${PROVISIONER_AGENT-}' is not a file"
        return 1
    fi
    inst "$PROVISIONER_AGENT" /usr/bin/provisioner-agent || return 1
    chmod 0755 "${initdir}/usr/bin/provisioner-agent"
    # dracut itself only runs "strip -g"; a static Swift binary keeps a huge
    # symbol table then (~75 MB instead of ~26 MB).  Strip it fully.
    if [[ ${PROVISIONER_STRIP_AGENT:-yes} == yes ]] && command -v strip > /dev/null \
        && [[ $(head -c 4 "$PROVISIONER_AGENT" | od -An -c | tr -d ' ') == '177ELF' ]]; then
        strip --strip-all "${initdir}/usr/bin/provisioner-agent" 2> /dev/null \
            || dwarn "provisioner: could not strip provisioner-agent"
    fi

    # Tools the agent shells out to (-o: skip the ones the host lacks).
    inst_multiple -o \
        sgdisk sfdisk wipefs blkdiscard mdadm lvm \
        mkfs.ext4 mkfs.xfs mkfs.vfat mkswap e2fsck xfs_repair \
        resize2fs xfs_growfs e2label xfs_admin xfs_db fatlabel swaplabel \
        mount umount switch_root udevadm partprobe blockdev efibootmgr \
        blkid lsblk partx dmsetup sync chroot timeout rm
    # udpcast's receiver, for images sent by multicast (docs/multicast.md; package udpcast).
    inst_multiple -o udp-receiver
    inst_multiple -o /etc/mke2fs.conf
    # tpm2-tools for a stateless node's key in its TPM (docs/certificates.md), and the TCTI
    # library they load at run time for /dev/tpmrm0.
    inst_multiple -o tpm2 tpm2_nvreadpublic tpm2_nvread tpm2_nvdefine tpm2_nvwrite tpm2_nvundefine
    for lib in /usr/lib/*/libtss2-tcti-device.so*; do
        [[ -e $lib ]] && inst_library "$lib"
    done
    # systemd-boot, which the agent copies to a stateful node's ESP as its
    # fallback boot path (package systemd-boot-efi).
    if [[ -f /usr/lib/systemd/boot/efi/systemd-bootx64.efi ]]; then
        inst_simple /usr/lib/systemd/boot/efi/systemd-bootx64.efi
    else
        dwarn "provisioner: systemd-boot-efi is not installed: nodes get no local boot path"
    fi

    # Embedded TLS material.
    mkdir -p "${initdir}/etc/provisioner"
    chmod 0755 "${initdir}/etc/provisioner"
    if [[ -n ${PROVISIONER_CA_CERT-} ]]; then
        inst_simple "$PROVISIONER_CA_CERT" /etc/provisioner/ca.pem || return 1
        chmod 0644 "${initdir}/etc/provisioner/ca.pem"
    fi
    if [[ -n ${PROVISIONER_CLIENT_CERT-} ]]; then
        inst_simple "$PROVISIONER_CLIENT_CERT" /etc/provisioner/client.pem || return 1
        chmod 0644 "${initdir}/etc/provisioner/client.pem"
    fi
    if [[ -n ${PROVISIONER_CLIENT_KEY-} ]]; then
        inst_simple "$PROVISIONER_CLIENT_KEY" /etc/provisioner/client-key.pem || return 1
        chmod 0600 "${initdir}/etc/provisioner/client-key.pem"
    fi

    # The agent alone decides which arrays and volume groups come up, and only
    # on the disks its layout matched: dracut's md/LVM udev rules must not
    # auto-assemble or activate anything (dracut reads /etc/cmdline.d too).
    mkdir -p "${initdir}/etc/cmdline.d"
    echo "rd.md=0 rd.lvm=0 rd.dm=0 rd.luks=0" > "${initdir}/etc/cmdline.d/90provisioner.conf"

    # dracut's dm and mdraid modules add 59-persistent-storage-{dm,md}.rules for systems whose
    # own rules lack them. Debian's 60-persistent-storage-dm.rules and 63-md-raid-arrays.rules
    # are here too and make the same links, so each array and volume the agent brings up would
    # run dmsetup or mdadm --detail and blkid twice: under QEMU's TCG about 0.1 s a device,
    # which the agent's wait for udev before the mounts pays.
    local ours theirs
    for pair in 59-persistent-storage-dm.rules:60-persistent-storage-dm.rules \
        59-persistent-storage-md.rules:63-md-raid-arrays.rules; do
        ours=${pair%%:*} theirs=${pair#*:}
        if [[ -e ${initdir}/usr/lib/udev/rules.d/$theirs || -e ${initdir}/lib/udev/rules.d/$theirs ]]; then
            rm -f "${initdir}/etc/udev/rules.d/$ours"
        fi
    done

    # The volumes the agent activates itself (device-mapper, ProvisionerCore/LVMActivation.swift)
    # carry LVM's udev flags in their resume's cookie with no semaphore behind it: 6291456, that
    # is LVMView.udevFlags (0x0020 | 0x0040) << 16. lvm2's rules start `dmsetup udevflags` to
    # decode a cookie and `dmsetup udevcomplete` to signal its semaphore, for every volume: under
    # QEMU's TCG 40-70 ms of CPU each, which the agent's wait for the volumes' links pays. For that
    # one value the copies below (in /etc/udev/rules.d, which overrides the package's) set what
    # `dmsetup udevflags` prints for it, read here, and leave out the notification, which dmsetup
    # itself skips for a cookie without a semaphore. Every other cookie goes through dmsetup as
    # before; rules that do not read as expected are left as they are.
    mkdir -p "${initdir}/etc/udev/rules.d"
    local cookie=6291456 flags rules line
    flags=$(dmsetup udevflags "$cookie" 2> /dev/null | sed -n "s/^\(DM_[A-Z0-9_]*\)='1'\$/ENV{\1}=\"1\"/p" | paste -sd ' ')
    flags=${flags// /, }
    for rules in 55-dm.rules:udevflags 95-dm-notify.rules:udevcomplete; do
        line=${rules#*:} rules=${rules%%:*}
        local packaged=""
        for dir in usr/lib/udev/rules.d lib/udev/rules.d; do
            [[ -e ${initdir}/$dir/$rules ]] && packaged=${initdir}/$dir/$rules && break
        done
        local pattern='^ENV{DM_COOKIE}=="?\*", \(IMPORT{program}\|RUN+\)="[^"]*dmsetup '$line' $env{DM_COOKIE}"$'
        if [[ -z $packaged || -z $flags ]] || [[ $(grep -c "$pattern" "$packaged") != 1 ]]; then
            dwarn "provisioner: $rules not rewritten for the agent's cookie (not found or not as expected)"
            continue
        fi
        if [[ $line == udevflags ]]; then
            sed -e "/$pattern/{s/^ENV{DM_COOKIE}==\"?\*\", /ENV{DM_COOKIE}==\"?*\", ENV{DM_COOKIE}!=\"$cookie\", /;i\\
ENV{DM_COOKIE}==\"$cookie\", $flags
}" "$packaged" > "${initdir}/etc/udev/rules.d/$rules"
        else
            sed -e "/$pattern/s/^ENV{DM_COOKIE}==\"?\*\", /ENV{DM_COOKIE}==\"?*\", ENV{DM_COOKIE}!=\"$cookie\", /" \
                "$packaged" > "${initdir}/etc/udev/rules.d/$rules"
        fi
    done

    # root=provisioner is accepted by dracut-cmdline.
    inst_hook cmdline 90 "$moddir/parse-provisioner.sh"

    # Network: DHCP on every wired NIC unless ip= on the kernel command line
    # says otherwise (systemd-network-generator writes /run/systemd/network/,
    # which sorts before this 99- file); online = any link routable.
    inst_simple "$moddir/99-provisioner-dhcp.network" \
        "${systemdnetwork}/99-provisioner-dhcp.network"
    mkdir -p "${initdir}${systemdsystemunitdir}/systemd-networkd-wait-online.service.d"
    {
        echo "# provisioner: one reachable NIC is enough to provision"
        echo "[Service]"
        echo "ExecStart="
        echo "ExecStart=${systemdutildir}/systemd-networkd-wait-online --any"
    } > "${initdir}${systemdsystemunitdir}/systemd-networkd-wait-online.service.d/provisioner.conf"

    inst_simple "$moddir/provisioner-boot.service" \
        "${systemdsystemunitdir}/provisioner-boot.service"
    $SYSTEMCTL -q --root "$initdir" enable provisioner-boot.service
    inst_simple "$moddir/provisioner-modules.service" \
        "${systemdsystemunitdir}/provisioner-modules.service"
    $SYSTEMCTL -q --root "$initdir" enable provisioner-modules.service
    inst_simple "$moddir/provisioner-inventory.service" \
        "${systemdsystemunitdir}/provisioner-inventory.service"
    $SYSTEMCTL -q --root "$initdir" enable provisioner-inventory.service
}
