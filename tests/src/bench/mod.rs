//! `kitty-bench`: measures the real `kitty-syncd` and `kitty-sync` binaries,
//! each daemon in a fresh temporary `SPEC_KITTY_HOME`, and writes a Markdown
//! report. What it measures (issue 2, "Performance"):
//!
//! 1. the socket round trip of one emit with one client, kept alive and on a
//!    fresh connection per request (and `GET /v1/health` for comparison);
//! 2. sustained durable events/s with 1, 16 and 64 concurrent clients, each
//!    with its own kept-alive connection, checked against queue.db's row count;
//! 3. `kitty-sync emit` as a whole process: wall time and peak RSS (`wait4`),
//!    with a daemon running and without one (the direct fallback);
//! 4. the daemon's resident memory, idle and after load;
//! 5. the daemon's start-up to ready, on a fresh home, on an empty queue and
//!    on a full one (prefilled straight into queue.db, see [`db::prefill_queue`]);
//! 6. a queue of a million rows: `kitty-sync status` and a daemon start;
//!
//! and, as the floor under every durable commit, the disk's own sync latency
//! and a bare SQLite commit on the same file system.
//!
//! Every loop is bounded in count and in time; all traffic is on the Unix
//! socket. Numbers on a shared machine are noisy: the report gives medians and
//! spreads, and ratios between figures taken in the same run.

pub mod db;
pub mod http;
pub mod ideal;
pub mod json;
pub mod stats;
pub mod sys;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use self::http::{AsyncRawConn, RawConn, request_bytes};
use self::stats::{Summary, mib, ms, ms_short, thousands};
use self::sys::{BenchHome, Daemon, Machine, Memory};

/// The headings of the report, in order; the smoke test checks each is there.
pub const SECTIONS: &[&str] = &[
    "## Targets",
    "## Machine",
    "## Floor: the disk and SQLite alone",
    "## 1. Socket round trip, one client",
    "## 2. Sustained durable throughput",
    "## 3. `kitty-sync emit` as a whole process",
    "## 4. Daemon memory",
    "## 5. Daemon start-up to ready",
    "## 6. Scale: a queue of",
    "## Where the time goes",
];

/// The draft every emit sends: a WPStatusChanged, completed by the daemon.
pub const DRAFT: &str = r#"{"event_type":"WPStatusChanged","aggregate_id":"WP01","payload":{"wp_id":"WP01","previous_status":"planned","new_status":"doing"}}"#;
/// The payload `kitty-sync emit WPStatusChanged --payload` gets.
pub const PAYLOAD: &str = r#"{"wp_id":"WP01","previous_status":"planned","new_status":"doing"}"#;
/// `[sync] max_queue_size` of every bench home: the cap never interferes.
pub const MAX_QUEUE_SIZE: u64 = 10_000_000;

/// The targets of issue 2 on a 2-core machine.
pub const TARGET_P50: f64 = 0.3e-3;
pub const TARGET_EVENTS_PER_SEC_16: f64 = 20_000.0;
pub const TARGET_EMIT_WALL: f64 = 5e-3;
pub const TARGET_EMIT_RSS: u64 = 8 * 1024 * 1024;
/// The targets of issue 10, each a figure or a ratio of figures of one run.
pub const TARGET10_EVENTS_PER_SEC_16: f64 = 40_000.0;
pub const TARGET10_SHARE_OF_CEILING_16: f64 = 0.6;
pub const TARGET10_EVENTS_PER_SEC_64: f64 = 50_000.0;
pub const TARGET10_RTT_OVER_BARE_COMMIT: f64 = 1.4;
pub const TARGET10_RTT_P50: f64 = 0.25e-3;
pub const TARGET10_EMIT_OVER_VERSION: f64 = 0.6e-3;
/// For scale: the spec-kitty 2.1.3 Python CLI.
pub const PYTHON_EMIT_WALL: f64 = 0.48;
pub const PYTHON_EMIT_RSS: u64 = 62 * 1024 * 1024;
pub const PYTHON_EVENTS_PER_SEC: f64 = 650.0;

/// How often start-up polls `/v1/health`.
const READY_POLL: Duration = Duration::from_micros(500);
/// The longest one `kitty-sync` process may run before the bench kills it.
const EMIT_GUARD: Duration = Duration::from_secs(20);

/// What to run, and how much of it.
#[derive(Debug, Clone)]
pub struct Options {
    pub daemon_bin: PathBuf,
    pub client_bin: PathBuf,
    /// The command line, as the report prints it.
    pub command: String,
    /// `kitty-bench` itself, to start as the [`sys::Spawner`] of the measured
    /// processes. Without it they are spawned from the bench, and their peak
    /// RSS includes the bench's own (the report says so).
    pub spawner: Option<PathBuf>,
    /// A short smoke run: the report says its numbers mean little.
    pub quick: bool,
    /// Sync probes of the bare disk, and bare SQLite commits.
    pub floor_samples: usize,
    /// Requests before any measured round trip.
    pub warmup_requests: usize,
    /// Sequential round trips on one kept-alive connection.
    pub rtt_requests: usize,
    /// Sequential round trips, a fresh connection each.
    pub fresh_requests: usize,
    /// How long the round-trip daemon idles before its idle RSS is read.
    pub idle: Duration,
    pub concurrency: Vec<usize>,
    /// Load before the measured window of each throughput run.
    pub load_warmup: Duration,
    /// The measured window of each throughput run.
    pub load_window: Duration,
    /// Upper bound on the requests one load client sends.
    pub max_requests_per_client: u64,
    /// `kitty-sync emit` processes per scenario (after `process_warmup`).
    pub process_runs: usize,
    pub process_warmup: usize,
    /// Daemon starts on a fresh home, on an empty queue, and on the full queue.
    pub startup_runs: usize,
    /// Rows in the queue of the recovery start-ups and of the direct emits
    /// that are compared with an empty queue.
    pub recovery_rows: usize,
    /// Rows in the queue of section 6.
    pub scale_rows: usize,
    /// `kitty-sync status` processes per scenario, and daemon starts, in section 6.
    pub scale_runs: usize,
}

impl Options {
    /// The full benchmark (a few minutes).
    pub fn full(daemon_bin: PathBuf, client_bin: PathBuf) -> Self {
        Self {
            daemon_bin,
            client_bin,
            command: String::new(),
            spawner: None,
            quick: false,
            floor_samples: 200,
            warmup_requests: 200,
            rtt_requests: 2_000,
            fresh_requests: 500,
            idle: Duration::from_secs(2),
            concurrency: vec![1, 16, 64],
            load_warmup: Duration::from_secs(1),
            load_window: Duration::from_secs(5),
            max_requests_per_client: 5_000_000,
            process_runs: 200,
            process_warmup: 5,
            startup_runs: 20,
            recovery_rows: 100_000,
            scale_rows: 1_000_000,
            scale_runs: 5,
        }
    }

    /// A short run that exercises every section (a smoke test, ~10 s).
    pub fn quick(daemon_bin: PathBuf, client_bin: PathBuf) -> Self {
        Self {
            quick: true,
            floor_samples: 10,
            warmup_requests: 10,
            rtt_requests: 50,
            fresh_requests: 20,
            idle: Duration::from_millis(200),
            load_warmup: Duration::from_millis(100),
            load_window: Duration::from_millis(400),
            max_requests_per_client: 100_000,
            process_runs: 6,
            process_warmup: 1,
            startup_runs: 3,
            recovery_rows: 2_000,
            scale_rows: 5_000,
            scale_runs: 2,
            ..Self::full(daemon_bin, client_bin)
        }
    }
}

// ---------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Floor {
    pub append_fsync: Summary,
    pub overwrite_fsync: Summary,
    pub overwrite_fdatasync: Summary,
    pub sqlite_bare: Summary,
    pub sqlite_daemon_like: Summary,
    pub sqlx_statement: Summary,
    /// A daemon-like commit of [`db::GROUP`] events, one statement each.
    pub group_statements: Summary,
    /// The same as one multi-row INSERT.
    pub group_multirow: Summary,
    /// CPU per single-event commit of SQLite alone.
    pub cpu_per_commit: Duration,
}

#[derive(Debug, Clone)]
pub struct RoundTrip {
    pub kept_alive: Summary,
    pub fresh: Summary,
    pub health: Summary,
    pub rows: u64,
    pub expected_rows: u64,
    pub ready: Duration,
    pub idle_memory: Memory,
    pub memory_after: Memory,
    /// SIGTERM to exit 0 at the end.
    pub stop: Duration,
}

/// What a load run counted, whoever served it (the daemon or the [`ideal`]
/// server).
#[derive(Debug, Clone)]
pub struct LoadCount {
    pub clients: usize,
    /// Answers of success that arrived inside the measured window.
    pub in_window: u64,
    pub window: Duration,
    /// Every answer of success, warm-up and tail included.
    pub accepted: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub latency: Option<Summary>,
    /// This process's CPU over the window, as a share of one core.
    pub bench_cpu: f64,
    /// Rows in the server's database at the end.
    pub rows: u64,
}

