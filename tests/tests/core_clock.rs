//! Issue 2, the clock: no Lamport value is ever issued twice, across `kill -9`,
//! a corrupt, deleted or stale clock.json, and a queue written by other tools.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use kitty_proto::api::Accepted;
use kitty_tests::harness::*;
use serde_json::Value;

/// Runs a daemon on `home`, emits `n` events, stops it gracefully; returns the
/// highest value issued.
fn emit_and_stop(home: &TestHome, n: u32) -> u64 {
    let d = home.start_daemon();
    let api = d.api();
    let mut last = 0;
    for i in 0..n {
        let a = api.emit(&status_draft(i));
        assert!(a.lamport_clock > last);
        last = a.lamport_clock;
    }
    d.stop_gracefully();
    home.assert_clock_covers(last, "clock.json written at shutdown");
    last
}

/// Starts a daemon and asserts the next value issued is above `floor`, and
/// that the status and the checkpoint are too.
fn assert_resumes_above(home: &TestHome, floor: u64, why: &str) -> u64 {
    let d = home.start_daemon();
    let api = d.api();
    let st = api.status();
    assert!(
        st.clock.value >= floor,
        "{why}: status clock {} < {floor}",
        st.clock.value
    );
    let next = api.emit(&status_draft(1)).lamport_clock;
    assert!(
        next > floor,
        "{why}: issued {next}, but {floor} was already issued"
    );
    let all: Vec<u64> = home.db().rows().iter().map(|r| r.lamport()).collect();
    assert_eq!(
        all.iter().filter(|&&v| v == next).count(),
        1,
        "{why}: {next} issued twice: {all:?}"
    );
    assert!(
        home.wait_clock_at_least(next) >= next,
        "{why}: clock.json recovered"
    );
    d.stop_gracefully();
    next
}

#[test]
fn corrupt_clock_json_is_recovered_upwards() {
    let home = TestHome::new();
    let last = emit_and_stop(&home, 5);
    home.write("clock.json", "{\"value\": 4, \"node_");
    assert_resumes_above(&home, last, "corrupt clock.json");
    let clock = home.clock_json().expect("clock.json valid again");
    assert!(clock["value"].as_u64().unwrap() > last);
}

#[test]
fn clock_json_of_the_wrong_shape_is_recovered_upwards() {
    let home = TestHome::new();
    let last = emit_and_stop(&home, 5);
    home.write("clock.json", "{\"value\": \"five\", \"node_id\": 3}");
    assert_resumes_above(&home, last, "clock.json with a string value");
}

#[test]
fn deleted_clock_json_is_recovered_upwards() {
    let home = TestHome::new();
    let last = emit_and_stop(&home, 5);
    std::fs::remove_file(home.file("clock.json")).unwrap();
    assert_resumes_above(&home, last, "deleted clock.json");
}

#[test]
fn clock_json_behind_the_queue_is_recovered_upwards() {
    let home = TestHome::new();
    let last = emit_and_stop(&home, 5);
    let node = home.clock_json().unwrap()["node_id"]
        .as_str()
        .unwrap()
        .to_owned();
    home.write_clock(2, &node);
    assert_resumes_above(&home, last, "clock.json behind the queue");
}

#[test]
fn the_queue_alone_is_enough_to_recover() {
    // clock.json gone and our high-water mark gone: the largest lamport_clock
    // in the queue still bounds what was issued.
    let home = TestHome::new();
    let last = emit_and_stop(&home, 5);
    std::fs::remove_file(home.file("clock.json")).unwrap();
    home.db().execute("DELETE FROM kitty_meta");
    assert_resumes_above(&home, last, "only the queue's rows remain");
}

#[test]
fn the_high_water_mark_alone_is_enough_to_recover() {
    // Every row delivered (deleted) and clock.json gone: the high-water mark
    // stored with the rows still bounds what was issued.
    let home = TestHome::new();
    let last = emit_and_stop(&home, 5);
    let hwm = home
        .db()
        .meta("clock_hwm")
        .expect("kitty_meta clock_hwm is written");
    assert_eq!(
        hwm.parse::<u64>().ok(),
        Some(last),
        "clock_hwm = highest issued"
    );
    home.db().execute("DELETE FROM queue");
    std::fs::remove_file(home.file("clock.json")).unwrap();
    assert_resumes_above(&home, last, "empty queue, no clock.json");
}

