//! `kitty-bench-uplink`: how fast the real daemon delivers to the real
//! `kitty-saas-dev` on loopback (issue 3, "Performance"), rate limiting off:
//!
//! 1. drain of a backlog over batch POSTs (the server refuses the WebSocket);
//! 2. drain of a backlog over the WebSocket (a server that acknowledges);
//!
//! each against the server's in-memory store and against its `--sink`
//! (which checks, deduplicates and counts but keeps nothing), so that the
//! daemon's own rate shows even where the store is the slower side;
//! 3. emit-to-stored latency over the WebSocket: from sending an emit on the
//!    daemon's socket to receiving the server's broadcast of that event on a
//!    second WebSocket of the same team (so: stored, then broadcast);
//! 4. the daemon's memory while draining.
//!
//! `--quick` shrinks every count (a smoke run); `--out PATH` writes the
//! Markdown report there too, `--json PATH` every figure; `--runs N` repeats
//! each drain. Traffic stays on loopback; loops are bounded.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use futures_util::{SinkExt, StreamExt};
use kitty_tests::bench::http::{RawConn, request_bytes};
use kitty_tests::bench::stats::Summary;
use kitty_tests::bench::sys::{BenchHome, Daemon, Machine, Memory, cpu_time};
use kitty_tests::uplink_harness::{self as up, ReservedPort, SaasDev};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

struct Opts {
    backlog: usize,
    latency_samples: usize,
    runs: usize,
    /// The keys of the drains to run (all by default).
    kinds: Option<Vec<String>>,
    out: Option<PathBuf>,
    json: Option<PathBuf>,
    quick: bool,
}

fn parse_args() -> Result<Opts> {
    let mut o = Opts {
        backlog: 100_000,
        latency_samples: 500,
        runs: 1,
        kinds: None,
        out: None,
        json: None,
        quick: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => {
                o.quick = true;
                o.backlog = 3_000;
                o.latency_samples = 30;
            }
            "--out" => o.out = Some(args.next().context("--out needs a path")?.into()),
            "--json" => o.json = Some(args.next().context("--json needs a path")?.into()),
            "--runs" => o.runs = args.next().context("--runs needs a number")?.parse()?,
            "--kinds" => {
                let list = args.next().context("--kinds needs a list")?;
                let kinds: Vec<String> = list.split(',').map(str::to_owned).collect();
                for k in &kinds {
                    ensure!(
                        KINDS.iter().any(|kind| kind.key == k),
                        "unknown drain {k:?}; the drains are {}",
                        KINDS.iter().map(|k| k.key).collect::<Vec<_>>().join(", ")
                    );
                }
                o.kinds = Some(kinds);
            }
            "--backlog" => o.backlog = args.next().context("--backlog needs a number")?.parse()?,
            "-h" | "--help" => {
                println!(
                    "usage: kitty-bench-uplink [--quick] [--backlog N] [--runs N] [--kinds K,...] [--out PATH] [--json PATH]\n\
                     drains (--kinds): batches_store, batches_sink, ws_store, ws_sink"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}; see --help"),
        }
    }
    ensure!(o.backlog >= 1000, "--backlog must be at least 1000");
    ensure!(o.runs >= 1, "--runs must be at least 1");
    Ok(o)
}

fn daemon_bin() -> PathBuf {
    kitty_tests::harness::daemon_bin()
}

/// A daemon home pointed at `port`, logged in with `reply`'s tokens.
fn home_for(port: u16, batch_interval: u64, server: &SaasDev) -> Result<BenchHome> {
    let home = BenchHome::new(10_000_000)?;
    std::fs::write(
        home.path().join("config.toml"),
        format!(
            "[sync]\nserver_url = \"http://127.0.0.1:{port}\"\nmax_queue_size = 10000000\n\
             batch_interval_secs = {batch_interval}\nflush_interval_secs = 3600\n"
        ),
    )?;
    let reply = server.try_login(up::USER, up::PASSWORD);
    ensure!(reply.status == 200, "login failed: {}", reply.text());
    let reply: Value = reply.json();
    write_credentials(home.path(), port, &reply)?;
    Ok(home)
}

