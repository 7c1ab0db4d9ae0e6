//! `kitty-sync sync`: ask the daemon to flush its queue to the server now,
//! and with `--wait` follow the flush until the queue is empty.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use kitty_proto::api::{ConnectionState, Status};
use serde::Serialize;

use crate::status::{not_running, unreachable};
use crate::{Client, TransportError};

pub const DEFAULT_TIMEOUT: Duration = kitty_cli_common::client_cli::SYNC_WAIT_TIMEOUT;
const POLL_EVERY: Duration = Duration::from_millis(200);
/// A daemon busy draining a large backlog may answer status slowly; that is
/// not a daemon that is gone.
const CALL_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy)]
pub struct SyncOptions {
    pub wait: bool,
    pub timeout: Duration,
    pub json: bool,
}

/// What one `sync --wait` achieved: the uplink's counters since it started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncSummary {
    /// Events the server stored.
    pub synced: u64,
    /// Events the server already had.
    pub duplicates: u64,
    /// Per-event rejections (the event stays queued until its fifth).
    pub errors: u64,
    /// Events set aside after their fifth rejection.
    pub new_dead_letters: u64,
    /// Events still queued.
    pub remaining: u64,
    pub state: ConnectionState,
    pub last_error: Option<String>,
    pub timed_out: bool,
    /// The queue is empty and nothing new was set aside.
    pub complete: bool,
}

impl SyncSummary {
    pub fn between(before: &Status, after: &Status, timed_out: bool) -> Self {
        // A daemon restarted mid-wait starts its counters over; saturate
        // rather than report nonsense.
        let (b, a) = (&before.uplink, &after.uplink);
        let new_dead_letters = a.dead_letters.saturating_sub(b.dead_letters);
        let remaining = after.queue.depth;
        Self {
            synced: a.delivered.saturating_sub(b.delivered),
            duplicates: a.duplicates.saturating_sub(b.duplicates),
            errors: a.rejected.saturating_sub(b.rejected),
            new_dead_letters,
            remaining,
            state: a.state,
            last_error: a.last_error.clone(),
            timed_out,
            complete: remaining == 0 && new_dead_letters == 0,
        }
    }

    /// The closing line.
    pub fn line(&self) -> String {
        format!(
            "synced {} / duplicates {} / errors {}",
            self.synced, self.duplicates, self.errors
        )
    }

    /// What is wrong when the sync did not complete, one line each.
    pub fn problems(&self, timeout: Duration, server_url: &str) -> Vec<String> {
        let mut out = Vec::new();
        if self.remaining > 0 {
            let why = self
                .last_error
                .as_deref()
                .map_or(String::new(), |e| format!("; last error: {e}"));
            out.push(format!(
                "{} events left in the queue (state {}{why})",
                self.remaining,
                match self.state {
                    ConnectionState::Unknown => "unknown",
                    known => known.as_str(),
                }
            ));
        }
        if self.new_dead_letters > 0 {
            out.push(format!(
                "{} events were rejected by the server 5 times and set aside; \
                 see `kitty-sync queue dead`, then `kitty-sync queue retry-dead`",
                self.new_dead_letters
            ));
        }
        // Nothing moves until someone logs in again.
        if self.state == ConnectionState::AuthRequired {
            out.push(format!(
                "the server ended the session; log in again: \
                 kitty-sync login --server {server_url} --username USER"
            ));
        } else if self.timed_out && self.remaining > 0 {
            out.push(format!(
                "stopped waiting after {} s (--timeout); the daemon keeps trying",
                timeout.as_secs()
            ));
        }
        out
    }
}

/// How many of the events queued at the start the server has confirmed.
fn progress(before: &Status, now: &Status) -> u64 {
    let (b, n) = (&before.uplink, &now.uplink);
    n.delivered.saturating_sub(b.delivered) + n.duplicates.saturating_sub(b.duplicates)
}

pub fn main(opts: SyncOptions) -> ExitCode {
    let client = match Client::from_env() {
        Ok(c) => c.with_deadline(CALL_DEADLINE),
        Err(e) => {
            eprintln!("kitty-sync: error: {e}");
            return ExitCode::from(1);
        }
    };
    crate::block_on(run(&client, opts)).unwrap_or_else(|e| {
        eprintln!("kitty-sync: error: cannot start a runtime: {e}");
        ExitCode::from(1)
    })
}

fn failed(what: &str, e: &TransportError) -> ExitCode {
    if unreachable(e) {
        return not_running(e);
    }
    eprintln!("kitty-sync: {what}: {}", kitty_cli_common::error_chain(e));
    ExitCode::from(1)
}

