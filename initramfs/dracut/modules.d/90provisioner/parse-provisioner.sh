#!/bin/sh
# dracut cmdline hook: root=provisioner means "no root device yet":
# provisioner-boot.service (provisioner-agent boot) prepares the disks and
# mounts the installed root file system on /sysroot itself.  Without
# rootok=1, dracut-cmdline would stop with "Don't know how to handle
# 'root=provisioner'" (the same trick as Warewulf's root=wwinit).

type getarg > /dev/null 2>&1 || . /lib/dracut-lib.sh

[ -z "$root" ] && root=$(getarg root=)

if [ "$root" = "provisioner" ]; then
    rootok=1
    info "provisioner: root=provisioner, provisioner-agent will mount /sysroot"
fi
