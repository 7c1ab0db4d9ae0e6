//! Issue 11: `kitty-sync tail` and `GET /v1/feed`. Events committed, confirmed
//! over the WebSocket, rejected and set aside, and connection changes appear
//! as they happen while the daemon drains to a real kitty-saas-dev; a reader
//! that never reads holds up no commit and is told what it missed; 50 tails
//! at once each see every event; `--since-start` replays the history.
//!
//! Real kitty-syncd, kitty-sync and kitty-saas-dev; every wait is bounded and
//! nothing asserts on elapsed time.

use std::collections::HashSet;

use kitty_tests::harness::follow::FeedConn;
use kitty_tests::harness::*;
use kitty_tests::uplink_harness::*;
use serde_json::{Value, json};

fn kind(v: &Value, k: &str) -> bool {
    v["kind"] == k
}

#[test]
fn tail_shows_commits_confirmations_rejections_and_states_while_draining() {
    let home = TestHome::new();
    let server = SaasDev::start(home.root(), &["--ack"]);
    configure(&home, &server, 0, 1, true);
    // A row another tool wrote that the server refuses (see uplink_dead.rs).
    let bad_id = new_ulid();
    let mut bad = foreign_envelope(TEAM, 3);
    bad["event_id"] = bad_id.as_str().into();
    bad["aggregate_type"] = "thing".into();
    home.db().create_cli_schema(false);
    home.db()
        .insert_like_cli(&bad_id, "WPStatusChanged", &bad.to_string(), 1);

    let d = home.start_daemon();
    let mut json_tail = home.tail(&["--json"]);
    let hello = json_tail.wait_json("hello", HANG_GUARD, |v| kind(v, "hello"));
    assert_eq!(hello["protocol"], kitty_proto::api::PROTOCOL);
    let mut human = home.tail(&[]);
    d.api().wait_state("Connected", DRAIN_GUARD);

    let ids: Vec<String> = (1..=3)
        .map(|n| {
            let out = home.client_emit(
                "WPStatusChanged",
                &json!({"wp_id": format!("WP{n:02}"), "previous_status": "planned", "new_status": "doing"}),
            );
            out["event_id"].as_str().unwrap().to_owned()
        })
        .collect();
    for (n, id) in ids.iter().enumerate() {
        let c = json_tail.wait_json("a commit", HANG_GUARD, |v| {
            kind(v, "committed") && v["event_id"] == id.as_str()
        });
        assert_eq!(c["event_type"], "WPStatusChanged");
        assert_eq!(c["aggregate_id"], format!("WP{:02}", n + 1));
        assert_eq!(c["path"], "daemon");
        assert!(c["lamport_clock"].as_u64().is_some());
        json_tail.wait_json("its ack", DRAIN_GUARD, |v| {
            kind(v, "confirmed") && v["event_id"] == id.as_str() && v["via"] == "websocket"
        });
        human.wait_line("the commit, readable", HANG_GUARD, |l| {
            l.contains(" committed ")
                && l.contains(id.as_str())
                && l.contains("WPStatusChanged WP0")
        });
        human.wait_line("the ack, readable", DRAIN_GUARD, |l| {
            l.contains(" confirmed ")
                && l.contains(id.as_str())
                && l.contains("accepted via websocket")
        });
    }

    let rejected = json_tail.wait_json("a rejection", DRAIN_GUARD, |v| {
        kind(v, "rejected") && v["event_id"] == bad_id.as_str()
    });
    // Both paths carry it: the batch at once, and the WebSocket, whose server
    // (`--ack`) now answers a refused envelope with a `rejected` ack; which is
    // first is a race.
    assert!(
        rejected["via"] == "batch" || rejected["via"] == "websocket",
        "{rejected}"
    );
    assert!(
        rejected["error"]
            .as_str()
            .unwrap()
            .contains("aggregate_type"),
        "{rejected}"
    );
    json_tail.wait_json("the dead letter", DRAIN_GUARD, |v| {
        kind(v, "dead") && v["event_id"] == bad_id.as_str()
    });
    human.wait_line("the dead letter, readable", HANG_GUARD, |l| {
        l.contains(" dead ") && l.contains(bad_id.as_str())
    });

    // The server goes away: the state change shows.
    server.kill9();
    let st = json_tail.wait_json("a state change", DRAIN_GUARD, |v| {
        kind(v, "state") && v["state"] != "Connected"
    });
    assert!(st["error"].is_string(), "{st}");
    human.wait_line("the state change, readable", HANG_GUARD, |l| {
        l.contains(" connection ") && !l.contains("connection Connected")
    });

    // Every line has its time; each committed event shows up once.
    let lines = json_tail.seen_json();
    assert!(lines.iter().all(|v| v["at"].is_string()));
    let commits: Vec<&Value> = lines.iter().filter(|v| kind(v, "committed")).collect();
    assert_eq!(commits.len(), 3, "{lines:?}");

    d.stop_gracefully();
    assert_eq!(json_tail.wait_exit().code(), Some(0));
    assert!(json_tail.seen_json().iter().any(|v| kind(v, "stopping")));
    assert_eq!(human.wait_exit().code(), Some(0), "{}", human.stderr());
    assert!(
        human.stderr().contains("kitty-syncd stopped"),
        "{}",
        human.stderr()
    );
}

