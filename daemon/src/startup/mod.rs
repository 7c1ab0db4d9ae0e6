//! `kitty-syncd run`: a [`RunningDaemon`] claims the home, recovers the clock
//! and opens the socket ([`RunningDaemon::start`]), serves until SIGTERM or
//! SIGINT ([`RunningDaemon::wait`]), then stops without losing an
//! acknowledged event ([`RunningDaemon::shutdown`]).
//!
//! - [`instance`]: keeps `kitty-syncd.lock` ours while we run.
//! - [`recovery`]: what start-up says about the clock it recovered.
//! - [`signals`]: SIGTERM and SIGINT stop, SIGHUP reloads.
//! - [`socket`]: the directories, the passed socket, or our own.

pub mod instance;
pub mod recovery;
pub mod signals;
pub mod socket;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use kitty_proto::home::Home;
use kitty_store::{Ledger, StoreError, lock};
use tokio::sync::watch;
use tokio::task::{JoinError, JoinHandle};

use crate::server::{self, AppState};
use crate::settings::{self, Settings};
use crate::socket_guard::{SocketGuard, SocketOwner};
use signals::Signals;
use socket::Listening;
pub use socket::SocketError;

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
    #[error("refusing to run")]
    UnsafeDir(#[from] kitty_store::fsutil::UnsafeDir),
    #[error("cannot install signal handlers")]
    Signals(#[source] std::io::Error),
    #[error(transparent)]
    Socket(#[from] SocketError),
    #[error("cannot watch the socket")]
    SocketGuard(#[source] std::io::Error),
    #[error("cannot open {}", .0.display())]
    ClockLock(PathBuf, #[source] std::io::Error),
    #[error(
        "{} stayed locked for {} s: a client is queueing directly; try again",
        .0.display(),
        CLOCK_LOCK_PATIENCE.as_secs()
    )]
    ClockLockBusy(PathBuf),
    /// queue.db could not be opened or recovered.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The socket server ended before we were asked to stop: exit non-zero,
    /// so that a supervisor restarts us.
    #[error("the socket server stopped")]
    ServerStopped,
    #[error("the socket server failed")]
    ServerFailed(#[source] std::io::Error),
    #[error("the socket server panicked")]
    ServerPanicked(#[source] JoinError),
    #[error("writer failed")]
    Writer(#[source] JoinError),
}

/// Why the daemon is stopping.
#[derive(Debug)]
pub enum Stop {
    /// SIGTERM or SIGINT.
    Signal(&'static str),
    /// The socket server ended on its own.
    ServerEnded(StartError),
}

/// The tasks a running daemon is made of, each stopped in its turn.
struct Tasks {
    server: JoinHandle<std::io::Result<()>>,
    notifier: JoinHandle<()>,
    spooler: JoinHandle<()>,
    uplink: JoinHandle<()>,
    writer: JoinHandle<Ledger>,
    instance: JoinHandle<lock::Held>,
}

/// A daemon that serves its home, from [`start`](Self::start) to
/// [`shutdown`](Self::shutdown).
pub struct RunningDaemon {
    state: AppState,
    signals: Signals,
    settings_tx: watch::Sender<Arc<Settings>>,
    /// Follows config.toml and credentials while it lives.
    _watcher: Option<crate::file_watch::FileWatch>,
    stop_tx: watch::Sender<bool>,
    socket_owner: SocketOwner,
    tasks: Tasks,
}

/// The home claimed and queue.db open: what the tasks are started with.
struct Claimed {
    signals: Signals,
    instance: lock::Held,
    listening: Listening,
    ledger: Ledger,
    readers: sqlx::SqlitePool,
}

impl RunningDaemon {
    /// Claims the home, recovers the clock, opens the socket and starts
    /// every task; returns once the daemon answers (and has said READY=1).
    pub async fn start(
        home: Home,
        socket: PathBuf,
        settings: Settings,
    ) -> Result<Self, StartError> {
        let started = Instant::now();
        let claimed = claim(&home, socket, &settings).await?;
        let clock = claimed.ledger.clock();
        let running = Self::spawn(home, settings, claimed, started)?;
        crate::systemd_notify::ready(&crate::systemd_notify::status_line(&running.state).await);
        tracing::info!(
            pid = std::process::id(),
            socket = %running.state.socket.display(),
            clock,
            ready_ms = started.elapsed().as_millis() as u64,
            "kitty-syncd {} ready",
            kitty_proto::VERSION
        );
        Ok(running)
    }

    /// Starts the tasks: settings watcher, writer, uplink, spool intake,
    /// socket server, the service manager's watchdog, the instance guard.
    fn spawn(
        home: Home,
        settings: Settings,
        claimed: Claimed,
        started: Instant,
    ) -> Result<Self, StartError> {
        let Claimed {
            signals,
            instance,
            listening,
            ledger,
            readers,
        } = claimed;
        let (stop_tx, stop_rx) = watch::channel(false);
        let instance_lost = Arc::new(AtomicBool::new(false));
        let instance = tokio::spawn(instance::guard_instance(
            instance,
            instance_lost.clone(),
            stop_rx.clone(),
        ));
        let socket = listening.path;
        // Ours to keep there (and to remove at the end) unless the manager gave it.
        let socket_guard = match listening.activated {
            true => None,
            false => {
                Some(SocketGuard::new(&socket, instance_lost).map_err(StartError::SocketGuard)?)
            }
        };
        let socket_owner = socket_guard
            .as_ref()
            .map_or_else(|| SocketOwner::service_manager(&socket), SocketGuard::owner);

        let node_id = ledger.node_id().to_owned();
        let (settings_tx, settings_rx) = watch::channel(Arc::new(settings));
        let watcher = settings::watch(home.clone(), settings_tx.clone())
            .map_err(|e| tracing::warn!("config and credentials will not be reloaded live: {e}"))
            .ok();
        let (clock_tx, clock_rx) = watch::channel(ledger.clock());
        let (committed_tx, committed_rx) = watch::channel(());
        let feed = crate::feed::Feed::new(stop_rx.clone());
        let health = crate::health::Cache::default();
        let (writer, writer_task) = crate::writer::spawn(
            ledger,
            settings_rx.clone(),
            clock_tx,
            committed_tx,
            feed.clone(),
            health.clone(),
        );
        let uplink_shared =
            crate::uplink::UplinkShared::new(crate::uplink::initial_state(&settings_rx.borrow()))
                .with_feed(feed);
        let uplink = crate::uplink::spawn(crate::uplink::UplinkCtx {
            home: home.clone(),
            settings: settings_rx.clone(),
            writer: writer.clone(),
            committed: committed_rx,
            shared: uplink_shared.clone(),
            shutdown: stop_rx.clone(),
        });
        let spooler = tokio::spawn(crate::spool::run(
            home.clone(),
            writer.clone(),
            stop_rx.clone(),
        ));
        let state = AppState::new(server::Shared {
            home,
            socket: socket.clone(),
            writer,
            readers,
            settings: settings_rx,
            clock: clock_rx,
            node_id,
            started,
            uplink: uplink_shared,
            health,
        });
        let mut until_stop = stop_rx.clone();
        let server = tokio::spawn(server::serve(
            listening.listener,
            state.clone(),
            socket_guard,
            async move {
                let _ = until_stop.wait_for(|stop| *stop).await;
            },
        ));
        let notifier = tokio::spawn(crate::systemd_notify::run(state.clone(), socket, stop_rx));
        Ok(Self {
            state,
            signals,
            settings_tx,
            _watcher: watcher,
            stop_tx,
            socket_owner,
            tasks: Tasks {
                server,
                notifier,
                spooler,
                uplink,
                writer: writer_task,
                instance,
            },
        })
    }

    /// Serves until SIGTERM or SIGINT (SIGHUP reloads config.toml meanwhile),
    /// or until the socket server ends on its own.
    pub async fn wait(&mut self) -> Stop {
        tokio::select! {
            reason = self.signals.wait(&self.state, &self.settings_tx) => {
                tracing::info!("{reason}: shutting down");
                Stop::Signal(reason)
            }
            res = &mut self.tasks.server => {
                let why = match res {
                    Ok(Ok(())) => StartError::ServerStopped,
                    Ok(Err(e)) => StartError::ServerFailed(e),
                    Err(e) => StartError::ServerPanicked(e),
                };
                tracing::error!("{}", kitty_cli_common::error_chain(&why));
                Stop::ServerEnded(why)
            }
        }
    }

    /// Stops every task in the order that loses nothing: no new requests,
    /// those in flight finished, the spool and the uplink let go of the
    /// writer, the writer commits what it holds, clock.json is made durable,
    /// the socket removed if ours, and only then the instance lock released.
    /// A daemon stopped because its server ended returns that as an error.
    pub async fn shutdown(self, stop: Stop) -> Result<(), StartError> {
        let Self {
            state,
            stop_tx,
            socket_owner,
            mut tasks,
            ..
        } = self;
        crate::systemd_notify::stopping();
        let _ = stop_tx.send(true);
        let _ = tasks.notifier.await;
        let home = state.home.clone();
        // Handlers hold clones of the state, and with it the writer handle; ours goes now.
        drop(state);
        drain_requests(&mut tasks.server).await;
        let _ = tasks.spooler.await;
        stop_uplink(&mut tasks.uplink).await;
        // Every writer handle is gone now: the writer commits what it holds and ends.
        let mut ledger = tasks.writer.await.map_err(StartError::Writer)?;
        let last = ledger.clock();
        // clock.json covers every value issued (a commit passing it rewrote
        // it); this write also makes it durable.
        if let Err(e) = ledger.checkpoint(&home) {
            tracing::warn!("cannot write {}: {e}", home.clock_json().display());
        }
        ledger.close().await;
        socket_owner.remove_if_ours();
        // Only now may another daemon start.
        drop(tasks.instance.await);
        tracing::info!(clock = last, "stopped");
        match stop {
            Stop::Signal(_) => Ok(()),
            Stop::ServerEnded(why) => Err(why),
        }
    }
}

/// Everything that makes the home ours, in the order that keeps it safe:
/// the directories checked, signals caught, the instance lock, the socket,
/// the clock lock, queue.db recovered.
async fn claim(home: &Home, socket: PathBuf, settings: &Settings) -> Result<Claimed, StartError> {
    socket::check_dirs(home, &socket)?;
    // Before anything can answer: a service manager may stop us the instant
    // the socket serves, and the default action of SIGTERM is to die uncleanly.
    let signals = Signals::install().map_err(StartError::Signals)?;
    let instance = lock::claim_instance(&home.daemon_lock())?;
    // The socket before the clock: a daemon whose lock file was removed still
    // answers on it, and must stay the only one that stamps.
    let listening = socket::listen(socket)?;
    let ledger = open_ledger(home, settings).await?;
    let readers = kitty_store::db::open_readers(&home.queue_db()).await?;
    Ok(Claimed {
        signals,
        instance,
        listening,
        ledger,
        readers,
    })
}

/// Takes the clock lock (waiting for a client that queues directly) and
/// opens queue.db, recovering the clock.
async fn open_ledger(home: &Home, settings: &Settings) -> Result<Ledger, StartError> {
    let path = home.clock_lock();
    let clock_lock = lock::lock_within(&path, CLOCK_LOCK_PATIENCE)
        .map_err(|e| StartError::ClockLock(path.clone(), e))?
        .ok_or(StartError::ClockLockBusy(path))?;
    let (mut ledger, recovery) = Ledger::open(
        home,
        clock_lock,
        settings.config.max_queue_size,
        kitty_store::db::BUSY_TIMEOUT,
    )
    .await?;
    ledger.keep_clock_json_ahead(kitty_proto::CLOCK_JSON_HEADROOM);
    recovery::report_recovery(home, &recovery);
    // queue.db's high-water mark holds the clock; a full disk must not stop us.
    if recovery.checkpoint_stale()
        && let Err(e) = ledger.checkpoint(home)
    {
        tracing::warn!("cannot write {}: {e}", home.clock_json().display());
    }
    Ok(ledger)
}

/// Lets the requests in flight finish, for at most [`DRAIN_TIMEOUT`].
async fn drain_requests(server: &mut JoinHandle<std::io::Result<()>>) {
    if !server.is_finished()
        && tokio::time::timeout(DRAIN_TIMEOUT, &mut *server)
            .await
            .is_err()
    {
        tracing::warn!(
            "requests still in flight after {} s; closing them",
            DRAIN_TIMEOUT.as_secs()
        );
        server.abort();
    }
}

/// The uplink closes its WebSocket with a close frame and lets go of the
/// writer; one that does not within [`DRAIN_TIMEOUT`] is cut off.
async fn stop_uplink(uplink: &mut JoinHandle<()>) {
    if tokio::time::timeout(DRAIN_TIMEOUT, &mut *uplink)
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
}
