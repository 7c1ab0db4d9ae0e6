//! The real spec-kitty CLIs from PyPI (2.1.3, 3.2.7, 4.0.0rc7) with the
//! kitty-sync package installed, running their offline command sequences
//! against a real kitty-syncd and a real kitty-saas-dev.
//!
//! For each version: every event the CLI produced reaches the server exactly
//! once, stamped by the daemon (its node, Lamport values 1..n, in order per
//! aggregate, the producer's time and ids kept) while the CLI itself writes
//! neither clock.json nor queue.db; with the daemon stopped the events are
//! durable and delivered once it starts; `KITTY_SYNC_DISABLE=1` leaves the
//! CLI exactly as without the package; events the daemon refuses are kept in
//! the side file and counted by `status`, and the commands still succeed.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use kitty_tests::harness::TestHome;
use kitty_tests::spec_kitty_cli::{Cli, plain_venv, user_home, venv_with_kitty_sync};
use kitty_tests::uplink_harness::{DRAIN_GUARD, SaasDev, configure, wait_delivered};
use serde_json::Value;

const REFUSED_FILE: &str = "kitty-sync-refused.jsonl";

fn cli(home: &TestHome, version: &str) -> Cli {
    Cli::new(home, venv_with_kitty_sync(version), version, "repo")
}

fn instant(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// The envelope among `stored` that is the produced event `p`: by its
/// event_id, or, for a status hop (whose draft gets its id from kitty-sync),
/// by the canonical status event's ULID, its causation id.
fn matches<'a>(p: &Value, stored: &'a [Value]) -> Vec<&'a Value> {
    stored
        .iter()
        .filter(|e| match p["via"].as_str() {
            Some("status") => {
                e["event_type"] == "WPStatusChanged" && e["causation_id"] == p["causation_id"]
            }
            _ => e["event_id"] == p["event_id"],
        })
        .collect()
}

/// Each produced event is stored exactly once and nothing else is; the
/// producer's time is the envelope's; returns the matched envelopes in the
/// order the CLI produced them.
fn assert_each_once<'a>(produced: &[Value], stored: &'a [Value]) -> Vec<&'a Value> {
    assert!(!produced.is_empty(), "the sequence produced no event");
    let mut found = Vec::new();
    for p in produced {
        let m = matches(p, stored);
        assert_eq!(
            m.len(),
            1,
            "produced {p} is stored {} times; stored: {stored:#?}",
            m.len()
        );
        let e = m[0];
        assert_eq!(e["event_type"], p["event_type"], "{p} vs {e}");
        if let Some(at) = instant(&p["occurred_at"]) {
            assert_eq!(
                instant(&e["timestamp"]),
                Some(at),
                "the producer's time is kept: {p} vs {e}"
            );
        }
        found.push(e);
    }
    assert_eq!(
        stored.len(),
        produced.len(),
        "only what the CLI produced is stored: {stored:#?}"
    );
    found
}

/// Stamped by the daemon: its node, each Lamport value 1..=n once, and in
/// the order the CLI produced them within each aggregate.
fn assert_daemon_stamped(in_order: &[&Value], node_id: &str) {
    let mut values: Vec<u64> = in_order
        .iter()
        .map(|e| e["lamport_clock"].as_u64().expect("integer lamport_clock"))
        .collect();
    for e in in_order {
        assert_eq!(e["node_id"], node_id, "not stamped by the daemon: {e}");
    }
    let mut per_aggregate: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for e in in_order {
        let key = format!("{}/{}", e["aggregate_type"], e["aggregate_id"]);
        per_aggregate
            .entry(key)
            .or_default()
            .push(e["lamport_clock"].as_u64().unwrap());
    }
    for (aggregate, lamports) in &per_aggregate {
        assert!(
            lamports.windows(2).all(|w| w[0] < w[1]),
            "{aggregate}: Lamport values out of the order the CLI produced them: {lamports:?}"
        );
    }
    values.sort_unstable();
    let n = values.len() as u64;
    assert_eq!(
        values,
        (1..=n).collect::<Vec<_>>(),
        "daemon-issued values, each once"
    );
}

#[track_caller]
fn assert_cli_wrote_no_clock_or_queue(cli: &Cli) {
    let touched = cli.touched();
    assert!(
        touched.is_empty(),
        "the CLI's own Python wrote clock.json or queue.db: {touched:#?}"
    );
}

fn delivered(version: &str) {
    let home = user_home();
    let server = SaasDev::start(home.root(), &[]);
    configure(&home, &server, 1, 300, true);
    let daemon = home.start_daemon();
    let mut cli = cli(&home, version);
    cli.sequence();
    let produced = cli.produced();
    let n = produced.len() as u64;
    wait_delivered(&server, &home, n, DRAIN_GUARD);
    let stored = server.events(None);
    let in_order = assert_each_once(&produced, &stored);
    let node_id = daemon.api().status().clock.node_id;
    assert_daemon_stamped(&in_order, &node_id);
    assert_cli_wrote_no_clock_or_queue(&cli);
    home.wait_clock_at_least(n);
    home.assert_clock_covers(n, "clock.json is the daemon's");
    assert!(
        !home.file(REFUSED_FILE).exists(),
        "nothing refused: {:?}",
        std::fs::read_to_string(home.file(REFUSED_FILE))
    );
    // Identity carried: the project of the checkout, and 3.x/4.0's mission.
    for e in &in_order {
        assert!(
            e["project_uuid"].as_str().is_some_and(|s| !s.is_empty()),
            "project_uuid carried: {e}"
        );
        if e["event_type"] == "WPStatusChanged" && !version.starts_with("2.") {
            assert_eq!(e["payload"]["mission_slug"].as_str(), cli.slug.as_deref());
            assert!(e["payload"]["mission_id"].is_string(), "{e}");
        }
    }
    daemon.stop_gracefully();
}

