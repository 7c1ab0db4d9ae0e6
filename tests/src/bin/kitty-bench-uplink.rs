//! `kitty-bench-uplink`: how fast the real daemon delivers to the real
//! `kitty-saas-dev` on loopback (issue 3, "Performance"), rate limiting off:
//!
//! 1. drain of a backlog over batch POSTs (the server refuses the WebSocket);
//! 2. drain of a backlog over the WebSocket (a server that acknowledges);
//! 3. emit-to-stored latency over the WebSocket: from sending an emit on the
//!    daemon's socket to receiving the server's broadcast of that event on a
//!    second WebSocket of the same team (so: stored, then broadcast);
//! 4. the daemon's memory while draining.
//!
//! `--quick` shrinks every count (a smoke run); `--out PATH` writes the
//! Markdown report there too. Traffic stays on loopback; loops are bounded.

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
    out: Option<PathBuf>,
    quick: bool,
}

fn parse_args() -> Result<Opts> {
    let mut o = Opts {
        backlog: 100_000,
        latency_samples: 500,
        out: None,
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
            "--backlog" => o.backlog = args.next().context("--backlog needs a number")?.parse()?,
            "-h" | "--help" => {
                println!("usage: kitty-bench-uplink [--quick] [--backlog N] [--out PATH]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}; see --help"),
        }
    }
    ensure!(o.backlog >= 1000, "--backlog must be at least 1000");
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
    seconds: f64,
    /// CPU seconds over the drain: the daemon's and the server's.
    daemon_cpu: f64,
    server_cpu: f64,
    peak_rss: u64,
    ws_events: u64,
    batch_events: u64,
    batches: u64,
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
    kitty_tests::bench::queue_drafts(&mut daemon.connect()?, backlog)?;
    let server = SaasDev::start_on(log_dir, reserved, &args);
    let cpu = |pid: i32| cpu_time(pid).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    let (daemon_cpu0, server_cpu0) = (cpu(daemon.pid()), cpu(server.pid() as i32));
    let mut peak = 0;
    let mut first_seen: Option<Instant> = None;
    let guard = Instant::now() + Duration::from_secs(600);
    let counters = loop {
        let c = server.counters();
        if first_seen.is_none() && c.unique_event_ids > 0 {
            first_seen = Some(Instant::now());
        }
        peak = peak.max(daemon.memory().map(|m: Memory| m.hwm).unwrap_or(0));
        if c.unique_event_ids as usize >= backlog {
            break c;
        }
        ensure!(
            Instant::now() < guard,
            "drain did not finish within 10 minutes: {c:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let seconds = first_seen.map_or(0.0, |t| t.elapsed().as_secs_f64());
    let daemon_cpu = cpu(daemon.pid()) - daemon_cpu0;
    let server_cpu = cpu(server.pid() as i32) - server_cpu0;
    daemon.stop()?;
    server.stop();
    Ok(Drain {
        events: backlog,
        seconds,
        daemon_cpu,
        server_cpu,
        peak_rss: peak,
        ws_events: counters.ws_events,
        batch_events: counters.batch_events,
        batches: counters.batches,
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

fn main() -> Result<()> {
    let opts = parse_args()?;
    let log_dir = tempfile::Builder::new().prefix("kbu").tempdir()?;
    let machine = Machine::describe();
    eprintln!("draining {} events over batches...", opts.backlog);
    let batch = drain(opts.backlog, &["--ws-refuse-upgrade"], 0, log_dir.path())?;
    eprintln!("draining {} events over the WebSocket...", opts.backlog);
    let ws = drain(opts.backlog, &["--ack"], 3600, log_dir.path())?;
    eprintln!("{} emit-to-stored samples...", opts.latency_samples);
    let (lat, idle_rss) = latency(opts.latency_samples, log_dir.path())?;
    let s = Summary::of_durations(&lat).context("no latency samples")?;

    let mut md = String::new();
    let cmd = std::env::args().collect::<Vec<_>>().join(" ");
    md.push_str(&format!(
        "### Uplink (issue 3)\n\n`{cmd}`{} on {} cores ({}), kernel {}, load {}; against \
         `kitty-saas-dev` on loopback, rate limiting off.\n\n",
        if opts.quick { " (quick)" } else { "" },
        machine.nproc,
        machine.cpu_model,
        machine.kernel,
        machine.load_average,
    ));
    md.push_str("| drain | events | seconds | events/s | target | over WebSocket | in batches (POSTs) | daemon CPU | server CPU | daemon peak RSS |\n");
    md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (name, d, target) in [
        ("batches", &batch, 50_000.0),
        ("WebSocket (acks)", &ws, 20_000.0),
    ] {
        let rate = d.events as f64 / d.seconds.max(1e-9);
        md.push_str(&format!(
            "| {name} | {} | {:.2} | {:.0} | {:.0} ({}) | {} | {} ({}) | {:.0}% | {:.0}% | {:.1} MiB |\n",
            d.events,
            d.seconds,
            rate,
            target,
            if rate >= target { "met" } else { "missed" },
            d.ws_events,
            d.batch_events,
            d.batches,
            100.0 * d.daemon_cpu / d.seconds.max(1e-9),
            100.0 * d.server_cpu / d.seconds.max(1e-9),
            d.peak_rss as f64 / 1048576.0
        ));
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
        "\nCPU is a share of one core over the drain (200% = both cores). Both processes share \
         the machine's two cores with each other and with this bench.\n",
    );
    print!("{md}");
    if let Some(out) = &opts.out {
        std::fs::write(out, &md).with_context(|| format!("write {}", out.display()))?;
    }
    Ok(())
}
