/* logwriter: writes N lines of exactly 100 bytes (99 + '\n') to stdout as
 * fast as it can, then one "END\n" line, closes stdout and waits for a signal
 * (it does not exit, so no supervisor respawns it and writes the lot again).
 *
 *   logwriter N PORT
 *
 * Before writing, it sends its start time to 127.0.0.1:PORT as stamp does.
 * Each line carries its number so lost or torn lines can be counted.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int write_all(const char *p, size_t len) {
    while (len > 0) {
        ssize_t w = write(1, p, len);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int main(int argc, char **argv) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (argc < 3) {
        fprintf(stderr, "usage: logwriter N PORT\n");
        return 2;
    }
    long n = atol(argv[1]);
    char msg[64];
    int m = snprintf(msg, sizeof msg, "%ld %lld", (long)getpid(),
                     (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)atoi(argv[2]));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (s >= 0) {
        sendto(s, msg, (size_t)m, 0, (struct sockaddr *)&a, sizeof a);
        close(s);
    }
    /* 64 KiB batches of whole lines, like a busy application's stdio buffer. */
    enum { LINE = 100, PER = 655 };
    static char buf[LINE * PER];
    long i = 0;
    while (i < n) {
        int k = 0;
        for (; k < PER && i < n; k++, i++) {
            char *l = buf + k * LINE;
            int h = snprintf(l, LINE, "line %09ld ", i);
            memset(l + h, 'x', (size_t)(LINE - 1 - h));
            l[LINE - 1] = '\n';
        }
        if (write_all(buf, (size_t)k * LINE) < 0) return 1;
    }
    if (write_all("END\n", 4) < 0) return 1;
    close(1);
    for (;;) pause();
}
