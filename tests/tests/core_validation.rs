//! Issue 2, rejections: every invalid request gets the right status, a JSON
//! error naming the field and the rule, and stores nothing and leaves the clock
//! where it was.

use kitty_tests::harness::*;
use serde_json::{Value, json};

/// A running daemon and where its queue and clock stood before the rejections.
struct Check<'a> {
    home: &'a TestHome,
    api: &'a Api,
    depth: u64,
    clock: u64,
    rows: usize,
}

impl<'a> Check<'a> {
    fn new(home: &'a TestHome, api: &'a Api) -> Self {
        let st = api.status();
        Self {
            home,
            api,
            depth: st.queue.depth,
            clock: st.clock.value,
            rows: home.db().count() as usize,
        }
    }

    #[track_caller]
    fn assert_unchanged(&self, case: &str) {
        let st = self.api.status();
        assert_eq!(st.queue.depth, self.depth, "{case}: queue depth changed");
        assert_eq!(st.clock.value, self.clock, "{case}: the clock moved");
        assert_eq!(
            self.home.db().count() as usize,
            self.rows,
            "{case}: rows changed"
        );
    }

    /// Sends `body`, expects `status`, `code` and (when given) `field`/`index`,
    /// then checks that nothing changed.
    #[track_caller]
    fn reject(
        &self,
        case: &str,
        body: &[u8],
        status: u16,
        code: &str,
        field: Option<&str>,
        index: Option<usize>,
    ) {
        let r = self.api.post_events_raw(body);
        assert_eq!(r.status, status, "{case}: body {}", r.text());
        assert_version_header(&r);
        let e = r.error();
        assert_eq!(e.error, code, "{case}: {e:?}");
        assert!(!e.message.is_empty(), "{case}: empty message");
        assert!(!e.version.is_empty(), "{case}: version in the body");
        if let Some(f) = field {
            assert_eq!(e.field.as_deref(), Some(f), "{case}: field ({e:?})");
            assert!(
                e.rule.as_deref().is_some_and(|r| !r.is_empty()),
                "{case}: rule named ({e:?})"
            );
        }
        assert_eq!(e.index, index, "{case}: index ({e:?})");
        self.assert_unchanged(case);
    }
}

fn envelope_with(key: &str, v: Value) -> Vec<u8> {
    let mut e = cli_envelope(&new_ulid(), 3);
    e[key] = v;
    e.to_string().into_bytes()
}

fn draft_with(f: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut d = status_draft(1);
    f(&mut d);
    d.to_string().into_bytes()
}

