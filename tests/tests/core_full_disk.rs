//! Issue 7, item 2: a full disk. Commits fail with an honest error while the
//! disk is full, `/v1/health` (which the watchdog probes) and `status` say the
//! writer's last commit failed, and commits resume by themselves once space
//! returns, without a restart and without a value issued twice. The uplink's
//! deletes of confirmed rows resume the same way.
//!
//! The disk is real: the daemon's home is a small tmpfs of its own, mounted in
//! a private mount namespace (`unshare`), filled by a file the test writes and
//! freed by removing it. Where user namespaces are not available the test
//! says so and skips.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use kitty_proto::api::Health;
use kitty_tests::harness::*;
use kitty_tests::uplink_harness::*;
use serde_json::{Value, json};

/// Room for queue.db, its WAL and the filler.
const FS_SIZE: u64 = 4 << 20;

/// Writes `path` until the file system has no space left.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).expect("create the filler");
    for chunk in [64 * 1024, 4096, 512] {
        let bytes = vec![0xA5u8; chunk];
        while f.write_all(&bytes).is_ok() {}
    }
    let _ = f.sync_all();
}

fn big_draft(i: u32) -> Value {
    json!({"event_type": "WPCreated", "payload": {
        "wp_id": format!("WP{:02}", i % 100),
        "title": "x".repeat(16 * 1024),
        "feature_slug": "028-full-disk"}})
}

#[test]
fn a_full_disk_fails_commits_until_space_returns_and_health_says_so() {
    let mut home = TestHome::new();
    home.set_socket_override(Some(home.root().join("d.sock")));
    let Some(mut d) = home.spawn_daemon_on_tmpfs(FS_SIZE) else {
        eprintln!("SKIPPED: no private mount namespaces here (unshare --user --mount)");
        return;
    };
    d.wait_ready();
    let api = d.api();
    let mut issued = BTreeSet::new();
    for i in 0..3 {
        issued.insert(api.emit(&status_draft(i)).lamport_clock);
    }

    let filler = d.view(&home.file("filler"));
    fill(&filler);
    // Pages SQLite already holds may take a few more events; then commits fail.
    let mut failure = None;
    for i in 0..200 {
        let r = api.post_events(&big_draft(i));
        match r.status {
            202 => {
                let v: Value = r.json();
                issued.insert(v["events"][0]["lamport_clock"].as_u64().unwrap());
            }
            _ => {
                failure = Some(r);
                break;
            }
        }
    }
    let failure = failure.expect("a commit fails once the disk is full");
    failure.assert_status(500);
    let msg = failure.error().message;
    assert!(msg.contains("full"), "the error says why: {msg}");

    let health = api.get("/v1/health");
    health.assert_status(503);
    let h: Health = health.json();
    assert!(!h.ok, "{h:?}");
    assert!(
        h.error.as_deref().is_some_and(|e| e.contains("full")),
        "health names the failure: {h:?}"
    );
    let st = api.status();
    assert!(!st.writer.ok, "{:?}", st.writer);
    assert!(st.writer.consecutive_failures >= 1, "{:?}", st.writer);
    assert!(
        st.writer
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("full")),
        "{:?}",
        st.writer
    );

    // Still full: the same honest error, not a connection left unusable.
    let again = api.post_events(&status_draft(7));
    again.assert_status(500);
    let msg = again.error().message;
    assert!(
        msg.contains("full") && !msg.contains("transaction depth"),
        "{msg}"
    );

    std::fs::remove_file(&filler).expect("free the space");
    // Commits resume by themselves, with no restart.
    let resumed = api.emit(&status_draft(8)).lamport_clock;
    assert!(
        issued.iter().all(|&v| v < resumed),
        "{resumed} after {issued:?}"
    );
    issued.insert(resumed);
    issued.insert(api.emit(&big_draft(9)).lamport_clock);
    let h = api.health();
    assert!(h.ok && h.error.is_none(), "healthy again: {h:?}");
    assert!(api.status().writer.ok);

    // SQLite resolves /proc/<pid>/root to our own namespace's view: read the
    // queue through the daemon instead.
    let values: Vec<u64> = api
        .queue(1000)
        .events
        .iter()
        .map(|e| e.envelope["lamport_clock"].as_u64().unwrap())
        .collect();
    assert_eq!(
        values.iter().copied().collect::<BTreeSet<_>>(),
        issued,
        "every acknowledged event is queued, each with its own value: {values:?}"
    );
    assert_eq!(values.len(), issued.len(), "no value twice: {values:?}");
    let clock: Value = serde_json::from_slice(
        &std::fs::read(d.view(&home.file("clock.json"))).expect("clock.json"),
    )
    .expect("clock.json is JSON");
    let (file, last) = (clock["value"].as_u64().unwrap(), *issued.last().unwrap());
    assert!(
        clock_covers(file, last),
        "clock.json covers every value issued again: {clock}, last {last}"
    );
    assert_eq!(d.pid(), api.health().pid, "the same daemon throughout");
    d.stop_gracefully();
}

#[test]
fn confirmed_rows_are_deleted_once_space_returns() {
    let mut home = TestHome::new();
    let server = SaasDev::start(home.root(), &[]);
    // A batch every second while the queue is not empty.
    configure(&home, &server, 0, 1, true);
    home.set_socket_override(Some(home.root().join("d.sock")));
    // The WebSocket carries the events; no batch confirms them for now.
    server.set_faults(json!({"batch_500_fraction": 1.0}));
    let Some(mut d) = home.spawn_daemon_on_tmpfs(FS_SIZE) else {
        eprintln!("SKIPPED: no private mount namespaces here (unshare --user --mount)");
        return;
    };
    d.wait_ready();
    let api = d.api();
    for i in 0..3 {
        api.emit(&status_draft(i));
    }
    wait_until("the server to store the 3 events", DRAIN_GUARD, || {
        let c = server.counters();
        if c.unique_event_ids >= 3 {
            Ok(())
        } else {
            Err(format!("{c:?}"))
        }
    });

    let filler = d.view(&home.file("filler"));
    fill(&filler);
    server.set_faults(json!({"batch_500_fraction": 0.0}));
    // Batches confirm them now ("duplicate"), but their deletes cannot commit.
    let confirmed = server.counters().duplicates_seen;
    wait_until("two batches confirming the 3 events", DRAIN_GUARD, || {
        let c = server.counters();
        if c.duplicates_seen >= confirmed + 6 {
            Ok(())
        } else {
            Err(format!("{c:?}"))
        }
    });
    assert_eq!(
        api.status().queue.depth,
        3,
        "nothing deleted on a full disk"
    );

    std::fs::remove_file(&filler).expect("free the space");
    wait_until("the confirmed rows to be deleted", DRAIN_GUARD, || {
        let depth = api.status().queue.depth;
        if depth == 0 {
            Ok(())
        } else {
            Err(format!("depth {depth}"))
        }
    });
    assert_eq!(server.counters().unique_event_ids, 3);
    d.stop_gracefully();
}
