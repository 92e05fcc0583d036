//! A hand-written ZMTP 3.0 peer over a raw TCP connection (NULL mechanism),
//! so the fuzz tests can send frames no ZeroMQ library would produce.
//! Frame format (RFC 23): a flags byte (bit 0 MORE, bit 1 LONG, bit 2
//! COMMAND), then a 1-byte or 8-byte big-endian length, then the body.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub const MORE: u8 = 0x01;
pub const LONG: u8 = 0x02;
pub const COMMAND: u8 = 0x04;

/// The 64-byte greeting: signature, version 3.0, mechanism NULL, as-server 0.
pub fn greeting() -> [u8; 64] {
    let mut g = [0u8; 64];
    g[0] = 0xff;
    g[9] = 0x7f;
    g[10] = 3;
    g[11] = 0;
    g[12..16].copy_from_slice(b"NULL");
    g
}

/// Encodes one frame, short or long form as its length requires.
pub fn frame(body: &[u8], flags: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 9);
    if body.len() > 255 {
        out.push(flags | LONG);
        out.extend_from_slice(&(body.len() as u64).to_be_bytes());
    } else {
        out.push(flags & !LONG);
        out.push(body.len() as u8);
    }
    out.extend_from_slice(body);
    out
}

/// A READY command frame announcing `socket_type` (and an identity if given).
pub fn ready(socket_type: &str, identity: Option<&[u8]>) -> Vec<u8> {
    let mut body = vec![5u8];
    body.extend_from_slice(b"READY");
    let mut prop = |name: &str, value: &[u8]| {
        body.push(name.len() as u8);
        body.extend_from_slice(name.as_bytes());
        body.extend_from_slice(&(value.len() as u32).to_be_bytes());
        body.extend_from_slice(value);
    };
    prop("Socket-Type", socket_type.as_bytes());
    if let Some(id) = identity {
        prop("Identity", id);
    }
    frame(&body, COMMAND)
}

/// A raw connection that has completed (or may still be in) the handshake.
pub struct Raw {
    pub stream: TcpStream,
}

impl Raw {
    /// Connects without sending anything.
    pub fn connect(addr: &str, timeout: Duration) -> io::Result<Raw> {
        let sock: std::net::SocketAddr = addr
            .parse()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr}: {e}")))?;
        let stream = TcpStream::connect_timeout(&sock, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(Raw { stream })
    }

    /// Connects and completes greeting + READY as `socket_type`.
    pub fn handshake(addr: &str, socket_type: &str, timeout: Duration) -> io::Result<Raw> {
        let mut raw = Raw::connect(addr, timeout)?;
        raw.stream.write_all(&greeting())?;
        let mut peer = [0u8; 64];
        raw.stream.read_exact(&mut peer)?;
        if peer[0] != 0xff || peer[9] != 0x7f || peer[10] < 3 || &peer[12..16] != b"NULL" {
            return Err(io::Error::other(format!("bad peer greeting {peer:02x?}")));
        }
        raw.stream.write_all(&ready(socket_type, None))?;
        let (flags, body) = raw.read_frame()?;
        if flags & COMMAND == 0 || body.get(1..6) != Some(b"READY".as_slice()) {
            return Err(io::Error::other(format!(
                "expected READY, got flags {flags:#x} body {body:02x?}"
            )));
        }
        Ok(raw)
    }

    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends a multipart message, one frame per element.
    pub fn send(&mut self, frames: &[&[u8]]) -> io::Result<()> {
        let mut out = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            let more = if i + 1 < frames.len() { MORE } else { 0 };
            out.extend_from_slice(&frame(f, more));
        }
        self.stream.write_all(&out)
    }

    /// Reads one frame; refuses bodies over 16 MiB (a reply is never that big).
    pub fn read_frame(&mut self) -> io::Result<(u8, Vec<u8>)> {
        let mut flags = [0u8; 1];
        self.stream.read_exact(&mut flags)?;
        let len = if flags[0] & LONG != 0 {
            let mut l = [0u8; 8];
            self.stream.read_exact(&mut l)?;
            u64::from_be_bytes(l)
        } else {
            let mut l = [0u8; 1];
            self.stream.read_exact(&mut l)?;
            u64::from(l[0])
        };
        if len > 16 << 20 {
            return Err(io::Error::other(format!("peer announced a {len}-byte frame")));
        }
        let mut body = vec![0u8; len as usize];
        self.stream.read_exact(&mut body)?;
        Ok((flags[0], body))
    }

    /// Reads one whole message (frames until one without MORE), skipping commands.
    pub fn recv(&mut self) -> io::Result<Vec<Vec<u8>>> {
        let mut frames = Vec::new();
        // Bounded by the read timeout: each frame read either completes or fails.
        loop {
            let (flags, body) = self.read_frame()?;
            if flags & COMMAND != 0 {
                continue;
            }
            frames.push(body);
            if flags & MORE == 0 {
                return Ok(frames);
            }
        }
    }

    /// True once the peer has closed the connection (EOF or reset) within `timeout`.
    pub fn closed_by_peer(&mut self, timeout: Duration) -> bool {
        let _ = self.stream.set_read_timeout(Some(timeout));
        let mut buf = [0u8; 4096];
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut => {
                    return false
                }
                Err(_) => return true,
            }
        }
        false
    }
}
