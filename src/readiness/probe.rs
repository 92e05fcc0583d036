//! Probes: one attempt each, bounded by a timeout.

use crate::reaper::{self, ExitStatus};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub async fn tcp(address: &str, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("connect {address}: {e}")),
        Err(_) => Err(format!("connect {address}: timed out after {timeout:?}")),
    }
}

/// Splits `http://host:port/path` into (host:port, host, path).
fn parse_url(url: &str) -> Result<(String, String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("unsupported URL {url:?}: use http://"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let host = hostport
        .rsplit_once(':')
        .map_or(hostport, |(h, _)| h)
        .trim_matches(['[', ']']);
    let addr = if hostport.contains(':') && !hostport.ends_with(']') {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    Ok((addr, host.to_string(), path.to_string()))
}

/// GET `url`; a 2xx or 3xx status line means ready.
pub async fn http(url: &str, timeout: Duration) -> Result<(), String> {
    let (addr, host, path) = parse_url(url)?;
    let attempt = async {
        let mut s = TcpStream::connect(&addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let req = format!(
            "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: ringmaster\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        let mut buf = vec![0u8; 512];
        let mut n = 0;
        while n < buf.len() {
            let k = s
                .read(&mut buf[n..])
                .await
                .map_err(|e| format!("GET {url}: {e}"))?;
            if k == 0 || buf[..n + k].contains(&b'\n') {
                n += k;
                break;
            }
            n += k;
        }
        let line = String::from_utf8_lossy(&buf[..n]);
        let code = line.split_whitespace().nth(1).and_then(|c| c.parse::<u16>().ok());
        match code {
            Some(c) if (200..400).contains(&c) => Ok(()),
            Some(c) => Err(format!("GET {url}: HTTP {c}")),
            None => Err(format!("GET {url}: no HTTP status line")),
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| format!("GET {url}: timed out after {timeout:?}"))?
}

/// Runs `sh -c command`; exit 0 means ready.
pub async fn command(command: &str, env: &[(String, String)], timeout: Duration) -> Result<(), String> {
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.arg("-c").arg(command).stdin(std::process::Stdio::null());
    cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    match reaper::run_command(&mut cmd, timeout).await {
        Ok(ExitStatus::Code(0)) => Ok(()),
        Ok(st) => Err(format!("{command:?}: {st}")),
        Err(e) => Err(format!("{command:?}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls() {
        assert_eq!(
            super::parse_url("http://127.0.0.1:8080/health").unwrap(),
            ("127.0.0.1:8080".into(), "127.0.0.1".into(), "/health".into())
        );
        assert_eq!(super::parse_url("http://example").unwrap().0, "example:80");
        assert!(super::parse_url("https://x").is_err());
    }
}
