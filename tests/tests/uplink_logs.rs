//! Issue 7, what logs never hold: at `RUST_LOG=trace`, through a login, WebSocket
//! delivery, token refreshes and batches, no token, password or payload
//! reaches a log line; and a trace log inside `<home>` does not feed the
//! settings watcher, which would log, which would write, ...
//!
//! Real kitty-syncd, real kitty-sync, real kitty-saas-dev. Waits are bounded;
//! the only size check is an upper bound on an idle daemon's log growth,
//! which a slow machine can only lower.

use std::time::Duration;

use kitty_tests::harness::*;
use kitty_tests::uplink_harness::*;
use serde_json::{Value, json};

const TRACER: &str = "tracer";
const TRACER_PASSWORD: &str = "Pw-7c1e-never-logged";

fn marked_draft(marker: &str, i: usize) -> Value {
    let wp = format!("WP{:02}", i % 100);
    json!({
        "event_type": "WPCreated",
        "aggregate_id": wp,
        "payload": {"wp_id": wp, "title": format!("{marker}-{i}"), "feature_slug": "028-cli"},
    })
}

#[test]
fn trace_logs_hold_no_token_password_or_payload() {
    let home = TestHome::new();
    let server = SaasDev::start(
        home.root(),
        &[
            "--user",
            &format!("{TRACER}:{TRACER_PASSWORD}:{TEAM}"),
            "--access-ttl-secs",
            "3",
            "--ping-interval-ms",
            "500",
        ],
    );
    write_sync_config(&home, &server.url(), 1, 300);
    let marker = format!("PAYLOAD-MARKER-{}", new_ulid());

    let mut login = home.command(&client_bin());
    login.env("RUST_LOG", "trace").args([
        "login",
        "--server",
        &server.url(),
        "--username",
        TRACER,
        "--password-stdin",
    ]);
    let out = run_with_guard(login, Some(format!("{TRACER_PASSWORD}\n").as_bytes()));
    out.assert_code(0);
    let mut tokens: Vec<String> = ["access", "refresh"]
        .iter()
        .filter_map(|k| credentials_field(&home, k))
        .collect();

    let mut d = home.spawn_daemon_with(&[("RUST_LOG", "trace")]);
    d.wait_ready();
    let api = d.api();
    api.wait_state("Connected", DRAIN_GUARD);

    // Over the WebSocket (confirmed by batches: this server sends no acks).
    api.emit_many(10, &|i| marked_draft(&marker, i));
    wait_delivered(&server, &home, 10, DRAIN_GUARD);

    // Tokens live 3 s: keep the uplink busy until it has refreshed.
    let mut i = 10;
    wait_until("a token refresh", DRAIN_GUARD, || {
        let up = api.uplink();
        if up.refreshes >= 1 {
            return Ok(());
        }
        api.emit(&marked_draft(&marker, i));
        i += 1;
        std::thread::sleep(Duration::from_millis(500));
        Err(format!("{up:?}"))
    });
    tokens.extend(
        ["access", "refresh"]
            .iter()
            .filter_map(|k| credentials_field(&home, k)),
    );

    // Batches only.
    server.set_faults(json!({"ws_refuse_upgrade": true}));
    server.drop_websockets();
    api.emit_many(10, &|j| marked_draft(&marker, 1000 + j));
    let total = (i + 10) as u64;
    let c = wait_delivered(&server, &home, total, DRAIN_GUARD);
    assert!(
        c.batches >= 2 && c.ws_events >= 10 && c.refreshes >= 1,
        "{c:?}"
    );
    tokens.extend(
        ["access", "refresh"]
            .iter()
            .filter_map(|k| credentials_field(&home, k)),
    );
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit().code(), Some(0), "{}", d.log());

    let logs = [
        ("kitty-sync login", format!("{}{}", out.stdout, out.stderr)),
        ("kitty-syncd", d.log()),
    ];
    assert!(
        logs[1].1.contains("DEBUG"),
        "the daemon logged below info:\n{}",
        logs[1].1
    );
    for (who, log) in &logs {
        for (what, needle) in [
            ("a JWT (access, refresh or ws token)", "eyJ"),
            ("a bearer header", "Bearer "),
            ("the password", TRACER_PASSWORD),
            ("a payload", marker.as_str()),
        ] {
            if let Some(line) = log.lines().find(|l| l.contains(needle)) {
                panic!("{who}'s trace log holds {what}: {line}");
            }
        }
        for t in &tokens {
            assert!(!log.contains(t.as_str()), "{who}'s trace log holds a token");
        }
    }
}

/// Bytes in `<home>/kitty-syncd.log*` (the daily files of `--log-file`).
fn log_bytes(home: &TestHome) -> u64 {
    std::fs::read_dir(home.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("kitty-syncd.log")
        })
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

#[test]
fn a_trace_log_inside_home_does_not_feed_the_settings_watcher() {
    const IDLE_GROWTH_LIMIT: u64 = 256 * 1024;
    let home = TestHome::new();
    let log_file = home.file("kitty-syncd.log");
    let mut d = home.spawn_daemon_tweaked(&[("RUST_LOG", "trace")], |cmd| {
        cmd.arg("--log-file").arg(&log_file);
    });
    d.wait_ready();
    eventually("the log file to be written", HANG_GUARD, || {
        (log_bytes(&home) > 0).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    let before = log_bytes(&home);
    std::thread::sleep(Duration::from_secs(3));
    let grown = log_bytes(&home) - before;
    eprintln!("an idle daemon's trace log grew {grown} bytes in 3 s");
    assert!(
        grown < IDLE_GROWTH_LIMIT,
        "an idle daemon's trace log grew {grown} bytes in 3 s: it feeds on itself"
    );

    // The watcher still sees the files it watches.
    let api = d.api();
    let loaded = api.status().config_loaded_at;
    home.write_config(123);
    eventually("config.toml to be reloaded", HANG_GUARD, || {
        (api.status().config_loaded_at != loaded).then_some(())
    });
    d.stop_gracefully();
}
