//! Files in `<home>`, opened and created so that nothing planted there can
//! hang us or redirect a write.
//!
//! - Reading a state file never blocks and never reads without bound: it is
//!   opened `O_NONBLOCK` (a FIFO opens at once instead of waiting for a
//!   writer), its type is checked on the open descriptor (so it cannot change
//!   between the check and the read), and at most `limit + 1` bytes are read.
//! - Creating a file never follows a symlink: a new name is made with
//!   `O_CREAT | O_EXCL` (which refuses an existing name, a symlink included),
//!   files that must be reopened are opened `O_NOFOLLOW`, and a replacement is
//!   a new file renamed over the old name (the rename replaces a planted
//!   symlink itself, never the file it points to).

use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What is wrong with a file in `<home>`.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("is {0}, not a regular file")]
    NotRegular(&'static str),
    #[error("is a symbolic link, which is not followed here")]
    Symlink,
    #[error("is {len} bytes, over the limit of {limit} bytes")]
    TooLarge { len: u64, limit: u64 },
    #[error("belongs to uid {owner}, not to uid {ours}")]
    ForeignOwner { owner: u32, ours: u32 },
    #[error("cannot be read: {0}")]
    Io(#[source] io::Error),
}

/// A file in `<home>` that could not be used, and why.
#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct FileError {
    pub path: PathBuf,
    #[source]
    pub problem: Problem,
}

impl FileError {
    fn new(path: &Path, problem: Problem) -> Self {
        Self {
            path: path.to_owned(),
            problem,
        }
    }
}

/// Whether the last component of a path may be a symlink to the real file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Symlinks {
    /// Files a person manages (config.toml, credentials) may live elsewhere,
    /// as dotfiles often do; what they point to must still be a regular file.
    Follow,
    /// Files only our own tools write (spool entries) are taken as they are.
    Refuse,
}

/// The effective uid: the owner every file we trust must have.
pub fn euid() -> u32 {
    crate::sys::euid()
}

/// A name for the type of a file that is not a regular one.
pub fn describe(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_file() {
        "a regular file"
    } else {
        "an unknown kind of file"
    }
}

/// Opens an existing regular file for reading without blocking; `Ok(None)`
/// when there is none. The type is checked on the descriptor, after the open.
pub fn open_regular(path: &Path, links: Symlinks) -> Result<Option<(File, Metadata)>, FileError> {
    let mut flags = libc::O_NONBLOCK | libc::O_CLOEXEC;
    if links == Symlinks::Refuse {
        flags |= libc::O_NOFOLLOW;
    }
    let file = match OpenOptions::new().read(true).custom_flags(flags).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) && links == Symlinks::Refuse => {
            return Err(FileError::new(path, Problem::Symlink));
        }
        // Opening a device or a socket can fail in its own ways; name the type.
        Err(e) => {
            return Err(match fs::symlink_metadata(path) {
                Ok(m) if !m.is_file() && !m.is_symlink() => {
                    FileError::new(path, Problem::NotRegular(describe(&m)))
                }
                _ => FileError::new(path, Problem::Io(e)),
            });
        }
    };
    let meta = file
        .metadata()
        .map_err(|e| FileError::new(path, Problem::Io(e)))?;
    if !meta.is_file() {
        return Err(FileError::new(path, Problem::NotRegular(describe(&meta))));
    }
    Ok(Some((file, meta)))
}

/// Reads an open file, refusing one over `limit` bytes: by its size first,
/// then by what it really holds (it may grow while we read).
pub fn read_bounded(
    path: &Path,
    file: File,
    meta: &Metadata,
    limit: u64,
) -> Result<Vec<u8>, FileError> {
    let too_large = |len| FileError::new(path, Problem::TooLarge { len, limit });
    if meta.len() > limit {
        return Err(too_large(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| FileError::new(path, Problem::Io(e)))?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Reads a state file (config.toml, credentials, clock.json) of at most
/// `limit` bytes; `Ok(None)` when it does not exist.
pub fn read_state_file(path: &Path, limit: u64) -> Result<Option<Vec<u8>>, FileError> {
    match open_regular(path, Symlinks::Follow)? {
        None => Ok(None),
        Some((file, meta)) => read_bounded(path, file, &meta, limit).map(Some),
    }
}

/// Creates `dir` (and parents) with mode 0700 when missing. An existing
/// directory keeps its mode: it may be shared with the spec-kitty CLI.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a directory", dir.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
            // The umask may have narrowed the mode further, never widened it;
            // set it exactly so the socket's directory is 0700 as promised.
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        }
        Err(e) => Err(e),
    }
}