#[test]
fn invalid_requests_are_rejected_with_the_field_and_change_nothing() {
    let home = TestHome::new();
    let d = home.start_daemon();
    let api = d.api();
    api.emit(&status_draft(1));
    api.emit(&status_draft(2));
    let check = Check::new(&home, &api);
    assert_eq!((check.depth, check.clock, check.rows), (2, 2, 2));

    let x = |case: &str, body: &[u8], status: u16, code: &str, field: Option<&str>| {
        check.reject(case, body, status, code, field, None)
    };

    // Unparseable.
    x(
        "invalid JSON",
        br#"{"event_type": "WPCreated", "#,
        400,
        "invalid_json",
        None,
    );
    x(
        "trailing garbage",
        br#"{"event_type": "WPCreated"} x"#,
        400,
        "invalid_json",
        None,
    );
    x("not UTF-8", b"\xff\xfe{\"a\":1}", 400, "invalid_json", None);
    x("empty body", b"", 400, "invalid_json", None);

    // Drafts.
    x(
        "event type not PascalCase",
        &draft_with(|d| d["event_type"] = json!("wp_exploded")),
        422,
        "invalid_event",
        Some("event_type"),
    );
    x(
        "another event type without its aggregate_type",
        &draft_with(|d| d["event_type"] = json!("WPExploded")),
        422,
        "invalid_event",
        Some("aggregate_type"),
    );
    x(
        "missing field",
        &draft_with(|d| {
            d["payload"].as_object_mut().unwrap().remove("new_status");
        }),
        422,
        "invalid_event",
        Some("payload.new_status"),
    );
    x(
        "missing payload",
        &draft_with(|d| {
            d.as_object_mut().unwrap().remove("payload");
        }),
        422,
        "invalid_event",
        Some("payload"),
    );
    x(
        "payload not an object",
        &draft_with(|d| d["payload"] = json!([1, 2])),
        422,
        "invalid_event",
        Some("payload"),
    );
    x(
        "wrong type",
        &json!({"event_type": "FeatureCreated", "payload": {"feature_slug": "001-demo", "feature_number": "001", "target_branch": "main", "wp_count": "3"}})
            .to_string()
            .into_bytes(),
        422,
        "invalid_event",
        Some("payload.wp_count"),
    );
    x(
        "negative count",
        &json!({"event_type": "FeatureCompleted", "payload": {"feature_slug": "001-demo", "total_wps": -1}})
            .to_string()
            .into_bytes(),
        422,
        "invalid_event",
        Some("payload.total_wps"),
    );
    x(
        "bad wp_id",
        &draft_with(|d| {
            d["payload"]["wp_id"] = json!("WP1");
            d.as_object_mut().unwrap().remove("aggregate_id");
        }),
        422,
        "invalid_event",
        Some("payload.wp_id"),
    );
    x(
        "status outside the enum",
        &draft_with(|d| d["payload"]["new_status"] = json!("finished")),
        422,
        "invalid_event",
        Some("payload.new_status"),
    );
    x(
        "aggregate_id disagrees with wp_id",
        &draft_with(|d| d["aggregate_id"] = json!("WP42")),
        422,
        "invalid_event",
        Some("aggregate_id"),
    );
    x(
        "unknown draft field",
        &draft_with(|d| d["colour"] = json!("red")),
        422,
        "invalid_event",
        Some("colour"),
    );
    x(
        "bad ULID event_id in a draft",
        &draft_with(|d| d["event_id"] = json!("not-a-ulid")),
        422,
        "invalid_event",
        Some("event_id"),
    );
    x(
        "lowercase ULID",
        &draft_with(|d| d["event_id"] = json!(new_ulid().to_lowercase())),
        422,
        "invalid_event",
        Some("event_id"),
    );
    x(
        "bad causation_id",
        &draft_with(|d| d["causation_id"] = json!("0123")),
        422,
        "invalid_event",
        Some("causation_id"),
    );
    x("not an object", b"42", 422, "invalid_event", Some("event"));

    // Envelopes.
    x(
        "negative clock",
        &envelope_with("lamport_clock", json!(-1)),
        422,
        "invalid_event",
        Some("lamport_clock"),
    );
    x(
        "string clock",
        &envelope_with("lamport_clock", json!("42")),
        422,
        "invalid_event",
        Some("lamport_clock"),
    );
    x(
        "fractional clock",
        &envelope_with("lamport_clock", json!(1.5)),
        422,
        "invalid_event",
        Some("lamport_clock"),
    );
    x(
        "clock beyond 2^53-1",
        &envelope_with("lamport_clock", json!(9_007_199_254_740_992u64)),
        422,
        "invalid_event",
        Some("lamport_clock"),
    );
    x(
        "null clock",
        &envelope_with("lamport_clock", Value::Null),
        422,
        "invalid_event",
        Some("lamport_clock"),
    );
    x(
        "bad ULID event_id in an envelope",
        &envelope_with("event_id", json!("01HX5ZQK3M8N9P0R1S2T3V4W5U")),
        422,
        "invalid_event",
        Some("event_id"),
    );
    x(
        "timestamp without zone",
        &envelope_with("timestamp", json!("2026-02-04T13:47:09")),
        422,
        "invalid_event",
        Some("timestamp"),
    );
    x(
        "envelope payload not an object",
        &envelope_with("payload", json!("x")),
        422,
        "invalid_event",
        Some("payload"),
    );
    x(
        "empty team_slug",
        &envelope_with("team_slug", json!("")),
        422,
        "invalid_event",
        Some("team_slug"),
    );
    x(
        "aggregate_type not PascalCase",
        &envelope_with("aggregate_type", json!("work package")),
        422,
        "invalid_event",
        Some("aggregate_type"),
    );

    // Arrays.
    x("empty array", b"[]", 422, "invalid_event", Some("events"));
    let too_many = Value::Array((0..1001).map(status_draft).collect());
    x(
        "1001 events",
        too_many.to_string().as_bytes(),
        422,
        "invalid_event",
        Some("events"),
    );

    // Oversized: a valid draft over 1 MiB.
    let mut big = status_draft(1);
    big["payload"]["changed_by"] = json!("x".repeat(1024 * 1024 + 10));
    x(
        "oversized body",
        big.to_string().as_bytes(),
        413,
        "payload_too_large",
        None,
    );

    // After all that the daemon still works, from where it was.
    assert_eq!(api.emit(&status_draft(3)).lamport_clock, 3);
}

