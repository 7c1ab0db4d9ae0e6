//! `kitty-syncd run`: claim the home, recover the clock, open the socket, run
//! until SIGTERM or SIGINT, then shut down without losing an acknowledged event.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kitty_proto::home::Home;
use kitty_store::clockfile::ClockFile;
use kitty_store::ledger::Recovery;
use kitty_store::{Ledger, lock};
use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::server::{self, AppState};
use crate::settings::{self, Settings};

/// How long a shutdown waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long start-up waits for a client that is queueing directly to finish.
const CLOCK_LOCK_PATIENCE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    AlreadyRuns(#[from] lock::InstanceError),
    /// The home or the socket's directory is not ours alone: another user
    /// could plant files or a socket in it. Refused before anything is written.
    #[error("refusing to run: {0}")]
    UnsafeDir(#[from] kitty_store::fsutil::UnsafeDir),
    #[error("{0}")]
    Fatal(String),
}

pub async fn run(home: Home, socket: PathBuf, settings: Settings) -> Result<(), StartError> {
    let started = Instant::now();
    check_dirs(&home, &socket)?;
    // Before anything can answer: a service manager may stop us the instant
    // the socket serves, and the default action of SIGTERM is to die uncleanly.
    let mut signals = Signals::install()
        .map_err(|e| StartError::Fatal(format!("cannot install signal handlers: {e}")))?;
    let instance = lock::claim_instance(&home.daemon_lock())?;
    // The socket before the clock: a daemon whose lock file was removed still
    // answers on it, and must stay the only one that stamps.
    let (listener, activated) = match crate::systemd_notify::activated_listener() {
        Ok(Some(std_listener)) => {
            std_listener
                .set_nonblocking(true)
                .map_err(|e| StartError::Fatal(format!("activated socket: {e}")))?;
            let l = UnixListener::from_std(std_listener)
                .map_err(|e| StartError::Fatal(format!("activated socket: {e}")))?;
            tracing::info!("using the socket passed by the service manager");
            (l, true)
        }
        Ok(None) => (bind(&socket)?, false),
        Err(e) => {
            return Err(StartError::Fatal(format!(
                "cannot take the socket passed by the service manager: {e}"
            )));
        }
    };
    // Socket-activated, the socket is wherever the unit put it.
    let socket = match listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(Path::to_path_buf))
    {
        Some(p) if activated => p,
        _ => socket,
    };
    let clock_lock = lock::lock_within(&home.clock_lock(), CLOCK_LOCK_PATIENCE)
        .map_err(|e| {
            StartError::Fatal(format!("cannot open {}: {e}", home.clock_lock().display()))
        })?
        .ok_or_else(|| {
            StartError::Fatal(format!(
                "{} stayed locked for {} s: a client is queueing directly; try again",
                home.clock_lock().display(),
                CLOCK_LOCK_PATIENCE.as_secs()
            ))
        })?;

    let (mut ledger, recovery) = Ledger::open(
        &home,
        clock_lock,
        settings.config.max_queue_size,
        kitty_store::db::BUSY_TIMEOUT,
    )
    .await
    .map_err(|e| StartError::Fatal(e.to_string()))?;
    report_recovery(&home, &recovery);
    // queue.db's high-water mark holds the clock; a full disk must not stop us.
    if recovery.checkpoint_stale()
        && let Err(e) = ledger.checkpoint(&home)
    {
        tracing::warn!("cannot write {}: {e}", home.clock_json().display());
    }
    let node_id = ledger.node_id().to_owned();
    let readers = kitty_store::db::open_readers(&home.queue_db())
        .await
        .map_err(|e| StartError::Fatal(e.to_string()))?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let instance_lost = Arc::new(AtomicBool::new(false));
    let instance_guard = tokio::spawn(guard_instance(
        instance,
        instance_lost.clone(),
        shutdown_rx.clone(),
    ));
    // Ours to keep there (and to remove at the end) unless the manager gave it.
    let socket_guard = if activated {
        None
    } else {
        Some(
            crate::socket_guard::SocketGuard::new(&socket, instance_lost.clone())
                .map_err(|e| StartError::Fatal(format!("cannot watch the socket: {e}")))?,
        )
    };
    let socket_owner = socket_guard.as_ref().map_or_else(
        || crate::socket_guard::SocketOwner::service_manager(&socket),
        |g| g.owner(),
    );

    let (settings_tx, settings_rx) = watch::channel(Arc::new(settings));
    let _watcher = settings::watch(home.clone(), settings_tx.clone())
        .map_err(|e| tracing::warn!("config and credentials will not be reloaded live: {e}"))
        .ok();
    let (clock_tx, clock_rx) = watch::channel(ledger.clock());
    let (committed_tx, committed_rx) = watch::channel(());
    let feed = crate::feed::Feed::new(shutdown_rx.clone());
    let (writer, writer_task) = crate::writer::spawn(
        ledger,
        settings_rx.clone(),
        clock_tx,
        committed_tx,
        feed.clone(),
    );
    let uplink_shared =
        crate::uplink::UplinkShared::new(crate::uplink::initial_state(&settings_rx.borrow()))
            .with_feed(feed);
    let mut uplink = crate::uplink::spawn(crate::uplink::UplinkCtx {
        home: home.clone(),
        settings: settings_rx.clone(),
        writer: writer.clone(),
        committed: committed_rx,
        shared: uplink_shared.clone(),
        shutdown: shutdown_rx.clone(),
    });
    let spooler = tokio::spawn(crate::spool::run(
        home.clone(),
        writer.clone(),
        shutdown_rx.clone(),
    ));

    let state = AppState {
        home: home.clone(),
        socket: socket.clone(),
        writer,
        readers,
        settings: settings_rx,
        clock: clock_rx,
        node_id,
        started,
        uplink: uplink_shared,
        health: Default::default(),
    };
    let mut stop_rx = shutdown_rx.clone();
    let mut server = tokio::spawn(server::serve(
        listener,
        state.clone(),
        socket_guard,
        async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        },
    ));
    let supervisor = tokio::spawn(crate::systemd_notify::run(
        state.clone(),
        socket.clone(),
        shutdown_rx.clone(),
    ));
    crate::systemd_notify::ready(&crate::systemd_notify::status_line(&state).await);
    tracing::info!(
        pid = std::process::id(),
        socket = %socket.display(),
        clock = recovery.value,
        ready_ms = started.elapsed().as_millis() as u64,
        "kitty-syncd {} ready",
        kitty_proto::VERSION
    );

    let mut server_failed = None;
    tokio::select! {
        reason = signals.wait(&state, &settings_tx) => tracing::info!("{reason}: shutting down"),
        res = &mut server => {
            let msg = match res {
                Ok(Ok(())) => "the socket server stopped".to_owned(),
                Ok(Err(e)) => format!("the socket server failed: {e}"),
                Err(e) => format!("the socket server panicked: {e}"),
            };
            tracing::error!("{msg}");
            server_failed = Some(msg);
        }
    }
    crate::systemd_notify::stopping();
    let _ = shutdown_tx.send(true);
    let _ = supervisor.await;
    // Handlers hold clones of the state, and with it the writer handle; ours goes now.
    drop(state);
    if !server.is_finished()
        && tokio::time::timeout(DRAIN_TIMEOUT, &mut server)
            .await
            .is_err()
    {
        tracing::warn!(
            "requests still in flight after {} s; closing them",
            DRAIN_TIMEOUT.as_secs()
        );
        server.abort();
    }
    let _ = spooler.await;
    // The uplink closes its WebSocket with a close frame and lets go of the writer.
    if tokio::time::timeout(DRAIN_TIMEOUT, &mut uplink)
        .await
        .is_err()
    {
        tracing::warn!(
            "the uplink did not stop within {} s; cutting it off",
            DRAIN_TIMEOUT.as_secs()
        );
        uplink.abort();
        let _ = uplink.await;
    }
    // Every writer handle is gone now: the writer commits what it holds and ends.
    let mut ledger = writer_task
        .await
        .map_err(|e| StartError::Fatal(format!("writer failed: {e}")))?;
    let last = ledger.clock();
    // clock.json is current after every commit; this write also makes it durable.
    if let Err(e) = ledger.checkpoint(&home) {
        tracing::warn!("cannot write {}: {e}", home.clock_json().display());
    }
    ledger.close().await;
    socket_owner.remove_if_ours();
    // Only now may another daemon start.
    drop(instance_guard.await);
    tracing::info!(clock = last, "stopped");
    // Exit non-zero, so that a supervisor restarts a daemon that lost its socket server.
    server_failed.map_or(Ok(()), |msg| Err(StartError::Fatal(msg)))
}

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for SIGTERM or SIGINT; SIGHUP reloads config.toml meanwhile.
    async fn wait(
        &mut self,
        state: &AppState,
        settings: &watch::Sender<Arc<Settings>>,
    ) -> &'static str {
        loop {
            tokio::select! {
                _ = self.term.recv() => return "SIGTERM",
                _ = self.int.recv() => return "SIGINT",
                _ = self.hup.recv() => {
                    tracing::info!("SIGHUP: reloading config.toml");
                    crate::systemd_notify::reloading();
                    settings::reload_config(&state.home, settings);
                    crate::systemd_notify::reloaded(&crate::systemd_notify::status_line(state).await);
                }
            }
        }
    }
}