#[test]
fn clock_json_ahead_wins_and_its_node_id_is_kept() {
    let home = TestHome::new();
    home.write_clock(100, "abcdefabcdef");
    let d = home.start_daemon();
    let a = d.api().emit(&status_draft(1));
    assert_eq!(a.lamport_clock, 101, "tick() = value + 1");
    let env = home.db().rows()[0].envelope();
    assert_eq!(env["node_id"], "abcdefabcdef", "a stored node_id wins");
    d.stop_gracefully();
    assert_eq!(home.clock_json().unwrap()["node_id"], "abcdefabcdef");
    home.assert_clock_covers(101, "the daemon's value above the CLI's");
}

#[test]
fn a_home_written_by_the_python_cli_resumes_above_its_queue() {
    // The CLI created queue.db, queued an event with clock 40, and left a
    // clock.json at 10 (another CLI process ticked privately).
    let home = TestHome::new();
    home.db().create_cli_schema(false);
    let id = new_ulid();
    home.db().insert_like_cli(
        &id,
        "WPStatusChanged",
        &cli_envelope(&id, 40).to_string(),
        1_770_000_000,
    );
    home.write_clock(10, "0123456789ab");
    assert_resumes_above(&home, 40, "queue ahead of clock.json from the start");
}

#[test]
fn kill_9_after_acknowledged_emits_loses_nothing_and_never_repeats() {
    let home = TestHome::new();
    let d = home.start_daemon();
    let api = d.api();
    let acked: Arc<Mutex<Vec<Accepted>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4u32)
        .map(|t| {
            let (api, acked, stop) = (api.clone(), Arc::clone(&acked), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut i = 0u32;
                while !stop.load(Ordering::SeqCst) {
                    // Mix single events and small arrays.
                    let body = if i.is_multiple_of(3) {
                        Value::Array((0..5).map(|k| status_draft(t * 20 + k)).collect())
                    } else {
                        status_draft(t * 20 + i % 20)
                    };
                    i += 1;
                    match api.try_request("POST", "/v1/events", Some(body.to_string().as_bytes())) {
                        Ok(r) if r.status == 202 => {
                            let resp: kitty_proto::api::EmitResponse = r.json();
                            acked.lock().unwrap().extend(resp.events);
                        }
                        // The daemon died mid-request: not acknowledged.
                        _ => break,
                    }
                }
            })
        })
        .collect();
    eventually("400 acknowledged events", HANG_GUARD, || {
        (acked.lock().unwrap().len() >= 400).then_some(())
    });
    d.kill9(); // while requests are still in flight
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let max_acked = acked.iter().map(|a| a.lamport_clock).max().unwrap();

    // Restart over the stale socket.
    let d = home.start_daemon();
    let api = d.api();
    let rows = home.db().rows();
    for a in &acked {
        let found = rows.iter().find(|r| r.event_id == a.event_id);
        let row =
            found.unwrap_or_else(|| panic!("acknowledged event {} lost after kill -9", a.event_id));
        assert_eq!(row.lamport(), a.lamport_clock);
    }
    let mut values: Vec<u64> = rows.iter().map(|r| r.lamport()).collect();
    values.sort_unstable();
    let n = values.len();
    values.dedup();
    assert_eq!(values.len(), n, "no lamport value stored twice");
    let max_issued = values.last().copied().unwrap().max(max_acked);

    let next = api.emit(&status_draft(1)).lamport_clock;
    assert!(
        next > max_issued,
        "after kill -9 the daemon issued {next}, but {max_issued} was issued before"
    );
    assert_eq!(api.status().queue.depth as usize, rows.len() + 1);
}

#[test]
fn sigint_also_exits_cleanly_and_checkpoints() {
    let home = TestHome::new();
    let mut d = home.start_daemon();
    for i in 0..3 {
        d.api().emit(&status_draft(i));
    }
    d.signal(libc::SIGINT);
    let st = d.wait_exit();
    assert_eq!(st.code(), Some(0), "SIGINT → exit 0:\n{}", d.log());
    home.assert_clock_covers(3, "checkpointed at SIGINT");
    assert!(home.tmp_leftovers().is_empty());
}
