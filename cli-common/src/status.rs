//! `status`, shared by `kitty-sync status` and `kitty-syncd status`: ask the
//! daemon; when it does not answer, report what is on disk and how to start it.

use std::process::ExitCode;
use std::time::Duration;

use hyper::Method;
use kitty_proto::api::{Status, Supervisor};
use kitty_proto::home::Home;

/// Exit status when no daemon answers.
pub const NOT_RUNNING: u8 = 3;
/// Exit status when the daemon runs but delivery is stuck (events wait while
/// the server needs a new login, or longer than `[sync] stale_after_secs`).
pub const STUCK: u8 = 4;
const STATUS_DEADLINE: Duration = Duration::from_secs(1);

pub fn main(json: bool) -> ExitCode {
    let (home, socket) = match Home::from_env().and_then(|h| Ok((h.socket_path()?, h))) {
        Ok((socket, home)) => (home, socket),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let result = crate::block_on(async {
        let asked = crate::transport::call_json::<Status>(
            &socket,
            Method::GET,
            "/v1/status",
            None,
            STATUS_DEADLINE,
        )
        .await;
        match asked {
            Ok(s) => (s, None),
            Err(e) => {
                let mut s = kitty_store::report::from_disk(&home, &socket).await;
                s.start_hint = Some(start_hint());
                (s, Some(e))
            }
        }
    });
    let (status, why) = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start a runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let stuck = crate::staleness::Condition::of_status(&status);
    let skew = status
        .running
        .then(|| {
            crate::skew::describe(&crate::skew::Daemon {
                protocol: status.protocol,
                version: Some(&status.version),
                pid: status.pid,
                supervisor: status.supervisor,
            })
        })
        .flatten();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&status).expect("status serialises")
        );
    } else {
        if let Some(s) = &skew {
            println!(
                "{}",
                s.replacen("daemon needs restart", "DAEMON NEEDS RESTART", 1)
            );
        }
        if let Some(c) = &stuck {
            println!("DELIVERY STUCK: {}", c.describe(&home));
        }
        print!("{}", render(&status));
        if let Some(why) = why {
            eprintln!("({})", crate::error_chain(&why));
        }
    }
    if !status.running {
        ExitCode::from(NOT_RUNNING)
    } else if stuck.is_some() {
        ExitCode::from(STUCK)
    } else {
        ExitCode::SUCCESS
    }
}

/// Whether a failed call means no daemon answered at all (exit 3), rather
/// than a daemon that answered with an error.
pub fn unreachable(e: &crate::TransportError) -> bool {
    e.no_daemon()
}

/// Says how to start the daemon and returns exit status 3, for commands that
/// need a running daemon.
pub fn not_running(e: &crate::TransportError) -> ExitCode {
    let hint = start_hint();
    match e {
        crate::TransportError::Timeout(d) => eprintln!(
            "kitty-sync: kitty-syncd did not answer within {d:?}; `kitty-sync status` shows its state; \
             if it is not running, start it with: {hint}"
        ),
        crate::TransportError::ForeignPeer { .. } => {
            eprintln!("kitty-sync: warning: {e}; start our own daemon with: {hint}")
        }
        _ => eprintln!("kitty-sync: kitty-syncd is not running; start it with: {hint}"),
    }
    ExitCode::from(NOT_RUNNING)
}

