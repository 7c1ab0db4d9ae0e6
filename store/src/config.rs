//! config.toml: `[sync] server_url`, `max_queue_size` and the rest below. Other tables belong
//! to other tools; we read what we need and never write this file.

use std::path::Path;

pub const DEFAULT_SERVER_URL: &str = "https://spec-kitty-dev.fly.dev";
pub const DEFAULT_MAX_QUEUE_SIZE: u64 = 10_000;
/// The design's rate limit: one batch per 5 s.
pub const DEFAULT_BATCH_INTERVAL_SECS: u64 = 5;
/// The design's periodic flush: every 5 minutes.
pub const DEFAULT_FLUSH_INTERVAL_SECS: u64 = 300;
/// Events waiting longer than this make `emit` and `status` warn: an hour.
pub const DEFAULT_STALE_AFTER_SECS: u64 = 3600;
/// A ceiling on the cap, so a typo cannot ask for a queue that fills the disk.
pub const MAX_MAX_QUEUE_SIZE: u64 = 10_000_000;
const MAX_FILE_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub server_url: String,
    pub max_queue_size: u64,
    /// Least time between two batch POSTs (`[sync] batch_interval_secs`; 0 = no limit).
    pub batch_interval_secs: u64,
    /// How often a non-empty queue is flushed even with nothing new (`[sync] flush_interval_secs`).
    pub flush_interval_secs: u64,
    /// The `[daemon] log` filter, e.g. `"info,kitty_syncd=debug"`, if set.
    pub log_filter: Option<String>,
    /// An event waiting this long means delivery is stuck (`[sync] stale_after_secs`; 0 = never).
    pub stale_after_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server_url: DEFAULT_SERVER_URL.into(),
            max_queue_size: DEFAULT_MAX_QUEUE_SIZE,
            batch_interval_secs: DEFAULT_BATCH_INTERVAL_SECS,
            flush_interval_secs: DEFAULT_FLUSH_INTERVAL_SECS,
            log_filter: None,
            stale_after_secs: DEFAULT_STALE_AFTER_SECS,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{path}: {reason}")]
pub struct ConfigError {
    pub path: String,
    pub reason: String,
}

/// Reads config.toml; a missing file means the defaults.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let fail = |reason: String| ConfigError {
        path: path.display().to_string(),
        reason,
    };
    let bytes = match crate::fsutil::read_state_file(path, MAX_FILE_BYTES) {
        Ok(Some(b)) => b,
        Ok(None) => return Ok(Config::default()),
        Err(e) => return Err(fail(e.problem.to_string())),
    };
    let text = String::from_utf8(bytes).map_err(|e| fail(format!("not UTF-8: {e}")))?;
    parse(&text).map_err(fail)
}

pub fn parse(text: &str) -> Result<Config, String> {
    let table: toml::Table =
        toml::from_str(text).map_err(|e| format!("not valid TOML: {}", e.message()))?;
    let mut config = Config::default();
    if let Some(sync) = table.get("sync") {
        let sync = sync.as_table().ok_or("[sync] must be a table")?;
        if let Some(v) = sync.get("server_url") {
            let url = v
                .as_str()
                .ok_or("[sync] server_url must be a string")?
                .trim();
            if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() < 9 {
                return Err(format!(
                    "[sync] server_url must be an http(s) URL, not {url:?}"
                ));
            }
            config.server_url = url.trim_end_matches('/').to_owned();
        }
        if let Some(v) = sync.get("max_queue_size") {
            let n = v
                .as_integer()
                .filter(|n| (1..=MAX_MAX_QUEUE_SIZE as i64).contains(n))
                .ok_or_else(|| {
                    format!(
                        "[sync] max_queue_size must be an integer from 1 to {MAX_MAX_QUEUE_SIZE}"
                    )
                })?;
            config.max_queue_size = n as u64;
        }
        let seconds =
            |key: &str, range: std::ops::RangeInclusive<i64>| -> Result<Option<u64>, String> {
                match sync.get(key) {
                    None => Ok(None),
                    Some(v) => v
                        .as_integer()
                        .filter(|n| range.contains(n))
                        .map(|n| Some(n as u64))
                        .ok_or_else(|| {
                            format!(
                                "[sync] {key} must be an integer from {} to {}",
                                range.start(),
                                range.end()
                            )
                        }),
                }
            };
        if let Some(n) = seconds("batch_interval_secs", 0..=3600)? {
            config.batch_interval_secs = n;
        }
        if let Some(n) = seconds("flush_interval_secs", 1..=86_400)? {
            config.flush_interval_secs = n;
        }
        if let Some(n) = seconds("stale_after_secs", 0..=31_536_000)? {
            config.stale_after_secs = n;
        }
    }
    if let Some(daemon) = table.get("daemon") {
        let daemon = daemon.as_table().ok_or("[daemon] must be a table")?;
        if let Some(v) = daemon.get("log") {
            config.log_filter = Some(
                v.as_str()
                    .ok_or("[daemon] log must be a string")?
                    .to_owned(),
            );
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_values() {
        assert_eq!(parse("").unwrap(), Config::default());
        let c = parse(
            "[auth]\nx=1\n[sync]\nserver_url = \"http://127.0.0.1:9/\"\nmax_queue_size = 5\n",
        )
        .unwrap();
        assert_eq!(c.server_url, "http://127.0.0.1:9");
        assert_eq!(c.max_queue_size, 5);
        assert_eq!(c.stale_after_secs, DEFAULT_STALE_AFTER_SECS);
        assert_eq!(
            parse("[sync]\nstale_after_secs = 60")
                .unwrap()
                .stale_after_secs,
            60
        );
    }

    #[test]
    fn bad_values_name_the_key() {
        for (text, needle) in [
            ("[sync", "TOML"),
            ("sync = 1", "[sync]"),
            ("[sync]\nmax_queue_size = \"10\"", "max_queue_size"),
            ("[sync]\nmax_queue_size = 0", "max_queue_size"),
            ("[sync]\nmax_queue_size = 99999999999", "max_queue_size"),
            ("[sync]\nserver_url = \"ftp://x\"", "server_url"),
            ("[sync]\nserver_url = 3", "server_url"),
            ("[sync]\nbatch_interval_secs = -1", "batch_interval_secs"),
            ("[sync]\nflush_interval_secs = 0", "flush_interval_secs"),
            ("[sync]\nstale_after_secs = -5", "stale_after_secs"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn missing_file_is_default() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            load(&dir.path().join("config.toml")).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn a_fifo_or_an_oversized_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.toml");
        crate::sys::mkfifo(&p);
        let e = load(&p).unwrap_err();
        assert!(e.reason.contains("FIFO"), "{e}");
        std::fs::remove_file(&p).unwrap();
        std::fs::write(&p, vec![b'#'; MAX_FILE_BYTES as usize + 1]).unwrap();
        let e = load(&p).unwrap_err();
        assert!(e.reason.contains("over the limit"), "{e}");
    }
}