impl LoadCount {
    fn new(clients: usize, tally: &Tally, opts: &Options, bench_cpu: f64, rows: u64) -> Self {
        Self {
            clients,
            in_window: tally.in_window,
            window: opts.load_window,
            accepted: tally.accepted,
            errors: tally.errors,
            first_error: tally.first_error.clone(),
            latency: Summary::of(&tally.latencies),
            bench_cpu,
            rows,
        }
    }

    pub fn events_per_sec(&self) -> f64 {
        self.in_window as f64 / self.window.as_secs_f64()
    }

    /// Every answer of success is a row: nothing was answered and lost.
    pub fn verified(&self) -> bool {
        self.rows == self.accepted
    }
}

#[derive(Debug, Clone)]
pub struct Throughput {
    /// Counted in 202s; the rows are queue.db's.
    pub load: LoadCount,
    /// 202s per whole second of the window.
    pub per_second: Vec<u64>,
    /// The daemon's CPU over the window, as a share of one core.
    pub daemon_cpu: f64,
    pub memory_after: Memory,
    /// `SELECT COUNT(*) FROM queue` at the final depth.
    pub count_cost: Option<Summary>,
    /// SIGTERM to exit 0 at the end.
    pub stop: Duration,
    /// The daemon's threads over the window, by name: CPU and context switches.
    pub threads: Vec<(String, sys::ThreadStat)>,
}

#[derive(Debug, Clone)]
pub struct ProcessRuns {
    pub label: String,
    pub wall: Summary,
    pub max_rss: Summary,
    pub cpu: Summary,
    /// queue.db's new rows matched the runs (None: nothing to check).
    pub rows_ok: Option<bool>,
    /// How many measured runs ended with each exit status.
    pub exit_codes: std::collections::BTreeMap<i32, usize>,
}

#[derive(Debug, Clone)]
pub struct Startups {
    pub label: String,
    pub ready: Summary,
    /// SIGTERM to exit 0, of the starts that exited 0.
    pub stop: Option<Summary>,
    pub rss_at_ready: Summary,
    /// Starts that SIGTERM, sent the moment `/v1/health` first answered,
    /// killed outright (default action) instead of shutting down cleanly.
    pub killed_by_sigterm: usize,
}

/// Section 6: the same figures on a very long queue.
#[derive(Debug, Clone)]
pub struct Scale {
    pub rows: u64,
    /// How long writing the rows straight into queue.db took.
    pub prefill: Duration,
    /// The daemon's start on that queue.
    pub startup: Startups,
    /// `kitty-sync status` (and `--json`), with the daemon running and without.
    pub status: Vec<ProcessRuns>,
}

#[derive(Debug, Clone)]
pub struct Results {
    pub machine: Machine,
    pub load_after: String,
    pub date: String,
    pub elapsed: Duration,
    pub floor: Floor,
    pub round_trip: RoundTrip,
    pub throughput: Vec<Throughput>,
    /// The [`ideal`] server under the same load, for the counts of at least
    /// [`CLOSED_LOOP_MIN_CLIENTS`] (none when the bench is not its own exe).
    pub closed_loop: Vec<ClosedLoop>,
    pub processes: Vec<ProcessRuns>,
    pub startups: Vec<Startups>,
    /// `SELECT COUNT(*)` on the recovery home's queue.
    pub recovery_count_cost: Option<Summary>,
    pub scale: Scale,
}

// ---------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------

/// Runs every measurement; `progress` hears what is being done.
pub fn run(opts: &Options, progress: &mut dyn FnMut(&str)) -> Result<Results> {
    for bin in [&opts.daemon_bin, &opts.client_bin] {
        ensure!(
            bin.is_file(),
            "{} not found: build it first (cargo build --release -p kitty-syncd -p kitty-sync -p kitty-tests)",
            bin.display()
        );
    }
    let started = Instant::now();
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
    let machine = Machine::describe();

    progress("floor: disk sync and bare SQLite commits");
    let floor = floor(opts)?;
    progress("1. socket round trip");
    let round_trip = round_trip(opts)?;
    let mut throughput = Vec::new();
    let mut closed_loop = Vec::new();
    for &c in &opts.concurrency {
        throughput.push(load_run(opts, c, progress)?);
        // Right after the daemon's run at the same count, so that the ratio
        // compares two runs minutes apart at most on a machine that drifts.
        if let (true, Some(exe)) = (c >= CLOSED_LOOP_MIN_CLIENTS, &opts.spawner) {
            progress(&format!("2b. closed-loop floor, {c} clients"));
            closed_loop.push(closed_loop_run(opts, exe, c)?);
        }
    }
    progress("3. kitty-sync emit processes");
    let mut processes = process_runs(opts)?;
    progress("5. daemon start-up");
    let (startups, recovery_home) = startups(opts)?;
    let recovery_count_cost =
        Summary::of_durations(&db::count_latencies(&recovery_home.queue_db(), 20)?);
    progress("3. kitty-sync emit, no daemon, full queue");
    // A daemon that scans the queue at every open makes these the slowest
    // runs of the bench (0.35 s each at 100,000 rows): fewer of them.
    let fewer = Options {
        process_runs: opts.process_runs.min(50),
        ..opts.clone()
    };
    processes.push(emit_runs(
        &fewer,
        &recovery_home,
        &format!(
            "no daemon, {}-row queue (direct)",
            thousands(opts.recovery_rows as u64)
        ),
        "direct",
    )?);
    progress(&format!(
        "6. scale: prefilling {} rows",
        thousands(opts.scale_rows as u64)
    ));
    let scale = scale(opts, progress)?;
    Ok(Results {
        machine,
        load_after: sys::load_average(),
        date,
        elapsed: started.elapsed(),
        floor,
        round_trip,
        throughput,
        closed_loop,
        processes,
        startups,
        recovery_count_cost,
        scale,
    })
}

fn summary(values: &[Duration], what: &str) -> Result<Summary> {
    Summary::of_durations(values).with_context(|| format!("no samples of {what}"))
}

fn floor(opts: &Options) -> Result<Floor> {
    let dir = tempfile::Builder::new().prefix("kb-floor").tempdir()?;
    let probe = sys::sync_latencies(dir.path(), opts.floor_samples)?;
    let commits = db::commit_latencies(dir.path(), opts.floor_samples)?;
    Ok(Floor {
        append_fsync: summary(&probe.append_fsync, "fsync")?,
        overwrite_fsync: summary(&probe.overwrite_fsync, "fsync")?,
        overwrite_fdatasync: summary(&probe.overwrite_fdatasync, "fdatasync")?,
        sqlite_bare: summary(&commits.bare, "bare commits")?,
        sqlite_daemon_like: summary(&commits.daemon_like, "daemon-like commits")?,
        sqlx_statement: summary(&commits.statement, "sqlx statements")?,
        group_statements: summary(&commits.group_statements, "group commits")?,
        group_multirow: summary(&commits.group_multirow, "multi-row group commits")?,
        cpu_per_commit: commits.cpu_per_commit,
    })
}

/// Sends `req` on `conn` `n` times; the latency of each, all answered `status`.
fn timed_requests(
    conn: &mut http::RawConn,
    req: &[u8],
    n: usize,
    status: u16,
) -> Result<Vec<Duration>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let a = conn.send(req)?;
        out.push(t.elapsed());
        ensure!(a.status == status, "answered {}: {}", a.status, a.text());
    }
    Ok(out)
}

fn round_trip(opts: &Options) -> Result<RoundTrip> {
    let home = BenchHome::new(MAX_QUEUE_SIZE)?;
    let mut d = Daemon::spawn(&opts.daemon_bin, &home, "rtt.log")?;
    let ready = d.wait_ready(READY_POLL)?;
    std::thread::sleep(opts.idle);
    let idle_memory = d.memory()?;

    let post = request_bytes("POST", "/v1/events", Some(DRAFT.as_bytes()), false);
    let health = request_bytes("GET", "/v1/health", None, false);
    let mut conn = d.connect()?;
    timed_requests(&mut conn, &post, opts.warmup_requests, 202)?;
    timed_requests(&mut conn, &health, opts.warmup_requests.min(50), 200)?;
    let kept_alive = timed_requests(&mut conn, &post, opts.rtt_requests, 202)?;
    let health_times = timed_requests(&mut conn, &health, opts.rtt_requests, 200)?;
    drop(conn);

    let close = request_bytes("POST", "/v1/events", Some(DRAFT.as_bytes()), true);
    let mut fresh = Vec::with_capacity(opts.fresh_requests);
    for _ in 0..opts.fresh_requests {
        let t = Instant::now();
        let a = http::one_shot(d.socket(), &close)?;
        fresh.push(t.elapsed());
        ensure!(a.status == 202, "answered {}: {}", a.status, a.text());
    }
    let memory_after = d.memory()?;
    let rows = db::row_count(&home.queue_db())?;
    let (stop, _) = d.stop()?;
    Ok(RoundTrip {
        stop,
        kept_alive: summary(&kept_alive, "round trips")?,
        fresh: summary(&fresh, "fresh-connection round trips")?,
        health: summary(&health_times, "health round trips")?,
        rows,
        expected_rows: (opts.warmup_requests + opts.rtt_requests + opts.fresh_requests) as u64,
        ready,
        idle_memory,
        memory_after,
    })
}

