/* fork_cost: what a spawn costs from a multi-threaded parent, by method.
 *
 *   fork_cost METHOD THREADS N PROGRAM [ARGS...]
 *
 * METHOD is "fork" (fork + execv, as std::process::Command does when a
 * pre_exec closure is set, and as Ringmaster does) or "posix_spawn"
 * (glibc's, a clone(CLONE_VM|CLONE_VFORK): no page tables copied, no
 * copy-on-write). THREADS extra threads are started first and kept waking
 * every millisecond, like the daemon's runtime threads, and 8 MiB of heap
 * is touched, so the parent looks like a daemon rather than a toy. Each
 * spawn waits until the child has exec'd (a close-on-exec pipe for fork; the
 * vfork semantics for posix_spawn), as a supervisor that reports exec errors
 * must. Prints the time for N spawns in ms; children are reaped at the end.
 *
 * FDS=n in the environment first opens n close-on-exec descriptors (pipes),
 * like a daemon that holds two pipes per supervised process: fork and
 * posix_spawn both copy the descriptor table and execve closes every one.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;
static volatile int stop;

static void *ticker(void *arg) {
    (void)arg;
    struct timespec ts = {0, 1000000};
    while (!stop)
        nanosleep(&ts, NULL);
    return NULL;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: fork_cost fork|posix_spawn THREADS N PROGRAM [ARGS...]\n");
        return 2;
    }
    int use_fork = strcmp(argv[1], "fork") == 0;
    int threads = atoi(argv[2]);
    int n = atoi(argv[3]);
    char *heap = malloc(8 << 20);
    if (!heap)
        return 1;
    memset(heap, 1, 8 << 20);
    const char *fds_env = getenv("FDS");
    int fds = fds_env ? atoi(fds_env) : 0;
    for (int i = 0; i + 1 < fds; i += 2) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) != 0) {
            perror("pipe2 (raise ulimit -n)");
            return 1;
        }
    }
    pthread_t tids[64];
    for (int i = 0; i < threads && i < 64; i++)
        pthread_create(&tids[i], NULL, ticker, NULL);
    double t0 = now_ms();
    for (int i = 0; i < n; i++) {
        if (use_fork) {
            int p[2];
            if (pipe2(p, O_CLOEXEC) != 0)
                return 1;
            pid_t pid = fork();
            if (pid == 0) {
                setpgid(0, 0);
                execv(argv[4], argv + 4);
                _exit(127);
            }
            if (pid < 0) {
                perror("fork");
                return 1;
            }
            close(p[1]);
            char b;
            while (read(p[0], &b, 1) > 0) {
            }
            close(p[0]);
        } else {
            posix_spawnattr_t attr;
            posix_spawnattr_init(&attr);
            posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
            posix_spawnattr_setpgroup(&attr, 0);
            pid_t pid;
            int e = posix_spawn(&pid, argv[4], NULL, &attr, argv + 4, environ);
            posix_spawnattr_destroy(&attr);
            if (e != 0) {
                fprintf(stderr, "posix_spawn: %s\n", strerror(e));
                return 1;
            }
        }
        heap[(i * 4096) % (8 << 20)]++; /* the parent keeps working between spawns */
    }
    double el = now_ms() - t0;
    stop = 1;
    for (int i = 0; i < threads && i < 64; i++)
        pthread_join(tids[i], NULL);
    while (wait(NULL) > 0) {
    }
    printf("%s threads=%d fds=%d n=%d: %.1f ms\n", argv[1], threads, fds, n, el);
    return 0;
}
