use crate::config::{SockType, SocketAddrSpec, SocketSpec};
use anyhow::{bail, Context, Result};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;

/// A bound socket: the fd the daemon keeps, and what to report about it.
#[derive(Debug)]
pub struct BoundSocket {
    pub spec: SocketSpec,
    pub fd: Arc<OwnedFd>,
    /// The address actually bound (the real port when 0 was asked).
    pub local: String,
    pub port: Option<u16>,
    /// A UNIX socket file we created, to unlink at shutdown.
    pub created_path: Option<PathBuf>,
}

fn resolve(host: &str, port: u16, v6: bool) -> Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve host {host:?}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv6() == v6)
        .or_else(|| addrs.first())
        .copied()
        .with_context(|| format!("host {host:?} has no address"))
}

/// Binds (and listens on, for stream sockets) the socket a spec describes.
pub fn bind(spec: &SocketSpec) -> Result<BoundSocket> {
    let ty = match spec.socktype {
        SockType::Stream => Type::STREAM,
        SockType::Dgram => Type::DGRAM,
    };
    let (socket, local, port, created_path) = match &spec.addr {
        SocketAddrSpec::Inet { host, port, v6 } => {
            let addr = resolve(host, *port, *v6)?;
            let proto = match spec.socktype {
                SockType::Stream => Protocol::TCP,
                SockType::Dgram => Protocol::UDP,
            };
            let s = Socket::new(Domain::for_address(addr), ty, Some(proto)).context("socket()")?;
            s.set_reuse_address(true).context("SO_REUSEADDR")?;
            if spec.reuseport {
                s.set_reuse_port(true).context("SO_REUSEPORT")?;
            }
            if addr.is_ipv6() {
                s.set_only_v6(true).context("IPV6_V6ONLY")?;
            }
            if let Some(iface) = &spec.interface {
                s.bind_device(Some(iface.as_bytes()))
                    .with_context(|| format!("SO_BINDTODEVICE {iface}"))?;
            }
            if spec.nodelay && spec.socktype == SockType::Stream {
                s.set_tcp_nodelay(true).context("TCP_NODELAY")?;
            }
            s.bind(&SockAddr::from(addr))
                .with_context(|| format!("cannot bind {addr}"))?;
            let bound = s.local_addr().ok().and_then(|a| a.as_socket()).unwrap_or(addr);
            (s, bound.to_string(), Some(bound.port()), None)
        }
        SocketAddrSpec::Unix { path, umask, replace } => {
            if path.exists() || std::fs::symlink_metadata(path).is_ok() {
                if *replace {
                    std::fs::remove_file(path)
                        .with_context(|| format!("cannot remove stale socket {}", path.display()))?;
                } else {
                    bail!(
                        "{} already exists (set replace = true to remove a stale socket file)",
                        path.display()
                    );
                }
            }
            let s = Socket::new(Domain::UNIX, ty, None).context("socket(AF_UNIX)")?;
            let addr = SockAddr::unix(path).with_context(|| format!("bad socket path {}", path.display()))?;
            // umask is process-wide: bind happens at start-up before any child exists.
            let old = umask.map(|u| nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(u)));
            let res = s.bind(&addr);
            if let Some(old) = old {
                nix::sys::stat::umask(old);
            }
            res.with_context(|| format!("cannot bind {}", path.display()))?;
            (s, path.display().to_string(), None, Some(path.clone()))
        }
    };
    if spec.socktype == SockType::Stream {
        let backlog = i32::try_from(spec.backlog).unwrap_or(i32::MAX);
        socket.listen(backlog).context("listen()")?;
    }
    socket.set_nonblocking(!spec.blocking).context("O_NONBLOCK")?;
    let fd: OwnedFd = socket.into();
    tracing::debug!(socket = %spec.name, fd = fd.as_raw_fd(), address = %local, "socket bound");
    Ok(BoundSocket {
        spec: spec.clone(),
        fd: Arc::new(fd),
        local,
        port,
        created_path,
    })
}

/// Takes a socket the service manager passed (socket activation) for the
/// spec of the same name, instead of binding one. A socket of another family
/// or type than the spec says is an error: the unit and the config disagree.
pub fn adopt(spec: &SocketSpec, fd: OwnedFd) -> Result<BoundSocket> {
    let s = Socket::from(fd);
    let local = s.local_addr().with_context(|| {
        format!(
            "socket {:?} passed by the service manager: getsockname",
            spec.name
        )
    })?;
    let ty = s
        .r#type()
        .with_context(|| format!("socket {:?} passed by the service manager: SO_TYPE", spec.name))?;
    let passed_unix = local.domain() == Domain::UNIX;
    let want_unix = matches!(spec.addr, SocketAddrSpec::Unix { .. });
    let want_ty = match spec.socktype {
        SockType::Stream => Type::STREAM,
        SockType::Dgram => Type::DGRAM,
    };
    let kind = |unix: bool, t: Type| {
        let fam = if unix { "UNIX" } else { "TCP/UDP (inet)" };
        let ty = if t == Type::STREAM { "stream" } else { "datagram" };
        format!("a {fam} {ty} socket")
    };
    if passed_unix != want_unix || ty != want_ty {
        bail!(
            "socket {:?}: the service manager passed {} but [sockets.{}] describes {}",
            spec.name,
            kind(passed_unix, ty),
            spec.name,
            kind(want_unix, want_ty)
        );
    }
    s.set_nonblocking(!spec.blocking).context("O_NONBLOCK")?;
    let (local, port) = match local.as_socket() {
        Some(a) => (a.to_string(), Some(a.port())),
        None => (
            local
                .as_pathname()
                .map_or_else(|| "(unnamed)".to_string(), |p| p.display().to_string()),
            None,
        ),
    };
    let fd: OwnedFd = s.into();
    tracing::info!(socket = %spec.name, fd = fd.as_raw_fd(), address = %local, "socket passed by the service manager");
    Ok(BoundSocket {
        spec: spec.clone(),
        fd: Arc::new(fd),
        local,
        port,
        // The manager owns the socket file.
        created_path: None,
    })
}
