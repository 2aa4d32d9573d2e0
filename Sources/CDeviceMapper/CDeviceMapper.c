#include "CDeviceMapper.h"

#include <errno.h>
#include <linux/dm-ioctl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

// Version 4.0.0: every kernel with this interface accepts it (it checks the major number and
// that ours is not newer).
static void header(struct dm_ioctl *io, size_t size, const char *name) {
    memset(io, 0, size);
    io->version[0] = DM_VERSION_MAJOR;
    io->data_size = (uint32_t)size;
    io->data_start = sizeof(struct dm_ioctl);
    strncpy(io->name, name, DM_NAME_LEN - 1);
}

static int named(const char *name) {
    if (name == NULL || strlen(name) >= DM_NAME_LEN) {
        errno = ENAMETOOLONG;
        return 0;
    }
    return 1;
}

int CDM_create(int control, const char *name, const char *uuid, uint32_t *major, uint32_t *minor) {
    if (!named(name) || (uuid != NULL && strlen(uuid) >= DM_UUID_LEN)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    struct dm_ioctl io;
    header(&io, sizeof io, name);
    if (uuid != NULL) strncpy(io.uuid, uuid, DM_UUID_LEN - 1);
    if (ioctl(control, DM_DEV_CREATE, &io) != 0) return -1;
    // The kernel's huge_encode_dev.
    uint64_t dev = io.dev;
    *major = (uint32_t)((dev & 0xfff00) >> 8);
    *minor = (uint32_t)((dev & 0xff) | ((dev >> 12) & 0xfff00));
    return 0;
}

int CDM_load(int control, const char *name, int readonly, size_t count, const uint64_t *starts,
             const uint64_t *lengths, const char *const *types, const char *const *parameters) {
    if (!named(name)) return -1;
    // Each target: its spec, then its parameters with their NUL, padded to 8 bytes (as libdm does).
    size_t size = sizeof(struct dm_ioctl);
    for (size_t i = 0; i < count; i++) {
        if (strlen(types[i]) >= DM_MAX_TYPE_NAME) {
            errno = EINVAL;
            return -1;
        }
        size += (sizeof(struct dm_target_spec) + strlen(parameters[i]) + 1 + 7) & ~(size_t)7;
    }
    if (size > UINT32_MAX) {
        errno = E2BIG;
        return -1;
    }
    char *buffer = calloc(1, size);
    if (buffer == NULL) return -1;
    struct dm_ioctl *io = (struct dm_ioctl *)buffer;
    header(io, size, name);
    io->target_count = (uint32_t)count;
    if (readonly) io->flags |= DM_READONLY_FLAG;
    size_t offset = sizeof(struct dm_ioctl);
    for (size_t i = 0; i < count; i++) {
        struct dm_target_spec *spec = (struct dm_target_spec *)(buffer + offset);
        size_t length = (sizeof(struct dm_target_spec) + strlen(parameters[i]) + 1 + 7) & ~(size_t)7;
        spec->sector_start = starts[i];
        spec->length = lengths[i];
        strncpy(spec->target_type, types[i], DM_MAX_TYPE_NAME - 1);
        memcpy(buffer + offset + sizeof(struct dm_target_spec), parameters[i], strlen(parameters[i]) + 1);
        spec->next = (uint32_t)length;
        offset += length;
    }
    int result = ioctl(control, DM_TABLE_LOAD, io);
    int saved = errno;
    free(buffer);
    errno = saved;
    return result == 0 ? 0 : -1;
}

int CDM_resume(int control, const char *name, uint32_t cookie, int *uevent) {
    if (!named(name)) return -1;
    struct dm_ioctl io;
    header(&io, sizeof io, name);
    io.event_nr = cookie;
    if (ioctl(control, DM_DEV_SUSPEND, &io) != 0) return -1;
    *uevent = (io.flags & DM_UEVENT_GENERATED_FLAG) != 0;
    return 0;
}

int CDM_remove(int control, const char *name) {
    if (!named(name)) return -1;
    struct dm_ioctl io;
    header(&io, sizeof io, name);
    return ioctl(control, DM_DEV_REMOVE, &io) == 0 ? 0 : -1;
}

int CDM_device_number(const char *path, uint32_t *major, uint32_t *minor) {
    struct stat st;
    if (stat(path, &st) != 0) return -1;
    if (!S_ISBLK(st.st_mode)) {
        errno = ENOTBLK;
        return -1;
    }
    *major = (uint32_t)major(st.st_rdev);
    *minor = (uint32_t)minor(st.st_rdev);
    return 0;
}
