/* spawn_loop: the physical limit for "start N processes".
 *
 *   spawn_loop N PROGRAM [ARGS...]
 *
 * fork()+execv() N times in a tight loop, as a supervisor would with nothing
 * else to do, then reap children until they are all gone (the benchmark ends
 * them by pid). No readiness handshake, no bookkeeping.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: spawn_loop N PROGRAM [ARGS...]\n");
        return 2;
    }
    int n = atoi(argv[1]);
    for (int i = 0; i < n; i++) {
        pid_t p = fork();
        if (p == 0) {
            execv(argv[2], argv + 2);
            _exit(127);
        }
        if (p < 0) {
            perror("fork");
            return 1;
        }
    }
    while (wait(NULL) > 0) {
    }
    return 0;
}
