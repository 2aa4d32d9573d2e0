#!/usr/bin/env bash
# The node image of the demo and the boot tests: a Debian bookworm root from
# mmdebstrap (minbase + systemd, udev, iproute2, and mdadm and lvm2 because the
# nodes boot from RAID1 + LVM), with a kernel of its own: Debian's cloud
# flavour (linux-image-cloud-amd64, 6.1.0-N-cloud-amd64), a release the build
# machine does not run, so a test can tell the image's kernel from the
# machine's. Nodes boot it (docs/boot.md, "The image's kernel"); the image's
# own initrd.img is removed, nodes never boot it. Plus provisioner-ready.service,
# which says on the console when the node reached multi-user.target, with the
# image version it runs, the kernel it runs, whether a module that is not in
# the provisioning initramfs (isofs) loads, its IPv4 addresses (once
# NetworkManager, where the image has it, finished starting), whether
# NetworkManager runs, and what overlays wrote (/etc/motd, /etc/site-check)
# (and powers the node off when the
# kernel command line has provisioner-ready.poweroff, a few seconds later so
# the login prompt shows, so a test can boot it again cleanly). And
# provisioner-capture.service, which runs before it only when the kernel command
# line says provisioner-capture=NAME (and not on a boot from the local disk): it
# reads the admin's ca.pem, admin.pem and admin-key.pem from a tar on the disk
# with serial CAPTURETLS (the test attaches one; a real admin would copy them to
# the node), captures the running node into image NAME with the agent the boot
# left in /run (--include-mount /var: the test layout gives /var its own
# filesystem), writes /etc/provisioner-capture-note, and captures again, so the
# test sees what the first capture and a one-file change each sent.
#
#   scripts/build-image.sh OUTDIR
#     OUTDIR/debian.tar        version 1
#
# Cached: rebuilt only when this script changes. The Debian mirror is the one
# this machine's apt uses.
set -euo pipefail