#[test]
fn an_array_is_all_or_nothing_and_names_the_index() {
    let home = TestHome::new();
    let d = home.start_daemon();
    let api = d.api();
    api.emit(&status_draft(1));
    let check = Check::new(&home, &api);
    let mut items: Vec<Value> = (0..5).map(status_draft).collect();
    items[3]["payload"]["wp_id"] = json!("nope");
    items[3].as_object_mut().unwrap().remove("aggregate_id");
    check.reject(
        "bad 4th event",
        Value::Array(items).to_string().as_bytes(),
        422,
        "invalid_event",
        Some("payload.wp_id"),
        Some(3),
    );
    let mut items: Vec<Value> = (0..3).map(status_draft).collect();
    items.push(cli_envelope(&new_ulid(), 9));
    items[3]["lamport_clock"] = json!("9");
    check.reject(
        "envelope with a string clock at index 3",
        Value::Array(items).to_string().as_bytes(),
        422,
        "invalid_event",
        Some("lamport_clock"),
        Some(3),
    );
    // A valid envelope with a high clock beside a bad draft: the clock must
    // not have received it.
    let items = vec![
        cli_envelope(&new_ulid(), 900),
        json!({"event_type": "nope", "payload": {}}),
    ];
    check.reject(
        "high clock beside a bad draft",
        Value::Array(items).to_string().as_bytes(),
        422,
        "invalid_event",
        Some("event_type"),
        Some(1),
    );
    assert_eq!(api.emit(&status_draft(1)).lamport_clock, 2);
}

#[test]
fn the_socket_survives_garbage_and_answers_unknown_paths_with_json() {
    let home = TestHome::new();
    let d = home.start_daemon();
    let api = d.api();

    let r = api.get("/v1/nothing-here");
    assert_eq!(r.status, 404);
    assert_version_header(&r);
    assert_eq!(r.error().error, "not_found");

    let h = api.get("/v1/health");
    assert_eq!(h.status, 200);
    assert_version_header(&h);
    let health: kitty_proto::api::Health = h.json();
    assert!(health.ok);
    assert_eq!(health.pid, d.pid());
    assert_eq!(health.version, kitty_proto::VERSION);

    for junk in [
        &b"NOT HTTP AT ALL\r\n\r\n"[..],
        b"\x00\x01\x02\x03\xff\xfe\r\n\r\n",
        b"POST /v1/events HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n{}",
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\n{\"a\"",
    ] {
        // Whatever the answer (or none), nothing may be stored and the daemon lives on.
        let _ = std::thread::spawn({
            let api = api.clone();
            let junk = junk.to_vec();
            move || {
                let stream = std::os::unix::net::UnixStream::connect(api.socket()).unwrap();
                stream.set_read_timeout(Some(std::time::Duration::from_secs(2))).unwrap();
                let mut s = &stream;
                let _ = std::io::Write::write_all(&mut s, &junk);
                let _ = stream.shutdown(std::net::Shutdown::Write);
                let mut buf = Vec::new();
                let _ = std::io::Read::read_to_end(&mut s, &mut buf);
            }
        })
        .join();
        assert!(api.health().ok);
    }
    assert_eq!(api.status().queue.depth, 0);
    assert!(d.api().emit(&status_draft(1)).lamport_clock == 1);
}

/// A tiny deterministic PRNG (xorshift64*), so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_mutations_get_clean_answers_and_only_accepted_events_are_stored() {
    let home = TestHome::new();
    let d = home.start_daemon();
    let api = d.api();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let weird = [
        Value::Null,
        json!(true),
        json!(-1),
        json!(0),
        json!(1.5),
        json!("x"),
        json!(""),
        json!([]),
        json!({}),
        json!(12_345_678_901_234_567_890u64),
        json!("WP01"),
        json!("planned"),
    ];
    let mut accepted = 0u64;
    for round in 0..300 {
        let body: Vec<u8> = match rng.below(4) {
            // Random bytes.
            0 => (0..rng.below(64)).map(|_| rng.next() as u8).collect(),
            // A valid event with one field (top level or payload) replaced or removed.
            1 | 2 => {
                let (mut v, _, _) = sample_drafts()[rng.below(9)].clone();
                if rng.below(3) == 0 {
                    v = cli_envelope(&new_ulid(), rng.below(50) as u64);
                }
                let target = if rng.below(2) == 0 {
                    &mut v["payload"]
                } else {
                    &mut v
                };
                if let Some(obj) = target.as_object_mut() {
                    let keys: Vec<String> = obj.keys().cloned().collect();
                    let key = keys[rng.below(keys.len())].clone();
                    if rng.below(3) == 0 {
                        obj.remove(&key);
                    } else {
                        obj.insert(key, weird[rng.below(weird.len())].clone());
                    }
                }
                v.to_string().into_bytes()
            }
            // A valid event cut short.
            _ => {
                let s = status_draft(1).to_string();
                s.as_bytes()[..rng.below(s.len())].to_vec()
            }
        };
        let r = api.post_events_raw(&body);
        match r.status {
            202 => {
                let resp: kitty_proto::api::EmitResponse = r.json();
                accepted += resp.events.iter().filter(|e| !e.duplicate).count() as u64;
            }
            400 | 413 | 422 => {
                let e = r.error();
                assert!(!e.message.is_empty(), "round {round}");
                if r.status == 422 {
                    assert!(
                        e.field.is_some(),
                        "round {round}: a 422 names the field: {e:?}"
                    );
                }
            }
            s => panic!(
                "round {round}: unexpected status {s} for {:?}: {}",
                String::from_utf8_lossy(&body),
                r.text()
            ),
        }
        assert_version_header(&r);
    }
    assert!(api.health().ok);
    assert_eq!(api.status().queue.depth, accepted);
    assert_eq!(home.db().count() as u64, accepted);
    for row in home.db().rows() {
        assert_valid_envelope(&row.data);
    }
}

