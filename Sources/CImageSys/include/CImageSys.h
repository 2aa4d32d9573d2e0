#ifndef CIMAGESYS_H
#define CIMAGESYS_H

// Linux calls the image sync needs that Swift's Glibc module does not import
// (sys/xattr.h, UTIME_OMIT, the dev_t macros). Every symbol is prefixed CImageSys_.

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/// Extended attributes of the entry `name` in the open directory `dirfd`, never following a
/// symlink: the call goes through /proc/self/fd/DIRFD/NAME with the l*xattr variants, so
/// only the last component is looked up, beneath an already-validated directory.
ssize_t CImageSys_listxattrat(int dirfd, const char *name, char *list, size_t size);
ssize_t CImageSys_getxattrat(int dirfd, const char *name, const char *attr, void *value, size_t size);
int CImageSys_setxattrat(int dirfd, const char *name, const char *attr, const void *value, size_t size);
int CImageSys_removexattrat(int dirfd, const char *name, const char *attr);

ssize_t CImageSys_flistxattr(int fd, char *list, size_t size);
ssize_t CImageSys_fgetxattr(int fd, const char *attr, void *value, size_t size);
int CImageSys_fsetxattr(int fd, const char *attr, const void *value, size_t size);
int CImageSys_fremovexattr(int fd, const char *attr);

/// Sets only the modification time (atime left alone), of an open file or of `name`
/// in `dirfd` without following a symlink.
int CImageSys_futimens_mtime(int fd, int64_t sec, long nsec);
int CImageSys_utimensat_mtime(int dirfd, const char *name, int64_t sec, long nsec);

/// Gives the calling thread its own working directory (unshare CLONE_FS), so that scanning
/// threads can fchdir into the directory they list and look names up relative to it.
int CImageSys_unshare_fs(void);
/// l*xattr of a name relative to the calling thread's working directory (one component).
ssize_t CImageSys_llistxattr(const char *name, char *list, size_t size);
ssize_t CImageSys_lgetxattr(const char *name, const char *attr, void *value, size_t size);

/// An unnamed regular file in the directory `dirfd` (O_TMPFILE, mode 0600, read-write): it has no
/// name until `CImageSys_link_fd` gives it one, and a crash before that leaves nothing behind.
/// -1 with errno EOPNOTSUPP/EISDIR/EINVAL where the filesystem cannot do it.
int CImageSys_open_tmpfile(int dirfd);
/// Gives the open file `fd` the name `name` in `dirfd` (linkat with AT_EMPTY_PATH, which needs
/// CAP_DAC_READ_SEARCH; else through /proc/self/fd). Fails with EEXIST if the name is taken.
int CImageSys_link_fd(int fd, int dirfd, const char *name);

/// Flushes the filesystem holding `fd` (syncfs).
int CImageSys_syncfs(int fd);

uint32_t CImageSys_major(uint64_t dev);
uint32_t CImageSys_minor(uint64_t dev);
uint64_t CImageSys_makedev(uint32_t major, uint32_t minor);

#endif