/// The command that starts the daemon on this machine: through the service
/// manager when the service is installed, else how to install or run it.
pub fn start_hint() -> String {
    use kitty_proto::service;
    let Some(home) = std::env::var_os("HOME").map(std::path::PathBuf::from) else {
        return "kitty-syncd run".into();
    };
    let xdg = std::env::var_os("XDG_CONFIG_HOME").map(std::path::PathBuf::from);
    let unit = service::systemd_user_dir(&home, xdg.as_deref()).join(service::SYSTEMD_SERVICE);
    let plist = service::launchd_plist(&home);
    if unit.exists() {
        format!(
            "systemctl --user start {} {}",
            service::SYSTEMD_SOCKET,
            service::SYSTEMD_SERVICE
        )
    } else if plist.exists() {
        let uid = kitty_store::sys::uid();
        format!("launchctl bootstrap gui/{uid} {}", plist.display())
    } else if cfg!(target_os = "macos") {
        "kitty-syncd install (a LaunchAgent), or kitty-syncd run".into()
    } else if on_path("systemctl") {
        "kitty-syncd install (a systemd user service), or kitty-syncd run".into()
    } else {
        "kitty-syncd run".into()
    }
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// A table a person reads at a glance.
pub fn render(s: &Status) -> String {
    let mut rows: Vec<(&str, String)> = Vec::new();
    let state = if s.running {
        format!(
            "running (pid {}, up {}, {})",
            s.pid.map_or("?".into(), |p| p.to_string()),
            s.uptime_secs.map_or("?".into(), human_duration),
            match s.supervisor {
                Some(Supervisor::Manual) | None => "started by hand".to_owned(),
                Some(other) => format!("under {other}"),
            }
        )
    } else {
        format!(
            "NOT RUNNING; start it with: {}",
            s.start_hint.as_deref().unwrap_or("kitty-syncd run")
        )
    };
    rows.push(("kitty-syncd", state));
    rows.push(("version", s.version.clone()));
    rows.push(("socket", s.socket.clone()));
    rows.push(("home", s.home.clone()));
    if s.spool_rejected > 0 {
        rows.push((
            "set aside",
            format!(
                "{} spool files in spool/rejected/, never to be queued (the daemon's log says why)",
                s.spool_rejected
            ),
        ));
    }
    let oldest = s.queue.oldest_age_secs.map_or(String::new(), |a| {
        format!(", oldest {} ago", human_duration(a))
    });
    rows.push((
        "queue",
        format!(
            "{} events (max {}){oldest}",
            s.queue.depth, s.queue.max_queue_size
        ),
    ));
    let r = &s.queue.retries;
    rows.push((
        "retries",
        format!("0: {}   1-3: {}   4+: {}", r.none, r.few, r.many),
    ));
    if !s.queue.top_event_types.is_empty() {
        let top: Vec<String> = s
            .queue
            .top_event_types
            .iter()
            .map(|t| format!("{} {}", t.event_type, t.count))
            .collect();
        let top = match s.queue.top_event_types_of_newest {
            Some(n) => format!("{} (of the newest {n})", top.join(", ")),
            None => top.join(", "),
        };
        rows.push(("top types", top));
    }
    if s.refused > 0 {
        rows.push((
            "refused",
            format!(
                "{} spec-kitty events the daemon refused, kept in {}/kitty-sync-refused.jsonl",
                s.refused, s.home
            ),
        ));
    }
    if s.spooled > 0 {
        rows.push((
            "spooled",
            format!("{} events waiting for the daemon", s.spooled),
        ));
    }
    if let Some(e) = s.writer.last_error.as_ref().filter(|_| !s.writer.ok) {
        rows.push((
            "commits",
            format!(
                "FAILING since {} ({} in a row): {e}",
                s.writer.failing_since.as_deref().unwrap_or("?"),
                s.writer.consecutive_failures
            ),
        ));
    }
    rows.push((
        "clock",
        format!("{} (node {})", s.clock.value, s.clock.node_id),
    ));
    rows.push(("team", s.team_slug.clone()));
    rows.push(("server", s.server_url.clone()));
    rows.push((
        "logged in",
        match (&s.logged_in, &s.username) {
            (true, Some(u)) => format!("yes ({u})"),
            (true, None) => "yes".into(),
            (false, _) => "no".into(),
        },
    ));
    let u = &s.uplink;
    let connection = match (u.consecutive_failures, &u.next_retry_at) {
        (0, _) | (_, None) => s.connection.to_string(),
        (n, Some(at)) => format!("{} ({n} failures in a row; next try {at})", s.connection),
    };
    rows.push(("connection", connection));
    if s.running {
        rows.push((
            "last sync",
            u.last_sync_at
                .clone()
                .unwrap_or_else(|| "never (since start)".into()),
        ));
        if let Some(e) = &u.last_error {
            rows.push(("last error", e.clone()));
        }
        if let Some(f) = &u.in_flight {
            rows.push(("in flight", format!("{} since {}", f.what, f.since)));
        }
        rows.push((
            "sent",
            format!(
                "{} over WebSocket, {} in batches; confirmed {} new, {} duplicates; {} rejections{}",
                u.sent_ws,
                u.sent_batch,
                u.delivered,
                u.duplicates,
                u.rejected,
                if u.server_acks { "; server acknowledges" } else { "" }
            ),
        ));
        rows.push(("refreshes", u.refreshes.to_string()));
    }
    if u.dead_letters > 0 {
        rows.push((
            "dead letters",
            format!(
                "{} (see `kitty-sync queue dead`; `kitty-sync queue retry-dead` puts them back)",
                u.dead_letters
            ),
        ));
    }
    if let Some(at) = &s.config_loaded_at {
        rows.push(("config read", at.clone()));
    }
    rows.iter().map(|(k, v)| format!("{k:<12} {v}\n")).collect()
}

/// `42s`, `3m 5s`, `2h 10m`, `4d 1h`.
pub fn human_duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m {}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h {}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d {}h", secs / 86400, secs % 86400 / 3600),
    }
}
