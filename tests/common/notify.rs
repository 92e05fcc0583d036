//! A fake service manager for the sd_notify tests: the manager's end of
//! NOTIFY_SOCKET, a UNIX datagram socket in a temp dir.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

/// The service manager's end of NOTIFY_SOCKET.
pub struct FakeManager {
    sock: UnixDatagram,
    pub path: String,
    _dir: tempfile::TempDir,
    /// Every message received so far, in order.
    seen: Vec<String>,
}

impl Default for FakeManager {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeManager {
    pub fn new() -> FakeManager {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        FakeManager {
            sock,
            path: path.display().to_string(),
            _dir: dir,
            seen: Vec::new(),
        }
    }

    /// Waits (bounded) for a message with all of `lines`; returns it.
    pub fn expect(&mut self, lines: &[&str], timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no notify message with {lines:?} within {timeout:?}; got {:?}",
                self.seen
            );
            self.sock.set_read_timeout(Some(left)).unwrap();
            let Ok(n) = self.sock.recv(&mut buf) else { continue };
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            self.seen.push(msg.clone());
            if lines.iter().all(|l| msg.lines().any(|m| m == *l)) {
                return msg;
            }
        }
    }
}

pub fn field<'a>(msg: &'a str, key: &str) -> Option<&'a str> {
    msg.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}
