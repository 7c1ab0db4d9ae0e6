//! Logs through tracing-subscriber, in the form the place they go to expects:
//!
//! - a terminal or a plain pipe: timestamped lines on stderr;
//! - journald (systemd sets `JOURNAL_STREAM`): bare lines with an `<N>` syslog
//!   priority prefix, which journald turns into the entry's level, and no
//!   timestamp or colour of our own, since the journal adds both;
//! - a file (`--log-file`, as the launchd agent does): rotated daily, a week kept.
//!
//! The filter is `RUST_LOG` (env-filter syntax) when set, else `[daemon] log`
//! in config.toml, else `info`; SIGHUP and config changes swap it live.
//! Log lines name events by id and type only: never payloads, tokens or
//! credentials.
//!
//! Whatever that filter says, other crates log at `info` at most: below it,
//! tungstenite logs every frame and the upgrade request (bearer token and
//! envelopes), hyper and reqwest headers and bodies, and notify every inotify
//! event (which, with a log file in `<home>`, fed on itself). Our own crates
//! log what they log at any level; none of it is a secret.

use std::fmt;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

const DEFAULT_FILTER: &str = "info";

/// Our crates, which may log at every level.
const OURS: &[&str] = &[
    "kitty_syncd",
    "kitty_store",
    "kitty_proto",
    "kitty_cli_common",
];
/// The most any other crate may log.
const OTHERS_AT_MOST: LevelFilter = LevelFilter::INFO;

/// The cap that applies on top of the user's filter (both must let an event through).
fn cap() -> Targets {
    OURS.iter()
        .fold(Targets::new(), |t, krate| {
            t.with_target(*krate, LevelFilter::TRACE)
        })
        .with_default(OTHERS_AT_MOST)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Stderr,
    Journal,
    File(PathBuf),
}

impl Target {
    /// `--log-file` wins; else journald when systemd connected stderr to it.
    pub fn detect(log_file: Option<PathBuf>) -> Self {
        match log_file {
            Some(p) => Self::File(p),
            None if std::env::var_os("JOURNAL_STREAM").is_some() => Self::Journal,
            None => Self::Stderr,
        }
    }
}

static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

fn filter_for(config_filter: Option<&str>) -> EnvFilter {
    if let Ok(env) = std::env::var("RUST_LOG")
        && let Ok(f) = EnvFilter::try_new(&env)
    {
        return f;
    }
    config_filter
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER))
}

/// Installs the subscriber. Keep the returned guard alive: it flushes the file
/// writer on drop.
pub fn init(
    target: &Target,
    config_filter: Option<&str>,
) -> std::io::Result<Option<tracing_appender::non_blocking::WorkerGuard>> {
    let (filter, handle) = reload::Layer::new(filter_for(config_filter));
    let _ = FILTER.set(handle);
    let registry = tracing_subscriber::registry().with(filter).with(cap());
    let layer = tracing_subscriber::fmt::layer().with_target(false);
    match target {
        Target::Stderr => {
            let _ = registry
                .with(
                    layer
                        .with_writer(std::io::stderr)
                        .with_ansi(std::io::stderr().is_terminal()),
                )
                .try_init();
            Ok(None)
        }
        Target::Journal => {
            let _ = registry
                .with(
                    layer
                        .event_format(JournalFormat)
                        .with_writer(std::io::stderr)
                        .with_ansi(false),
                )
                .try_init();
            Ok(None)
        }
        Target::File(path) => {
            let (dir, name) = split(path);
            kitty_store::fsutil::ensure_private_dir(&dir)?;
            let appender = tracing_appender::rolling::Builder::new()
                .rotation(tracing_appender::rolling::Rotation::DAILY)
                .filename_prefix(name)
                .max_log_files(7)
                .build(&dir)
                .map_err(std::io::Error::other)?;
            let (writer, guard) = tracing_appender::non_blocking(appender);
            let _ = registry
                .with(layer.with_writer(writer).with_ansi(false))
                .try_init();
            Ok(Some(guard))
        }
    }
}

fn split(path: &Path) -> (PathBuf, String) {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().map_or("kitty-syncd.log".into(), |n| {
        n.to_string_lossy().into_owned()
    });
    (dir.to_path_buf(), name)
}

/// Swaps the filter after a config reload (`RUST_LOG`, when set, still wins).
/// Returns the filter now in force.
pub fn set_config_filter(config_filter: Option<&str>) -> Option<String> {
    let handle = FILTER.get()?;
    if let Some(f) = config_filter
        && std::env::var_os("RUST_LOG").is_none()
        && EnvFilter::try_new(f).is_err()
    {
        tracing::warn!("[daemon] log = {f:?} is not a valid filter; keeping the current one");
        return None;
    }
    let new = filter_for(config_filter);
    let shown = new.to_string();
    handle.reload(new).ok()?;
    Some(shown)
}

/// journald's form: `<priority>message fields`, one line per event.
struct JournalFormat;

impl<S, N> FormatEvent<S, N> for JournalFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let priority = match *event.metadata().level() {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 6,
            Level::DEBUG | Level::TRACE => 7,
        };
        write!(writer, "<{priority}>")?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_crates_are_capped_at_info_ours_are_not() {
        let cap = cap();
        assert!(cap.would_enable("kitty_syncd::uplink::ws", &Level::TRACE));
        assert!(cap.would_enable("kitty_store::ledger", &Level::DEBUG));
        assert!(!cap.would_enable("tungstenite::protocol", &Level::TRACE));
        assert!(!cap.would_enable("hyper_util::client::legacy", &Level::DEBUG));
        assert!(!cap.would_enable("notify::inotify", &Level::TRACE));
        assert!(cap.would_enable("sqlx::query", &Level::WARN));
    }
}
