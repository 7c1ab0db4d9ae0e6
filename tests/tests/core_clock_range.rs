//! Issue 7, item 7: the clock never wraps and never leaves the contract's
//! range (0 to 2^53 - 1). A stored high-water mark corrupted beyond it is
//! refused; a relayed envelope or a server frame at the top stops the clock
//! there; the daemon never stamps a value its own envelope rules reject, and
//! refuses the draft instead.

use kitty_proto::MAX_LAMPORT;
use kitty_tests::harness::*;
use kitty_tests::uplink_harness::*;

#[track_caller]
fn assert_rows_valid(home: &TestHome) -> Vec<u64> {
    home.db()
        .rows()
        .iter()
        .map(|r| {
            assert_valid_envelope(&r.data);
            r.lamport()
        })
        .collect()
}

#[test]
fn a_stored_mark_of_2_to_the_64_minus_1_does_not_wrap_the_clock() {
    let home = TestHome::new();
    let d = home.start_daemon();
    for i in 0..3 {
        d.api().emit(&status_draft(i));
    }
    d.stop_gracefully();
    let file = home.assert_clock_covers(3, "after the first run");
    home.db()
        .execute("UPDATE kitty_meta SET value = '18446744073709551615' WHERE key = 'clock_hwm'");

    let d = home.start_daemon();
    let api = d.api();
    let next: Vec<u64> = (0..3)
        .map(|i| api.emit(&status_draft(i)).lamport_clock)
        .collect();
    assert_eq!(
        next,
        vec![file + 1, file + 2, file + 3],
        "resumed from clock.json and the queue, not wrapped"
    );
    assert!(
        d.log().contains("18446744073709551615"),
        "the refused mark is named in a warning:\n{}",
        d.log()
    );
    assert_eq!(
        assert_rows_valid(&home),
        vec![1, 2, 3, file + 1, file + 2, file + 3]
    );
    assert_eq!(
        home.db().meta("clock_hwm"),
        Some((file + 3).to_string()),
        "rewritten"
    );
    d.stop_gracefully();
}

#[test]
fn a_relayed_envelope_at_the_top_stops_the_clock_there() {
    let home = TestHome::new();
    let d = home.start_daemon();
    let api = d.api();
    api.emit(&status_draft(1));
    let top = api.emit(&cli_envelope(&new_ulid(), MAX_LAMPORT));
    assert_eq!(top.lamport_clock, MAX_LAMPORT);
    assert_eq!(api.status().clock.value, MAX_LAMPORT, "not past the range");

    // No value is left for a draft: refused, nothing stored, the clock unmoved.
    let r = api.post_events(&status_draft(2));
    r.assert_status(409);
    let e = r.error();
    assert_eq!(e.error, "clock_exhausted", "{e:?}");
    let out = home.client(&[
        "emit",
        "WPStatusChanged",
        "--payload",
        &status_draft(3)["payload"].to_string(),
    ]);
    out.assert_code(1);
    assert!(out.stderr.contains("2^53 - 1"), "{out}");
    // An envelope needs no new value and is still taken.
    assert_eq!(api.emit(&cli_envelope(&new_ulid(), 7)).lamport_clock, 7);

    assert_eq!(api.status().clock.value, MAX_LAMPORT);
    assert_eq!(assert_rows_valid(&home), vec![1, MAX_LAMPORT, 7]);
    assert_eq!(home.clock_value(), Some(MAX_LAMPORT));
    d.stop_gracefully();
    assert_eq!(home.clock_value(), Some(MAX_LAMPORT));
}

#[test]
fn a_server_frame_at_the_top_does_not_push_the_clock_past_it() {
    let home = TestHome::new();
    let server = SaasDev::start(home.root(), &[]);
    configure(&home, &server, 1, 300, true);
    let d = home.start_daemon();
    let api = d.api();
    api.emit(&status_draft(1));
    wait_delivered(&server, &home, 1, DRAIN_GUARD);
    wait_until("the daemon's WebSocket at the server", DRAIN_GUARD, || {
        let c = server.counters();
        if c.ws_connected >= 1 {
            Ok(())
        } else {
            Err(format!("{c:?}"))
        }
    });
    // Another node of the team posts an event at the top of the range; the
    // server broadcasts it to the daemon's socket.
    let token = server.access_token(USER, PASSWORD);
    server
        .post_batch(&token, &[foreign_envelope(TEAM, MAX_LAMPORT)])
        .assert_status(200);
    let clock = wait_until("the clock to take the remote value", DRAIN_GUARD, || {
        let v = api.status().clock.value;
        if v >= MAX_LAMPORT - 1 {
            Ok(v)
        } else {
            Err(format!("clock {v}"))
        }
    });
    assert_eq!(
        clock, MAX_LAMPORT,
        "receive() stops at the top of the range"
    );
    api.post_events(&status_draft(2)).assert_status(409);
    assert_rows_valid(&home);
    assert!(home.wait_clock_at_least(MAX_LAMPORT) == MAX_LAMPORT);
    d.stop_gracefully();
    assert_eq!(home.clock_value(), Some(MAX_LAMPORT));
}
