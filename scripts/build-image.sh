#!/usr/bin/env bash
# The node image of the demo and the boot tests: a Debian bookworm root from
# mmdebstrap (minbase + systemd, udev, iproute2, and mdadm and lvm2 because the
# nodes boot from RAID1 + LVM), plus provisioner-ready.service,
# which says on the console when the node reached multi-user.target, with the
# image version it runs (and powers the node off when the kernel command line
# has provisioner-ready.poweroff, a few seconds later so the login prompt shows,
# so a test can boot it again cleanly).
#
#   scripts/build-image.sh OUTDIR
#     OUTDIR/debian.tar        version 1
#     OUTDIR/debian-hello.tar  version 1 plus the package "hello" (one package changed)
#
# Both are cached: rebuilt only when this script changes. The Debian mirror is
# the one this machine's apt uses.
set -euo pipefail

out=${1:?usage: build-image.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
stamp="$out/.inputs"
inputs=$(sha256sum "$0" | cut -d' ' -f1)
if [[ -f $out/debian.tar && -f $out/debian-hello.tar && "$(cat "$stamp" 2> /dev/null)" == "$inputs" ]]; then
    echo "image: cached $out/debian.tar and $out/debian-hello.tar"
    exit 0
fi

mirror=$(grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2> /dev/null | awk '{print $2}' | grep -v security | head -n1 || true)
[[ -n $mirror ]] || mirror=$(grep -h '^deb ' /etc/apt/sources.list 2> /dev/null | awk '{print $2}' | grep -v security | head -n1 || true)
[[ -n $mirror ]] || { echo "build-image: no Debian mirror in /etc/apt/sources.list{,.d}" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/var/tmp}/provisioner-image.XXXXXX")
trap 'rm -rf -- "$work"' EXIT
root=$work/root

start=$(date +%s)
echo "image: mmdebstrap bookworm from $mirror"
mmdebstrap --quiet --variant=minbase --include=systemd-sysv,udev,iproute2,mdadm,lvm2 bookworm "$root" "$mirror"

cat > "$root/etc/systemd/system/provisioner-ready.service" << 'EOF'
[Unit]
Description=Say on the console that this node reached multi-user.target
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo "PROVISIONER-READY: $(cat /etc/hostname) reached multi-user.target; image $(sed -n "s/^version //p" /.provisioner-state/applied | cut -c1-12); hello: $(hello 2>/dev/null || echo absent)" > /dev/console'
ExecStart=/bin/sh -c 'if grep -qw provisioner-ready.poweroff /proc/cmdline; then sleep 8; systemctl --no-block poweroff; fi'

[Install]
WantedBy=multi-user.target
EOF
mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
ln -sf /etc/systemd/system/provisioner-ready.service "$root/etc/systemd/system/multi-user.target.wants/"
# A node's identity is its own: the agent gives each node a machine id on its first install.
rm -f "$root/etc/machine-id" "$root/var/lib/dbus/machine-id"

tar --numeric-owner --xattrs --xattrs-include='*' --acls -C "$root" -cf "$out/debian.tar.new" .
mv "$out/debian.tar.new" "$out/debian.tar"

# Version 2: the same root with one more package.
chmod 755 "$work"  # apt downloads as _apt
(cd "$work" && { apt-get download hello > /dev/null 2>&1 || { apt-get update -qq && apt-get download hello > /dev/null; }; })
dpkg --root="$root" --force-script-chrootless -i "$work"/hello_*.deb > /dev/null
tar --numeric-owner --xattrs --xattrs-include='*' --acls -C "$root" -cf "$out/debian-hello.tar.new" .
mv "$out/debian-hello.tar.new" "$out/debian-hello.tar"

echo "$inputs" > "$stamp"
echo "image: built $out/debian.tar ($(stat -c %s "$out/debian.tar") bytes) and debian-hello.tar in $(($(date +%s) - start)) s"
