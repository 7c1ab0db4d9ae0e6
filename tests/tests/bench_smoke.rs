//! The benchmark cannot rot: `kitty-bench --quick` runs every section against
//! the debug binaries and must produce a complete report whose own checks
//! (queue.db rows = 202s, one row per emit) hold. Behaviour only: no number
//! in the report is compared with any threshold.

use std::process::{Command, Stdio};
use std::time::Duration;

use kitty_tests::bench::SECTIONS;
use kitty_tests::harness::{daemon_bin, wait_with_guard};

/// A quick run takes seconds; this only stops a hung one from blocking the suite.
const BENCH_GUARD: Duration = Duration::from_secs(300);

#[test]
fn quick_bench_reports_every_section() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report.md");
    let stdout = dir.path().join("stdout");
    let stderr = dir.path().join("stderr");
    // daemon_bin() fails with a clear message when the binaries are not built.
    let bin_dir = daemon_bin().parent().unwrap().to_path_buf();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kitty-bench"))
        .arg("--quick")
        .arg("--out")
        .arg(&out)
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
        "-row queue (recovers the clock) |",
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
}