/// Drafts built from the real CLIs' payload models (proto/fixtures/make-cli-drafts.py).
fn cli_drafts() -> Vec<(String, Value)> {
    let v: Value =
        serde_json::from_str(include_str!("../../proto/fixtures/cli-drafts.json")).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap().to_owned(), s["draft"].clone()))
        .collect()
}

#[test]
fn drafts_of_the_real_clis_are_queued_with_every_field_they_carry() {
    let home = TestHome::new();
    let d = home.start_daemon();
    let api = d.api();
    let samples = cli_drafts();
    for (i, (name, draft)) in samples.iter().enumerate() {
        let a = api.emit(draft);
        assert_eq!(a.lamport_clock, i as u64 + 1, "{name}");
        let rows = home.db().rows_with_event_id(&a.event_id);
        assert_eq!(rows.len(), 1, "{name}");
        let env = assert_valid_envelope(&rows[0].data);
        assert_eq!(rows[0].event_type, draft["event_type"], "{name}");
        assert_eq!(env["lamport_clock"], a.lamport_clock, "{name}");
        for (k, v) in draft["payload"].as_object().unwrap() {
            assert_eq!(&env["payload"][k], v, "{name}: payload.{k} kept as sent");
        }
        for key in [
            "event_id",
            "aggregate_type",
            "aggregate_id",
            "schema_version",
            "build_id",
            "correlation_id",
            "git_branch",
            "head_commit_sha",
            "repo_slug",
            "project_uuid",
            "project_slug",
            "causation_id",
        ] {
            if let Some(given) = draft.get(key).filter(|g| !g.is_null()) {
                assert_eq!(&env[key], given, "{name}: {key}");
            }
        }
        let ts = env["timestamp"].as_str().unwrap();
        match draft["occurred_at"].as_str() {
            // The one sample with another offset (+01:00) is carried in UTC.
            Some("2026-03-01T12:00:00+01:00") => assert_eq!(ts, "2026-03-01T11:00:00.000000+00:00"),
            Some(at) => assert_eq!(ts, at, "{name}: occurred_at is the timestamp"),
            None => assert!(ts.starts_with("20"), "{name}: stamped now: {ts}"),
        }
    }
    // A lifecycle event sent again with its own event_id stays one row.
    let (_, lifecycle) = samples
        .iter()
        .find(|(_, d)| d.get("event_id").is_some())
        .unwrap();
    let again = api.emit(lifecycle);
    assert!(again.duplicate);
    assert_eq!(home.db().count() as usize, samples.len());
}