#[derive(Default)]
struct Tally {
    accepted: u64,
    in_window: u64,
    errors: u64,
    first_error: Option<String>,
    latencies: Vec<f64>,
    per_second: Vec<u64>,
}

fn load_run(opts: &Options, clients: usize, progress: &mut dyn FnMut(&str)) -> Result<Throughput> {
    let home = BenchHome::new(MAX_QUEUE_SIZE)?;
    let mut d = Daemon::spawn(&opts.daemon_bin, &home, &format!("load-{clients}.log"))?;
    d.wait_ready(READY_POLL)?;
    // The pid lets an observer attach (perf, strace) for the window.
    progress(&format!(
        "2. throughput, {clients} client(s), daemon pid {}",
        d.pid()
    ));
    let (tally, daemon_cpu, bench_cpu, threads) =
        drive_load(d.socket(), LoadKind::Daemon, clients, opts, d.pid())?;
    let memory_after = d.memory()?;
    let rows = db::row_count(&home.queue_db())?;
    let count_cost = Summary::of_durations(&db::count_latencies(&home.queue_db(), 20)?);
    let (stop, _) = d.stop()?;
    let load = LoadCount::new(clients, &tally, opts, bench_cpu, rows);
    let mut per_second = tally.per_second;
    per_second.truncate(opts.load_window.as_secs() as usize);
    Ok(Throughput {
        load,
        per_second,
        daemon_cpu,
        memory_after,
        count_cost,
        stop,
        threads,
    })
}

/// The closed-loop floor is measured at these client counts and above (one
/// client is the round trip, already compared with a bare commit).
pub const CLOSED_LOOP_MIN_CLIENTS: usize = 16;

/// The [`ideal`] server under the throughput runs' load.
#[derive(Debug, Clone)]
pub struct ClosedLoop {
    /// Counted in answers "committed"; the rows are its own database's.
    pub load: LoadCount,
    /// The server's CPU over the window, as a share of one core.
    pub server_cpu: f64,
}

fn closed_loop_run(opts: &Options, bench_exe: &Path, clients: usize) -> Result<ClosedLoop> {
    let dir = tempfile::tempdir().context("a directory for the closed-loop server")?;
    let server = ideal::Server::spawn(bench_exe, dir.path())?;
    let (tally, server_cpu, bench_cpu, _) = drive_load(
        server.socket(),
        LoadKind::ClosedLoop,
        clients,
        opts,
        server.pid(),
    )?;
    let db = server.db().to_path_buf();
    drop(server);
    let rows = db::row_count(&db)?;
    Ok(ClosedLoop {
        load: LoadCount::new(clients, &tally, opts, bench_cpu, rows),
        server_cpu,
    })
}

/// Runs [`load`] on a runtime of its own: one thread makes the load, so the
/// server keeps as much of the machine as possible; the report shows how
/// busy that thread was.
fn drive_load(
    socket: &Path,
    kind: LoadKind,
    clients: usize,
    opts: &Options,
    server_pid: i32,
) -> Result<LoadOutcome> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(load(socket.to_path_buf(), kind, clients, opts, server_pid))
}

/// What the load gives back: the merged tally, the CPU shares of the daemon
/// and of this process over the window, and the daemon's threads over it.
type LoadOutcome = (Tally, f64, f64, Vec<(String, sys::ThreadStat)>);

/// Who the load clients talk to.
#[derive(Clone, Copy)]
enum LoadKind {
    /// kitty-syncd: `POST /v1/events` with the draft.
    Daemon,
    /// The [`ideal`] server: the envelope, framed.
    ClosedLoop,
}

enum LoadConn {
    Http(AsyncRawConn),
    Raw(ideal::Client),
}

impl LoadConn {
    /// One request: `None` when it was accepted (durable), else why not;
    /// an error when the connection is gone.
    async fn send(&mut self) -> Result<Option<String>> {
        match self {
            Self::Http(c) => {
                let a = c.send().await?;
                Ok((a.status != 202).then(|| format!("{} {}", a.status, a.text())))
            }
            Self::Raw(c) => Ok((!c.commit().await?).then(|| "not committed".to_owned())),
        }
    }
}

/// `clients` tasks, each on its own kept-alive connection, send one event at
/// a time until the window closes.
async fn load(
    socket: PathBuf,
    kind: LoadKind,
    clients: usize,
    opts: &Options,
    daemon_pid: i32,
) -> Result<LoadOutcome> {
    let mut conns = Vec::with_capacity(clients);
    for _ in 0..clients {
        conns.push(match kind {
            LoadKind::Daemon => {
                let request = request_bytes("POST", "/v1/events", Some(DRAFT.as_bytes()), false);
                LoadConn::Http(AsyncRawConn::connect(&socket, request.into()).await?)
            }
            LoadKind::ClosedLoop => LoadConn::Raw(ideal::Client::connect(&socket).await?),
        });
    }
    let t0 = Instant::now();
    let window_start = t0 + opts.load_warmup;
    let window_end = window_start + opts.load_window;
    let buckets = opts.load_window.as_secs_f64().ceil().max(1.0) as usize;
    let max_requests = opts.max_requests_per_client;

    let sampler = tokio::spawn(async move {
        let sample = || -> Result<_> {
            Ok((
                Instant::now(),
                sys::cpu_time(daemon_pid)?,
                sys::self_cpu_time(),
                sys::thread_stats(daemon_pid)?,
            ))
        };
        tokio::time::sleep_until(window_start.into()).await;
        let a = sample()?;
        tokio::time::sleep_until(window_end.into()).await;
        let b = sample()?;
        let wall = (b.0 - a.0).as_secs_f64().max(1e-9);
        let threads =
            b.3.iter()
                .map(|(name, end)| {
                    let start = a.3.get(name).copied().unwrap_or_default();
                    (
                        name.clone(),
                        sys::ThreadStat {
                            threads: end.threads,
                            cpu: end.cpu.saturating_sub(start.cpu),
                            switches: end.switches.saturating_sub(start.switches),
                        },
                    )
                })
                .collect::<Vec<_>>();
        Ok::<_, anyhow::Error>((
            (b.1 - a.1).as_secs_f64() / wall,
            (b.2 - a.2).as_secs_f64() / wall,
            threads,
        ))
    });

    let mut tasks = tokio::task::JoinSet::new();
    for mut conn in conns {
        tasks.spawn(async move {
            let mut t = Tally {
                per_second: vec![0; buckets],
                ..Tally::default()
            };
            let mut sent = 0u64;
            while sent < max_requests {
                let s = Instant::now();
                if s >= window_end {
                    break;
                }
                sent += 1;
                let answer = conn.send().await;
                let e = Instant::now();
                match answer {
                    Ok(None) => {
                        t.accepted += 1;
                        if e >= window_start && e < window_end {
                            t.in_window += 1;
                            t.latencies.push((e - s).as_secs_f64());
                            let i = ((e - window_start).as_secs() as usize).min(buckets - 1);
                            t.per_second[i] += 1;
                        }
                    }
                    Ok(Some(refused)) => {
                        t.errors += 1;
                        t.first_error.get_or_insert(refused);
                    }
                    Err(err) => {
                        // The connection is gone; this client stops.
                        t.errors += 1;
                        t.first_error.get_or_insert_with(|| format!("{err:#}"));
                        break;
                    }
                }
            }
            t
        });
    }
    let mut total = Tally {
        per_second: vec![0; buckets],
        ..Tally::default()
    };
    while let Some(t) = tasks.join_next().await {
        let t = t.context("a load client panicked")?;
        total.accepted += t.accepted;
        total.in_window += t.in_window;
        total.errors += t.errors;
        if total.first_error.is_none() {
            total.first_error = t.first_error;
        }
        total.latencies.extend(t.latencies);
        for (a, b) in total.per_second.iter_mut().zip(t.per_second) {
            *a += b;
        }
    }
    let (daemon_cpu, bench_cpu, threads) = sampler.await.context("the CPU sampler panicked")??;
    Ok((total, daemon_cpu, bench_cpu, threads))
}

/// Starts the measured processes: through a [`sys::Spawner`] when the options
/// name one, else straight from the bench.
enum Launcher {
    Spawner(sys::Spawner),
    Direct { env: std::process::Command },
}

