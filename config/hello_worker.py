#!/usr/bin/env python3
"""A tiny HTTP worker that accepts on a socket it did not bind.

Ringmaster binds the socket and passes it down; this worker finds it either
from `--fd N` (Circus-style `$(circus.sockets.web)` substitution) or from
systemd's LISTEN_FDS/LISTEN_PID convention. It answers every request with its
own pid, so you can see several workers share one port.

It stops gracefully: on SIGTERM it finishes the request in hand, then exits
(the signal only wakes the select loop, so no accepted connection is dropped).

Options for demonstrating readiness:
  --ready-after MS   wait MS milliseconds before serving (a slow start)
  --notify           then tell the supervisor READY=1 on $NOTIFY_SOCKET
  --never-ready      never serve and never say ready (a broken release)
  --watchdog         send WATCHDOG=1 every 100 ms while serving
  --hang-after MS    stop serving and pinging after MS ms (a hung process)
"""
import os
import select
import signal
import socket
import sys
import time


def arg(name, default=None):
    if name in sys.argv:
        return sys.argv[sys.argv.index(name) + 1]
    return default


def inherited_fd():
    if "--fd" in sys.argv:
        return int(arg("--fd"))
    if os.environ.get("LISTEN_PID") == str(os.getpid()) and int(os.environ.get("LISTEN_FDS", "0")) > 0:
        return 3
    sys.exit("hello_worker: no socket given (use --fd N or LISTEN_FDS)")


def notify(msg):
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(msg.encode(), addr)


def main():
    sock = socket.socket(fileno=inherited_fd())
    sock.setblocking(False)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))

    if "--never-ready" in sys.argv:
        while not stopping:
            select.select([wake_r], [], [])
        return
    time.sleep(int(arg("--ready-after", "0")) / 1000)
    if "--notify" in sys.argv:
        notify("READY=1\nSTATUS=serving")
    watchdog = "--watchdog" in sys.argv
    hang_at = time.time() + int(arg("--hang-after", "0")) / 1000 if "--hang-after" in sys.argv else None
    last_ping = 0.0
    pid = str(os.getpid()).encode()
    while not stopping:
        if hang_at and time.time() > hang_at:
            while not stopping:  # hung: neither serves nor pings
                select.select([wake_r], [], [])
            break
        timeout = 0.1 if watchdog else None
        ready, _, _ = select.select([sock, wake_r], [], [], timeout)
        if watchdog and time.time() - last_ping >= 0.1:
            notify("WATCHDOG=1")
            last_ping = time.time()
        if sock not in ready:
            continue
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            continue  # another worker took it
        with conn:
            conn.setblocking(True)
            conn.recv(65536)
            body = b"hello from pid " + pid + b"\n"
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )


if __name__ == "__main__":
    main()
