/* stamp: announce "I have been exec'd" to the benchmark, then wait.
 *
 *   stamp PORT [TAG]
 *
 * First thing in main(), reads CLOCK_MONOTONIC and sends one UDP datagram
 * "<pid> <ns>" (or "<pid> <ns> <TAG>": the scale bench tags each slot with
 * its watcher and wid, so it knows which slot a new process replaced) to
 * 127.0.0.1:PORT, then sleeps until a signal ends it. The
 * benchmark receives the datagrams (no polling) and uses the child's own
 * clock reading as the moment the process became alive. The same binary runs
 * under every supervisor and under the C fork+exec loop, so the detection
 * cost is identical for all of them.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (argc < 2) {
        fprintf(stderr, "usage: stamp PORT [TAG]\n");
        return 2;
    }
    char msg[128];
    int n = snprintf(msg, sizeof msg, "%ld %lld%s%.60s", (long)getpid(),
                     (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec,
                     argc > 2 ? " " : "", argc > 2 ? argv[2] : "");
    if (n < 0 || n >= (int)sizeof msg) return 2;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)atoi(argv[1]));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (s >= 0) {
        sendto(s, msg, (size_t)n, 0, (struct sockaddr *)&a, sizeof a);
        close(s);
    }
    for (;;) pause();
}
