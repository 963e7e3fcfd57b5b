/* cgfault.c — LD_PRELOAD shim that makes the storage calls of a real `creditgate serve` fail,
 * switched on and off at run time, for tests/faults/test_faults.c.
 *
 * Wraps write, pwrite, pwrite64, writev, fsync and fdatasync. A call fails only when its file
 * descriptor's path (readlink /proc/self/fd/N) contains $CG_FAULT_MATCH (e.g. "ledger.db", which
 * also matches the -wal and -journal files) and the control file $CG_FAULT_CTL currently says
 * so. The control file holds words, re-read on every matching call:
 *     write=ENOSPC   write=EIO   fsync=EIO   fsync=ENOSPC        (empty or absent: no fault)
 * Every injected failure prints one line "cgfault: <call> <path> -> <errno>" on stderr (the
 * server's log), so the test can count them. No allocation, no stdio on the write path. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);
typedef ssize_t (*writev_fn)(int, const struct iovec *, int);
typedef int (*sync_fn)(int);

static __thread int in_shim; /* our own reads and log writes must not recurse */

static void *real(const char *name) {
    void *f = dlsym(RTLD_NEXT, name);
    if (!f) abort();
    return f;
}

/* The errno to inject for this call kind ("write" or "fsync") on fd, 0 for none. */
static int fault_for(int fd, const char *kind, char *path, size_t path_bytes) {
    const char *match = getenv("CG_FAULT_MATCH"), *ctl = getenv("CG_FAULT_CTL");
    if (in_shim || !match || !ctl || fd < 0) return 0;
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, path_bytes - 1);
    if (n <= 0) return 0;
    path[n] = '\0';
    if (!strstr(path, match)) return 0;
    in_shim = 1;
    char words[256] = "";
    int cfd = open(ctl, O_RDONLY | O_CLOEXEC);
    if (cfd >= 0) {
        ssize_t got = read(cfd, words, sizeof words - 1);
        words[got > 0 ? got : 0] = '\0';
        close(cfd);
    }
    in_shim = 0;
    char want[32];
    snprintf(want, sizeof want, "%s=", kind);
    const char *at = strstr(words, want);
    if (!at) return 0;
    at += strlen(want);
    if (!strncmp(at, "ENOSPC", 6)) return ENOSPC;
    if (!strncmp(at, "EIO", 3)) return EIO;
    return 0;
}

static int inject(const char *call, const char *path, int e) {
    char line[600];
    int n = snprintf(line, sizeof line, "cgfault: %s %s -> %s\n", call, path, e == ENOSPC ? "ENOSPC" : "EIO");
    in_shim = 1;
    static write_fn w;
    if (!w) w = (write_fn)real("write");
    if (n > 0) (void)!w(STDERR_FILENO, line, (size_t)n);
    in_shim = 0;
    errno = e;
    return -1;
}

ssize_t write(int fd, const void *buf, size_t bytes) {
    static write_fn f;
    if (!f) f = (write_fn)real("write");
    char path[512];
    int e = fault_for(fd, "write", path, sizeof path);
    return e ? inject("write", path, e) : f(fd, buf, bytes);
}

ssize_t pwrite(int fd, const void *buf, size_t bytes, off_t at) {
    static pwrite_fn f;
    if (!f) f = (pwrite_fn)real("pwrite");
    char path[512];
    int e = fault_for(fd, "write", path, sizeof path);
    return e ? inject("pwrite", path, e) : f(fd, buf, bytes, at);
}

ssize_t pwrite64(int fd, const void *buf, size_t bytes, off_t at) {
    static pwrite_fn f;
    if (!f) f = (pwrite_fn)real("pwrite64");
    char path[512];
    int e = fault_for(fd, "write", path, sizeof path);
    return e ? inject("pwrite64", path, e) : f(fd, buf, bytes, at);
}

ssize_t writev(int fd, const struct iovec *iov, int count) {
    static writev_fn f;
    if (!f) f = (writev_fn)real("writev");
    char path[512];
    int e = fault_for(fd, "write", path, sizeof path);
    return e ? inject("writev", path, e) : f(fd, iov, count);
}

int fsync(int fd) {
    static sync_fn f;
    if (!f) f = (sync_fn)real("fsync");
    char path[512];
    int e = fault_for(fd, "fsync", path, sizeof path);
    return e ? inject("fsync", path, e) : f(fd);
}

int fdatasync(int fd) {
    static sync_fn f;
    if (!f) f = (sync_fn)real("fdatasync");
    char path[512];
    int e = fault_for(fd, "fsync", path, sizeof path);
    return e ? inject("fdatasync", path, e) : f(fd);
}