impl Launcher {
    /// Processes see `home`'s environment.
    fn new(opts: &Options, home: &BenchHome) -> Result<Self> {
        Ok(match &opts.spawner {
            Some(exe) => Self::Spawner(sys::Spawner::start(home.command(exe))?),
            None => Self::Direct {
                env: home.command(Path::new("/")),
            },
        })
    }

    fn run(&mut self, argv: &[&str]) -> Result<(Duration, sys::Reaped)> {
        match self {
            Self::Spawner(s) => s.run(argv),
            Self::Direct { env } => {
                let mut cmd = std::process::Command::new(argv[0]);
                cmd.args(&argv[1..])
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null());
                for (k, v) in env.get_envs() {
                    match v {
                        Some(v) => cmd.env(k, v),
                        None => cmd.env_remove(k),
                    };
                }
                if let Some(dir) = env.get_current_dir() {
                    cmd.current_dir(dir);
                }
                sys::run_timed(&mut cmd, EMIT_GUARD)
            }
        }
    }
}

/// Runs `kitty-sync emit` in `home`: once with `--json` to check it took
/// `expect_path`, then the warm-up, then the measured runs; checks that
/// queue.db gained one row per run.
fn emit_runs(
    opts: &Options,
    home: &BenchHome,
    label: &str,
    expect_path: &str,
) -> Result<ProcessRuns> {
    let rows_before = if home.queue_db().exists() {
        db::row_count(&home.queue_db())?
    } else {
        0
    };
    let out_path = home.log("emit-check.out");
    let mut check = home.command(&opts.client_bin);
    check
        .args(["emit", "WPStatusChanged", "--payload", PAYLOAD, "--json"])
        .stdout(std::fs::File::create(&out_path)?)
        .stderr(std::process::Stdio::null());
    let (_, r) = sys::run_timed(&mut check, EMIT_GUARD)?;
    let out = std::fs::read_to_string(&out_path)?;
    ensure!(
        r.code() == Some(0),
        "kitty-sync emit exited with status {:#x}: {out}",
        r.status
    );
    let answer: serde_json::Value = serde_json::from_str(out.trim())
        .with_context(|| format!("kitty-sync emit --json printed {out:?}"))?;
    ensure!(
        answer["path"] == expect_path,
        "kitty-sync emit took the {} path, expected {expect_path}: {out}",
        answer["path"]
    );

    let client = opts.client_bin.to_string_lossy();
    let argv = [&*client, "emit", "WPStatusChanged", "--payload", PAYLOAD];
    let measured = process_loop(&mut Launcher::new(opts, home)?, &argv, opts)?;
    let rows = db::row_count(&home.queue_db())?;
    let expected = rows_before + 1 + (opts.process_warmup + opts.process_runs) as u64;
    Ok(ProcessRuns {
        rows_ok: Some(rows == expected),
        ..measured.labelled(label)
    })
}

/// Runs `argv` `process_warmup` times, then `process_runs` times measured;
/// each must exit 0.
fn process_loop(launcher: &mut Launcher, argv: &[&str], opts: &Options) -> Result<ProcessRuns> {
    process_loop_n(launcher, argv, opts.process_warmup, opts.process_runs, &[0])
}

/// Runs `argv` `warmup` times, then `runs` times measured; each must exit
/// with one of `codes`.
fn process_loop_n(
    launcher: &mut Launcher,
    argv: &[&str],
    warmup: usize,
    runs: usize,
    codes: &[i32],
) -> Result<ProcessRuns> {
    for _ in 0..warmup {
        let (_, r) = launcher.run(argv)?;
        ensure!(
            r.code().is_some_and(|c| codes.contains(&c)),
            "{argv:?} exited with status {:#x}",
            r.status
        );
    }
    let (mut wall, mut rss, mut cpu) = (Vec::new(), Vec::new(), Vec::new());
    let mut exit_codes = std::collections::BTreeMap::new();
    for _ in 0..runs {
        let (w, r) = launcher.run(argv)?;
        let code = r.code().filter(|c| codes.contains(c));
        let code = code.with_context(|| format!("{argv:?} exited with status {:#x}", r.status))?;
        *exit_codes.entry(code).or_default() += 1;
        wall.push(w);
        rss.push(r.max_rss as f64);
        cpu.push(r.cpu);
    }
    Ok(ProcessRuns {
        label: String::new(),
        wall: summary(&wall, "process wall times")?,
        max_rss: Summary::of(&rss).context("no RSS samples")?,
        cpu: summary(&cpu, "process CPU times")?,
        rows_ok: None,
        exit_codes,
    })
}

impl ProcessRuns {
    fn labelled(self, label: &str) -> Self {
        Self {
            label: label.to_owned(),
            ..self
        }
    }
}

fn process_runs(opts: &Options) -> Result<Vec<ProcessRuns>> {
    let mut out = Vec::new();
    let home = BenchHome::new(MAX_QUEUE_SIZE)?;
    let mut d = Daemon::spawn(&opts.daemon_bin, &home, "emit.log")?;
    d.wait_ready(READY_POLL)?;
    out.push(emit_runs(opts, &home, "daemon running", "daemon")?);
    d.stop()?;

    let home = BenchHome::new(MAX_QUEUE_SIZE)?;
    out.push(emit_runs(
        opts,
        &home,
        "no daemon, empty home (direct)",
        "direct",
    )?);

    // References: the cost of any process here, and of this binary doing nothing.
    let mut launcher = Launcher::new(opts, &home)?;
    let client = opts.client_bin.to_string_lossy();
    out.push(
        process_loop(&mut launcher, &[&*client, "--version"], opts)?
            .labelled("reference: `kitty-sync --version`"),
    );
    if Path::new("/bin/true").is_file() {
        out.push(
            process_loop(&mut launcher, &["/bin/true"], opts)?
                .labelled("reference: `/bin/true` (the method's floor)"),
        );
    }
    Ok(out)
}

fn start_stop(
    opts: &Options,
    home: &BenchHome,
    log: &str,
) -> Result<(Duration, Option<Duration>, u64)> {
    let mut d = Daemon::spawn(&opts.daemon_bin, home, log)?;
    let ready = d.wait_ready(READY_POLL)?;
    let rss = d.memory()?.rss;
    let (stop, r) = d.terminate()?;
    match (r.code(), r.signal()) {
        (Some(0), _) => Ok((ready, Some(stop), rss)),
        (_, Some(libc::SIGTERM)) => Ok((ready, None, rss)),
        _ => bail!(
            "kitty-syncd ended with status {:#x} on SIGTERM:\n{}",
            r.status,
            std::fs::read_to_string(home.log(log)).unwrap_or_default()
        ),
    }
}

fn startup_summary(label: String, runs: &[(Duration, Option<Duration>, u64)]) -> Result<Startups> {
    let ready: Vec<Duration> = runs.iter().map(|r| r.0).collect();
    let stop: Vec<Duration> = runs.iter().filter_map(|r| r.1).collect();
    let rss: Vec<f64> = runs.iter().map(|r| r.2 as f64).collect();
    Ok(Startups {
        label,
        ready: summary(&ready, "start-ups")?,
        stop: Summary::of_durations(&stop),
        rss_at_ready: Summary::of(&rss).context("no RSS samples")?,
        killed_by_sigterm: runs.iter().filter(|r| r.1.is_none()).count(),
    })
}

/// Queues `n` copies of [`DRAFT`] over `conn`, in arrays of 1,000 (the most
/// one request may carry).
pub fn queue_drafts(conn: &mut RawConn, n: usize) -> Result<()> {
    let mut left = n;
    while left > 0 {
        let k = left.min(1000);
        let body = format!("[{}]", vec![DRAFT; k].join(","));
        let a = conn.send(&request_bytes(
            "POST",
            "/v1/events",
            Some(body.as_bytes()),
            false,
        ))?;
        ensure!(
            a.status == 202,
            "queueing drafts answered {}: {}",
            a.status,
            a.text()
        );
        left -= k;
    }
    Ok(())
}

/// Start-ups on fresh homes, on a home whose queue is empty, then on one home
/// with `recovery_rows` queued events (returned, daemon stopped, for the
/// direct-path runs).
fn startups(opts: &Options) -> Result<(Vec<Startups>, BenchHome)> {
    let mut fresh = Vec::new();
    for i in 0..opts.startup_runs {
        let home = BenchHome::new(MAX_QUEUE_SIZE)?;
        fresh.push(start_stop(opts, &home, &format!("start-{i}.log"))?);
    }

    // The same file, empty and full, so that only the rows differ: the first
    // start on each makes the daemon's own tables and is not counted.
    let empty_home = BenchHome::new(MAX_QUEUE_SIZE)?;
    db::prefill_queue(&empty_home.queue_db(), 0)?;
    let home = BenchHome::new(MAX_QUEUE_SIZE)?;
    db::prefill_queue(&home.queue_db(), opts.recovery_rows)?;
    let rows = db::row_count(&home.queue_db())?;
    if rows != opts.recovery_rows as u64 {
        bail!(
            "prefilled {} rows, queue.db holds {rows}",
            opts.recovery_rows
        );
    }
    let (mut empty, mut full) = (Vec::new(), Vec::new());
    for i in 0..=opts.startup_runs {
        let e = start_stop(opts, &empty_home, &format!("empty-{i}.log"))?;
        let f = start_stop(opts, &home, &format!("restart-{i}.log"))?;
        if i > 0 {
            empty.push(e);
            full.push(f);
        }
    }
    let out = vec![
        startup_summary("fresh home (creates queue.db)".into(), &fresh)?,
        startup_summary("0-row queue (queue.db exists)".into(), &empty)?,
        startup_summary(
            format!("{}-row queue (recovers the clock)", thousands(rows)),
            &full,
        )?,
    ];
    Ok((out, home))
}

