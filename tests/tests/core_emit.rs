//! Issue 2, events in: drafts are stamped and committed as valid envelopes,
//! envelopes from other producers are relayed byte for byte, and concurrent
//! clients get distinct, gapless Lamport values.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use kitty_proto::api::Accepted;
use kitty_tests::harness::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn expected_node_id() -> String {
    let digest = Sha256::digest(format!("{}:{TEST_USER}", hostname()).as_bytes());
    digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()[..12]
        .to_owned()
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn emit_queues_one_valid_envelope_and_advances_the_clock() {
    let home = TestHome::new();
    let d = home.start_daemon();
    let api = d.api();

    let before = api.status();
    assert!(before.running);
    assert_eq!(before.queue.depth, 0);
    assert_eq!(before.clock.value, 0);

    let r = api.post_events(&status_draft(1));
    r.assert_status(202);
    assert_version_header(&r);
    let resp: kitty_proto::api::EmitResponse = r.json();
    assert_eq!(resp.status, "queued");
    assert_eq!(resp.version, kitty_proto::VERSION);
    let acc = resp.events[0].clone();
    assert_eq!(
        acc.lamport_clock, 1,
        "the first event of a fresh home gets 1"
    );
    assert!(!acc.duplicate);
    assert!(
        kitty_proto::rules::is_ulid(&acc.event_id),
        "event_id {}",
        acc.event_id
    );

    let rows = home.db().rows();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row.event_id, acc.event_id);
    assert_eq!(row.event_type, "WPStatusChanged");
    assert_eq!(row.retry_count, Some(0));
    assert!(
        (row.timestamp - now_secs()).abs() < 3600,
        "timestamp is epoch seconds: {}",
        row.timestamp
    );
    let env = assert_valid_envelope(&row.data);
    assert_eq!(env["event_id"], acc.event_id.as_str());
    assert_eq!(env["event_type"], "WPStatusChanged");
    assert_eq!(env["aggregate_id"], "WP01");
    assert_eq!(env["aggregate_type"], "WorkPackage");
    assert_eq!(env["lamport_clock"], 1);
    assert_eq!(
        env["team_slug"], "local",
        "no credentials → team_slug \"local\""
    );
    assert_eq!(env["causation_id"], Value::Null);
    assert_eq!(env["payload"]["changed_by"], "user", "default filled");
    assert_eq!(
        env["node_id"],
        expected_node_id().as_str(),
        "node_id = sha256(host:user)[..12]"
    );

    // The checkpoint is rewritten after every commit.
    assert!(home.wait_clock_at_least(1) >= 1);
    let clock = home.clock_json().unwrap();
    assert_eq!(clock["node_id"], env["node_id"]);
    assert!(clock["updated_at"].as_str().is_some_and(|s| !s.is_empty()));
    let text = home.clock_text().unwrap();
    assert!(
        text.contains("\n  \"value\": 1"),
        "pretty-printed with 2-space indent: {text:?}"
    );
    let mode = std::fs::metadata(home.file("clock.json"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "clock.json mode");
    assert!(
        home.tmp_leftovers().is_empty(),
        "{:?}",
        home.tmp_leftovers()
    );

    let after = api.status();
    assert_eq!(after.queue.depth, 1);
    assert_eq!(after.clock.value, 1);
    // No credentials in this home: the uplink waits for a login.
    assert_eq!(after.connection, "AuthRequired");

    let acc2 = api.emit(&status_draft(2));
    assert_eq!(acc2.lamport_clock, 2);
    home.wait_clock_at_least(2);
    d.stop_gracefully();
    home.assert_clock_covers(2, "clock.json written at shutdown");
    assert!(
        home.tmp_leftovers().is_empty(),
        "{:?}",
        home.tmp_leftovers()
    );
}

#[test]
fn every_028_type_is_stamped_with_its_derived_aggregate() {
    let home = TestHome::new();
    let d = home.start_daemon();
    let samples = sample_drafts();
    let drafts: Vec<Value> = samples.iter().map(|(d, _, _)| d.clone()).collect();
    let accs = d.api().emit_batch(&drafts);
    let lamports: Vec<u64> = accs.iter().map(|a| a.lamport_clock).collect();
    assert_eq!(
        lamports,
        (1..=drafts.len() as u64).collect::<Vec<_>>(),
        "array order = clock order"
    );

    let rows = home.db().rows();
    assert_eq!(rows.len(), samples.len());
    for ((draft, agg_id, agg_type), acc) in samples.iter().zip(&accs) {
        let row = rows
            .iter()
            .find(|r| r.event_id == acc.event_id)
            .expect("row for each answer");
        let env = assert_valid_envelope(&row.data);
        assert_eq!(env["event_type"], draft["event_type"]);
        assert_eq!(row.event_type, draft["event_type"].as_str().unwrap());
        assert_eq!(env["aggregate_id"], *agg_id, "{draft}");
        assert_eq!(env["aggregate_type"], *agg_type, "{draft}");
        assert_eq!(env["lamport_clock"], acc.lamport_clock);
        for (k, v) in draft["payload"].as_object().unwrap() {
            assert_eq!(&env["payload"][k], v, "payload field {k} kept");
        }
        match draft["event_type"].as_str().unwrap() {
            "WPCreated" => assert_eq!(env["payload"]["dependencies"], json!([])),
            "WPAssigned" => assert_eq!(env["payload"]["retry_count"], 0),
            "HistoryAdded" => assert_eq!(env["payload"]["author"], "user"),
            _ => {}
        }
    }
}

#[test]
fn team_slug_comes_from_the_credentials_file() {
    let home = TestHome::new();
    home.write_credentials_team("acme");
    let d = home.start_daemon();
    d.api().emit(&status_draft(1));
    let env = home.db().rows()[0].envelope();
    assert_eq!(env["team_slug"], "acme");
}

#[test]
fn optional_draft_fields_are_carried_into_the_envelope() {
    let home = TestHome::new();
    let d = home.start_daemon();
    let (event_id, cause) = (new_ulid(), new_ulid());
    let draft = json!({
        "event_type": "HistoryAdded",
        "aggregate_id": "WP09",
        "aggregate_type": "WorkPackage",
        "payload": {"wp_id": "WP09", "entry_type": "comment", "entry_content": "hi", "author": "bob"},
        "causation_id": cause,
        "project_uuid": "6f1c2d3e-0000-4000-8000-000000000001",
        "project_slug": "demo",
        "event_id": event_id,
    });
    let acc = d.api().emit(&draft);
    assert_eq!(acc.event_id, event_id, "a producer-chosen event_id is kept");
    let env = assert_valid_envelope(&home.db().rows()[0].data);
    assert_eq!(env["event_id"], event_id.as_str());
    assert_eq!(env["causation_id"], cause.as_str());
    assert_eq!(env["project_uuid"], "6f1c2d3e-0000-4000-8000-000000000001");
    assert_eq!(env["project_slug"], "demo");
    assert_eq!(env["payload"]["author"], "bob");
}

#[test]
fn resending_an_event_id_leaves_one_row() {
    let home = TestHome::new();
    let d = home.start_daemon();
    let api = d.api();
    let id = new_ulid();
    let mut draft = status_draft(3);
    draft["event_id"] = json!(id);
    let first = api.emit(&draft);
    assert!(!first.duplicate);
    let again = api.emit(&draft);
    assert_eq!(again.event_id, id);
    assert!(again.duplicate, "a re-sent event_id answers duplicate:true");
    assert_eq!(home.db().rows_with_event_id(&id).len(), 1);
    assert_eq!(home.db().count(), 1);
    assert_eq!(
        home.db().rows()[0].lamport(),
        first.lamport_clock,
        "the existing row is kept as it was"
    );

    // Same for a relayed envelope.
    let eid = new_ulid();
    let env = cli_envelope(&eid, 3);
    assert!(!api.emit(&env).duplicate);
    assert!(api.emit(&env).duplicate);
    assert_eq!(home.db().rows_with_event_id(&eid).len(), 1);
    assert_eq!(api.status().queue.depth, 2);
}

#[test]
fn a_relayed_envelope_is_stored_byte_for_byte_and_moves_the_clock_through_receive() {
    let home = TestHome::new();
    let d = home.start_daemon();
    let api = d.api();
    let id = new_ulid();
    // Odd spacing, unusual key order, an unknown event type and a later-CLI
    // field: all kept as they are.
    let raw = format!(
        "{{ \"lamport_clock\" : 500,\"event_id\":\"{id}\", \"event_type\": \"SomethingLater\", \
         \"aggregate_id\":\"WP01\",\"aggregate_type\":\"WorkPackage\",\"payload\":{{\"x\": [1, 2.50, \"é\"]}},\
         \"node_id\":\"abcdefabcdef\",\"causation_id\":null,\"timestamp\":\"2026-02-04T13:47:09.123456+00:00\",\
         \"team_slug\":\"acme\",\"project_uuid\":null,\"project_slug\":\"p\",\"git_branch\":\"main\",\
         \"schema_version\":\"2\" }}"
    );
    let r = api.post_events_raw(raw.as_bytes());
    r.assert_status(202);
    let resp: kitty_proto::api::EmitResponse = r.json();
    assert_eq!(resp.events[0].event_id, id);
    assert_eq!(
        resp.events[0].lamport_clock, 500,
        "a relayed envelope keeps its own value"
    );
    let rows = home.db().rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].data, raw, "stored byte for byte");
    assert_eq!(rows[0].event_type, "SomethingLater");

    // receive(500) = max(0, 500) + 1 = 501; the next tick is 502.
    assert_eq!(
        api.status().clock.value,
        501,
        "receive(): local = max(local, remote) + 1"
    );
    let next = api.emit(&status_draft(1));
    assert_eq!(next.lamport_clock, 502);

    // Inside an array, each element's own text is kept.
    let (a, b) = (new_ulid(), new_ulid());
    let ea = cli_envelope(&a, 7).to_string().replace(",", " ,  ");
    let eb = serde_json::to_string_pretty(&cli_envelope(&b, 9)).unwrap();
    let body = format!("[ {ea} ,\n{eb}\n]");
    let r = api.post_events_raw(body.as_bytes());
    r.assert_status(202);
    assert_eq!(home.db().rows_with_event_id(&a)[0].data, ea);
    assert_eq!(home.db().rows_with_event_id(&b)[0].data, eb);
    // Older remote values do not move the clock back.
    assert!(api.emit(&status_draft(1)).lamport_clock > 502);
}

