#ifndef CBLKID_H
#define CBLKID_H

// The one door to libblkid. Swift calls libblkid's own functions through this
// module; the few helpers below are prefixed CBlkid_ and exist only where a
// C idiom (out-parameters of char pointers, macros) is awkward from Swift.

#include <blkid/blkid.h>
#include <stdint.h>

/// Creates a probe over the byte range [offset, offset+size) of an open
/// descriptor (size 0: to the end). Returns NULL and sets errno on failure.
blkid_probe CBlkid_probe_new(int fd, uint64_t offset, uint64_t size);

/// Reads the n-th name/value pair of the last successful probe step.
/// Returns 0 on success. The strings belong to the probe.
int CBlkid_probe_value(blkid_probe pr, int n, const char **name, const char **data, size_t *len);

/// Enables superblock probing with every detail this project reads
/// (type, usage, label, uuid, version, magic offset) and wipefs-style
/// enumeration of all signatures.
int CBlkid_enable_superblocks(blkid_probe pr);

/// Enables partition-table probing with per-entry details.
int CBlkid_enable_partitions(blkid_probe pr);

#endif