/// Section 6: a queue of `scale_rows`, prefilled; the daemon's start on it,
/// and `kitty-sync status` with the daemon running and without.
fn scale(opts: &Options, progress: &mut dyn FnMut(&str)) -> Result<Scale> {
    let home = BenchHome::new(MAX_QUEUE_SIZE)?;
    let t = Instant::now();
    db::prefill_queue(&home.queue_db(), opts.scale_rows)?;
    let prefill = t.elapsed();
    let rows = db::row_count(&home.queue_db())?;
    ensure!(
        rows == opts.scale_rows as u64,
        "prefilled {} rows, queue.db holds {rows}",
        opts.scale_rows
    );
    progress("6. scale: daemon starts");
    let mut starts = Vec::new();
    for i in 0..=opts.scale_runs {
        let s = start_stop(opts, &home, &format!("scale-start-{i}.log"))?;
        // The first start makes the daemon's own tables.
        if i > 0 {
            starts.push(s);
        }
    }
    let startup = startup_summary(
        format!("{}-row queue (recovers the clock)", thousands(rows)),
        &starts,
    )?;
    progress("6. scale: kitty-sync status");
    let client = opts.client_bin.to_string_lossy();
    let mut status = Vec::new();
    let mut d = Daemon::spawn(&opts.daemon_bin, &home, "scale-status.log")?;
    d.wait_ready(READY_POLL)?;
    let mut launcher = Launcher::new(opts, &home)?;
    for (argv, label) in [
        (
            vec![&*client, "status"],
            "`kitty-sync status`, daemon running",
        ),
        (
            vec![&*client, "status", "--json"],
            "`kitty-sync status --json`, daemon running",
        ),
    ] {
        status.push(
            process_loop_n(&mut launcher, &argv, 1, opts.scale_runs, STATUS_RUNNING)?
                .labelled(label),
        );
    }
    d.stop()?;
    for (argv, label) in [
        (
            vec![&*client, "status"],
            "`kitty-sync status`, no daemon (reads queue.db)",
        ),
        (
            vec![&*client, "status", "--json"],
            "`kitty-sync status --json`, no daemon",
        ),
    ] {
        status.push(
            process_loop_n(
                &mut launcher,
                &argv,
                1,
                opts.scale_runs,
                &[STATUS_NOT_RUNNING],
            )?
            .labelled(label),
        );
    }
    Ok(Scale {
        rows,
        prefill,
        startup,
        status,
    })
}

/// `kitty-sync status`'s exit statuses (client/src/status.rs) with a daemon
/// running: 0, 4 when events wait and nobody is logged in (as here), and 3
/// when the daemon did not answer within the client's deadline (1 s), which
/// the report counts; and without one.
const STATUS_RUNNING: &[i32] = &[0, 3, 4];
const STATUS_NOT_RUNNING: i32 = 3;

// ---------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------

fn verdict(met: bool, how: String) -> String {
    if met {
        format!("**met** ({how})")
    } else {
        format!("**missed** ({how})")
    }
}

impl Results {
    /// The 16-client run, if there was one.
    pub fn at_16(&self) -> Option<&Throughput> {
        self.throughput.iter().find(|t| t.load.clients == 16)
    }

    fn emit_with_daemon(&self) -> Option<&ProcessRuns> {
        self.processes.iter().find(|p| p.label == "daemon running")
    }

    /// The report, as Markdown.
    pub fn markdown(&self, opts: &Options) -> String {
        let mut s = String::new();
        let w = &mut s;
        let _ = writeln!(w, "# kitty-syncd benchmark\n");
        if opts.quick {
            let _ = writeln!(
                w,
                "> **`--quick`**: a short smoke run with tiny counts; its numbers mean little.\n"
            );
        }
        let _ = writeln!(
            w,
            "Run on {} with `{}`; it took {:.0} s. Binaries: `{}`, `{}` ({} build). \
             Each daemon ran in a fresh temporary `SPEC_KITTY_HOME` (also `HOME`) with \
             `[sync] max_queue_size = {}`.\n",
            self.date,
            opts.command,
            self.elapsed.as_secs_f64(),
            opts.daemon_bin.display(),
            opts.client_bin.display(),
            profile(&opts.daemon_bin),
            thousands(MAX_QUEUE_SIZE),
        );
        self.targets(w);
        self.machine_section(w);
        self.floor_section(w);
        self.round_trip_section(w, opts);
        self.throughput_section(w, opts);
        self.process_section(w, opts);
        self.memory_section(w, opts);
        self.startup_section(w, opts);
        self.scale_section(w);
        self.analysis(w);
        s
    }

    fn targets(&self, w: &mut String) {
        let _ = writeln!(w, "{}\n", SECTIONS[0]);
        let _ = writeln!(
            w,
            "| target (issue 2, on a 2-core machine) | measured | verdict | Python CLI, for scale |"
        );
        let _ = writeln!(w, "|---|---|---|---|");
        let p50 = self.round_trip.kept_alive.p50;
        let _ = writeln!(
            w,
            "| socket round trip of one emit, p50 < 0.3 ms | {} (p99 {}) | {} | — |",
            ms(p50),
            ms(self.round_trip.kept_alive.p99),
            verdict(
                p50 < TARGET_P50,
                format!("{:.2}× the target", p50 / TARGET_P50)
            )
        );
        if let Some(t) = self.at_16() {
            let eps = t.load.events_per_sec();
            let _ = writeln!(
                w,
                "| ≥ 20,000 durable events/s with 16 clients | {}/s | {} | ~650/s ({:.0}× fewer) |",
                thousands(eps as u64),
                verdict(
                    eps >= TARGET_EVENTS_PER_SEC_16 && t.load.verified(),
                    format!(
                        "{:.0}% of the target",
                        100.0 * eps / TARGET_EVENTS_PER_SEC_16
                    )
                ),
                eps / PYTHON_EVENTS_PER_SEC
            );
        }
        if let Some(e) = self.emit_with_daemon() {
            let _ = writeln!(
                w,
                "| whole `kitty-sync emit` < 5 ms (median wall) | {} (p10 {}, p90 {}) | {} | ~0.48 s ({:.0}× slower) |",
                ms_short(e.wall.p50),
                ms_short(e.wall.p10),
                ms_short(e.wall.p90),
                verdict(
                    e.wall.p50 < TARGET_EMIT_WALL,
                    format!("{:.2}× the target", e.wall.p50 / TARGET_EMIT_WALL)
                ),
                PYTHON_EMIT_WALL / e.wall.p50
            );
            let _ = writeln!(
                w,
                "| whole `kitty-sync emit` < 8 MiB peak RSS | {} (max {}) | {} | ~62 MiB ({:.0}× more) |",
                mib(e.max_rss.p50 as u64),
                mib(e.max_rss.max as u64),
                verdict(
                    e.max_rss.max < TARGET_EMIT_RSS as f64,
                    format!(
                        "{:.0}% of the target",
                        100.0 * e.max_rss.max / TARGET_EMIT_RSS as f64
                    )
                ),
                PYTHON_EMIT_RSS as f64 / e.max_rss.p50
            );
        }
        let _ = writeln!(w);
        self.targets_of_issue_10(w);
    }

    /// ", closed-loop floor N/s (daemon M%)" for a count the floor was run at.
    fn floor_note(&self, clients: usize) -> String {
        match (
            self.closed_loop.iter().find(|c| c.load.clients == clients),
            self.over_closed_loop(clients),
        ) {
            (Some(c), Some(r)) => format!(
                "; closed-loop floor {}/s (the daemon {:.0}% of it)",
                thousands(c.load.events_per_sec() as u64),
                100.0 * r
            ),
            _ => String::new(),
        }
    }