#[test]
fn four_concurrent_clients_get_1000_distinct_gapless_lamport_values() {
    let home = TestHome::new();
    let d = home.start_daemon();
    let api = Arc::new(d.api());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let api = Arc::clone(&api);
            std::thread::spawn(move || -> Vec<Accepted> {
                (0..250)
                    .map(|i| api.emit(&status_draft(t * 25 + i % 25)))
                    .collect()
            })
        })
        .collect();
    let acks: Vec<Accepted> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert_eq!(acks.len(), 1000);

    let mut answered: Vec<u64> = acks.iter().map(|a| a.lamport_clock).collect();
    answered.sort_unstable();
    assert_eq!(
        answered,
        (1..=1000).collect::<Vec<_>>(),
        "answers: 1..=1000, each once"
    );
    let ids: HashSet<&str> = acks.iter().map(|a| a.event_id.as_str()).collect();
    assert_eq!(ids.len(), 1000, "distinct event_ids");

    let rows = home.db().rows();
    assert_eq!(rows.len(), 1000);
    let mut stored: Vec<u64> = rows.iter().map(|r| r.lamport()).collect();
    stored.sort_unstable();
    assert_eq!(
        stored,
        (1..=1000).collect::<Vec<_>>(),
        "queue.db: 1..=1000, each once"
    );
    for a in &acks {
        let row = rows
            .iter()
            .find(|r| r.event_id == a.event_id)
            .expect("every ack is a row");
        assert_eq!(row.lamport(), a.lamport_clock);
    }
    let st = api.status();
    assert_eq!(st.queue.depth, 1000);
    assert_eq!(st.clock.value, 1000);
    home.wait_clock_at_least(1000);
}
