//! The socket: checking the directories, taking the one the service manager
//! passed, or binding our own.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use kitty_proto::home::Home;
use kitty_store::lock;
use tokio::net::UnixListener;

use super::StartError;

/// Why the socket could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("cannot take the socket passed by the service manager")]
    Activated(#[source] io::Error),
    #[error("cannot create {}", .0.display())]
    CreateDir(PathBuf, #[source] io::Error),
    #[error("cannot remove stale socket {}", .0.display())]
    RemoveStale(PathBuf, #[source] io::Error),
    #[error("{} exists and is not a socket; refusing to replace it", .0.display())]
    NotASocket(PathBuf),
    #[error("cannot bind {}", .0.display())]
    Bind(PathBuf, #[source] io::Error),
    #[error("cannot make {} private", .0.display())]
    MakePrivate(PathBuf, #[source] io::Error),
}

/// The listening socket, and where it is.
pub struct Listening {
    pub listener: UnixListener,
    pub path: PathBuf,
    /// Passed by the service manager (which keeps the file), not bound by us.
    pub activated: bool,
}

/// The socket the service manager passed, else our own bound at `path`.
pub fn listen(path: PathBuf) -> Result<Listening, StartError> {
    let Some(passed) =
        crate::systemd_notify::activated_listener().map_err(SocketError::Activated)?
    else {
        let listener = bind(&path)?;
        return Ok(Listening {
            listener,
            path,
            activated: false,
        });
    };
    passed
        .set_nonblocking(true)
        .map_err(SocketError::Activated)?;
    let listener = UnixListener::from_std(passed).map_err(SocketError::Activated)?;
    tracing::info!("using the socket passed by the service manager");
    // Socket-activated, the socket is wherever the unit put it.
    let path = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(Path::to_path_buf))
        .unwrap_or(path);
    Ok(Listening {
        listener,
        path,
        activated: true,
    })
}

/// Binds the socket, replacing one left by a daemon that died, and makes it
/// 0600. A socket some process still listens on is never replaced: the
/// instance lock says no daemon runs, but its file may have been removed
/// under a live one.
fn bind(path: &Path) -> Result<UnixListener, StartError> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    kitty_store::fsutil::ensure_private_dir(dir)
        .map_err(|e| SocketError::CreateDir(dir.to_path_buf(), e))?;
    if let Ok(meta) = std::fs::metadata(dir)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            "{} is readable by others (mode {:o}); the socket itself is 0600 and peers are checked",
            dir.display(),
            meta.permissions().mode() & 0o777
        );
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            match std::os::unix::net::UnixStream::connect(path) {
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                // Connected, or a full backlog, or no permission to tell:
                // someone may be listening, and the socket stays theirs.
                _ => {
                    return Err(lock::InstanceError::SocketInUse {
                        socket: path.display().to_string(),
                    }
                    .into());
                }
            }
            tracing::info!("replacing the stale socket {}", path.display());
            std::fs::remove_file(path)
                .map_err(|e| SocketError::RemoveStale(path.to_path_buf(), e))?;
        }
        Ok(_) => return Err(SocketError::NotASocket(path.to_path_buf()).into()),
        Err(_) => {}
    }
    let listener =
        UnixListener::bind(path).map_err(|e| SocketError::Bind(path.to_path_buf(), e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| SocketError::MakePrivate(path.to_path_buf(), e))?;
    Ok(listener)
}

/// Refuses a home, or a socket directory, that another user owns or can
/// write: they could put a socket of their own where clients look for ours,
/// or files where we read and write state. A socket directory that does not
/// exist yet is made 0700 by [`bind`].
pub fn check_dirs(home: &Home, socket: &Path) -> Result<(), StartError> {
    kitty_store::fsutil::check_private_dir(home.dir())?;
    if let Some(dir) = socket.parent().filter(|d| !d.as_os_str().is_empty())
        && dir.exists()
    {
        kitty_store::fsutil::check_private_dir(dir)?;
    }
    Ok(())
}