/// [`ensure_private_dir`] for a directory inside `<home>` (`spool/`), which
/// only our tools make: a symlink planted in its place is refused, not followed.
pub fn ensure_private_subdir(dir: &Path) -> io::Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_symlink() => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is a symbolic link; refusing to follow it",
                dir.display()
            ),
        )),
        _ => ensure_private_dir(dir),
    }
}

/// Why a directory cannot be trusted with our state or our socket.
#[derive(Debug, thiserror::Error)]
pub enum UnsafeDir {
    #[error(
        "{} belongs to uid {owner}, not to this user (uid {ours}) or root; \
         another user could replace what is in it",
        path.display()
    )]
    ForeignOwner {
        path: PathBuf,
        owner: u32,
        ours: u32,
    },
    #[error(
        "{} is writable by {who} (mode {mode:o}); another user could plant files or a socket \
         in it; make it private with `chmod go-w {}`",
        path.display(),
        path.display()
    )]
    Writable {
        path: PathBuf,
        who: &'static str,
        mode: u32,
    },
    #[error("cannot check {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Checks that only this user (or root) can change what is in `dir`: it
/// belongs to us or to root, and neither its group nor others may write to it.
pub fn check_private_dir(dir: &Path) -> Result<(), UnsafeDir> {
    let meta = fs::metadata(dir).map_err(|source| UnsafeDir::Io {
        path: dir.to_owned(),
        source,
    })?;
    let ours = euid();
    if meta.uid() != ours && meta.uid() != 0 {
        return Err(UnsafeDir::ForeignOwner {
            path: dir.to_owned(),
            owner: meta.uid(),
            ours,
        });
    }
    let mode = meta.mode() & 0o7777;
    let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (_, true) => "every user",
        (true, false) => "its group",
        (false, false) => return Ok(()),
    };
    Err(UnsafeDir::Writable {
        path: dir.to_owned(),
        who,
        mode,
    })
}

/// A temporary name next to `path` that no one else uses.
fn temp_name(path: &Path) -> PathBuf {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        crate::ids::new_ulid()
    ))
}

/// Writes `bytes` to a new temporary file next to `path`, fsynced; `publish`
/// then gives it its real name. The temporary file is removed on any failure,
/// so none is left behind.
fn write_then(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    publish: impl FnOnce(&Path, &Path) -> io::Result<()>,
) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = temp_name(path);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        publish(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    let _ = fs::remove_file(&tmp);
    result
}

/// Replaces `path` with `bytes` atomically: a temporary file in the same
/// directory, fsynced, renamed over the target, then the directory fsynced.
/// A symlink at `path` is replaced, not followed.
pub fn atomic_write(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    write_then(path, bytes, mode, |tmp, path| fs::rename(tmp, path))
}

/// Creates `path` holding `bytes`, complete or not at all, and never replaces
/// anything already there (`AlreadyExists`), a symlink included: the file is
/// written under a temporary name, then hard-linked to its name.
pub fn create_new_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    write_then(path, bytes, mode, |tmp, path| fs::hard_link(tmp, path))
}

/// Creates an empty file with `mode` if it does not exist yet. An existing
/// one must be a regular file: a symlink or a FIFO planted in its place is
/// refused rather than handed to whoever opens the path next.
pub fn touch_private(path: &Path, mode: u32) -> io::Result<()> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let meta = fs::symlink_metadata(path)?;
            if meta.is_file() {
                Ok(())
            } else {
                Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{} is {}, not a regular file; refusing to use it",
                        path.display(),
                        describe(&meta)
                    ),
                ))
            }
        }
        Err(e) => Err(e),
    }
}

/// How a lock file is opened (read, write, create, 0600, with these flags):
/// not through a symlink, and without waiting on a FIFO.
pub const LOCK_FILE_FLAGS: i32 = libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;

