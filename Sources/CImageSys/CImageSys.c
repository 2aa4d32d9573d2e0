#define _GNU_SOURCE
#include <sched.h>
#include "CImageSys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

static int proc_path(char *out, size_t size, int dirfd, const char *name) {
    int n = snprintf(out, size, "/proc/self/fd/%d/%s", dirfd, name);
    if (n < 0 || (size_t)n >= size) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

#define PROC_PATH_MAX 4200

ssize_t CImageSys_listxattrat(int dirfd, const char *name, char *list, size_t size) {
    char path[PROC_PATH_MAX];
    if (proc_path(path, sizeof path, dirfd, name) != 0) return -1;
    return llistxattr(path, list, size);
}

ssize_t CImageSys_getxattrat(int dirfd, const char *name, const char *attr, void *value, size_t size) {
    char path[PROC_PATH_MAX];
    if (proc_path(path, sizeof path, dirfd, name) != 0) return -1;
    return lgetxattr(path, attr, value, size);
}

int CImageSys_setxattrat(int dirfd, const char *name, const char *attr, const void *value, size_t size) {
    char path[PROC_PATH_MAX];
    if (proc_path(path, sizeof path, dirfd, name) != 0) return -1;
    return lsetxattr(path, attr, value, size, 0);
}

int CImageSys_removexattrat(int dirfd, const char *name, const char *attr) {
    char path[PROC_PATH_MAX];
    if (proc_path(path, sizeof path, dirfd, name) != 0) return -1;
    return lremovexattr(path, attr);
}

ssize_t CImageSys_flistxattr(int fd, char *list, size_t size) { return flistxattr(fd, list, size); }
ssize_t CImageSys_fgetxattr(int fd, const char *attr, void *value, size_t size) {
    return fgetxattr(fd, attr, value, size);
}
int CImageSys_fsetxattr(int fd, const char *attr, const void *value, size_t size) {
    return fsetxattr(fd, attr, value, size, 0);
}
int CImageSys_fremovexattr(int fd, const char *attr) { return fremovexattr(fd, attr); }

int CImageSys_futimens_mtime(int fd, int64_t sec, long nsec) {
    struct timespec times[2] = {{.tv_sec = 0, .tv_nsec = UTIME_OMIT}, {.tv_sec = sec, .tv_nsec = nsec}};
    return futimens(fd, times);
}

int CImageSys_utimensat_mtime(int dirfd, const char *name, int64_t sec, long nsec) {
    struct timespec times[2] = {{.tv_sec = 0, .tv_nsec = UTIME_OMIT}, {.tv_sec = sec, .tv_nsec = nsec}};
    return utimensat(dirfd, name, times, AT_SYMLINK_NOFOLLOW);
}

uint32_t CImageSys_major(uint64_t dev) { return major(dev); }
uint32_t CImageSys_minor(uint64_t dev) { return minor(dev); }
uint64_t CImageSys_makedev(uint32_t ma, uint32_t mi) { return makedev(ma, mi); }

int CImageSys_open_tmpfile(int dirfd) { return openat(dirfd, ".", O_RDWR | O_TMPFILE | O_CLOEXEC, 0600); }

int CImageSys_link_fd(int fd, int dirfd, const char *name) {
    if (linkat(fd, "", dirfd, name, AT_EMPTY_PATH) == 0) return 0;
    if (errno != ENOENT) return -1;  // ENOENT: no CAP_DAC_READ_SEARCH for AT_EMPTY_PATH
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    return linkat(AT_FDCWD, proc, dirfd, name, AT_SYMLINK_FOLLOW);
}

int CImageSys_syncfs(int fd) { return syncfs(fd); }

int CImageSys_unshare_fs(void) { return unshare(CLONE_FS); }
ssize_t CImageSys_llistxattr(const char *name, char *list, size_t size) { return llistxattr(name, list, size); }
ssize_t CImageSys_lgetxattr(const char *name, const char *attr, void *value, size_t size) {
    return lgetxattr(name, attr, value, size);
}
