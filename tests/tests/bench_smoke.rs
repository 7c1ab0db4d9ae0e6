//! The benchmarks cannot rot: `kitty-bench --quick` runs every section against
//! the debug binaries and must produce a complete report whose own checks
//! (queue.db rows = 202s, one row per emit) hold, and the same figures as
//! JSON; `kitty-bench-uplink --quick` must drain every backlog completely.
//! Behaviour only: no number in the reports is compared with any threshold.

use std::process::{Command, Stdio};
use std::time::Duration;

use kitty_tests::bench::SECTIONS;
use kitty_tests::bench::json::RATIOS;
use kitty_tests::harness::{daemon_bin, wait_with_guard};
use serde_json::Value;

/// A quick run takes seconds; this only stops a hung one from blocking the suite.
const BENCH_GUARD: Duration = Duration::from_secs(300);

#[test]
fn quick_bench_reports_every_section() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report.md");
    let json_path = dir.path().join("figures.json");
    let stdout = dir.path().join("stdout");
    let stderr = dir.path().join("stderr");
    // daemon_bin() fails with a clear message when the binaries are not built.
    let bin_dir = daemon_bin().parent().unwrap().to_path_buf();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kitty-bench"))
        .arg("--quick")
        .arg("--out")
        .arg(&out)
        .arg("--json")
        .arg(&json_path)
        .arg("--bin-dir")
        .arg(&bin_dir)
        .env_remove("KITTY_SYNCD_SOCKET")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("spawn kitty-bench");
    let status = wait_with_guard(&mut child, BENCH_GUARD)
        .unwrap_or_else(|| panic!("kitty-bench --quick did not finish within {BENCH_GUARD:?}"));
    let printed = std::fs::read_to_string(&stdout).unwrap();
    let progress = std::fs::read_to_string(&stderr).unwrap();
    assert!(
        status.success(),
        "kitty-bench --quick failed ({status}):\n{progress}\n{printed}"
    );

    let report = std::fs::read_to_string(&out).expect("--out wrote the report");
    assert_eq!(report, printed, "--out and stdout differ");
    assert!(report.starts_with("# kitty-syncd benchmark"), "{report}");
    assert!(
        report.contains("`--quick`"),
        "a quick report says so:\n{report}"
    );

    // Every section, in order.
    let mut at = 0;
    for heading in SECTIONS {
        let i = report[at..]
            .find(&format!("\n{heading}"))
            .unwrap_or_else(|| panic!("missing or out of order: {heading}\n{report}"));
        at += i + 1;
    }

    // The rows each section must have.
    for needle in [
        "| nproc |",
        "| CPU |",
        "| kernel |",
        "fdatasync",
        "`POST /v1/events`, kept-alive connection",
        "`POST /v1/events`, fresh connection per request",
        "`GET /v1/health`, kept-alive",
        "| daemon running |",
        "| no daemon, empty home (direct) |",
        "(direct) |",
        "reference: `/bin/true`",
        "| idle,",
        "| fresh home (creates queue.db) |",
        "| 0-row queue (queue.db exists) |",
        "-row queue (recovers the clock) |",
        "| `kitty-sync status`, daemon running |",
        "| `kitty-sync status --json`, daemon running |",
        "| `kitty-sync status`, no daemon (reads queue.db) |",
        "| `kitty-sync status --json`, no daemon |",
        "socket round trip of one emit, p50 < 0.3 ms",
        "≥ 20,000 durable events/s with 16 clients",
        "whole `kitty-sync emit` < 5 ms",
        "whole `kitty-sync emit` < 8 MiB",
        "(debug build)",
    ] {
        assert!(report.contains(needle), "no {needle:?} in:\n{report}");
    }
    for clients in [1, 16, 64] {
        assert!(
            report.contains(&format!("\n| {clients} | **")),
            "no throughput row for {clients} clients:\n{report}"
        );
        assert!(
            report.contains(&format!("after the {clients}-client run")),
            "no memory row after {clients} clients:\n{report}"
        );
    }

    // The bench's own consistency checks all held, and nothing failed.
    assert!(!report.contains("MISMATCH"), "{report}");
    assert!(report.contains("verified"), "{report}");
    assert_eq!(
        report.matches("one per run ✓").count(),
        3,
        "every emit scenario adds one row per run:\n{report}"
    );
    assert!(
        !report.contains("First error"),
        "a load client got an error:\n{report}"
    );
    assert!(
        !report.contains("NaN") && !report.contains(" inf"),
        "{report}"
    );

    // The same run as JSON: it parses, and holds the figures and the ratios.
    let text = std::fs::read_to_string(&json_path).expect("--json wrote the figures");
    let figures: Value = serde_json::from_str(&text).expect("the figures are JSON");
    for key in RATIOS {
        assert!(
            figures["ratios"][key].is_f64(),
            "no ratio {key} in {}",
            figures["ratios"]
        );
    }
    for path in [
        "/floor/sqlx_bare_commit/p50",
        "/floor/group_multirow/p50",
        "/floor/multirow_ceiling_events_per_sec",
        "/round_trip/kept_alive/p50",
        "/scale/startup/ready/p50",
        "/scale/rows",
    ] {
        assert!(
            figures.pointer(path).is_some_and(Value::is_number),
            "no number at {path} in {text}"
        );
    }
    let clients: Vec<u64> = figures["throughput"]
        .as_array()
        .expect("a throughput list")
        .iter()
        .map(|t| t["clients"].as_u64().unwrap())
        .collect();
    assert_eq!(clients, [1, 16, 64]);
    // The closed-loop floor ran beside the 16- and 64-client runs, and every
    // answer it gave was a row.
    let floor = figures["closed_loop"]
        .as_array()
        .expect("a closed_loop list");
    let floor_clients: Vec<u64> = floor
        .iter()
        .map(|c| c["clients"].as_u64().unwrap())
        .collect();
    assert_eq!(floor_clients, [16, 64], "{text}");
    for c in floor {
        assert_eq!(c["verified"], true, "{c}");
        assert_eq!(c["errors"], 0, "{c}");
        assert!(c["accepted"].as_u64().unwrap() > 0, "{c}");
    }
    assert!(report.contains("**The closed-loop floor**"), "{report}");
    assert_eq!(figures["startups"].as_array().map(Vec::len), Some(3));
    assert_eq!(figures["scale"]["status"].as_array().map(Vec::len), Some(4));
    assert_eq!(figures["quick"], true);
}

