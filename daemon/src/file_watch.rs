//! Telling when one of a few files in a directory changes: written and
//! closed, created, removed, or replaced by a rename (as editors and the
//! spec-kitty CLI replace config.toml and credentials).
//!
//! The directory is watched, not the files, since a file that is replaced or
//! does not exist yet has no inode to watch. On Linux that is inotify itself,
//! with a mask that leaves out plain writes: queue.db's WAL is written on
//! every commit, and notify (which subscribes to every kind of event and
//! builds a path for each) cost 5-8 % of the daemon's CPU under load just to
//! be told so. Names are compared as bytes, without an allocation. Elsewhere
//! (macOS) it is notify's recommended watcher.

use std::ffi::OsString;
use std::path::Path;

use tokio::sync::mpsc;

/// Keeps the watch alive; dropping it ends the watch (on Linux, the thread
/// ends at the next event it would have passed on).
pub struct FileWatch {
    #[cfg(not(target_os = "linux"))]
    _watcher: notify::RecommendedWatcher,
}

/// Watches `dir` for changes to any of `names`; each change sends the index
/// of the name that changed. Bursts are passed on as they come: the reader
/// lets them settle.
pub fn watch(
    dir: &Path,
    names: Vec<OsString>,
) -> std::io::Result<(FileWatch, mpsc::UnboundedReceiver<usize>)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let watch = imp::start(dir, names, tx)?;
    Ok((watch, rx))
}

#[cfg(target_os = "linux")]
mod imp {
    use std::ffi::OsString;
    use std::path::Path;

    use inotify::{Inotify, WatchMask};
    use tokio::sync::mpsc;

    use super::FileWatch;

    pub fn start(
        dir: &Path,
        names: Vec<OsString>,
        tx: mpsc::UnboundedSender<usize>,
    ) -> std::io::Result<FileWatch> {
        let mut inotify = Inotify::init()?;
        // No MODIFY: a file is read once its writer closes it (CLOSE_WRITE)
        // or renames it into place (MOVED_TO).
        inotify.watches().add(
            dir,
            WatchMask::CLOSE_WRITE
                | WatchMask::MOVED_TO
                | WatchMask::MOVED_FROM
                | WatchMask::CREATE
                | WatchMask::DELETE
                | WatchMask::ATTRIB
                | WatchMask::ONLYDIR,
        )?;
        std::thread::Builder::new()
            .name("file-watch".into())
            .spawn(move || {
                let mut buffer = [0u8; 4096];
                loop {
                    let events = match inotify.read_events_blocking(&mut buffer) {
                        Ok(events) => events,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            tracing::warn!("watching the settings files stopped: {e}");
                            return;
                        }
                    };
                    for event in events {
                        let Some(name) = event.name else { continue };
                        if let Some(i) = names.iter().position(|n| n == name)
                            && tx.send(i).is_err()
                        {
                            return;
                        }
                    }
                }
            })?;
        Ok(FileWatch {})
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::ffi::OsString;
    use std::path::Path;

    use notify::{RecursiveMode, Watcher};
    use tokio::sync::mpsc;

    use super::FileWatch;

    pub fn start(
        dir: &Path,
        names: Vec<OsString>,
        tx: mpsc::UnboundedSender<usize>,
    ) -> std::io::Result<FileWatch> {
        let to_io = |e: notify::Error| std::io::Error::other(e);
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let Ok(ev) = res else { return };
            for path in &ev.paths {
                if let Some(i) = path
                    .file_name()
                    .and_then(|f| names.iter().position(|n| n == f))
                {
                    let _ = tx.send(i);
                }
            }
        })
        .map_err(to_io)?;
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(to_io)?;
        Ok(FileWatch { _watcher: watcher })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn next(rx: &mut mpsc::UnboundedReceiver<usize>) -> Option<usize> {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// Everything that arrives within a moment, then nothing more.
    async fn settle(rx: &mut mpsc::UnboundedReceiver<usize>) -> Vec<usize> {
        let mut got = Vec::new();
        while let Ok(Some(i)) = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
            got.push(i);
        }
        got
    }

    #[tokio::test]
    async fn writes_renames_and_removals_of_the_named_files_are_seen_and_others_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec![OsString::from("config.toml"), OsString::from("credentials")];
        let (_w, mut rx) = watch(dir.path(), names).unwrap();

        std::fs::write(dir.path().join("config.toml"), "a").unwrap();
        assert_eq!(next(&mut rx).await, Some(0));
        settle(&mut rx).await;

        let tmp = dir.path().join(".credentials.tmp");
        std::fs::write(&tmp, "b").unwrap();
        std::fs::rename(&tmp, dir.path().join("credentials")).unwrap();
        assert!(settle(&mut rx).await.contains(&1), "a rename into place");

        std::fs::remove_file(dir.path().join("config.toml")).unwrap();
        assert!(settle(&mut rx).await.contains(&0), "a removal");

        // Other files, written in place and replaced, say nothing.
        let mut wal = std::fs::File::create(dir.path().join("queue.db-wal")).unwrap();
        settle(&mut rx).await;
        use std::io::Write as _;
        for _ in 0..100 {
            wal.write_all(b"frame").unwrap();
        }
        std::fs::write(dir.path().join("clock.json"), "{}").unwrap();
        assert_eq!(settle(&mut rx).await, Vec::<usize>::new());
    }
}
