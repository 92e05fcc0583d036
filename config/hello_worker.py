#!/usr/bin/env python3
"""A tiny HTTP worker that accepts on a socket it did not bind.

Ringmaster binds the socket and passes it down; this worker finds it either
from `--fd N` (Circus-style `$(circus.sockets.web)` substitution) or from
systemd's LISTEN_FDS/LISTEN_PID convention. It answers every request with its
own pid, so you can see several workers share one port.
"""
import os
import signal
import socket
import sys


def inherited_fd():
    if "--fd" in sys.argv:
        return int(sys.argv[sys.argv.index("--fd") + 1])
    if os.environ.get("LISTEN_PID") == str(os.getpid()) and int(os.environ.get("LISTEN_FDS", "0")) > 0:
        return 3
    sys.exit("hello_worker: no socket given (use --fd N or LISTEN_FDS)")


def main():
    sock = socket.socket(fileno=inherited_fd())
    sock.setblocking(True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    pid = str(os.getpid()).encode()
    while True:
        conn, _ = sock.accept()
        with conn:
            conn.recv(65536)
            body = b"hello from pid " + pid + b"\n"
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )


if __name__ == "__main__":
    main()