#[test]
fn bad_widened_drafts_are_refused_with_the_field_and_change_nothing() {
    let home = TestHome::new();
    let d = home.start_daemon();
    let api = d.api();
    api.emit(&status_draft(1));
    let check = Check::new(&home, &api);
    let other = || json!({"event_type": "MissionCreated", "aggregate_type": "Mission", "aggregate_id": "demo-01KBX3N2Q8", "payload": {"mission_slug": "demo-01KBX3N2Q8"}});
    let lane = || json!({"event_type": "WPStatusChanged", "payload": {"wp_id": "WP01", "from_lane": "planned", "to_lane": "claimed", "actor": "claude"}});
    let wp_created = || json!({"event_type": "WPCreated", "payload": {"wp_id": "WP04", "wp_title": "Parser", "mission_slug": "demo", "depends_on": [], "actor": "cli"}});
    let with = |mut v: Value, f: &dyn Fn(&mut Value)| {
        f(&mut v);
        v.to_string().into_bytes()
    };
    let long = "x".repeat(257);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        // Names.
        (
            "event_type camelCase",
            with(other(), &|v| v["event_type"] = json!("missionCreated")),
            "event_type",
        ),
        (
            "event_type snake_case",
            with(other(), &|v| v["event_type"] = json!("mission_created")),
            "event_type",
        ),
        (
            "event_type with a newline",
            with(other(), &|v| v["event_type"] = json!("Mission\nCreated")),
            "event_type",
        ),
        (
            "event_type of 65 characters",
            with(other(), &|v| v["event_type"] = json!("M".repeat(65))),
            "event_type",
        ),
        (
            "event_type a number",
            with(other(), &|v| v["event_type"] = json!(1)),
            "event_type",
        ),
        (
            "aggregate_type lowercase",
            with(other(), &|v| v["aggregate_type"] = json!("mission")),
            "aggregate_type",
        ),
        (
            "aggregate_type missing",
            with(other(), &|v| {
                v.as_object_mut().unwrap().remove("aggregate_type");
            }),
            "aggregate_type",
        ),
        (
            "aggregate_id missing",
            with(other(), &|v| {
                v.as_object_mut().unwrap().remove("aggregate_id");
            }),
            "aggregate_id",
        ),
        (
            "aggregate_id with NUL",
            with(other(), &|v| v["aggregate_id"] = json!("demo\u{0}x")),
            "aggregate_id",
        ),
        (
            "aggregate_id with an ANSI escape",
            with(other(), &|v| v["aggregate_id"] = json!("\u{1b}[2Jdemo")),
            "aggregate_id",
        ),
        (
            "aggregate_id oversized",
            with(other(), &|v| v["aggregate_id"] = json!(long)),
            "aggregate_id",
        ),
        (
            "payload of another type not an object",
            with(other(), &|v| v["payload"] = json!("x")),
            "payload",
        ),
        // The optional envelope fields.
        (
            "occurred_at without zone",
            with(other(), &|v| {
                v["occurred_at"] = json!("2026-02-04T13:47:09")
            }),
            "occurred_at",
        ),
        (
            "occurred_at a date",
            with(other(), &|v| v["occurred_at"] = json!("2026-02-04")),
            "occurred_at",
        ),
        (
            "occurred_at epoch seconds",
            with(other(), &|v| v["occurred_at"] = json!(1770212829)),
            "occurred_at",
        ),
        (
            "correlation_id not an id",
            with(other(), &|v| v["correlation_id"] = json!("abc")),
            "correlation_id",
        ),
        (
            "schema_version not x.y.z",
            with(other(), &|v| v["schema_version"] = json!("3")),
            "schema_version",
        ),
        (
            "build_id empty",
            with(other(), &|v| v["build_id"] = json!("")),
            "build_id",
        ),
        (
            "build_id with CRLF",
            with(other(), &|v| v["build_id"] = json!("b\r\nX: 1")),
            "build_id",
        ),
        (
            "git_branch oversized",
            with(other(), &|v| v["git_branch"] = json!(long)),
            "git_branch",
        ),
        (
            "git_branch a number",
            with(other(), &|v| v["git_branch"] = json!(7)),
            "git_branch",
        ),
        (
            "head_commit_sha not hex",
            with(other(), &|v| v["head_commit_sha"] = json!("HEAD~1")),
            "head_commit_sha",
        ),
        (
            "repo_slug with a bidi override",
            with(other(), &|v| v["repo_slug"] = json!("acme/\u{202e}ppa")),
            "repo_slug",
        ),
        (
            "project_slug oversized",
            with(other(), &|v| v["project_slug"] = json!(long)),
            "project_slug",
        ),
        (
            "mission_slug at the top level",
            with(other(), &|v| v["mission_slug"] = json!("demo")),
            "mission_slug",
        ),
        (
            "mission_id at the top level",
            with(lane(), &|v| {
                v["mission_id"] = json!("01KBX3N2Q8ZK4V7W9Y0A1B2C3D")
            }),
            "mission_id",
        ),
        // The widened 028 schemas.
        (
            "to_lane genesis",
            with(lane(), &|v| v["payload"]["to_lane"] = json!("genesis")),
            "payload.to_lane",
        ),
        (
            "to_lane uninitialized",
            with(lane(), &|v| {
                v["payload"]["to_lane"] = json!("uninitialized")
            }),
            "payload.to_lane",
        ),
        (
            "from_lane unknown",
            with(lane(), &|v| v["payload"]["from_lane"] = json!("doing")),
            "payload.from_lane",
        ),
        (
            "actor an empty object",
            with(lane(), &|v| v["payload"]["actor"] = json!({})),
            "payload.actor",
        ),
        (
            "actor a list",
            with(lane(), &|v| v["payload"]["actor"] = json!(["claude"])),
            "payload.actor",
        ),
        (
            "actor.model a number",
            with(lane(), &|v| {
                v["payload"]["actor"] = json!({"role": "reviewer", "model": 5})
            }),
            "payload.actor.model",
        ),
        (
            "force a string",
            with(lane(), &|v| v["payload"]["force"] = json!("true")),
            "payload.force",
        ),
        (
            "mission_slug in the payload empty",
            with(lane(), &|v| v["payload"]["mission_slug"] = json!("")),
            "payload.mission_slug",
        ),
        (
            "WPCreated without a title of either name",
            with(wp_created(), &|v| {
                v["payload"].as_object_mut().unwrap().remove("wp_title");
            }),
            "payload.title",
        ),
        (
            "WPCreated without a mission or feature",
            with(wp_created(), &|v| {
                v["payload"].as_object_mut().unwrap().remove("mission_slug");
            }),
            "payload.feature_slug",
        ),
        (
            "WPCreated depends_on not WP ids",
            with(wp_created(), &|v| {
                v["payload"]["depends_on"] = json!(["WP01", "x"])
            }),
            "payload.depends_on[1]",
        ),
        (
            "WPCreated with aggregate_type Mission",
            with(wp_created(), &|v| v["aggregate_type"] = json!("Mission")),
            "aggregate_type",
        ),
        (
            "WPCreated with a bad wp_id",
            with(wp_created(), &|v| v["payload"]["wp_id"] = json!("WP4")),
            "payload.wp_id",
        ),
    ];
    for (case, body, field) in &cases {
        check.reject(case, body, 422, "invalid_event", Some(field), None);
    }
    // One bad draft of another type in an array of good ones: all or nothing.
    let items = Value::Array(vec![
        other(),
        lane(),
        with_value(other(), "event_type", json!("Bad Name")),
    ]);
    check.reject(
        "bad name at index 2",
        items.to_string().as_bytes(),
        422,
        "invalid_event",
        Some("event_type"),
        Some(2),
    );
    // And the same drafts, put right, go in.
    for good in [other(), lane(), wp_created()] {
        api.emit(&good);
    }
    assert_eq!(api.status().queue.depth, check.depth + 3);
}

fn with_value(mut v: Value, key: &str, value: Value) -> Value {
    v[key] = value;
    v
}
