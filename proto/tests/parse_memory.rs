//! How much memory a hostile body can make parsing hold. Its own test binary,
//! with one test: the allocator's peak is this test's alone.

use peak_alloc::PeakAlloc;

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

/// Peak bytes held above what was held before, while `f` runs.
fn peak_of(f: impl FnOnce()) -> usize {
    let base = ALLOC.current_usage();
    ALLOC.reset_peak_usage();
    f();
    ALLOC.peak_usage().saturating_sub(base)
}

/// A body of empty objects is the cheapest way to make a parser allocate:
/// three bytes each. serde_json's own `Value` holds about 54 bytes per byte
/// sent here; the one-pass parse must stay within the same bound. (With room
/// for eight keys reserved in every object it held 384 MB for a 1 MiB body,
/// 367 bytes per byte.)
#[test]
fn a_body_of_empty_objects_costs_what_serde_json_would() {
    let n = (kitty_proto::MAX_BODY_BYTES - 256) / 3;
    let body = format!(
        r#"{{"event_type":"X","aggregate_id":"a","aggregate_type":"B","payload":{{"a":[{}{{}}]}}}}"#,
        "{},".repeat(n - 1)
    );
    assert!(body.len() <= kitty_proto::MAX_BODY_BYTES);
    let ours = peak_of(|| {
        let parsed = kitty_proto::parse_events_request(body.as_bytes());
        assert!(parsed.is_ok(), "{parsed:?}");
    });
    let serde = peak_of(|| {
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        std::hint::black_box(v);
    });
    assert!(
        ours <= serde + serde / 4,
        "parsing held {ours} bytes, serde_json's Value {serde}, for a body of {}",
        body.len()
    );
}