fn write_credentials(home: &Path, port: u16, reply: &Value) -> Result<()> {
    let text = format!(
        "[tokens]\naccess = {}\nrefresh = {}\naccess_expires_at = \"{}\"\nrefresh_expires_at = \"{}\"\n\n\
         [user]\nusername = \"{}\"\nteam_slug = \"{}\"\n\n[server]\nurl = \"http://127.0.0.1:{port}\"\n",
        reply["access"],
        reply["refresh"],
        up::naive_utc_in(3600),
        up::naive_utc_in(86_400),
        up::USER,
        up::TEAM,
    );
    std::fs::write(home.join("credentials"), text)?;
    Ok(())
}

struct Drain {
    events: usize,
    /// Filling the queue through the daemon's socket, server down.
    fill_seconds: f64,
    seconds: f64,
    /// CPU seconds over the drain: the daemon's and the server's.
    daemon_cpu: f64,
    server_cpu: f64,
    peak_rss: u64,
    ws_events: u64,
    batch_events: u64,
    batches: u64,
    /// What the server holds at the end: distinct event ids, and how many it
    /// answered as duplicates (resent after a lost answer, say).
    unique_event_ids: u64,
    duplicates_seen: u64,
    /// Rows left in queue.db once the server had every event (after the
    /// deletes the daemon still had to make).
    queue_left: u64,
}

impl Drain {
    fn rate(&self) -> f64 {
        self.events as f64 / self.seconds.max(1e-9)
    }

    fn verified(&self) -> bool {
        self.unique_event_ids == self.events as u64 && self.queue_left == 0
    }

    fn json(&self) -> Value {
        serde_json::json!({
            "events": self.events,
            "fill_seconds": self.fill_seconds,
            "seconds": self.seconds,
            "events_per_sec": self.rate(),
            "daemon_cpu_secs": self.daemon_cpu,
            "server_cpu_secs": self.server_cpu,
            "daemon_cpu_share": self.daemon_cpu / self.seconds.max(1e-9),
            "server_cpu_share": self.server_cpu / self.seconds.max(1e-9),
            "daemon_cpu_per_event_secs": self.daemon_cpu / self.events as f64,
            "daemon_peak_rss": self.peak_rss,
            "ws_events": self.ws_events,
            "batch_events": self.batch_events,
            "batches": self.batches,
            "unique_event_ids": self.unique_event_ids,
            "duplicates_seen": self.duplicates_seen,
            "queue_left": self.queue_left,
            "verified": self.verified(),
        })
    }
}

