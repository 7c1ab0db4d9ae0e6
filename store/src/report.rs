//! The status report, built the same way whether the daemon answers it from
//! memory or `status` reads it from disk because no daemon answers.

use std::path::Path;

use kitty_proto::api::{ClockStatus, ConnectionState, QueueStats, Status};
use kitty_proto::home::Home;

use crate::clockfile;
use crate::config::Config;
use crate::credentials::CredentialsFile;
use crate::{db, queue, spool};

/// Everything that does not depend on whether a daemon runs.
pub fn base(home: &Home, socket: &Path, config: &Config, creds: &CredentialsFile) -> Status {
    let now = chrono::Utc::now();
    let c = creds.credentials();
    Status {
        running: false,
        pid: None,
        version: kitty_proto::VERSION.into(),
        protocol: kitty_proto::api::PROTOCOL,
        uptime_secs: None,
        socket: socket.display().to_string(),
        home: home.dir().display().to_string(),
        queue: QueueStats {
            max_queue_size: config.max_queue_size,
            ..QueueStats::default()
        },
        clock: ClockStatus {
            value: 0,
            node_id: String::new(),
        },
        team_slug: creds.team_slug().into(),
        server_url: config.server_url.clone(),
        logged_in: c.is_some_and(|c| c.logged_in(now)),
        username: c.and_then(|c| c.username.clone()),
        connection: ConnectionState::Offline,
        supervisor: None,
        spooled: spool::list(home).map_or(0, |f| f.len() as u64),
        spool_rejected: spool::rejected_count(home),
        start_hint: None,
        config_loaded_at: None,
        refused: count_lines(&home.refused_log()),
        uplink: kitty_proto::api::UplinkStatus {
            state: ConnectionState::Offline,
            ..Default::default()
        },
        writer: Default::default(),
        health: None,
    }
}

/// Lines in a regular file, 0 when it is missing or not a regular file (a
/// planted FIFO must not hang `status`). Reads at most 256 MiB.
fn count_lines(path: &Path) -> u64 {
    use std::io::Read;
    const MAX_READ: u64 = 256 * 1024 * 1024;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => {}
        _ => return 0,
    }
    let Ok(file) = std::fs::File::open(path) else {
        return 0;
    };
    let mut reader = file.take(MAX_READ);
    let mut buf = vec![0u8; 64 * 1024];
    let mut lines = 0u64;
    loop {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => return lines,
            Ok(n) => lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64,
        }
    }
}

/// The report of a home whose daemon is not running: queue statistics and the
/// clock value a daemon would resume from, read without writing anything.
pub async fn from_disk(home: &Home, socket: &Path) -> Status {
    let config = crate::config::load(&home.config_toml()).unwrap_or_default();
    let creds = crate::credentials::read(&home.credentials());
    let mut status = base(home, socket, &config, &creds);
    let file = clockfile::read(&home.clock_json());
    status.clock.value = file.value();
    status.clock.node_id = match &file {
        clockfile::ClockFile::Valid {
            node_id: Some(id), ..
        } => id.clone(),
        _ => crate::node_id::compute(),
    };
    if let Ok(Some(mut conn)) = db::open_existing(&home.queue_db()).await {
        if let Ok(stats) = queue::stats(&mut conn, config.max_queue_size, None).await {
            status.queue = stats;
        }
        status.uplink.dead_letters = crate::outbox::dead_count(&mut conn).await.unwrap_or(0);
        if let Ok(floor) = queue::clock_floor(&mut conn).await {
            let hwm = floor.high_water_mark.unwrap_or(0);
            status.clock.value = status.clock.value.max(hwm).max(floor.scan.max);
        }
    }
    status
}
