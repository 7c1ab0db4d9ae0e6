//! Issue 7, item 3: the clock has one owner even when someone deletes the lock
//! files (`rm <home>/*.lock`) under a running daemon. A flock belongs to the
//! file, not the path: once unlinked, the next process to open the path locks
//! a new file. So the daemon checks that the paths still name its locked
//! files, takes them back, reads what others stamped meanwhile before it
//! stamps again, stops stamping while another process holds `clock.lock`, and
//! never replaces a socket a live daemon answers on.
//!
//! The daemon is frozen (SIGSTOP) while the locks are removed, so that it
//! cannot take them back before the other process arrives: the "short hang"
//! of the issue.

use std::collections::HashSet;

use kitty_proto::api::Health;
use kitty_tests::harness::*;

fn remove_locks(home: &TestHome) {
    for name in ["kitty-syncd.lock", "clock.lock"] {
        std::fs::remove_file(home.file(name)).unwrap_or_else(|e| panic!("rm {name}: {e}"));
    }
}

#[track_caller]
fn assert_all_distinct(home: &TestHome) -> Vec<u64> {
    let values: Vec<u64> = home.db().rows().iter().map(QueueRow::lamport).collect();
    let unique: HashSet<_> = values.iter().collect();
    assert_eq!(
        unique.len(),
        values.len(),
        "a value issued twice: {values:?}"
    );
    values
}

/// Waits until the daemon has locked the lock files again.
fn wait_locks_retaken(home: &TestHome, d: &Daemon) {
    eventually("the daemon to take its lock files back", HANG_GUARD, || {
        let pid = std::fs::read_to_string(home.file("kitty-syncd.lock")).ok()?;
        (pid.trim() == d.pid().to_string()
            && lock_is_held(home, "kitty-syncd.lock")
            && lock_is_held(home, "clock.lock"))
        .then_some(())
    });
}

fn lock_is_held(home: &TestHome, name: &str) -> bool {
    let Ok(f) = std::fs::File::open(home.file(name)) else {
        return false;
    };
    matches!(f.try_lock_shared(), Err(std::fs::TryLockError::WouldBlock))
}

#[test]
fn a_client_falling_back_after_the_locks_are_removed_never_reuses_a_value() {
    let home = TestHome::new();
    let d = home.start_daemon();
    let api = d.api();
    for i in 0..3 {
        assert_eq!(api.emit(&status_draft(i)).lamport_clock, u64::from(i) + 1);
    }
    d.freeze();
    remove_locks(&home);
    // The daemon does not answer; no lock says it runs: the client queues
    // the event itself, under a clock.lock it created anew.
    let out = home.client_emit("WPStatusChanged", &status_draft(4)["payload"]);
    assert_eq!(out["path"], "direct", "{out}");
    let theirs = out["lamport_clock"].as_u64().unwrap();
    // Above clock.json, which the daemon keeps ahead of its values.
    let covered = home.assert_clock_covers(theirs, "the client's value");
    assert!(
        theirs > 3,
        "the client issued {theirs} after the daemon's 3"
    );
    assert_eq!(
        covered, theirs,
        "a client queueing directly keeps clock.json exact"
    );
    d.thaw();
    let ours = api.emit(&status_draft(5)).lamport_clock;
    assert!(
        ours > theirs,
        "the daemon issued {ours} after the client's {theirs}"
    );
    wait_locks_retaken(&home, &d);
    let next = api.emit(&status_draft(6)).lamport_clock;
    assert!(next > ours);
    assert_eq!(
        assert_all_distinct(&home),
        vec![1, 2, 3, theirs, ours, next]
    );
    d.stop_gracefully();
    home.assert_clock_covers(next, "at shutdown");
}

#[test]
fn a_second_daemon_started_after_the_locks_are_removed_leaves_the_live_socket_alone() {
    let home = TestHome::new();
    let d = home.start_daemon();
    let api = d.api();
    api.emit(&status_draft(1));
    d.freeze();
    remove_locks(&home);
    let mut second = home.spawn_daemon();
    let st = second.wait_exit();
    assert_eq!(
        st.code(),
        Some(73),
        "another daemon answers on the socket:\n{}",
        second.log()
    );
    assert!(
        second.log().contains("answers on"),
        "says why:\n{}",
        second.log()
    );
    d.thaw();
    assert_eq!(
        api.health().pid,
        d.pid(),
        "the socket is still the first one's"
    );
    assert_eq!(api.emit(&status_draft(2)).lamport_clock, 2);
    wait_locks_retaken(&home, &d);
    // With its lock back, a third is refused by the lock as before.
    let third = home.daemon_cmd(&["run"]);
    assert_eq!(third.code(), Some(73), "{third}");
    assert!(third.stderr.contains(&d.pid().to_string()), "{third}");
    assert_all_distinct(&home);
}

#[test]
fn a_daemon_whose_clock_lock_another_holds_stops_stamping_until_it_is_back() {
    let mut home = TestHome::new();
    let a = home.start_daemon();
    let api_a = a.api();
    assert_eq!(api_a.emit(&status_draft(1)).lamport_clock, 1);
    a.freeze();
    remove_locks(&home);
    // A second daemon on another socket finds no lock and starts.
    home.set_socket_override(Some(home.root().join("second.sock")));
    let b = home.start_daemon();
    let api_b = b.api();
    let from_b = api_b.emit(&status_draft(2)).lamport_clock;
    assert!(
        from_b > 1,
        "it resumes above the first one's values: {from_b}"
    );
    a.thaw();
    // The first one sees clock.lock held by another process: it refuses to stamp.
    let refused = api_a.post_events(&status_draft(3));
    refused.assert_status(500);
    let msg = refused.error().message;
    assert!(msg.contains("clock.lock"), "{msg}");
    let health = api_a.get("/v1/health");
    health.assert_status(503);
    let h: Health = health.json();
    assert!(
        h.error.as_deref().is_some_and(|e| e.contains("clock.lock")),
        "{h:?}"
    );
    assert!(api_b.emit(&status_draft(4)).lamport_clock > from_b);
    b.stop_gracefully();
    // The other owner is gone: the first one takes the lock back by itself.
    eventually("the first daemon to be healthy again", HANG_GUARD, || {
        let r = api_a.try_request("GET", "/v1/health", None).ok()?;
        (r.status == 200).then_some(())
    });
    let values = assert_all_distinct(&home);
    let after = api_a.emit(&status_draft(5)).lamport_clock;
    assert!(
        values.iter().all(|&v| v < after),
        "{after} after {values:?}"
    );
    assert_all_distinct(&home);
    a.stop_gracefully();
}