pub async fn run(client: &Client, opts: SyncOptions) -> ExitCode {
    // The counters before the trigger, so that events confirmed by the flush
    // we are about to ask for all count.
    let before = match client.status().await {
        Ok(s) => s,
        Err(e) => return failed("cannot read the daemon's status", &e),
    };
    let triggered = match client.sync().await {
        Ok(t) => t,
        Err(e) => return failed("cannot trigger a sync", &e),
    };
    if !opts.wait {
        if opts.json {
            println!("{}", serde_json::to_string(&triggered).expect("serialises"));
        } else {
            println!("sync triggered; {} events queued", triggered.depth);
        }
        return ExitCode::SUCCESS;
    }
    let bar = progress_bar(triggered.depth, opts.json);
    let started = Instant::now();
    let (after, timed_out) = loop {
        let now = match client.status().await {
            Ok(s) => s,
            Err(e) => {
                bar.abandon();
                return failed("lost the daemon while waiting", &e);
            }
        };
        bar.set_position(progress(&before, &now).min(triggered.depth));
        bar.set_message(now.uplink.state.as_str());
        if now.queue.depth == 0 || now.uplink.state == ConnectionState::AuthRequired {
            break (now, false);
        }
        if started.elapsed() >= opts.timeout {
            break (now, true);
        }
        tokio::time::sleep(POLL_EVERY).await;
    };
    bar.finish_and_clear();
    let summary = SyncSummary::between(&before, &after, timed_out);
    if opts.json {
        println!("{}", serde_json::to_string(&summary).expect("serialises"));
    } else {
        println!("{}", summary.line());
    }
    for p in summary.problems(opts.timeout, &after.server_url) {
        eprintln!("kitty-sync: {p}");
    }
    if summary.complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// A bar for a person watching; nothing at all for a script or with --json.
fn progress_bar(total: u64, json: bool) -> ProgressBar {
    if json || !std::io::stdout().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40.cyan/blue} {pos}/{len} events  {elapsed}  {msg}")
    {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;
    use kitty_proto::api::{ClockStatus, QueueStats, UplinkStatus};

    fn status(depth: u64, uplink: UplinkStatus) -> Status {
        Status {
            running: true,
            pid: Some(1),
            version: "0".into(),
            protocol: kitty_proto::api::PROTOCOL,
            uptime_secs: Some(1),
            socket: String::new(),
            home: String::new(),
            queue: QueueStats {
                depth,
                ..Default::default()
            },
            clock: ClockStatus {
                value: 0,
                node_id: "n".into(),
            },
            team_slug: "local".into(),
            server_url: "https://s".into(),
            logged_in: true,
            username: None,
            connection: uplink.state,
            supervisor: None,
            spooled: 0,
            spool_rejected: 0,
            start_hint: None,
            config_loaded_at: None,
            refused: 0,
            uplink,
            writer: Default::default(),
            health: None,
        }
    }

    fn uplink(
        state: ConnectionState,
        delivered: u64,
        duplicates: u64,
        rejected: u64,
        dead: u64,
    ) -> UplinkStatus {
        UplinkStatus {
            state,
            delivered,
            duplicates,
            rejected,
            dead_letters: dead,
            ..Default::default()
        }
    }

    #[test]
    fn a_complete_sync() {
        let before = status(10, uplink(ConnectionState::Connected, 5, 1, 2, 1));
        let after = status(0, uplink(ConnectionState::Connected, 13, 3, 2, 1));
        let s = SyncSummary::between(&before, &after, false);
        assert_eq!(s.line(), "synced 8 / duplicates 2 / errors 0");
        assert!(s.complete);
        assert!(s.problems(DEFAULT_TIMEOUT, "https://s").is_empty());
        assert_eq!(progress(&before, &after), 10);
    }

    #[test]
    fn new_dead_letters_fail_the_sync() {
        let before = status(3, uplink(ConnectionState::Connected, 0, 0, 0, 0));
        let after = status(0, uplink(ConnectionState::Connected, 2, 0, 5, 1));
        let s = SyncSummary::between(&before, &after, false);
        assert_eq!(s.line(), "synced 2 / duplicates 0 / errors 5");
        assert!(!s.complete);
        let p = s.problems(DEFAULT_TIMEOUT, "https://s");
        assert!(p[0].contains("retry-dead"), "{p:?}");
    }

    #[test]
    fn what_is_left_is_named() {
        let before = status(3, uplink(ConnectionState::Connected, 0, 0, 0, 0));
        let mut up = uplink(ConnectionState::AuthRequired, 1, 0, 0, 0);
        up.last_error = Some("refresh refused (401)".into());
        let s = SyncSummary::between(&before, &status(2, up), false);
        let p = s.problems(DEFAULT_TIMEOUT, "https://s").join("\n");
        assert!(p.contains("2 events left"), "{p}");
        assert!(p.contains("AuthRequired"), "{p}");
        assert!(p.contains("refresh refused (401)"), "{p}");
        assert!(p.contains("kitty-sync login --server https://s"), "{p}");

        let s = SyncSummary::between(
            &before,
            &status(3, uplink(ConnectionState::Offline, 0, 0, 0, 0)),
            true,
        );
        let p = s.problems(Duration::from_secs(7), "https://s").join("\n");
        assert!(p.contains("after 7 s"), "{p}");
    }

    #[test]
    fn a_restarted_daemon_does_not_underflow() {
        let before = status(3, uplink(ConnectionState::Connected, 50, 5, 5, 5));
        let after = status(0, uplink(ConnectionState::Connected, 3, 0, 0, 0));
        let s = SyncSummary::between(&before, &after, false);
        assert_eq!(s.line(), "synced 0 / duplicates 0 / errors 0");
        assert_eq!(progress(&before, &after), 0);
    }
}
