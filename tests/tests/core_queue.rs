//! Issue 2, the queue: the cap, rows written by other processes, the later
//! `coalesce_key` column, and the queue view.

use kitty_tests::harness::*;
use serde_json::Value;

#[test]
fn the_default_cap_is_10000_and_at_the_cap_new_events_are_refused() {
    let home = TestHome::new();
    let d = home.start_daemon();
    let api = d.api();
    assert_eq!(
        api.status().queue.max_queue_size,
        10_000,
        "default max_queue_size"
    );
    for k in 0..10 {
        let accs = api.emit_batch(&status_drafts(1000, k));
        assert_eq!(accs.len(), 1000);
    }
    assert_eq!(api.status().queue.depth, 10_000);
    let before = home.db().rows();
    assert_eq!(before.len(), 10_000);
    let clock_before = api.status().clock.value;

    let r = api.post_events(&status_draft(1));
    r.assert_status(507);
    assert_version_header(&r);
    let e = r.error();
    assert_eq!(e.error, "queue_full");
    assert!(!e.message.is_empty());
    let r = api.post_events(&Value::Array(status_drafts(2, 0)));
    r.assert_status(507);

    assert_eq!(home.db().rows(), before, "existing rows untouched");
    let st = api.status();
    assert_eq!(st.queue.depth, 10_000);
    assert_eq!(
        st.clock.value, clock_before,
        "a refused request does not move the clock"
    );

    // Another process (or delivery) removes rows: accepted again.
    assert_eq!(
        home.db().execute(
            "DELETE FROM queue WHERE id IN (SELECT id FROM queue ORDER BY timestamp, id LIMIT 10)"
        ),
        10
    );
    let a = api.emit(&status_draft(1));
    assert!(a.lamport_clock > clock_before);
    assert_eq!(home.db().count(), 9_991);
    assert_eq!(api.status().queue.depth, 9_991);
}

#[test]
fn a_configured_cap_counts_the_whole_request() {
    let home = TestHome::new();
    home.write_config(5);
    let d = home.start_daemon();
    let api = d.api();
    assert_eq!(api.status().queue.max_queue_size, 5);
    api.emit_batch(&status_drafts(3, 0));
    // 3 + 3 > 5: refused as a whole.
    let r = api.post_events(&Value::Array(status_drafts(3, 3)));
    r.assert_status(507);
    assert_eq!(r.error().error, "queue_full");
    assert_eq!(home.db().count(), 3, "all or nothing");
    api.emit_batch(&status_drafts(2, 3));
    assert_eq!(home.db().count(), 5);
    api.post_events(&status_draft(9)).assert_status(507);

    // The client says so with exit 75 and queues nothing.
    let out = home.client(&[
        "emit",
        "WPStatusChanged",
        "--payload",
        r#"{"wp_id":"WP01","previous_status":"planned","new_status":"doing"}"#,
    ]);
    out.assert_code(EXIT_TEMPFAIL);
    assert!(
        !out.stderr.trim().is_empty(),
        "the client explains the refusal:\n{out}"
    );
    assert_eq!(home.db().count(), 5);
    assert!(
        home.spool_files().is_empty(),
        "a refused event is not spooled"
    );
}

#[test]
fn a_row_inserted_by_another_connection_is_seen() {
    let home = TestHome::new();
    let d = home.start_daemon();
    let api = d.api();
    let mine = api.emit(&status_draft(1));
    assert_eq!(api.status().queue.depth, 1);

    // As the Python CLI does it, with an older enqueue time so it drains first.
    let id = new_ulid();
    let env = cli_envelope(&id, 7).to_string();
    home.db()
        .insert_like_cli(&id, "WPStatusChanged", &env, 1_770_000_000);

    let st = api.status();
    assert_eq!(st.queue.depth, 2, "status sees the other process's row");
    let view = api.queue(10);
    assert_eq!(view.depth, 2);
    assert_eq!(view.events.len(), 2);
    assert_eq!(
        view.events[0].event_id, id,
        "oldest first (ORDER BY timestamp, id)"
    );
    assert_eq!(view.events[0].timestamp, 1_770_000_000);
    assert_eq!(view.events[0].retry_count, 0);
    assert_eq!(view.events[0].event_type, "WPStatusChanged");
    assert_eq!(
        view.events[0].envelope,
        serde_json::from_str::<Value>(&env).unwrap()
    );
    assert_eq!(view.events[1].event_id, mine.event_id);
    assert_eq!(view.events[1].envelope["lamport_clock"], mine.lamport_clock);

    // And the daemon keeps queueing beside it.
    api.emit(&status_draft(2));
    assert_eq!(home.db().count(), 3);
    assert_eq!(api.status().queue.depth, 3);

    let out = home.daemon_cmd(&["status", "--json"]);
    // Queued and no session (staleness.rs): running, but delivery is stuck.
    out.assert_code(EXIT_STUCK);
    let st: kitty_proto::api::Status = out.json();
    assert_eq!(st.queue.depth, 3);
}

#[test]
fn a_queue_db_with_the_later_coalesce_key_column_works() {
    let home = TestHome::new();
    home.db().create_cli_schema(true);
    let id = new_ulid();
    home.db().insert_like_cli(
        &id,
        "WPStatusChanged",
        &cli_envelope(&id, 3).to_string(),
        1_770_000_000,
    );
    home.db().execute(&format!(
        "UPDATE queue SET coalesce_key = 'wp:WP07' WHERE event_id = '{id}'"
    ));

    let d = home.start_daemon();
    let api = d.api();
    assert_eq!(api.status().queue.depth, 1);
    let a = api.emit(&status_draft(1));
    assert!(a.lamport_clock > 3, "resumes above the queue's rows");
    let rows = home.db().rows();
    assert_eq!(rows.len(), 2);
    assert_valid_envelope(&rows[1].data);
    let cols = home.db().columns("queue");
    assert!(
        cols.iter().any(|c| c == "coalesce_key"),
        "the column is kept: {cols:?}"
    );
    let view = api.queue(10);
    assert_eq!(view.events.len(), 2);
    assert_eq!(view.events[0].event_id, id);
}

#[test]
fn the_queue_view_is_oldest_first_and_limited() {
    let home = TestHome::new();
    let d = home.start_daemon();
    let api = d.api();
    let accs = api.emit_batch(&status_drafts(5, 0));
    let view = api.queue(3);
    assert_eq!(view.depth, 5);
    assert_eq!(view.events.len(), 3);
    let ids: Vec<&str> = view.events.iter().map(|e| e.event_id.as_str()).collect();
    let first3: Vec<&str> = accs.iter().take(3).map(|a| a.event_id.as_str()).collect();
    assert_eq!(ids, first3);
    for e in &view.events {
        assert_eq!(e.retry_count, 0);
        assert_valid_envelope(&e.envelope.to_string());
    }
    for bad in ["abc", "-1", "1.5"] {
        let r = api.get(&format!("/v1/queue?limit={bad}"));
        assert_eq!(r.status, 400, "limit={bad}: {}", r.text());
        assert_version_header(&r);
        r.error();
    }
}