#[test]
fn a_reader_that_never_reads_holds_up_no_commit_and_is_told_what_it_missed() {
    let home = TestHome::new();
    home.write_config(100_000);
    let d = home.start_daemon();
    let api = d.api();
    let mut stuck = FeedConn::open(&home.socket(), "/v1/feed");
    let head = stuck.head();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("content-type: application/x-ndjson"),
        "{head}"
    );
    assert!(head.contains("transfer-encoding: chunked"), "{head}");

    // Far more than the ring and the socket buffers hold; the stuck reader
    // reads nothing meanwhile. Every request must still be answered.
    const ROUNDS: u32 = 20;
    for r in 0..ROUNDS {
        let drafts: Vec<Value> = (0..1000).map(|i| status_draft(r * 1000 + i)).collect();
        api.emit_batch(&drafts);
    }
    assert_eq!(home.db().count(), i64::from(ROUNDS) * 1000);

    // Now it reads: it is told it fell behind, and it gets live lines again.
    let missed = stuck.wait_for("a missed line", |v| kind(v, "missed"));
    assert!(missed["missed"].as_u64().unwrap() > 0, "{missed}");
    let last = api.emit(&status_draft(1));
    stuck.wait_for("the newest commit", |v| {
        kind(v, "committed") && v["event_id"] == last.event_id.as_str()
    });
    d.stop_gracefully();
}

#[test]
fn fifty_tails_at_once_each_see_every_event_and_end_with_the_daemon() {
    const TAILS: usize = 50;
    const EVENTS: u32 = 200;
    let home = TestHome::new();
    let d = home.start_daemon();
    let mut tails: Vec<_> = (0..TAILS).map(|_| home.tail(&["--json"])).collect();
    for t in &mut tails {
        t.wait_json("hello", HANG_GUARD, |v| kind(v, "hello"));
    }
    let api = d.api();
    let mut ids = HashSet::new();
    for r in 0..EVENTS / 20 {
        let drafts: Vec<Value> = (0..20).map(|i| status_draft(r * 20 + i)).collect();
        ids.extend(api.emit_batch(&drafts).into_iter().map(|a| a.event_id));
    }
    let last = ids.iter().max().unwrap().clone();
    d.stop_gracefully();
    for (n, t) in tails.iter_mut().enumerate() {
        assert_eq!(t.wait_exit().code(), Some(0), "tail {n}: {}", t.stderr());
        let lines = t.seen_json();
        let seen: HashSet<String> = lines
            .iter()
            .filter(|v| kind(v, "committed"))
            .map(|v| v["event_id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(seen, ids, "tail {n} missed events (last {last})");
        assert!(!lines.iter().any(|v| kind(v, "missed")), "tail {n}");
        assert!(kind(lines.last().unwrap(), "stopping"), "tail {n}");
    }
}

#[test]
fn since_start_replays_what_came_before_the_tail() {
    let home = TestHome::new();
    let d = home.start_daemon();
    let api = d.api();
    let before: Vec<String> = (0..3)
        .map(|i| api.emit(&status_draft(i)).event_id)
        .collect();
    let mut replay = home.tail(&["--json", "--since-start"]);
    let mut live_only = home.tail(&["--json"]);
    for t in [&mut replay, &mut live_only] {
        t.wait_json("hello", HANG_GUARD, |v| kind(v, "hello"));
    }
    let after = api.emit(&status_draft(9)).event_id;
    for t in [&mut replay, &mut live_only] {
        t.wait_json("the live commit", HANG_GUARD, |v| {
            kind(v, "committed") && v["event_id"] == after.as_str()
        });
    }
    let committed = |t: &kitty_tests::harness::follow::Tail| -> Vec<String> {
        t.seen_json()
            .iter()
            .filter(|v| kind(v, "committed"))
            .map(|v| v["event_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let mut expected = before.clone();
    expected.push(after.clone());
    assert_eq!(committed(&replay), expected, "history, then live, in order");
    assert_eq!(committed(&live_only), vec![after]);
    assert!(kind(&replay.seen_json()[0], "hello"));

    let bad = home.api().get("/v1/feed?since_start=maybe");
    bad.assert_status(400);
    d.stop_gracefully();
}

/// A connection lives at most a minute (accept.rs): the daemon ends each feed
/// response before that with `reconnect`, and `kitty-sync tail` asks again
/// from the last seq it read. Across it, no event is lost and none repeats.
#[test]
fn a_tail_outlives_the_connection_lifetime_without_a_gap() {
    let home = TestHome::new();
    let d = home.start_daemon();
    let api = d.api();
    let mut tail = home.tail(&["--json"]);
    tail.wait_json("hello", HANG_GUARD, |v| kind(v, "hello"));
    let mut raw = FeedConn::open(&home.socket(), "/v1/feed");
    let mut ids = Vec::new();
    let started = std::time::Instant::now();
    // An event every second or so, until well past a connection's lifetime.
    while started.elapsed() < std::time::Duration::from_secs(70) {
        ids.push(api.emit(&status_draft(ids.len() as u32)).event_id);
        std::thread::sleep(std::time::Duration::from_millis(900));
    }
    // The raw reader saw its response end with `reconnect`.
    raw.wait_for("the end of the response", |v| kind(v, "reconnect"));
    let last = ids.last().unwrap().clone();
    tail.wait_json("the last event", HANG_GUARD, |v| {
        kind(v, "committed") && v["event_id"] == last.as_str()
    });
    let lines = tail.seen_json();
    let seen: Vec<String> = lines
        .iter()
        .filter(|v| kind(v, "committed"))
        .map(|v| v["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen, ids, "every event once, in order");
    let seqs: Vec<u64> = lines.iter().filter_map(|v| v["seq"].as_u64()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    assert_eq!(lines.iter().filter(|v| kind(v, "hello")).count(), 1);
    assert!(
        !lines
            .iter()
            .any(|v| kind(v, "reconnect") || kind(v, "missed"))
    );
    d.stop_gracefully();
    assert_eq!(tail.wait_exit().code(), Some(0), "{}", tail.stderr());
}