/// Fills a queue with the server down, starts the server, and times the drain
/// from the first event the server sees to the last.
fn drain(
    backlog: usize,
    server_args: &[&str],
    batch_interval: u64,
    log_dir: &Path,
) -> Result<Drain> {
    // Log in against a first server; the tokens stay valid for a second one
    // with the same secret on the same port.
    let secret = "kitty-bench-uplink-secret";
    let mut args = vec!["--jwt-secret", secret];
    args.extend_from_slice(server_args);
    let first = SaasDev::start(log_dir, &args);
    let reserved = ReservedPort::new();
    let port = reserved.port();
    let home = home_for(port, batch_interval, &first)?;
    first.stop();
    let mut daemon = Daemon::spawn(&daemon_bin(), &home, "drain-daemon.log")?;
    daemon.wait_ready(Duration::from_millis(5))?;
    let fill = Instant::now();
    kitty_tests::bench::queue_drafts(&mut daemon.connect()?, backlog)?;
    let fill_seconds = fill.elapsed().as_secs_f64();
    let server = SaasDev::start_on(log_dir, reserved, &args);
    let cpu = |pid: i32| cpu_time(pid).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    let (daemon_cpu0, server_cpu0) = (cpu(daemon.pid()), cpu(server.pid() as i32));
    let mut peak = 0;
    let mut first_seen: Option<Instant> = None;
    let guard = Instant::now() + Duration::from_secs(600);
    loop {
        let c = server.counters();
        if first_seen.is_none() && c.unique_event_ids > 0 {
            first_seen = Some(Instant::now());
        }
        peak = peak.max(daemon.memory().map(|m: Memory| m.hwm).unwrap_or(0));
        if c.unique_event_ids as usize >= backlog {
            break;
        }
        ensure!(
            Instant::now() < guard,
            "drain did not finish within 10 minutes: {c:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let seconds = first_seen.map_or(0.0, |t| t.elapsed().as_secs_f64());
    let daemon_cpu = cpu(daemon.pid()) - daemon_cpu0;
    let server_cpu = cpu(server.pid() as i32) - server_cpu0;
    // The daemon deletes what the server confirmed; give it a bounded while.
    let queue_db = home.queue_db();
    let guard = Instant::now() + Duration::from_secs(60);
    let queue_left = loop {
        let left = kitty_tests::bench::db::row_count(&queue_db)?;
        if left == 0 || Instant::now() >= guard {
            break left;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Read after the daemon had every answer, so the request counts are whole.
    let end = server.counters();
    daemon.stop()?;
    server.stop();
    Ok(Drain {
        events: backlog,
        fill_seconds,
        seconds,
        daemon_cpu,
        server_cpu,
        peak_rss: peak,
        ws_events: end.ws_events,
        batch_events: end.batch_events,
        batches: end.batches,
        unique_event_ids: end.unique_event_ids,
        duplicates_seen: end.duplicates_seen,
        queue_left,
    })
}

/// Emit on the socket, then wait for the server's broadcast of that event on
/// a second WebSocket of the team.
fn latency(samples: usize, log_dir: &Path) -> Result<(Vec<Duration>, u64)> {
    let server = SaasDev::start(log_dir, &["--ack"]);
    let home = home_for(server.port(), 5, &server)?;
    let mut daemon = Daemon::spawn(&daemon_bin(), &home, "latency-daemon.log")?;
    daemon.wait_ready(Duration::from_millis(5))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let access = server.access_token(up::USER, up::PASSWORD);
    let ws_token: Value = server
        .request(
            "POST",
            "/api/v1/ws-token/",
            &[("authorization", &format!("Bearer {access}"))],
            b"",
        )
        .json();
    let url = format!("ws://{}/ws/v1/events/", server.addr());
    let mut req = url.into_client_request()?;
    req.headers_mut().insert(
        "authorization",
        format!(
            "Bearer {}",
            ws_token["ws_token"].as_str().context("no ws_token")?
        )
        .parse()?,
    );
    let (mut ws, _) = rt.block_on(tokio_tungstenite::connect_async(req))?;
    // Wait until the daemon is connected too, so the first sample is not a connect.
    let guard = Instant::now() + Duration::from_secs(30);
    while server.counters().ws_connected < 2 {
        ensure!(
            Instant::now() < guard,
            "the daemon did not connect its WebSocket"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut conn: RawConn = daemon.connect()?;
    let draft = r#"{"event_type":"WPStatusChanged","payload":{"wp_id":"WP02","previous_status":"planned","new_status":"doing"}}"#;
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples + 10 {
        let t0 = Instant::now();
        let a = conn.send(&request_bytes(
            "POST",
            "/v1/events",
            Some(draft.as_bytes()),
            false,
        ))?;
        ensure!(a.status == 202, "emit answered {}", a.status);
        let accepted: Value = serde_json::from_slice(&a.body)?;
        let id = accepted["events"][0]["event_id"]
            .as_str()
            .context("no event_id")?
            .to_owned();
        let got = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(10), async {
                while let Some(msg) = ws.next().await {
                    if let Ok(Message::Text(t)) = msg {
                        let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                        if v["type"] == "ping" {
                            let pong =
                                serde_json::json!({"type":"pong","timestamp":v["timestamp"]});
                            let _ = ws.send(Message::text(pong.to_string())).await;
                        } else if v["event_id"] == id.as_str() {
                            return Some(Instant::now());
                        }
                    }
                }
                None
            })
            .await
        });
        let t1 = got
            .ok()
            .flatten()
            .context("no broadcast of the emitted event within 10 s")?;
        out.push(t1 - t0);
    }
    let rss = daemon.memory().map(|m| m.rss).unwrap_or(0);
    daemon.stop()?;
    server.stop();
    // The first ten warm the path up.
    Ok((out.split_off(10), rss))
}

/// One kind of drain: how the daemon delivers, and what the server does
/// with what it gets.
struct Kind {
    name: &'static str,
    key: &'static str,
    server_args: &'static [&'static str],
    batch_interval: u64,
    target: f64,
}

const KINDS: &[Kind] = &[
    Kind {
        name: "batches, store",
        key: "batches_store",
        server_args: &["--ws-refuse-upgrade"],
        batch_interval: 0,
        target: 50_000.0,
    },
    Kind {
        name: "batches, sink",
        key: "batches_sink",
        server_args: &["--ws-refuse-upgrade", "--sink"],
        batch_interval: 0,
        target: 50_000.0,
    },
    Kind {
        name: "WebSocket (acks), store",
        key: "ws_store",
        server_args: &["--ack"],
        batch_interval: 3600,
        target: 30_000.0,
    },
    Kind {
        name: "WebSocket (acks), sink",
        key: "ws_sink",
        server_args: &["--ack", "--sink"],
        batch_interval: 3600,
        target: 30_000.0,
    },
];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn main() -> Result<()> {
    let opts = parse_args()?;
    let log_dir = tempfile::Builder::new().prefix("kbu").tempdir()?;
    let machine = Machine::describe();
    let kinds: Vec<&Kind> = KINDS
        .iter()
        .filter(|k| {
            opts.kinds
                .as_ref()
                .is_none_or(|list| list.iter().any(|l| l == k.key))
        })
        .collect();
    let mut drains: Vec<Vec<Drain>> = kinds.iter().map(|_| Vec::new()).collect();
    // Run after run, each kind once per run, so that a slow spell of the
    // machine hits every kind alike.
    for run in 1..=opts.runs {
        for (kind, out) in kinds.iter().zip(&mut drains) {
            eprintln!(
                "run {run}/{}: draining {} events, {}...",
                opts.runs, opts.backlog, kind.name
            );
            out.push(drain(
                opts.backlog,
                kind.server_args,
                kind.batch_interval,
                log_dir.path(),
            )?);
        }
    }
    eprintln!("{} emit-to-stored samples...", opts.latency_samples);
    let (lat, idle_rss) = latency(opts.latency_samples, log_dir.path())?;
    let s = Summary::of_durations(&lat).context("no latency samples")?;

    let mut md = String::new();
    let cmd = std::env::args().collect::<Vec<_>>().join(" ");
    md.push_str(&format!(
        "### Uplink (issues 3 and 10)\n\n`{cmd}`{} on {} cores ({}), kernel {}, load {}; against \
         `kitty-saas-dev` on loopback, rate limiting off. Daemon: `{}`.\n\n",
        if opts.quick { " (quick)" } else { "" },
        machine.nproc,
        machine.cpu_model,
        machine.kernel,
        machine.load_average,
        daemon_bin().display(),
    ));
    md.push_str("| drain | run | events | fill (s) | seconds | events/s | target | over WebSocket | in batches (POSTs) | daemon CPU | daemon CPU per event | server CPU | daemon peak RSS | server holds | queue after |\n");
    md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (kind, runs) in kinds.iter().zip(&drains) {
        for (i, d) in runs.iter().enumerate() {
            md.push_str(&format!(
                "| {} | {} | {} | {:.2} | {:.2} | {:.0} | {:.0} ({}) | {} | {} ({}) | {:.0}% | {:.1} µs | {:.0}% | {:.1} MiB | {} distinct{} | {} rows {} |\n",
                kind.name,
                i + 1,
                d.events,
                d.fill_seconds,
                d.seconds,
                d.rate(),
                kind.target,
                if d.rate() >= kind.target { "met" } else { "missed" },
                d.ws_events,
                d.batch_events,
                d.batches,
                100.0 * d.daemon_cpu / d.seconds.max(1e-9),
                1e6 * d.daemon_cpu / d.events as f64,
                100.0 * d.server_cpu / d.seconds.max(1e-9),
                d.peak_rss as f64 / 1048576.0,
                d.unique_event_ids,
                if d.duplicates_seen > 0 {
                    format!(", {} duplicates", d.duplicates_seen)
                } else {
                    String::new()
                },
                d.queue_left,
                if d.verified() { "✓" } else { "**✗ MISMATCH**" },
            ));
        }
    }
    if opts.runs > 1 {
        md.push_str("\n| drain | runs | events/s median (min – max) | daemon CPU per event, median | daemon peak RSS, max |\n|---|---:|---:|---:|---:|\n");
        for (kind, runs) in kinds.iter().zip(&drains) {
            let rates: Vec<f64> = runs.iter().map(Drain::rate).collect();
            md.push_str(&format!(
                "| {} | {} | **{:.0}** ({:.0} – {:.0}) | {:.1} µs | {:.1} MiB |\n",
                kind.name,
                runs.len(),
                median(rates.clone()),
                rates.iter().copied().fold(f64::INFINITY, f64::min),
                rates.iter().copied().fold(0.0, f64::max),
                1e6 * median(
                    runs.iter()
                        .map(|d| d.daemon_cpu / d.events as f64)
                        .collect()
                ),
                runs.iter().map(|d| d.peak_rss).max().unwrap_or(0) as f64 / 1048576.0,
            ));
        }
    }
    md.push_str(&format!(
        "\nEmit to stored over the WebSocket ({} samples; from sending the emit on the daemon's \
         socket to the server's broadcast of it arriving on a second WebSocket): \
         p50 {:.2} ms, p99 {:.2} ms (min {:.2}, max {:.2}); target 50 ms: {}. \
         Daemon RSS after: {:.1} MiB.\n",
        lat.len(),
        s.p50 * 1e3,
        s.p99 * 1e3,
        s.min * 1e3,
        s.max * 1e3,
        if s.p99 * 1e3 < 50.0 { "met" } else { "missed" },
        idle_rss as f64 / 1048576.0
    ));
    md.push_str(
        "\nCPU is a share of one core over the drain (200% = both cores), from \
         `/proc/<pid>/stat`; the drain is timed from the first event the server holds to the \
         last. \"server holds\" must equal the backlog and \"queue after\" be 0 (✓). The sink \
         (`kitty-saas-dev --sink`) checks tokens, gunzips, parses, validates and deduplicates \
         every event like the store, but keeps only the ids. Both processes share the machine's \
         two cores with each other and with this bench.\n",
    );
    print!("{md}");
    if let Some(out) = &opts.out {
        std::fs::write(out, &md).with_context(|| format!("write {}", out.display()))?;
    }
    if let Some(path) = &opts.json {
        let mut by_kind = serde_json::Map::new();
        for (kind, runs) in kinds.iter().zip(&drains) {
            let rates: Vec<f64> = runs.iter().map(Drain::rate).collect();
            by_kind.insert(
                kind.key.into(),
                serde_json::json!({
                    "name": kind.name,
                    "server_args": kind.server_args,
                    "target_events_per_sec": kind.target,
                    "events_per_sec_median": median(rates),
                    "runs": runs.iter().map(Drain::json).collect::<Vec<_>>(),
                }),
            );
        }
        let doc = serde_json::json!({
            "command": cmd,
            "quick": opts.quick,
            "daemon_bin": daemon_bin(),
            "machine": {
                "nproc": machine.nproc, "cpu_model": machine.cpu_model,
                "kernel": machine.kernel, "load_average_before": machine.load_average,
            },
            "backlog": opts.backlog,
            "drains": by_kind,
            "emit_to_stored": kitty_tests::bench::json::summary(&s),
            "idle_rss_after": idle_rss,
        });
        let text = serde_json::to_string_pretty(&doc).context("serializing the figures")?;
        std::fs::write(path, text + "\n").with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}
