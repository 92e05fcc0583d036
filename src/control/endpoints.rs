//! Endpoints and ipc socket files, shared by the control server and the
//! publishers: the runtime directory, default endpoints, binding with our
//! ipc/tcp policy (and the upgrade's inherited listeners), stale sockets.

use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use zeromq::{Endpoint, Host, Socket};

/// How long the stale-socket probe waits for a connect on an existing ipc file.
const STALE_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The directory for default ipc sockets: `$XDG_RUNTIME_DIR/ringmaster` when
/// set (and absolute), else `/run/ringmaster` for root, else
/// `/tmp/ringmaster-<uid>`. Pure: nothing is created here; binding an ipc
/// endpoint in this directory creates it (0700) or checks it.
pub fn default_runtime_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR") {
        let dir = PathBuf::from(dir);
        if dir.is_absolute() {
            return dir.join("ringmaster");
        }
    }
    let euid = nix::unistd::geteuid();
    if euid.is_root() {
        PathBuf::from("/run/ringmaster")
    } else {
        PathBuf::from(format!("/tmp/ringmaster-{}", euid.as_raw()))
    }
}

/// `ipc://<runtime dir>/control.sock`.
pub fn default_endpoint() -> String {
    ipc_endpoint(&default_runtime_dir().join("control.sock"))
}

/// `ipc://<runtime dir>/pubsub.sock`.
pub fn default_pubsub_endpoint() -> String {
    ipc_endpoint(&default_runtime_dir().join("pubsub.sock"))
}

/// `ipc://<runtime dir>/stats.sock`.
pub fn default_stats_endpoint() -> String {
    ipc_endpoint(&default_runtime_dir().join("stats.sock"))
}

fn ipc_endpoint(path: &Path) -> String {
    format!("ipc://{}", path.display())
}

/// Makes sure `dir` is a private directory of ours: creates it (mode 0700,
/// parents too) when missing; refuses a symlink, a non-directory or a
/// directory owned by another user; tightens a looser mode to 0700.
pub fn ensure_private_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("cannot create the directory {}", dir.display()))?;
        }
        Err(err) => {
            return Err(err).with_context(|| format!("cannot inspect {}", dir.display()));
        }
        Ok(_) => {}
    }
    let meta = std::fs::symlink_metadata(dir).with_context(|| format!("cannot inspect {}", dir.display()))?;
    if !meta.file_type().is_dir() {
        bail!(
            "refusing to use {}: it is not a directory (or it is a symlink)",
            dir.display()
        );
    }
    let euid = nix::unistd::geteuid().as_raw();
    if meta.uid() != euid {
        bail!(
            "refusing to use {}: it is owned by uid {}, not by us (uid {euid}); \
             remove it or choose another endpoint",
            dir.display(),
            meta.uid()
        );
    }
    if meta.mode() & 0o077 != 0 {
        tracing::warn!(dir = %dir.display(), mode = format!("{:o}", meta.mode() & 0o777), "tightening the runtime directory to 0700");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot chmod 0700 {}", dir.display()))?;
    }
    Ok(())
}

/// An ipc socket file we bound. Dropping it unlinks the file, but only if
/// the path still names the very socket we created (same device and inode),
/// so a newer server's socket is never removed.
#[derive(Debug)]
pub(crate) struct IpcSocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Drop for IpcSocketFile {
    fn drop(&mut self) {
        if crate::upgrade::listeners::KEEP_IPC_FILES.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if meta.dev() == self.dev && meta.ino() == self.ino {
                if let Err(err) = std::fs::remove_file(&self.path) {
                    tracing::warn!(path = %self.path.display(), error = %err, "cannot unlink the ipc socket");
                }
            }
        }
    }
}

