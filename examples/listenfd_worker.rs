//! A Rust worker for a socket Ringmaster holds, using the `listenfd` crate.
//!
//! Ringmaster binds the socket and passes it to each child at fd 3 with
//! systemd's convention (`LISTEN_FDS=1`, `LISTEN_PID=<the child's pid>`,
//! `LISTEN_FDNAMES=web`). `listenfd::ListenFd::from_env()` reads exactly that,
//! so the worker never binds: any number of them share the port, and a restart
//! never refuses a client.
//!
//! This is a tiny blocking HTTP responder (std only, besides `listenfd`) that
//! answers every request with its own pid, one connection at a time. Run it
//! under Ringmaster with the recipe in docs/workers.md:
//!
//! ```toml
//! [sockets.web]
//! port = 8000
//! blocking = true          # the workers call blocking accept()
//!
//! [watchers.web]
//! cmd = "target/release/examples/listenfd_worker"
//! sockets = ["web"]
//! numprocesses = 4
//! ```
//!
//! Without `LISTEN_FDS` (run by hand) it binds `--bind ADDR` itself, e.g.
//! `cargo run --example listenfd_worker -- --bind 127.0.0.1:8000`.
//!
//! It has no SIGTERM handler (std has none), so a stop ends it at once; a
//! real server would finish the request in hand first (see docs/workers.md).

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

fn listener() -> io::Result<TcpListener> {
    let mut fds = listenfd::ListenFd::from_env();
    if let Some(l) = fds.take_tcp_listener(0)? {
        return Ok(l);
    }
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == "--bind") {
        Some(i) if i + 1 < args.len() => TcpListener::bind(&args[i + 1]),
        _ => Err(io::Error::other(
            "no socket: run under Ringmaster (LISTEN_FDS) or pass --bind ADDR",
        )),
    }
}

/// Reads the request head (up to the blank line, at most 16 KiB), then
/// answers with this process's pid and closes the connection.
fn serve(mut conn: TcpStream, body: &[u8]) -> io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    conn.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let mut resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    resp.extend_from_slice(body);
    conn.write_all(&resp)
}

fn main() {
    let listener = match listener() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("listenfd_worker: {e}");
            std::process::exit(1);
        }
    };
    // The socket may arrive non-blocking (Ringmaster's default, as Circus's);
    // this worker uses blocking accept(). (The flag is shared by every process
    // holding the socket: give the socket `blocking = true` in the config so
    // they all agree from the start.)
    if let Err(e) = listener.set_nonblocking(false) {
        eprintln!("listenfd_worker: set_nonblocking: {e}");
        std::process::exit(1);
    }
    let body = format!("hello from pid {}\n", std::process::id()).into_bytes();
    eprintln!(
        "listenfd_worker {} serving on {:?}",
        std::process::id(),
        listener.local_addr()
    );
    loop {
        match listener.accept() {
            Ok((conn, _)) => {
                if let Err(e) = serve(conn, &body) {
                    eprintln!("listenfd_worker: {e}");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Something else made the shared socket non-blocking again:
                // take it back rather than spin.
                let _ = listener.set_nonblocking(false);
            }
            Err(e) => {
                eprintln!("listenfd_worker: accept: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}
