//! Talking to the service manager: systemd's notify protocol (READY=1,
//! STATUS=, STOPPING=1, WATCHDOG=1) and its socket activation. Without
//! `NOTIFY_SOCKET` or `LISTEN_FDS` every call here is a no-op.

use std::path::PathBuf;
use std::time::Duration;

use hyper::Method;
use sd_notify::NotifyState;
use tokio::sync::watch;

use crate::server::AppState;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!("cannot notify the service manager: {e}");
    }
}

pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

pub fn reloading() {
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        send(&[NotifyState::Reloading, now]);
    }
}

pub fn reloaded(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// The listener systemd passed us (socket activation), if any.
pub fn activated_listener() -> std::io::Result<Option<std::os::unix::net::UnixListener>> {
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() == 0 {
        return Ok(None);
    }
    fds.take_unix_listener(0)
}

/// One line for `systemctl status`: what the daemon holds and how it is connected.
pub async fn status_line(state: &AppState) -> String {
    match crate::status::report(state).await {
        Ok(s) => format!(
            "{}queue {} events, clock {}, {}",
            match &s.writer.last_error {
                Some(e) if !s.writer.ok => format!("commits FAILING ({e}); "),
                _ => String::new(),
            },
            s.queue.depth,
            s.clock.value,
            s.connection
        ),
        Err(e) => format!("cannot read the queue: {e}"),
    }
}

/// Sends STATUS= every few seconds and, when systemd asked for a watchdog,
/// WATCHDOG=1 at half its interval, but only after a real request through our
/// own socket succeeds: a daemon whose serving loop is stuck stops pinging and
/// gets restarted.
pub async fn run(state: AppState, socket: PathBuf, shutdown: watch::Receiver<bool>) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let watchdog = sd_notify::watchdog_enabled();
    let period = watchdog.map_or(Duration::from_secs(5), |d| {
        (d / 2).min(Duration::from_secs(5))
    });
    every_period_until_shutdown(period, shutdown, || async {
        let line = status_line(&state).await;
        if watchdog.is_none() {
            send(&[NotifyState::Status(&line)]);
            return;
        }
        match kitty_cli_common::transport::call(&socket, Method::GET, "/v1/health", None, period)
            .await
        {
            Ok(a) if a.status.is_success() => {
                send(&[NotifyState::Watchdog, NotifyState::Status(&line)])
            }
            Ok(a) => tracing::warn!("watchdog: the socket answered {}; not pinging", a.status),
            Err(e) => tracing::warn!(
                "watchdog: {}; not pinging",
                kitty_cli_common::error_chain(&e)
            ),
        }
    })
    .await;
}

/// Runs `beat` once a `period` until `shutdown` turns true (or its sender is
/// gone), and ends at once when it does, even in the middle of a beat.
///
/// At shutdown the server stops answering, so a beat in flight waits out its
/// whole timeout; and an unbiased select between a shutdown already seen and
/// a tick already due (the interval bursts after a slow beat) picked the
/// tick half the time. A stop then took 5 s more per coin toss, and a
/// systemd test saw three in a row run into TimeoutStopSec=15 and SIGKILL.
async fn every_period_until_shutdown<F: Future<Output = ()>>(
    period: Duration,
    mut shutdown: watch::Receiver<bool>,
    mut beat: impl FnMut() -> F,
) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stopped = |s: &watch::Receiver<bool>| *s.borrow();
    loop {
        if stopped(&shutdown) {
            return;
        }
        tokio::select! {
            biased;
            r = shutdown.changed() => if r.is_err() || stopped(&shutdown) { return } else { continue },
            _ = tick.tick() => {}
        }
        tokio::select! {
            biased;
            r = shutdown.changed() => if r.is_err() || stopped(&shutdown) { return },
            () = beat() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use tokio::time::Instant;

    /// A beat that never ends (a server that accepts and never answers).
    #[tokio::test(start_paused = true)]
    async fn a_stop_ends_the_loop_in_the_middle_of_a_beat() {
        let (tx, rx) = watch::channel(false);
        let beats = Cell::new(0);
        let start = Instant::now();
        let lp = every_period_until_shutdown(Duration::from_secs(5), rx, || {
            beats.set(beats.get() + 1);
            std::future::pending::<()>()
        });
        let stop = async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            tx.send(true).unwrap();
        };
        // The paused clock jumps ahead when nothing else can run: a loop
        // that waits for the beat fails here at once instead of hanging.
        let (ended, ()) = tokio::join!(tokio::time::timeout(Duration::from_secs(60), lp), stop);
        assert!(ended.is_ok(), "the loop went on after the stop");
        assert_eq!(beats.get(), 1, "the first tick is at once");
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(10),
            "ended when told, not after the beat"
        );
    }

    /// Slow beats leave a tick always due; the stop still wins every time.
    #[tokio::test(start_paused = true)]
    async fn a_stop_wins_over_a_tick_that_is_due() {
        for _ in 0..50 {
            let (tx, rx) = watch::channel(false);
            let beats = Cell::new(0);
            let lp = every_period_until_shutdown(Duration::from_millis(1), rx, || {
                beats.set(beats.get() + 1);
                if beats.get() == 3 {
                    tx.send(true).unwrap();
                }
                tokio::time::sleep(Duration::from_millis(7))
            });
            lp.await;
            assert_eq!(beats.get(), 3, "no beat after the stop");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn beats_once_a_period_and_ends_when_the_sender_goes() {
        let (tx, rx) = watch::channel(false);
        let beats = Cell::new(0);
        let lp = every_period_until_shutdown(Duration::from_secs(1), rx, || {
            beats.set(beats.get() + 1);
            std::future::ready(())
        });
        let stop = async {
            tokio::time::sleep(Duration::from_millis(3_500)).await;
            drop(tx);
        };
        tokio::join!(lp, stop);
        assert_eq!(beats.get(), 4, "at 0, 1, 2 and 3 s");
    }
}