/// Binds `socket` to `endpoint` with our ipc/tcp policy and returns the
/// resolved endpoint and, for ipc, the guard of the socket file.
pub(crate) async fn bind_socket<S: Socket>(
    socket: &mut S,
    endpoint: &str,
) -> anyhow::Result<(String, Option<IpcSocketFile>)> {
    let parsed: Endpoint = endpoint
        .parse()
        .map_err(|err| anyhow!("invalid endpoint {endpoint:?}: {err}"))?;
    match parsed {
        Endpoint::Tcp(host, port) => {
            let host = match host {
                // libzmq's wildcard; zeromq's resolver does not know it.
                Host::Domain(d) if d == "*" => Host::Ipv4(std::net::Ipv4Addr::UNSPECIFIED),
                other => other,
            };
            if !is_loopback(&host) {
                tracing::warn!(
                    endpoint,
                    "tcp endpoint on a non-loopback address: the ZeroMQ channel has no \
                     authentication, anyone who can reach it can control the daemon"
                );
            }
            let bind_to = Endpoint::Tcp(host.clone(), port).to_string();
            // The daemon binds the listener itself and keeps a duplicate, so
            // that an upgrade can pass it on (crate::upgrade::listeners).
            if let Some(key) = crate::upgrade::listeners::next_key(endpoint) {
                let listener = match crate::upgrade::listeners::take(&key) {
                    Some((fd, _)) => std::net::TcpListener::from(fd),
                    None => tokio::net::TcpListener::bind((host.to_string().as_str(), port))
                        .await
                        .and_then(|l| l.into_std())
                        .map_err(|err| anyhow!("bind {bind_to}: {err}"))?,
                };
                crate::upgrade::listeners::hold(&key, &listener, false)?;
                let resolved = socket
                    .bind_listener(listener)
                    .await
                    .map_err(|err| anyhow!("bind {bind_to}: {err}"))?;
                return Ok((resolved.to_string(), None));
            }
            let resolved = socket
                .bind(&bind_to)
                .await
                .map_err(|err| anyhow!("bind {bind_to}: {err}"))?;
            Ok((resolved.to_string(), None))
        }
        Endpoint::Ipc(None) => bail!("ipc endpoint {endpoint:?} has no path"),
        Endpoint::Ipc(Some(path)) => {
            let key = crate::upgrade::listeners::next_key(endpoint);
            let inherited = key.as_deref().and_then(crate::upgrade::listeners::take);
            if inherited.is_none() {
                prepare_ipc_path(&path).await?;
            }
            let resolved = match key {
                // As for tcp: bound here, a duplicate kept for an upgrade.
                Some(key) => {
                    let listener = match inherited {
                        Some((fd, _)) => std::os::unix::net::UnixListener::from(fd),
                        None => std::os::unix::net::UnixListener::bind(&path)
                            .map_err(|err| anyhow!("bind {endpoint}: {err}"))?,
                    };
                    crate::upgrade::listeners::hold(&key, &listener, true)?;
                    socket
                        .bind_listener(listener)
                        .await
                        .map_err(|err| anyhow!("bind {endpoint}: {err}"))?
                }
                None => socket
                    .bind(endpoint)
                    .await
                    .map_err(|err| anyhow!("bind {endpoint}: {err}"))?,
            };
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("cannot chmod 0600 {}", path.display()))?;
            let meta = std::fs::symlink_metadata(&path)
                .with_context(|| format!("cannot inspect {}", path.display()))?;
            let guard = IpcSocketFile {
                path,
                dev: meta.dev(),
                ino: meta.ino(),
            };
            Ok((resolved.to_string(), Some(guard)))
        }
        other => bail!("unsupported endpoint {other} (use tcp:// or ipc://)"),
    }
}

fn is_loopback(host: &Host) -> bool {
    match host {
        Host::Ipv4(a) => a.is_loopback(),
        Host::Ipv6(a) => a.is_loopback(),
        Host::Domain(d) => {
            d.eq_ignore_ascii_case("localhost")
                || d.parse::<IpAddr>().map(|a| a.is_loopback()).unwrap_or(false)
        }
    }
}

/// Creates the parent directory (0700) and removes a stale socket file: one
/// nobody listens on. A live socket or a non-socket file is refused.
async fn prepare_ipc_path(path: &Path) -> anyhow::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if parent == default_runtime_dir() {
        ensure_private_dir(&parent)?;
    } else if !parent.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&parent)
            .with_context(|| format!("cannot create the directory {}", parent.display()))?;
    }
    let meta = match std::fs::symlink_metadata(path) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err).with_context(|| format!("cannot inspect {}", path.display())),
        Ok(meta) => meta,
    };
    if !meta.file_type().is_socket() {
        bail!(
            "{} exists and is not a socket; refusing to replace it",
            path.display()
        );
    }
    let probe = tokio::time::timeout(STALE_PROBE_TIMEOUT, tokio::net::UnixStream::connect(path)).await;
    match probe {
        Ok(Ok(_)) | Err(_) => bail!(
            "another process is already listening on {} (is another instance running?)",
            path.display()
        ),
        Ok(Err(err)) => {
            tracing::info!(path = %path.display(), probe = %err, "removing a stale ipc socket");
            std::fs::remove_file(path)
                .with_context(|| format!("cannot remove the stale socket {}", path.display()))?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_detection() {
        assert!(is_loopback(&"127.0.0.1".parse::<IpAddr>().unwrap().into()));
        assert!(is_loopback(&"::1".parse::<IpAddr>().unwrap().into()));
        assert!(is_loopback(&Host::Domain("LocalHost".into())));
        assert!(!is_loopback(&"0.0.0.0".parse::<IpAddr>().unwrap().into()));
        assert!(!is_loopback(&Host::Domain("example.org".into())));
    }

    #[test]
    fn default_endpoints_share_the_runtime_dir() {
        let dir = default_runtime_dir();
        assert!(dir.is_absolute());
        assert_eq!(
            default_endpoint(),
            format!("ipc://{}/control.sock", dir.display())
        );
        assert!(default_pubsub_endpoint().ends_with("/pubsub.sock"));
        assert!(default_stats_endpoint().ends_with("/stats.sock"));
    }

    #[test]
    fn private_dir_is_created_and_tightened() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        ensure_private_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure_private_dir(&dir).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        // A regular file or a symlink is refused.
        let file = tmp.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(ensure_private_dir(&file).is_err());
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(ensure_private_dir(&link).is_err());
    }

    #[test]
    fn private_dir_owned_by_someone_else_is_refused() {
        // Only meaningful as root (we need a directory owned by another uid).
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("theirs");
        std::fs::create_dir(&dir).unwrap();
        nix::unistd::chown(&dir, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        let err = ensure_private_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("owned by uid 65534"), "{err}");
    }
}
