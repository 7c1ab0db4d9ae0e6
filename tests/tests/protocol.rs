//! Issue 11: every answer of the socket API carries the daemon's protocol
//! number (header and body), and a client of the same protocol says nothing
//! about a restart. (A daemon of another protocol: client/tests/protocol.rs.)

use kitty_proto::api::{EmitResponse, Health, PROTOCOL, PROTOCOL_HEADER, Status};
use kitty_tests::harness::*;

#[test]
fn every_answer_carries_the_protocol_and_a_current_daemon_needs_no_restart() {
    let home = TestHome::new();
    let d = home.start_daemon();
    let api = d.api();
    let want = PROTOCOL.to_string();
    for (method, path, body) in [
        ("GET", "/v1/health", None),
        ("GET", "/v1/status", None),
        ("GET", "/v1/nothing-here", None),
        ("POST", "/v1/events", Some(&b"{not json"[..])),
    ] {
        let r = api.request(method, path, body);
        assert_eq!(
            r.header(PROTOCOL_HEADER),
            Some(want.as_str()),
            "{method} {path}"
        );
    }
    assert_eq!(api.get("/v1/health").json::<Health>().protocol, PROTOCOL);
    assert_eq!(api.get("/v1/status").json::<Status>().protocol, PROTOCOL);
    let r = api.post_events(&status_draft(1));
    r.assert_status(202);
    let answer: EmitResponse = r.json();
    assert_eq!(answer.protocol, PROTOCOL);
    let health = answer.health.expect("a 202 carries the delivery hint");
    assert_eq!((health.depth, health.stale_after_secs), (1, 3600));

    let out = home.client(&[
        "emit",
        "WPStatusChanged",
        "--payload",
        &status_draft(2)["payload"].to_string(),
    ]);
    out.assert_code(0);
    assert!(!out.stderr.contains("needs restart"), "{out}");
    let out = home.client(&["status"]);
    assert!(!out.stdout.contains("NEEDS RESTART"), "{out}");
    d.stop_gracefully();
}