    /// Issue 10's targets, judged by figures of this run only (the drain
    /// targets are `kitty-bench-uplink`'s).
    fn targets_of_issue_10(&self, w: &mut String) {
        let _ = writeln!(
            w,
            "| target (issue 10, ratios within this run) | measured | verdict |\n|---|---|---|"
        );
        let ceiling = db::GROUP as f64 / self.floor.group_multirow.p50;
        if let Some(t) = self.at_16() {
            let eps = t.load.events_per_sec();
            let share = eps / ceiling;
            let _ = writeln!(
                w,
                "| 16 clients: ≥ 40,000 durable events/s and ≥ 60% of the multi-row ceiling | {}/s, {:.0}% of {}/s{} | {} |",
                thousands(eps as u64),
                100.0 * share,
                thousands(ceiling as u64),
                self.floor_note(16),
                verdict(
                    eps >= TARGET10_EVENTS_PER_SEC_16
                        && share >= TARGET10_SHARE_OF_CEILING_16
                        && t.load.verified(),
                    format!(
                        "{:.0}% of 40,000/s",
                        100.0 * eps / TARGET10_EVENTS_PER_SEC_16
                    )
                )
            );
        }
        if let Some(t) = self.throughput.iter().find(|t| t.load.clients == 64) {
            let eps = t.load.events_per_sec();
            let _ = writeln!(
                w,
                "| 64 clients: ≥ 50,000 durable events/s | {}/s{} | {} |",
                thousands(eps as u64),
                self.floor_note(64),
                verdict(
                    eps >= TARGET10_EVENTS_PER_SEC_64 && t.load.verified(),
                    format!(
                        "{:.0}% of the target",
                        100.0 * eps / TARGET10_EVENTS_PER_SEC_64
                    )
                )
            );
        }
        let p50 = self.round_trip.kept_alive.p50;
        let ratio = p50 / self.floor.sqlite_bare.p50;
        let _ = writeln!(
            w,
            "| round trip p50 ≤ 1.4× a bare sqlx commit and < 0.25 ms | {}, {ratio:.2}× | {} |",
            ms(p50),
            verdict(
                ratio <= TARGET10_RTT_OVER_BARE_COMMIT && p50 < TARGET10_RTT_P50,
                format!("{ratio:.2}× and {:.2}× 0.25 ms", p50 / TARGET10_RTT_P50)
            )
        );
        let version = self
            .processes
            .iter()
            .find(|p| p.label == "reference: `kitty-sync --version`");
        if let (Some(e), Some(v)) = (self.emit_with_daemon(), version) {
            let over = e.wall.p50 - v.wall.p50;
            let _ = writeln!(
                w,
                "| whole emit within 0.6 ms of `kitty-sync --version` (medians) | {} above it | {} |",
                ms(over),
                verdict(
                    over <= TARGET10_EMIT_OVER_VERSION,
                    format!("{:.2}× the allowance", over / TARGET10_EMIT_OVER_VERSION)
                )
            );
        }
        let _ = writeln!(w);
    }

    fn machine_section(&self, w: &mut String) {
        let m = &self.machine;
        let _ = writeln!(w, "{}\n", SECTIONS[1]);
        let _ = writeln!(w, "| | |\n|---|---|");
        let _ = writeln!(w, "| nproc | {} |", m.nproc);
        let _ = writeln!(w, "| CPU | {} |", m.cpu_model);
        let _ = writeln!(w, "| kernel | {} |", m.kernel);
        let _ = writeln!(w, "| memory | {} |", m.memory);
        let _ = writeln!(w, "| temporary homes | {} |", m.temp_fs);
        let _ = writeln!(
            w,
            "| load average (1, 5, 15 min) | {} before, {} after |\n",
            m.load_average, self.load_after
        );
    }

    fn floor_section(&self, w: &mut String) {
        let f = &self.floor;
        let _ = writeln!(w, "{}\n", SECTIONS[2]);
        let _ = writeln!(
            w,
            "No durable commit can be faster than the disk's sync. Measured on the file \
             system of the temporary homes, in the same run ({} samples each).\n",
            f.append_fsync.n
        );
        latency_header(w, "operation");
        latency_row(
            w,
            "append 4 KiB + `fsync` (the file grows)",
            &f.append_fsync,
        );
        latency_row(
            w,
            "overwrite 4 KiB + `fsync` (as SQLite syncs a reused WAL)",
            &f.overwrite_fsync,
        );
        latency_row(w, "overwrite 4 KiB + `fdatasync`", &f.overwrite_fdatasync);
        latency_row(
            w,
            "SQLite through sqlx, as the daemon (WAL, synchronous=FULL): `BEGIN IMMEDIATE; INSERT; COMMIT`",
            &f.sqlite_bare,
        );
        latency_row(
            w,
            "the same with a `SELECT COUNT(*)` and a high-water-mark upsert (the daemon's commit before issue 10)",
            &f.sqlite_daemon_like,
        );
        latency_row(
            w,
            &format!(
                "the same for a group of {} events, one `INSERT` statement per event",
                db::GROUP
            ),
            &f.group_statements,
        );
        latency_row(
            w,
            &format!("the same {} events as one multi-row `INSERT`", db::GROUP),
            &f.group_multirow,
        );
        latency_row(
            w,
            "sqlx `SELECT 1` (one statement, no disk: the hop to sqlx's worker thread)",
            &f.sqlx_statement,
        );
        let _ = writeln!(
            w,
            "\nCPU (user + system, all threads) per single-event commit of SQLite alone: {:.0} µs.",
            f.cpu_per_commit.as_secs_f64() * 1e6
        );
        let _ = writeln!(w);
    }

    fn round_trip_section(&self, w: &mut String, opts: &Options) {
        let r = &self.round_trip;
        let _ = writeln!(w, "{}\n", SECTIONS[3]);
        let _ = writeln!(
            w,
            "Sequential requests from one client after {} warm-up requests. Each \
             `POST /v1/events` carries one WPStatusChanged draft and is answered 202 \
             once committed. Raw HTTP/1.1 on a blocking `UnixStream`, so the client \
             adds almost nothing.\n",
            opts.warmup_requests
        );
        latency_header(w, "request");
        latency_row(w, "`POST /v1/events`, kept-alive connection", &r.kept_alive);
        latency_row(
            w,
            "`POST /v1/events`, fresh connection per request",
            &r.fresh,
        );
        latency_row(
            w,
            "`GET /v1/health`, kept-alive (no commit, for comparison)",
            &r.health,
        );
        let _ = writeln!(
            w,
            "\nqueue.db rows after: {} (expected {}: {}).\n",
            thousands(r.rows),
            thousands(r.expected_rows),
            if r.rows == r.expected_rows {
                "verified"
            } else {
                "**MISMATCH**"
            }
        );
    }

    /// The closed-loop floor beside the daemon's runs of the same counts.
    fn closed_loop_table(&self, w: &mut String) {
        if self.closed_loop.is_empty() {
            return;
        }
        let _ = writeln!(
            w,
            "\n**The closed-loop floor** (`bench::ideal`): the same clients, right after the \
             daemon's run of the same count, against a server that does nothing but group \
             commit: its own process, one runtime thread, a Unix socket with a 4-byte length \
             and the envelope for a request and one byte for an answer, and a writer that \
             commits whatever is waiting as one `BEGIN IMMEDIATE; INSERT …; COMMIT` list \
             through sqlx (WAL, `synchronous=FULL`), answering after the sync. No HTTP, no \
             JSON, no stamping: no daemon on sqlx can go faster with these clients on this \
             machine.\n"
        );
        let _ = writeln!(
            w,
            "| clients | floor events/s | latency p50 | p99 | server CPU | bench CPU | rows = answers | daemon's events/s | daemon / floor |\n|---|---|---|---|---|---|---|---|---|"
        );
        for c in &self.closed_loop {
            let (p50, p99) = c
                .load
                .latency
                .map_or(("—".into(), "—".into()), |l| (ms(l.p50), ms(l.p99)));
            let daemon = self
                .throughput
                .iter()
                .find(|t| t.load.clients == c.load.clients);
            let _ = writeln!(
                w,
                "| {} | **{}** | {} | {} | {:.0}% | {:.0}% | {} = {} {} | {} | {} |",
                c.load.clients,
                thousands(c.load.events_per_sec() as u64),
                p50,
                p99,
                100.0 * c.server_cpu,
                100.0 * c.load.bench_cpu,
                thousands(c.load.rows),
                thousands(c.load.accepted),
                if c.load.verified() {
                    "✓"
                } else {
                    "**✗ MISMATCH**"
                },
                daemon.map_or("—".into(), |t| format!(
                    "{}/s",
                    thousands(t.load.events_per_sec() as u64)
                )),
                self.over_closed_loop(c.load.clients)
                    .map_or("—".into(), |r| format!("{:.0}%", 100.0 * r)),
            );
        }
    }

