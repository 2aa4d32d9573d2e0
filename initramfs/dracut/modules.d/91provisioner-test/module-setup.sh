#!/bin/bash
# dracut module "provisioner-test": VM test runner.  Test images only
# (EXTRA_MODULES=provisioner-test); never part of a production initramfs.
#
# With "provisioner.test" on the kernel command line, provisioner-test.service
# reads a shell script from QEMU fw_cfg (opt/provisioner/test-script), runs it
# with the step() helper from provisioner-test-lib.sh, reports to the
# virtio-serial port "provisioner.test" and powers the VM off.
# See initramfs/README.md for the protocol.

# called by dracut
check() {
    return 255
}

# called by dracut
depends() {
    echo systemd systemd-initrd udev-rules
    return 0
}

# called by dracut
installkernel() {
    hostonly='' instmods qemu_fw_cfg virtio_pci virtio_console
}

# called by dracut
install() {
    # What the runner and test scripts use (-o: whatever the host has).
    inst_multiple sh cat wc sync mkdir rm sleep ls modprobe udevadm systemctl
    inst_multiple -o \
        bash env cp mv ln cmp head tail tr cut sed grep awk sort uniq od \
        dd stat find readlink truncate timeout sha256sum md5sum hexdump \
        lsblk blkid findmnt df du ps ip dmesg tee xargs seq date uname

    inst_simple "$moddir/provisioner-test-lib.sh" /usr/lib/provisioner-test/lib.sh
    inst_script "$moddir/provisioner-test-runner.sh" /usr/lib/provisioner-test/runner
    inst_simple "$moddir/provisioner-test.service" \
        "${systemdsystemunitdir}/provisioner-test.service"
    $SYSTEMCTL -q --root "$initdir" enable provisioner-test.service

    # The runner starts after network-online.target, like the agent.  A test
    # VM without a NIC would otherwise wait 120 s (wait-online's default);
    # with a NIC, DHCP on QEMU user networking takes ~1 s.  Sorts after the
    # provisioner module's provisioner.conf, so this ExecStart wins.
    mkdir -p "${initdir}${systemdsystemunitdir}/systemd-networkd-wait-online.service.d"
    {
        echo "# provisioner-test (test images only): don't hold up NIC-less test VMs"
        echo "[Service]"
        echo "ExecStart="
        echo "ExecStart=${systemdutildir}/systemd-networkd-wait-online --any --timeout=20"
    } > "${initdir}${systemdsystemunitdir}/systemd-networkd-wait-online.service.d/zz-provisioner-test.conf"
}
