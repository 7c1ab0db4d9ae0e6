//! Logs through tracing-subscriber, filtered by `RUST_LOG` (env-filter syntax),
//! else `[daemon] log` in config.toml, else `info`. Log lines name events by
//! event_id and type only: never payloads, tokens or credentials.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

pub fn init(config_filter: Option<&str>) {
    let filter = EnvFilter::try_from_default_env()
        .ok()
        .or_else(|| config_filter.and_then(|f| EnvFilter::try_new(f).ok()))
        .unwrap_or_else(|| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