    fn throughput_section(&self, w: &mut String, opts: &Options) {
        let _ = writeln!(w, "{}\n", SECTIONS[4]);
        let _ = writeln!(
            w,
            "Each run: a fresh daemon and home; N clients, each a task with its own \
             kept-alive HTTP/1.1 connection (one prepared request written, the answer parsed \
             by the bench itself), sending single-event requests in a loop \
             (all on one bench thread, leaving the daemon the rest of the machine); \
             {:.1} s warm-up, then a {:.1} s measured window. Events/s counts the 202s \
             answered inside the window. At the end queue.db's row count must equal every \
             202 the clients got (warm-up and tail included).\n",
            opts.load_warmup.as_secs_f64(),
            opts.load_window.as_secs_f64()
        );
        let _ = writeln!(
            w,
            "| clients | events/s | per second: min – max (first → last) | latency p50 | p99 | max | daemon CPU | bench CPU | errors | queue.db rows = 202s | `COUNT(*)` at the end |"
        );
        let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|---|---|");
        for t in &self.throughput {
            let per_sec = match (
                t.per_second.iter().min(),
                t.per_second.iter().max(),
                t.per_second.first(),
                t.per_second.last(),
            ) {
                (Some(a), Some(b), Some(f), Some(l)) => format!(
                    "{} – {} ({} → {})",
                    thousands(*a),
                    thousands(*b),
                    thousands(*f),
                    thousands(*l)
                ),
                _ => "—".into(),
            };
            let (p50, p99, max) = t
                .load
                .latency
                .map_or(("—".into(), "—".into(), "—".into()), |l| {
                    (ms(l.p50), ms(l.p99), ms(l.max))
                });
            let _ = writeln!(
                w,
                "| {} | **{}** | {} | {} | {} | {} | {:.0}% | {:.0}% | {} | {} = {} {} | {} at {} rows |",
                t.load.clients,
                thousands(t.load.events_per_sec() as u64),
                per_sec,
                p50,
                p99,
                max,
                100.0 * t.daemon_cpu,
                100.0 * t.load.bench_cpu,
                t.load.errors,
                thousands(t.load.rows),
                thousands(t.load.accepted),
                if t.load.verified() {
                    "✓"
                } else {
                    "**✗ MISMATCH**"
                },
                t.count_cost.map_or("—".into(), |c| ms(c.p50)),
                thousands(t.load.rows),
            );
        }
        let _ = writeln!(
            w,
            "\nThe daemon's threads over the window, per durable event (from \
             `/proc/<pid>/task/*/stat` and `status`): CPU time, and context switches \
             (voluntary + involuntary).\n"
        );
        let _ = writeln!(
            w,
            "| clients | thread (count) | CPU per event | context switches per event |\n|---|---|---|---|"
        );
        for t in &self.throughput {
            let per = t.load.in_window.max(1) as f64;
            let mut total = sys::ThreadStat::default();
            for (name, st) in t
                .threads
                .iter()
                .filter(|(_, st)| st.switches > 0 || !st.cpu.is_zero())
            {
                total.cpu += st.cpu;
                total.switches += st.switches;
                let _ = writeln!(
                    w,
                    "| {} | `{name}` ({}) | {:.1} µs | {:.2} |",
                    t.load.clients,
                    st.threads,
                    st.cpu.as_secs_f64() * 1e6 / per,
                    st.switches as f64 / per
                );
            }
            let _ = writeln!(
                w,
                "| {} | **all** | **{:.1} µs** | **{:.2}** |",
                t.load.clients,
                total.cpu.as_secs_f64() * 1e6 / per,
                total.switches as f64 / per
            );
        }
        self.closed_loop_table(w);
        for t in &self.throughput {
            if let Some(e) = &t.load.first_error {
                let _ = writeln!(w, "\nFirst error with {} clients: `{e}`", t.load.clients);
            }
        }
        for c in &self.closed_loop {
            if let Some(e) = &c.load.first_error {
                let _ = writeln!(
                    w,
                    "\nFirst error of the closed-loop floor with {} clients: `{e}`",
                    c.load.clients
                );
            }
        }
        let _ = writeln!(
            w,
            "\nCPU is a share of one core over the window (200% = both cores of a 2-core machine). \
             `COUNT(*)` is what `SELECT COUNT(*) FROM queue` costs at the final depth: \
             what a commit would pay to count the queue; the daemon keeps the depth in \
             memory instead (issue 10).\n"
        );
    }

    fn process_section(&self, w: &mut String, opts: &Options) {
        let _ = writeln!(w, "{}\n", SECTIONS[5]);
        let _ = writeln!(
            w,
            "`kitty-sync emit WPStatusChanged --payload '{PAYLOAD}'`, one process after \
             another ({} measured runs after {} warm-up, each scenario after one `--json` \
             run that checks the path taken). Wall time is spawn to reap; peak RSS \
             (`ru_maxrss`) and CPU come from `wait4`. {}\n",
            opts.process_runs,
            opts.process_warmup,
            if opts.spawner.is_some() {
                "The processes are started by a small helper (`kitty-bench --spawner`), \
                 because on Linux a child's `ru_maxrss` is never below the resident size of \
                 the process that spawned it; `/bin/true` through the same helper shows that \
                 floor."
            } else {
                "**The processes were spawned straight from the bench: on Linux a child's \
                 `ru_maxrss` is never below the spawning process's resident size, so these \
                 peaks are upper bounds** (`/bin/true` shows the floor)."
            }
        );
        let _ = writeln!(
            w,
            "| scenario | p10 | median | p90 | max | peak RSS median (max) | CPU median | queue.db rows |"
        );
        let _ = writeln!(w, "|---|---|---|---|---|---|---|---|");
        for p in &self.processes {
            let _ = writeln!(
                w,
                "| {} | {} | **{}** | {} | {} | {} ({}) | {} | {} |",
                p.label,
                ms_short(p.wall.p10),
                ms_short(p.wall.p50),
                ms_short(p.wall.p90),
                ms_short(p.wall.max),
                mib(p.max_rss.p50 as u64),
                mib(p.max_rss.max as u64),
                ms_short(p.cpu.p50),
                match p.rows_ok {
                    Some(true) => "one per run ✓",
                    Some(false) => "**✗ MISMATCH**",
                    None => "—",
                }
            );
        }
        let _ = writeln!(w);
    }

    fn memory_section(&self, w: &mut String, opts: &Options) {
        let r = &self.round_trip;
        let _ = writeln!(w, "{}\n", SECTIONS[6]);
        let _ = writeln!(
            w,
            "From `/proc/<pid>/status`: VmRSS now, VmHWM the peak so far.\n"
        );
        let _ = writeln!(w, "| daemon | VmRSS | VmHWM |\n|---|---|---|");
        if let Some(s) = self.startups.first() {
            let _ = writeln!(
                w,
                "| just ready, fresh home (median of {} starts) | {} | — |",
                s.rss_at_ready.n,
                mib(s.rss_at_ready.p50 as u64)
            );
        }
        let _ = writeln!(
            w,
            "| idle, {:.1} s after ready (fresh home) | **{}** | {} |",
            opts.idle.as_secs_f64(),
            mib(r.idle_memory.rss),
            mib(r.idle_memory.hwm)
        );
        let _ = writeln!(
            w,
            "| after the {} round trips of section 1 | {} | {} |",
            thousands(r.expected_rows),
            mib(r.memory_after.rss),
            mib(r.memory_after.hwm)
        );
        for t in &self.throughput {
            let _ = writeln!(
                w,
                "| after the {}-client run ({} events queued) | {} | {} |",
                t.load.clients,
                thousands(t.load.rows),
                mib(t.memory_after.rss),
                mib(t.memory_after.hwm)
            );
        }
        let _ = writeln!(w);
    }

    fn startup_section(&self, w: &mut String, opts: &Options) {
        let _ = writeln!(w, "{}\n", SECTIONS[7]);
        let _ = writeln!(
            w,
            "Spawn `kitty-syncd run`, then poll `GET /v1/health` (a new connection every \
             {} µs) until it answers 200; then, at once, SIGTERM and wait for the exit. \
             {} starts each.\n",
            READY_POLL.as_micros(),
            opts.startup_runs
        );
        let _ = writeln!(
            w,
            "| queue | min | median | p90 | max | SIGTERM to exit 0, median | SIGTERM at ready killed it (no clean shutdown) |"
        );
        let _ = writeln!(w, "|---|---|---|---|---|---|---|");
        for s in &self.startups {
            let _ = writeln!(
                w,
                "| {} | {} | **{}** | {} | {} | {} | {} of {} |",
                s.label,
                ms_short(s.ready.min),
                ms_short(s.ready.p50),
                ms_short(s.ready.p90),
                ms_short(s.ready.max),
                s.stop.map_or("—".into(), |t| ms_short(t.p50)),
                s.killed_by_sigterm,
                s.ready.n
            );
        }
        let _ = writeln!(
            w,
            "\nShutdown of the long-running daemons above, SIGTERM to exit 0 (it commits what \
             it holds, writes clock.json and closes queue.db, which checkpoints the WAL):\n"
        );
        let _ = writeln!(
            w,
            "| daemon | queued events | SIGTERM to exit 0 |\n|---|---|---|"
        );
        let r = &self.round_trip;
        let _ = writeln!(
            w,
            "| section 1 (round trips) | {} | {} |",
            thousands(r.rows),
            ms_short(r.stop.as_secs_f64())
        );
        for t in &self.throughput {
            let _ = writeln!(
                w,
                "| section 2, {} client(s) | {} | {} |",
                t.load.clients,
                thousands(t.load.rows),
                ms_short(t.stop.as_secs_f64())
            );
        }
        let _ = writeln!(w);
    }

