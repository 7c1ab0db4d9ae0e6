//! Issue 10, cost flat in the queue's size: the daemon keeps the depth itself
//! (counting only when another process wrote) and reads the clock's floor
//! from the stored high-water mark plus the rows above its scan mark, not
//! from every row. These tests check that nothing is lost by it: rows other
//! processes insert or delete are counted, values they queue are never
//! issued again, the cap holds for `POST /v1/dead/retry`, and a queue of a
//! million rows starts, reports and takes events.
//!
//! Real kitty-syncd on a temporary home; other processes are played by SQL
//! run on queue.db from the test, as the Python CLI writes it.

use kitty_tests::harness::*;
use serde_json::Value;

/// A row as another process writes it: a complete envelope with `lamport`.
fn insert_foreign(home: &TestHome, lamport: u64) -> String {
    let id = new_ulid();
    home.db().insert_like_cli(
        &id,
        "WPStatusChanged",
        &cli_envelope(&id, lamport).to_string(),
        1,
    );
    id
}

#[test]
fn the_depth_follows_rows_other_processes_insert_and_delete() {
    let home = TestHome::new();
    home.write_config(10);
    let d = home.start_daemon();
    let api = d.api();
    api.emit_batch(&status_drafts(6, 0));
    // Another process queues three rows behind the daemon's back.
    for l in 1..=3 {
        insert_foreign(&home, l);
    }
    assert_eq!(home.db().count(), 9);
    // 9 + 2 > 10: the daemon counted them before checking the cap.
    let r = api.post_events(&Value::Array(status_drafts(2, 10)));
    r.assert_status(507);
    assert_eq!(r.error().error, "queue_full");
    assert_eq!(home.db().count(), 9, "nothing changed");
    assert_eq!(api.emit_batch(&status_drafts(1, 20)).len(), 1, "9 + 1 fits");
    assert_eq!(api.status().queue.depth, 10);
    // It deletes five: room again, and the daemon knows it.
    assert_eq!(
        home.db()
            .execute("DELETE FROM queue WHERE id IN (SELECT id FROM queue ORDER BY id LIMIT 5)"),
        5
    );
    assert_eq!(api.emit_batch(&status_drafts(5, 30)).len(), 5);
    assert_eq!(home.db().count(), 10);
    api.post_events(&status_draft(99)).assert_status(507);
    d.stop_gracefully();
}

#[test]
fn values_queued_after_the_last_scan_are_never_issued_again() {
    let home = TestHome::new();
    let d = home.start_daemon();
    let api = d.api();
    api.emit_batch(&status_drafts(3, 0));
    // While it runs: a row above what it has seen.
    insert_foreign(&home, 500);
    let a = api.emit(&status_draft(7));
    assert!(a.lamport_clock > 500, "{a:?}");
    d.stop_gracefully();
    assert!(
        home.db().meta("clock_scanned_id").is_some(),
        "the scan mark is stored with the high-water mark"
    );

    // While it is stopped: a row above the stored scan mark, with clock.json
    // gone so that only queue.db can tell.
    insert_foreign(&home, 9_000);
    std::fs::remove_file(home.file("clock.json")).unwrap();
    let d = home.start_daemon();
    let api = d.api();
    assert!(api.status().clock.value >= 9_000);
    let b = api.emit(&status_draft(8));
    assert!(b.lamport_clock > 9_000, "{b:?}");
    d.stop_gracefully();

    // A scan mark that lies (beyond every id ever given, as after the table
    // was made anew) is not trusted: every row is read.
    home.db()
        .execute("UPDATE kitty_meta SET value = '99999999' WHERE key = 'clock_scanned_id'");
    home.db()
        .execute("UPDATE kitty_meta SET value = '0' WHERE key = 'clock_hwm'");
    insert_foreign(&home, 20_000);
    home.db()
        .execute("UPDATE kitty_meta SET value = '99999999' WHERE key = 'clock_scanned_id'");
    std::fs::remove_file(home.file("clock.json")).unwrap();
    let d = home.start_daemon();
    let c = d.api().emit(&status_draft(9));
    assert!(c.lamport_clock > 20_000, "{c:?}");
    d.stop_gracefully();
}

#[test]
fn requeueing_dead_letters_respects_the_cap() {
    let home = TestHome::new();
    home.write_config(3);
    let d = home.start_daemon();
    let api = d.api();
    api.emit_batch(&status_drafts(3, 0));
    // A dead letter, as five rejections leave it.
    let id = new_ulid();
    home.db().execute(&format!(
        "INSERT INTO dead_letter (event_id, event_type, data, timestamp, retry_count, error, died_at)
         VALUES ('{id}', 'WPStatusChanged', '{}', 1, 5, 'rejected', 1)",
        cli_envelope(&id, 1)
    ));
    let r = api.request("POST", "/v1/dead/retry", Some(b""));
    r.assert_status(507);
    assert_eq!(r.error().error, "queue_full");
    assert!(
        r.error().message.contains("max_queue_size"),
        "{:?}",
        r.error()
    );
    assert_eq!(home.db().count(), 3, "nothing changed");
    assert!(home.db().rows_with_event_id(&id).is_empty());

    // Room made: it goes back.
    home.write_config(4);
    eventually("the new cap", std::time::Duration::from_secs(10), || {
        (api.status().queue.max_queue_size == 4).then_some(())
    });
    let r = api.request("POST", "/v1/dead/retry", Some(b""));
    r.assert_status(200);
    let v: Value = r.json();
    assert_eq!(v["requeued"], 1, "{v}");
    assert_eq!(home.db().rows_with_event_id(&id).len(), 1);
    assert_eq!(api.status().queue.depth, 4);
    d.stop_gracefully();
}

#[test]
fn a_queue_of_a_million_rows_starts_reports_and_takes_events() {
    const N: u64 = 1_000_000;
    let home = TestHome::new();
    home.write("config.toml", "[sync]\nmax_queue_size = 1000002\n");
    // Made by a first start, then filled as another tool would, in one statement.
    let d = home.start_daemon();
    d.api().emit(&status_draft(1));
    d.stop_gracefully();
    let envelope = cli_envelope("ID", 7)
        .to_string()
        .replace("\"ID\"", "\"' || printf('%026d', n) || '\"");
    let filled = home.db().execute(&format!(
        "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < {})
         INSERT INTO queue (event_id, event_type, data, timestamp, retry_count)
         SELECT printf('%026d', n), 'WPStatusChanged', '{envelope}', 1, 0 FROM c",
        N - 1
    ));
    assert_eq!(filled, N - 1);
    home.db().execute(&format!(
        "UPDATE queue SET data = json_set(data, '$.lamport_clock', 123456) WHERE event_id = printf('%026d', {})",
        N - 1
    ));

    let d = home.start_daemon();
    let api = d.api();
    let status = api.status();
    assert_eq!(status.queue.depth, N);
    assert!(status.clock.value >= 123_456, "{:?}", status.clock);
    let a = api.emit(&status_draft(2));
    assert!(a.lamport_clock > 123_456, "{a:?}");
    let full = api.post_events(&Value::Array(status_drafts(2, 3)));
    full.assert_status(507);
    assert_eq!(api.emit_batch(&status_drafts(1, 5)).len(), 1);
    let out = home.client(&["status", "--json"]);
    let v: Value = out.json();
    assert_eq!(v["queue"]["depth"], N + 2, "{out}");
    d.stop_gracefully();
}
