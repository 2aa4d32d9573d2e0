#include "CBlkid.h"

#include <errno.h>
#include <stddef.h>

blkid_probe CBlkid_probe_new(int fd, uint64_t offset, uint64_t size) {
    blkid_probe pr = blkid_new_probe();
    if (pr == NULL) {
        if (errno == 0) errno = ENOMEM;
        return NULL;
    }
    if (blkid_probe_set_device(pr, fd, (blkid_loff_t)offset, (blkid_loff_t)size) != 0) {
        int saved = errno ? errno : EINVAL;
        blkid_free_probe(pr);
        errno = saved;
        return NULL;
    }
    return pr;
}

int CBlkid_probe_value(blkid_probe pr, int n, const char **name, const char **data, size_t *len) {
    return blkid_probe_get_value(pr, n, name, data, len);
}

int CBlkid_enable_superblocks(blkid_probe pr) {
    if (blkid_probe_enable_superblocks(pr, 1) != 0) return -1;
    if (blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_TYPE | BLKID_SUBLKS_USAGE | BLKID_SUBLKS_LABEL |
                                                  BLKID_SUBLKS_UUID | BLKID_SUBLKS_VERSION |
                                                  BLKID_SUBLKS_MAGIC | BLKID_SUBLKS_BADCSUM) != 0)
        return -1;
    if (blkid_probe_enable_partitions(pr, 1) != 0) return -1;
    // Report a partition table's magic as a signature too, like wipefs does.
    return blkid_probe_set_partitions_flags(pr, BLKID_PARTS_MAGIC);
}

int CBlkid_enable_partitions(blkid_probe pr) {
    if (blkid_probe_enable_superblocks(pr, 0) != 0) return -1;
    if (blkid_probe_enable_partitions(pr, 1) != 0) return -1;
    return blkid_probe_set_partitions_flags(pr, BLKID_PARTS_ENTRY_DETAILS);
}
