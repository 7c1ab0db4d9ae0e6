//! kitty-saas-dev: the reference spec-kitty SaaS server, standalone.
//!
//! The first line on stdout is `listening on http://ADDR`, so a test that
//! passes `--listen 127.0.0.1:0` can read the port it got. Logs go to stderr
//! (`RUST_LOG` filters them).

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use kitty_tests::saas::{Config, Db, Faults, Server, User};

#[derive(Parser, Debug)]
#[command(
    name = "kitty-saas-dev",
    version,
    about = "A reference spec-kitty SaaS server with fault injection, for tests, benchmarks and a first try",
    after_help = "Admin API (unprotected; bind to loopback): GET|POST|DELETE /admin/faults, \
                  GET /admin/counters, GET /admin/events?limit=N&offset=M&team=T, POST /admin/reset, \
                  POST /admin/ws/drop"
)]
struct Args {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:8000")]
    listen: SocketAddr,

    /// Serve on this inherited, already listening TCP socket instead of
    /// binding --listen: a test keeps the port reserved until the server has it.
    #[arg(long, value_name = "FD", conflicts_with = "listen")]
    listen_fd: Option<i32>,

    /// An account, NAME:PASSWORD[:TEAM] (repeatable). The password cannot hold
    /// a colon. Without any, one account dev:dev:dev is made.
    #[arg(long = "user", value_name = "NAME:PASSWORD[:TEAM]", value_parser = parse_user)]
    users: Vec<User>,

    /// HS256 secret for the JWTs; by default a random one, so tokens die with the process.
    #[arg(long, env = "KITTY_SAAS_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,

    /// Keep state in this SQLite file.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["memory", "sink"])]
    db: Option<PathBuf>,

    /// Keep state in memory (the default).
    #[arg(long)]
    memory: bool,

    /// Keep no events: check, deduplicate by event_id and count them only
    /// (`/admin/events` lists nothing, the WebSocket snapshot is empty). Every
    /// answer is as with a store. For benchmarking a client against a server
    /// that is never the slower side. Refresh tokens are kept in memory, so
    /// --memory may be given with it.
    #[arg(long)]
    sink: bool,

    /// Interval between the server's WebSocket pings.
    #[arg(long, default_value_t = 15_000, value_parser = clap::value_parser!(u64).range(1..))]
    ping_interval_ms: u64,

    /// Acknowledge each WebSocket envelope (later servers); without it, none (2026-02 servers).
    #[arg(long)]
    ack: bool,

    /// Share of batch requests answered 500, 0.0 to 1.0.
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    batch_500_fraction: f64,

    /// Share of batch requests answered 429 with Retry-After, 0.0 to 1.0.
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    batch_429_fraction: f64,

    /// Retry-After of the injected 429s.
    #[arg(long, default_value_t = 1)]
    retry_after_secs: u64,

    /// Latency added to every /api/v1/ answer.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,

    /// Lifetime of access (and ws) tokens.
    #[arg(long, default_value_t = 900)]
    access_ttl_secs: u64,

    /// Lifetime of refresh tokens.
    #[arg(long, default_value_t = 604_800)]
    refresh_ttl_secs: u64,

    /// Close each WebSocket after this many frames from its client (0 = never).
    #[arg(long, default_value_t = 0)]
    ws_close_after_frames: u64,

    /// Refuse WebSocket upgrades with 503.
    #[arg(long)]
    ws_refuse_upgrade: bool,

    /// Refuse every refresh with 401.
    #[arg(long)]
    refuse_refresh: bool,

    /// Store batches but answer with an empty `results`.
    #[arg(long)]
    empty_results: bool,

    /// Allow one batch per user per this many seconds, 429 otherwise (0 = no limit).
    #[arg(long, default_value_t = 0)]
    rate_limit_batch_secs: u64,

    /// Answer ROUTE (token, refresh, ws-token, batch, ws) with a 307 to the
    /// same path at ORIGIN (repeatable).
    #[arg(long, value_name = "ROUTE=ORIGIN", value_parser = parse_redirect)]
    redirect: Vec<(String, String)>,

    /// Hold every batch request this long before handling it.
    #[arg(long, default_value_t = 0)]
    batch_hang_ms: u64,
}

fn parse_redirect(s: &str) -> Result<(String, String), String> {
    let (route, origin) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not ROUTE=ORIGIN"))?;
    Ok((route.to_owned(), origin.to_owned()))
}

fn parse_user(s: &str) -> Result<User, String> {
    s.parse()
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|e| format!("{s:?} is not a number: {e}"))?;
    if !(0.0..=1.0).contains(&v) {
        return Err(format!("{v} is not between 0.0 and 1.0"));
    }
    Ok(v)
}

impl Args {
    fn into_config(self) -> Config {
        let users = if self.users.is_empty() {
            tracing::warn!("no --user given: made the account dev:dev (team dev)");
            vec![User::new("dev", "dev", Some("dev"))]
        } else {
            self.users
        };
        Config {
            listen: self.listen,
            users,
            jwt_secret: self.jwt_secret.map(String::into_bytes),
            db: match (self.db, self.sink) {
                (Some(path), _) => Db::File(path),
                (None, true) => Db::Sink,
                (None, false) => Db::Memory,
            },
            ping_interval: Duration::from_millis(self.ping_interval_ms),
            faults: Faults {
                batch_500_fraction: self.batch_500_fraction,
                batch_429_fraction: self.batch_429_fraction,
                retry_after_secs: self.retry_after_secs,
                latency_ms: self.latency_ms,
                access_ttl_secs: self.access_ttl_secs,
                refresh_ttl_secs: self.refresh_ttl_secs,
                ws_close_after_frames: self.ws_close_after_frames,
                ws_refuse_upgrade: self.ws_refuse_upgrade,
                refuse_refresh: self.refuse_refresh,
                empty_results: self.empty_results,
                rate_limit_batch_secs: self.rate_limit_batch_secs,
                ack: self.ack,
                redirect: self.redirect.into_iter().collect(),
                batch_hang_ms: self.batch_hang_ms,
                // Lies only a test sets, through /admin/faults.
                ..Faults::default()
            },
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kitty-saas-dev: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Takes ownership of the socket at `fd`, after checking that it is one.
#[allow(unsafe_code)]
fn inherited_listener(fd: i32) -> anyhow::Result<std::net::TcpListener> {
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: fstat only reads the descriptor's metadata; a closed fd gives EBADF.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(std::io::Error::last_os_error()).context(format!("--listen-fd {fd}"));
    }
    anyhow::ensure!(
        st.st_mode & libc::S_IFMT == libc::S_IFSOCK,
        "--listen-fd {fd} is not a socket"
    );
    // SAFETY: the fd is open (fstat above) and nothing else in this process
    // owns it: it was inherited for exactly this.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let listener = std::net::TcpListener::from(owned);
    listener
        .local_addr()
        .with_context(|| format!("--listen-fd {fd} is not a TCP socket"))?;
    Ok(listener)
}

fn run(args: Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async {
        let server = match args.listen_fd {
            Some(fd) => {
                let listener = inherited_listener(fd)?;
                Server::start_on(args.into_config(), listener).await?
            }
            None => Server::start(args.into_config()).await?,
        };
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {}", server.url()).context("writing the address to stdout")?;
        out.flush().context("flushing stdout")?;
        drop(out);
        wait_for_signal().await?;
        tracing::info!("shutting down");
        server.shutdown().await
    })
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("listening for SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}