fn report_recovery(home: &Home, r: &Recovery) {
    if let Some(raw) = &r.refused_mark {
        tracing::warn!(
            "queue.db's stored high-water mark {raw:?} is no value from 0 to 2^53 - 1; \
             refused it and resumed the clock at {} from clock.json and the queue",
            r.value
        );
    }
    if r.queue_beyond > 0 {
        tracing::warn!(
            "{} queued event(s) carry a lamport_clock beyond 2^53 - 1; left out of the clock",
            r.queue_beyond
        );
    }
    match &r.clock_file {
        ClockFile::Corrupt(why) => {
            // Moved, not copied: a rename replaces whatever is planted at the
            // new name (a symlink is not followed), reads nothing (the file may
            // be huge or a FIFO), and the checkpoint written next takes its place.
            let keep = home.clock_json().with_extension("json.corrupt");
            let kept = match std::fs::rename(home.clock_json(), &keep) {
                Ok(()) => format!("moved it to {}", keep.display()),
                Err(e) => format!("could not move it to {}: {e}", keep.display()),
            };
            tracing::warn!(
                "clock.json is corrupt ({why}); {kept}; resumed the clock at {} \
                 from queue.db (high-water mark {}, largest queued value {})",
                r.value,
                r.high_water_mark,
                r.queue_max
            );
        }
        ClockFile::Missing if r.value > 0 => tracing::warn!(
            "clock.json is missing; resumed the clock at {} from queue.db",
            r.value
        ),
        ClockFile::Valid { value, .. } if *value < r.value => tracing::warn!(
            "clock.json says {value} but queue.db has seen {}; resumed at {}",
            r.high_water_mark.max(r.queue_max),
            r.value
        ),
        _ => {}
    }
}