fn stopped(version: &str) {
    let home = user_home();
    let server = SaasDev::start(home.root(), &[]);
    configure(&home, &server, 1, 300, true);
    let mut cli = cli(&home, version);
    cli.sequence();
    let produced = cli.produced();
    let n = produced.len();
    // Queued by kitty-sync, by the daemon's rules, while no daemon ran.
    let rows = home.db().rows();
    assert_eq!(rows.len(), n, "every event durable in queue.db: {rows:#?}");
    let mut lamports: Vec<u64> = rows.iter().map(|r| r.lamport()).collect();
    lamports.sort_unstable();
    assert_eq!(lamports, (1..=n as u64).collect::<Vec<_>>());
    assert_cli_wrote_no_clock_or_queue(&cli);
    assert_eq!(home.clock_value(), Some(n as u64));
    assert_eq!(server.counters().unique_event_ids, 0, "nothing sent yet");
    let daemon = home.start_daemon();
    wait_delivered(&server, &home, n as u64, DRAIN_GUARD);
    let stored = server.events(None);
    let in_order = assert_each_once(&produced, &stored);
    assert_daemon_stamped(&in_order, &daemon.api().status().clock.node_id);
    daemon.stop_gracefully();
}

/// (op, file name) of each write the CLI made to a clock.json or a queue.db.
fn touched_files(cli: &Cli) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = cli
        .touched()
        .iter()
        .map(|t| {
            let name = std::path::Path::new(t["path"].as_str().unwrap_or_default())
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (t["op"].as_str().unwrap_or_default().to_owned(), name)
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

fn types(produced: &[Value]) -> Vec<String> {
    produced
        .iter()
        .map(|p| format!("{}:{}", p["via"], p["event_type"]))
        .collect()
}

fn disabled(version: &str) {
    let home = user_home();
    let daemon = home.start_daemon();
    let mut off = cli(&home, version);
    off.set_env("KITTY_SYNC_DISABLE", "1");
    off.sequence();
    // The same sequence with the CLI as PyPI ships it, for another user.
    let other = user_home();
    let mut plain = Cli::new(&other, plain_venv(version), version, "repo");
    plain.sequence();
    assert_eq!(types(&off.produced()), types(&plain.produced()));
    assert_eq!(
        touched_files(&off),
        touched_files(&plain),
        "the same writes of its own as without the package"
    );
    let status = daemon.api().status();
    assert_eq!(status.clock.value, 0, "the daemon issued nothing");
    assert!(
        !home.file(REFUSED_FILE).exists(),
        "the package did nothing at all"
    );
    if version.starts_with("2.") || version.starts_with("3.") {
        // These CLIs tick clock.json themselves: proof the observer sees it.
        assert!(
            touched_files(&plain)
                .iter()
                .any(|(_, name)| name == "clock.json"),
            "{:?}",
            touched_files(&plain)
        );
    }
    daemon.stop_gracefully();
}

fn refused(version: &str) {
    let home = user_home();
    // A cap of one event and no server: the daemon refuses all but the first.
    home.write_config(1);
    let daemon = home.start_daemon();
    let mut cli = cli(&home, version);
    cli.sequence(); // every command still exits 0
    let produced = cli.produced();
    let n = produced.len();
    assert!(n >= 2, "{produced:?}");
    assert_eq!(home.db().count(), 1);
    let text = std::fs::read_to_string(home.file(REFUSED_FILE)).expect("the side file");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), n - 1, "{text}");
    for line in &lines {
        assert_eq!(line["error"]["error"], "queue_full", "{line}");
        assert!(
            line["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
        assert!(line["event"]["event_type"].is_string(), "{line}");
    }
    assert_eq!(daemon.api().status().refused, (n - 1) as u64);
    let shown = home.client(&["status"]);
    assert!(
        shown
            .stdout
            .contains(&format!("{} spec-kitty events the daemon refused", n - 1)),
        "{shown}"
    );
    assert_cli_wrote_no_clock_or_queue(&cli);
    daemon.stop_gracefully();
}

macro_rules! per_version {
    ($($module:ident => $version:literal),* $(,)?) => {$(
        mod $module {
            #[test]
            fn every_event_reaches_the_server_once_with_daemon_clocks() {
                super::delivered($version)
            }

            #[test]
            fn with_the_daemon_stopped_events_are_durable_then_delivered() {
                super::stopped($version)
            }

            #[test]
            fn disabled_the_cli_behaves_as_without_the_package() {
                super::disabled($version)
            }

            #[test]
            fn refused_events_are_kept_counted_and_the_command_succeeds() {
                super::refused($version)
            }
        }
    )*};
}

per_version!(v2_1_3 => "2.1.3", v3_2_7 => "3.2.7", v4_0_0rc7 => "4.0.0rc7");