out=${1:?usage: build-image.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
stamp="$out/.inputs"
inputs=$(sha256sum "$0" | cut -d' ' -f1)
if [[ -f $out/debian.tar && "$(cat "$stamp" 2> /dev/null)" == "$inputs" ]]; then
    echo "image: cached $out/debian.tar"
    exit 0
fi

mirror=$(grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2> /dev/null | awk '{print $2}' | grep -v security | head -n1 || true)
[[ -n $mirror ]] || mirror=$(grep -h '^deb ' /etc/apt/sources.list 2> /dev/null | awk '{print $2}' | grep -v security | head -n1 || true)
[[ -n $mirror ]] || { echo "build-image: no Debian mirror in /etc/apt/sources.list{,.d}" >&2; exit 1; }
# The image follows security updates too, as a real one does (and the scenarios install a newer
# kernel from there): the security mirror this machine uses, else Debian's.
security=$(grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2> /dev/null | awk '{print $2}' | grep security | head -n1 || true)
[[ -n $security ]] || security=$(grep -h '^deb ' /etc/apt/sources.list 2> /dev/null | awk '$2 ~ /security/ {print $2}' | head -n1 || true)
[[ -n $security ]] || security=http://deb.debian.org/debian-security

work=$(mktemp -d "${TMPDIR:-/var/tmp}/provisioner-image.XXXXXX")
trap 'rm -rf -- "$work"' EXIT
root=$work/root

start=$(date +%s)
echo "image: mmdebstrap bookworm from $mirror and $security"
mmdebstrap --quiet --variant=minbase --include=systemd-sysv,udev,iproute2,mdadm,lvm2,kmod,linux-image-cloud-amd64 \
    bookworm "$root" "deb $mirror bookworm main" "deb $security bookworm-security main"
rm -f "$root"/boot/initrd.img-*

cat > "$root/etc/systemd/system/provisioner-ready.service" << 'EOF'
[Unit]
Description=Say on the console that this node reached multi-user.target
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'if command -v nm-online > /dev/null; then nm-online -s -q -t 30; fi; for i in 1 2 3 4 5 6 7 8 9 10; do ip -4 -o addr show scope global | grep -q inet && break; sleep 1; done; echo "PROVISIONER-READY: $(cat /etc/hostname) reached multi-user.target; image $(sed -n "s/^version //p" /.provisioner-state/applied | cut -c1-12); hello: $(hello 2>/dev/null || echo absent); kernel: $(uname -r); isofs: $(modprobe isofs 2>/dev/null && echo loaded || echo not-loaded); addr: $(ip -4 -o addr show scope global | tr -s " " | cut -d" " -f4 | xargs); nm: $(systemctl is-active NetworkManager 2>/dev/null); motd: $(head -n 1 /etc/motd 2>/dev/null | cut -c1-60); site: $(cat /etc/site-check 2>/dev/null || echo none); capture-note: $(cat /etc/provisioner-capture-note 2>/dev/null || echo none); identity: $(stat -c %%a /var/lib/provisioner/identity/node-key.pem 2>/dev/null || echo none); hostkey: $(test -f /etc/ssh/ssh_host_ed25519_key.pub && sha256sum < /etc/ssh/ssh_host_ed25519_key.pub | cut -c1-16 || echo none); token: $(stat -c "%%a %%s" /etc/site/token 2>/dev/null || echo none)" > /dev/console'
ExecStart=/bin/sh -c 'if grep -qw provisioner-ready.poweroff /proc/cmdline; then sleep 8; systemctl --no-block poweroff; fi'

[Install]
WantedBy=multi-user.target
EOF
cat > "$root/etc/systemd/system/provisioner-capture.service" << 'EOF'
[Unit]
Description=Capture this node into an image (boot tests: provisioner-capture=NAME)
After=multi-user.target network-online.target
Before=provisioner-ready.service
ConditionKernelCommandLine=!provisioner.local-boot

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/provisioner-capture-test

[Install]
WantedBy=multi-user.target
EOF
mkdir -p "$root/usr/local/sbin"
cat > "$root/usr/local/sbin/provisioner-capture-test" << 'EOF'
#!/bin/sh
name=$(tr ' ' '\n' < /proc/cmdline | sed -n 's/^provisioner-capture=//p')
[ -n "$name" ] || exit 0
disk=/dev/disk/by-id/virtio-CAPTURETLS
for _ in $(seq 1 30); do [ -e "$disk" ] && ip -4 route | grep -q '^default' && break; sleep 1; done
mkdir -p /run/capture-tls && tar -xf "$disk" -C /run/capture-tls || {
    echo "PROVISIONER-CAPTURE: no admin certificate on $disk" > /dev/console
    exit 1
}
capture() {
    if /run/provisioner/provisioner-agent capture "$name" --tls-dir /run/capture-tls --include-mount /var \
        > /run/capture.log 2>&1; then
        sed "s/^/PROVISIONER-CAPTURE: $1: /" /run/capture.log > /dev/console
    else
        sed "s/^/PROVISIONER-CAPTURE: $1 FAILED: /" /run/capture.log > /dev/console
    fi
}
capture first
echo "captured from $(cat /etc/hostname)" > /etc/provisioner-capture-note
capture second
rm -rf /run/capture-tls
EOF
chmod 0755 "$root/usr/local/sbin/provisioner-capture-test"
mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
ln -sf /etc/systemd/system/provisioner-ready.service "$root/etc/systemd/system/multi-user.target.wants/"
ln -sf /etc/systemd/system/provisioner-capture.service "$root/etc/systemd/system/multi-user.target.wants/"
# A node's identity is its own: the agent gives each node a machine id on its first install.
rm -f "$root/etc/machine-id" "$root/var/lib/dbus/machine-id"

tar --numeric-owner --xattrs --xattrs-include='*' --acls -C "$root" -cf "$out/debian.tar.new" .
mv "$out/debian.tar.new" "$out/debian.tar"

echo "$inputs" > "$stamp"
echo "image: built $out/debian.tar ($(stat -c %s "$out/debian.tar") bytes, kernel $(ls "$root"/boot/vmlinuz-* | sed 's|.*/vmlinuz-||')) in $(($(date +%s) - start)) s"