#[test]
fn quick_uplink_bench_drains_every_backlog_completely() {
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("uplink.json");
    let stdout = dir.path().join("stdout");
    let stderr = dir.path().join("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kitty-bench-uplink"))
        .arg("--quick")
        .arg("--json")
        .arg(&json_path)
        .env_remove("KITTY_SYNCD_SOCKET")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("spawn kitty-bench-uplink");
    let status = wait_with_guard(&mut child, BENCH_GUARD).unwrap_or_else(|| {
        panic!("kitty-bench-uplink --quick did not finish within {BENCH_GUARD:?}")
    });
    let report = std::fs::read_to_string(&stdout).unwrap();
    let progress = std::fs::read_to_string(&stderr).unwrap();
    assert!(
        status.success(),
        "kitty-bench-uplink --quick failed ({status}):\n{progress}\n{report}"
    );
    assert!(!report.contains("MISMATCH"), "{report}");

    let text = std::fs::read_to_string(&json_path).expect("--json wrote the figures");
    let figures: Value = serde_json::from_str(&text).expect("the figures are JSON");
    let backlog = figures["backlog"].as_u64().expect("the backlog");
    for kind in ["batches_store", "batches_sink", "ws_store", "ws_sink"] {
        let runs = figures["drains"][kind]["runs"]
            .as_array()
            .unwrap_or_else(|| panic!("no runs of {kind} in {text}"));
        assert_eq!(runs.len(), 1, "{kind}");
        let run = &runs[0];
        assert_eq!(run["unique_event_ids"], backlog, "{kind}: {run}");
        assert_eq!(run["queue_left"], 0, "{kind}: {run}");
        for key in [
            "events_per_sec",
            "daemon_cpu_per_event_secs",
            "daemon_peak_rss",
            "server_cpu_share",
        ] {
            assert!(run[key].is_number(), "{kind}: no {key} in {run}");
        }
    }
    let sink = &figures["drains"]["batches_sink"]["runs"][0];
    let store = &figures["drains"]["batches_store"]["runs"][0];
    assert!(sink["batch_events"].as_u64() >= Some(backlog), "{sink}");
    assert!(store["batch_events"].as_u64() >= Some(backlog), "{store}");
    assert!(figures["emit_to_stored"]["p50"].is_number(), "{text}");
}
