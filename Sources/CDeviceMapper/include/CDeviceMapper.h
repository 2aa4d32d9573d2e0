#ifndef CDEVICEMAPPER_H
#define CDEVICEMAPPER_H

// Device-mapper's ioctls on /dev/mapper/control, with the kernel's own struct dm_ioctl
// (linux/dm-ioctl.h): the few calls LVM's activation makes for a plain volume. Every function
// returns 0 or -1 with errno set, as the ioctl does. Symbols are prefixed CDM_.

#include <stddef.h>
#include <stdint.h>

/// DM_DEV_CREATE: a device with no table yet; its number comes back in major/minor.
int CDM_create(int control, const char *name, const char *uuid, uint32_t *major, uint32_t *minor);

/// DM_TABLE_LOAD: `count` targets into the device's inactive table (read-only when `readonly`).
int CDM_load(int control, const char *name, int readonly, size_t count, const uint64_t *starts,
             const uint64_t *lengths, const char *const *types, const char *const *parameters);

/// DM_DEV_SUSPEND without DM_SUSPEND_FLAG: makes the loaded table live. `cookie` goes to udev as
/// DM_COOKIE (its upper 16 bits are libdm's udev flags). `uevent` says whether the kernel sent one.
int CDM_resume(int control, const char *name, uint32_t cookie, int *uevent);

/// DM_DEV_REMOVE: the device goes (it must not be open).
int CDM_remove(int control, const char *name);

/// The number of the block device node at `path` (stat's st_rdev).
int CDM_device_number(const char *path, uint32_t *major, uint32_t *minor);

#endif