/// A lock file just opened with [`LOCK_FILE_FLAGS`], if it is a regular file;
/// a symlink in its place is named as such.
pub fn checked_lock_file(path: &Path, opened: io::Result<File>) -> io::Result<File> {
    let file = opened.map_err(|e| {
        if e.raw_os_error() == Some(libc::ELOOP) {
            io::Error::new(
                e.kind(),
                format!(
                    "{} is a symbolic link; refusing to follow it",
                    path.display()
                ),
            )
        } else {
            e
        }
    })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is {}, not a regular file",
                path.display(),
                describe(&meta)
            ),
        ));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn mkfifo(p: &Path) {
        crate::sys::mkfifo(p);
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn atomic_write_leaves_no_temp_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("clock.json");
        atomic_write(&p, b"one", 0o600).unwrap();
        atomic_write(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(names(dir.path()), ["clock.json"]);
    }

    #[test]
    fn atomic_write_replaces_a_planted_symlink_not_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "precious").unwrap();
        let p = dir.path().join("clock.json.corrupt");
        symlink(&victim, &p).unwrap();
        atomic_write(&p, b"copy", 0o600).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        assert!(fs::symlink_metadata(&p).unwrap().is_file());
        assert_eq!(fs::read(&p).unwrap(), b"copy");
    }

    #[test]
    fn create_new_atomic_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        create_new_atomic(&p, b"first", 0o600).unwrap();
        let e = create_new_atomic(&p, b"second", 0o600).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&p).unwrap(), b"first");
        let victim = dir.path().join("victim");
        fs::write(&victim, "precious").unwrap();
        let link = dir.path().join("b.json");
        symlink(&victim, &link).unwrap();
        assert!(create_new_atomic(&link, b"x", 0o600).is_err());
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(names(dir.path()), ["a.json", "b.json", "victim"]);
    }

    #[test]
    fn reading_a_fifo_does_not_block_and_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.toml");
        mkfifo(&p);
        let e = read_state_file(&p, 1024).unwrap_err();
        assert!(matches!(e.problem, Problem::NotRegular("a FIFO")), "{e}");
        assert!(e.to_string().contains("FIFO"), "{e}");
        let d = dir.path().join("d");
        fs::create_dir(&d).unwrap();
        assert!(matches!(
            read_state_file(&d, 1024).unwrap_err().problem,
            Problem::NotRegular("a directory")
        ));
        // A symlink to a device is judged by what it points to.
        let z = dir.path().join("zero");
        symlink("/dev/zero", &z).unwrap();
        assert!(matches!(
            read_state_file(&z, 1024).unwrap_err().problem,
            Problem::NotRegular("a character device")
        ));
    }

    #[test]
    fn reads_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("clock.json");
        assert!(read_state_file(&p, 10).unwrap().is_none());
        fs::write(&p, b"0123456789").unwrap();
        assert_eq!(read_state_file(&p, 10).unwrap().unwrap(), b"0123456789");
        // Sparse: 64 GiB on paper, nothing on disk; refused by its size alone.
        File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(64 << 30)
            .unwrap();
        let e = read_state_file(&p, 10).unwrap_err();
        assert!(
            matches!(e.problem, Problem::TooLarge { len, limit: 10 } if len == 64 << 30),
            "{e}"
        );
        assert!(e.to_string().contains("over the limit of 10 bytes"), "{e}");
    }

    #[test]
    fn refused_symlinks_and_followed_ones() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        fs::write(&real, "x").unwrap();
        let link = dir.path().join("link");
        symlink(&real, &link).unwrap();
        assert!(read_state_file(&link, 10).unwrap().is_some());
        assert!(matches!(
            open_regular(&link, Symlinks::Refuse).unwrap_err().problem,
            Problem::Symlink
        ));
    }

    #[test]
    fn touch_and_lock_files_refuse_symlinks_and_fifos() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "precious").unwrap();
        let db = dir.path().join("queue.db");
        symlink(&victim, &db).unwrap();
        assert!(touch_private(&db, 0o600).is_err());
        let lock = dir.path().join("kitty-syncd.lock");
        symlink(&victim, &lock).unwrap();
        let e = crate::lock::claim_instance(&lock).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let fifo = dir.path().join("clock.lock");
        mkfifo(&fifo);
        let e = crate::lock::try_lock(&fifo).unwrap_err();
        assert!(e.to_string().contains("FIFO"), "{e}");
        assert!(touch_private(&fifo, 0o600).is_err());
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        let fresh = dir.path().join("fresh.lock");
        drop(crate::lock::try_lock(&fresh).unwrap().unwrap());
        touch_private(&fresh, 0o600).unwrap();
        assert_eq!(
            fs::metadata(&fresh).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn private_dir_is_0700() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b");
        ensure_private_dir(&p).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o700
        );
        check_private_dir(&p).unwrap();
        let f = dir.path().join("f");
        fs::write(&f, "").unwrap();
        assert!(ensure_private_dir(&f).is_err());
        let link = dir.path().join("spool");
        symlink(&p, &link).unwrap();
        ensure_private_dir(&link).unwrap();
        assert!(ensure_private_subdir(&link).is_err());
        ensure_private_subdir(&dir.path().join("spool2")).unwrap();
    }

    #[test]
    fn dirs_others_can_write_are_not_private() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        for (mode, ok) in [
            (0o700, true),
            (0o755, true),
            (0o775, false),
            (0o777, false),
            (0o1777, false),
            (0o703, false),
        ] {
            fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
            let r = check_private_dir(p);
            assert_eq!(r.is_ok(), ok, "{mode:o}: {r:?}");
            if let Err(e) = r {
                assert!(e.to_string().contains("chmod go-w"), "{e}");
            }
        }
        fs::set_permissions(p, fs::Permissions::from_mode(0o700)).unwrap();
    }
}
