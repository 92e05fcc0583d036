/* bench/page_trace.c: which 4 KiB pages of the daemon's code run (bench/link-order builds
 * and preloads it; a measurement tool, not part of Ringmaster). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
/* Page-touch tracer for the main binary's text: every text page starts
 * PROT_NONE; the first execution faults, the handler records the page in a
 * shared file (one byte per page) and makes it executable again.
 * TRACE_EXE: path of the binary; TRACE_OUT: output file;
 * TRACE_ALLOW: "off-len,off-len" (hex, relative to the text mapping start
 * in file offsets) kept executable (code that runs with SIGSEGV blocked). */
static unsigned long lo, hi, fileoff;
static unsigned char *bits;
static void handler(int sig, siginfo_t *si, void *ctx) {
    unsigned long a = (unsigned long)si->si_addr;
    if (a >= lo && a < hi) {
        unsigned long p = a & ~4095UL;
        mprotect((void *)p, 4096, PROT_READ | PROT_EXEC);
        bits[(p - lo) / 4096] = 1;
        return;
    }
    signal(sig, SIG_DFL);
}
__attribute__((constructor)) static void ptrace_init(void) {
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return;
    exe[n] = 0;
    const char *want = getenv("TRACE_EXE");
    if (!want || strcmp(want, exe) != 0) return;
    unsetenv("LD_PRELOAD");
    FILE *f = fopen("/proc/self/maps", "r");
    char line[8192];
    while (f && fgets(line, sizeof line, f)) {
        unsigned long a, b, off;
        char perm[8], path[4096] = "";
        if (sscanf(line, "%lx-%lx %7s %lx %*s %*s %4095s", &a, &b, perm, &off, path) >= 4 &&
            strcmp(path, exe) == 0 && perm[2] == 'x') {
            lo = a; hi = b; fileoff = off;
        }
    }
    if (f) fclose(f);
    if (!lo) return;
    size_t pages = (hi - lo) / 4096;
    int fd = open(getenv("TRACE_OUT"), O_RDWR | O_CREAT | O_TRUNC, 0644);
    ftruncate(fd, pages + 16);
    bits = mmap(NULL, pages + 16, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    memcpy(bits + pages, &fileoff, sizeof fileoff);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGSEGV, &sa, NULL);
    mprotect((void *)lo, hi - lo, PROT_NONE);
    const char *allow = getenv("TRACE_ALLOW");
    while (allow && *allow) {
        char *end;
        unsigned long off = strtoul(allow, &end, 16), len = strtoul(end + 1, &end, 16);
        unsigned long a = (lo + off - fileoff) & ~4095UL, b = (lo + off - fileoff + len + 4095) & ~4095UL;
        mprotect((void *)a, b - a, PROT_READ | PROT_EXEC);
        for (unsigned long p = a; p < b; p += 4096) bits[(p - lo) / 4096] = 2;
        allow = *end ? end + 1 : end;
    }
}