/// How often the daemon checks that `kitty-syncd.lock` still names its file.
const INSTANCE_CHECK: Duration = Duration::from_secs(1);

/// Holds the instance lock, taking the path back when someone removes or
/// replaces the file, so that a second daemon started meanwhile is refused as
/// it should be. Hands the lock back at shutdown: it is held to the very end.
async fn guard_instance(
    mut instance: lock::Held,
    lost_flag: Arc<AtomicBool>,
    mut shutdown: watch::Receiver<bool>,
) -> lock::Held {
    let mut lost = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(INSTANCE_CHECK) => {}
            _ = shutdown.changed() => return instance,
        }
        let path = instance.path().display().to_string();
        match instance.reassert() {
            Ok(lock::Ownership::Kept) => {
                lost = false;
                lost_flag.store(false, Ordering::Release);
            }
            Ok(lock::Ownership::Retaken) => {
                lost = false;
                lost_flag.store(false, Ordering::Release);
                match lock::write_pid(&instance) {
                    Ok(()) => {
                        tracing::warn!("{path} had been removed or replaced; locked it again")
                    }
                    Err(e) => tracing::warn!("{path} locked again, but cannot record our pid: {e}"),
                }
            }
            Ok(lock::Ownership::Lost) => {
                // The socket guard stops the daemon on this: another one owns the home.
                lost_flag.store(true, Ordering::Release);
                if !std::mem::replace(&mut lost, true) {
                    tracing::error!(
                        "{path} was replaced and another process (pid {}) holds it now",
                        lock::running_pid(instance.path()).unwrap_or_else(|| "unknown".into())
                    );
                }
            }
            Err(e) => tracing::warn!("cannot check {path}: {e}"),
        }
    }
}

/// Binds the socket, replacing one left by a daemon that died, and makes it
/// 0600. A socket some process still listens on is never replaced: the
/// instance lock says no daemon runs, but its file may have been removed
/// under a live one.
fn bind(path: &Path) -> Result<UnixListener, StartError> {
    let fatal = StartError::Fatal;
    let dir = path.parent().unwrap_or(Path::new("/"));
    kitty_store::fsutil::ensure_private_dir(dir)
        .map_err(|e| fatal(format!("cannot create {}: {e}", dir.display())))?;
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
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
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
            std::fs::remove_file(path).map_err(|e| {
                fatal(format!(
                    "cannot remove stale socket {}: {e}",
                    path.display()
                ))
            })?;
        }
        Ok(_) => {
            return Err(fatal(format!(
                "{} exists and is not a socket; refusing to replace it",
                path.display()
            )));
        }
        Err(_) => {}
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| fatal(format!("cannot bind {}: {e}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| fatal(format!("cannot make {} private: {e}", path.display())))?;
    Ok(listener)
}

/// Refuses a home, or a socket directory, that another user owns or can
/// write: they could put a socket of their own where clients look for ours,
/// or files where we read and write state. A socket directory that does not
/// exist yet is made 0700 by [`bind`].
fn check_dirs(home: &Home, socket: &Path) -> Result<(), StartError> {
    kitty_store::fsutil::check_private_dir(home.dir())?;
    if let Some(dir) = socket.parent().filter(|d| !d.as_os_str().is_empty())
        && dir.exists()
    {
        kitty_store::fsutil::check_private_dir(dir)?;
    }
    Ok(())
}
