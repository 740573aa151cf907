//! Where the daemon listens: standard input and output, or a Unix socket it never lets
//! delete a file it did not make; and how it notices a client that hung up.

use super::*;

impl Daemon {
    /// Serves standard input and output until the peer closes them or `shutdown` completes.
    pub async fn serve_stdio(&self, shutdown: impl Future<Output = ()>) {
        tokio::select! {
            () = async {
                let (input, output) = crate::flow::stdio();
                self.serve_connection_watching(input, output, hung_up(1)).await
            } => {}
            () = shutdown => {}
        }
        self.shutdown().await;
    }

    /// Listens on the Unix socket `path` (mode 0600) until `shutdown` completes, then stops
    /// accepting, lets running executions finish within the grace period, and removes the
    /// socket. Refuses to start if another process is listening there or if `path` is anything
    /// but a socket (a file, a directory, a link); replaces a stale socket.
    pub async fn serve_socket(&self, path: &Path, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        let socket = SocketListener::bind(path).await?;
        self.serve_listener(socket, shutdown).await;
        Ok(())
    }

    /// [`serve_socket`](Self::serve_socket) on a socket already bound, so the caller knows it
    /// listens (and may say so) before serving.
    pub async fn serve_listener(&self, socket: SocketListener, shutdown: impl Future<Output = ()>) {
        tracing::info!(socket = %socket.guard.path.display(), "listening");
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = socket.listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let daemon = self.clone();
                        let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
                        let (r, w) = stream.into_split();
                        // `fd` stays open while the writer half lives, and the watch is only
                        // polled until the writer task ends.
                        tokio::spawn(async move { daemon.serve_connection_watching(r, w, hung_up(fd)).await });
                    }
                    Err(e) => tracing::warn!(error = %e, "accept failed"),
                },
                () = &mut shutdown => break,
            }
        }
        drop(socket);
        self.shutdown().await;
    }
}

/// A Unix socket bound for the daemon; removed when dropped, if it is still the daemon's.
pub struct SocketListener {
    listener: tokio::net::UnixListener,
    guard: RemoveOnDrop,
}

impl SocketListener {
    /// Binds `path` (mode 0600). Refuses if another process is listening there or if `path`
    /// is anything but a socket (a file, a directory, a link); replaces a stale socket.
    pub async fn bind(path: &Path) -> std::io::Result<SocketListener> {
        use std::os::unix::fs::FileTypeExt;
        use std::os::unix::fs::PermissionsExt;
        // Only a stale socket is replaced: anything else at `path` is someone's file.
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket; choose another path", path.display()),
                ));
            }
            if tokio::net::UnixStream::connect(path).await.is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    format!("{} is in use by a running daemon", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        let listener = tokio::net::UnixListener::bind(path)?;
        let guard = RemoveOnDrop::new(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        Ok(SocketListener { listener, guard })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.guard.path
    }
}

/// Completes once the other end of `fd` is gone: a socket whose peer closed both directions
/// (`POLLHUP`) or a pipe with no reader left (`POLLERR`). Checked every 100 ms: it runs only
/// after a client stopped sending while its programs still run.
pub(super) async fn hung_up(fd: std::os::fd::RawFd) {
    loop {
        let mut p = libc::pollfd { fd, events: 0, revents: 0 };
        // SAFETY: one valid `pollfd` and a zero timeout; `fd` is open while this is polled.
        let ready = unsafe { libc::poll(&mut p, 1, 0) };
        if ready > 0 && p.revents & (libc::POLLHUP | libc::POLLERR) != 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Removes the daemon's socket when it stops, if what is at its path is still that socket
/// (not a file someone put there since).
pub(super) struct RemoveOnDrop {
    path: PathBuf,
    identity: (u64, u64),
}

impl RemoveOnDrop {
    fn new(path: &Path) -> std::io::Result<Self> {
        Ok(RemoveOnDrop { path: path.to_path_buf(), identity: identity(path)? })
    }
}

pub(super) fn identity(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if identity(&self.path).is_ok_and(|now| now == self.identity) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