    fn scale_section(&self, w: &mut String) {
        let sc = &self.scale;
        let _ = writeln!(w, "{} {} rows\n", SECTIONS[8], thousands(sc.rows));
        let _ = writeln!(
            w,
            "queue.db prefilled straight through SQLite with {} rows in the contract's \
             format (CONTRACT.md §1; envelopes of team `local`, Lamport clocks 1 to {}), \
             which took {:.1} s. Then {} daemon starts (after one that is not counted), \
             and `kitty-sync status` one process after another.\n",
            thousands(sc.rows),
            thousands(sc.rows),
            sc.prefill.as_secs_f64(),
            sc.startup.ready.n,
        );
        let _ = writeln!(
            w,
            "| daemon start | min | median | p90 | max | SIGTERM to exit 0, median | peak RSS at ready, median |"
        );
        let _ = writeln!(w, "|---|---|---|---|---|---|---|");
        let st = &sc.startup;
        let _ = writeln!(
            w,
            "| {} | {} | **{}** | {} | {} | {} | {} |\n",
            st.label,
            ms_short(st.ready.min),
            ms_short(st.ready.p50),
            ms_short(st.ready.p90),
            ms_short(st.ready.max),
            st.stop.map_or("—".into(), |t| ms_short(t.p50)),
            mib(st.rss_at_ready.p50 as u64),
        );
        let _ = writeln!(
            w,
            "| process | p10 | median | p90 | max | peak RSS median | CPU median | exit statuses (3: no answer from a daemon within 1 s) |"
        );
        let _ = writeln!(w, "|---|---|---|---|---|---|---|---|");
        for p in &sc.status {
            let exits = p
                .exit_codes
                .iter()
                .map(|(c, n)| format!("{c} ×{n}"))
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(
                w,
                "| {} | {} | **{}** | {} | {} | {} | {} | {exits} |",
                p.label,
                ms_short(p.wall.p10),
                ms_short(p.wall.p50),
                ms_short(p.wall.p90),
                ms_short(p.wall.max),
                mib(p.max_rss.p50 as u64),
                ms_short(p.cpu.p50),
            );
        }
        let _ = writeln!(w);
    }

    fn analysis(&self, w: &mut String) {
        let _ = writeln!(w, "{}\n", SECTIONS[9]);
        let _ = writeln!(
            w,
            "Computed from the figures above (same run); a reading, not a proof.\n"
        );
        let f = &self.floor;
        let r = &self.round_trip;
        let commit_share = (r.kept_alive.p50 - r.health.p50).max(0.0);
        let _ = writeln!(
            w,
            "- **Round trip.** p50 {} for an emit against {} for `/v1/health` on the same \
             connection: HTTP, routing and the uid check cost almost nothing, and the \
             commit path accounts for {} ({:.0}%). A bare `BEGIN IMMEDIATE; INSERT; \
             COMMIT` straight through sqlx takes {} (the round trip is {:.2}× that) and a \
             bare `fsync` {}, so the daemon adds about {} on top of SQLite's own commit.",
            ms(r.kept_alive.p50),
            ms(r.health.p50),
            ms(commit_share),
            100.0 * commit_share / r.kept_alive.p50,
            ms(f.sqlite_bare.p50),
            r.kept_alive.p50 / f.sqlite_bare.p50,
            ms(f.overwrite_fsync.p50),
            ms((r.kept_alive.p50 - f.sqlite_bare.p50).max(0.0)),
        );
        let _ = writeln!(
            w,
            "- **Fresh connections.** A connection per request costs {} more than a \
             kept-alive one (p50).",
            ms(r.fresh.p50 - r.kept_alive.p50)
        );
        if let Some(t) = self.at_16() {
            let full = db::GROUP as f64 / f.group_statements.p50;
            let multirow = db::GROUP as f64 / f.group_multirow.p50;
            let _ = writeln!(
                w,
                "- **Throughput vs. the SQLite floor.** SQLite alone commits a group of {} \
                 events in {} with one `INSERT` per event, and in {} as one multi-row \
                 `INSERT`: ceilings of {}/s and {}/s if every commit carried {} events \
                 (a closed loop of 16 clients keeps only part of them waiting at each \
                 commit, so the practical ceiling is lower). The daemon reached {}/s with 16 \
                 clients, {:.0}% of the multi-row ceiling.",
                db::GROUP,
                ms(f.group_statements.p50),
                ms(f.group_multirow.p50),
                thousands(full as u64),
                thousands(multirow as u64),
                db::GROUP,
                thousands(t.load.events_per_sec() as u64),
                100.0 * t.load.events_per_sec() / multirow
            );
        }
        for t in &self.throughput {
            let per = t.load.in_window.max(1) as f64;
            let switches: u64 = t.threads.iter().map(|(_, s)| s.switches).sum();
            let cpu: f64 = t.threads.iter().map(|(_, s)| s.cpu.as_secs_f64()).sum();
            let notify = t
                .threads
                .iter()
                .filter(|(n, _)| n.starts_with("notify"))
                .map(|(_, s)| s.switches)
                .sum::<u64>();
            let _ = writeln!(
                w,
                "- **{} client(s):** {}/s; the daemon spent {:.0} µs of CPU and {:.1} \
                 context switches per event ({:.2} of them in the config watcher's \
                 `notify-rs inotify` thread).",
                t.load.clients,
                thousands(t.load.events_per_sec() as u64),
                cpu * 1e6 / per,
                switches as f64 / per,
                notify as f64 / per,
            );
        }
        let _ = writeln!(
            w,
            "- **CPU for comparison:** SQLite alone spends {:.0} µs of CPU (this process, all \
             threads) per single-event commit on this machine, syncs included; a group \
             commit divides that among its events.",
            f.cpu_per_commit.as_secs_f64() * 1e6
        );
        if let Some(c) = &self.recovery_count_cost {
            let label = self.startups.last().map_or("", |s| s.label.as_str());
            let _ = writeln!(
                w,
                "- **`SELECT COUNT(*)`**, which commits no longer run (the depth is kept \
                 in memory), would cost {} on the {}; it grows with the queue (see the \
                 last column of section 2).",
                ms(c.p50),
                label
            );
        }
        let direct = |prefix: &str| {
            self.processes
                .iter()
                .find(|p| p.label.starts_with(prefix))
                .map(|p| p.wall.p50)
        };
        if let (Some(empty), Some(full), Some(s0), Some(s1)) = (
            direct("no daemon, empty home"),
            self.processes
                .iter()
                .find(|p| p.label.contains("-row queue"))
                .map(|p| p.wall.p50),
            self.startups.get(1),
            self.startups.get(2),
        ) {
            let _ = writeln!(
                w,
                "- **Work that grows with the queue.** A direct emit takes {} on an empty \
                 home and {} on the {}; a daemon start {} on an empty queue and {} on that one.",
                ms_short(empty),
                ms_short(full),
                s1.label,
                ms_short(s0.ready.p50),
                ms_short(s1.ready.p50)
            );
        }
        let killed: usize = self.startups.iter().map(|s| s.killed_by_sigterm).sum();
        let starts: usize = self.startups.iter().map(|s| s.ready.n).sum();
        if killed > 0 {
            let _ = writeln!(
                w,
                "- **Not performance, but seen here:** a SIGTERM sent the moment \
                 `/v1/health` first answered killed the daemon outright in {killed} of \
                 {starts} starts (default signal action, no clean shutdown): the socket \
                 serves before the signal handlers are installed."
            );
        }
        let _ = writeln!(w);
    }
}

fn latency_header(w: &mut String, what: &str) {
    let _ = writeln!(w, "| {what} | n | min | p50 | p90 | p99 | max |");
    let _ = writeln!(w, "|---|---|---|---|---|---|---|");
}

fn latency_row(w: &mut String, label: &str, s: &Summary) {
    let _ = writeln!(
        w,
        "| {label} | {} | {} | **{}** | {} | {} | {} |",
        thousands(s.n as u64),
        ms(s.min),
        ms(s.p50),
        ms(s.p90),
        ms(s.p99),
        ms(s.max)
    );
}

/// `release` or `debug`, from `target/<profile>/<bin>`.
fn profile(bin: &Path) -> String {
    bin.parent()
        .and_then(Path::file_name)
        .map_or_else(|| "unknown".into(), |n| n.to_string_lossy().into_owned())
}
