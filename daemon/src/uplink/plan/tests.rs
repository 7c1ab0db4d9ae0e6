//! The WebSocket and the probe in virtual time (`sim`): backoff, jitter,
//! OfflineBatchMode, heartbeat, in-flight acks, shutdown.

use super::sim::*;
use super::*;
use crate::uplink::ws::Inbound;

pub(super) fn refused() -> Event {
    Event::WsFailed(Failure::answered("the WebSocket upgrade was answered 503"))
}

fn unreachable() -> Event {
    Event::WsFailed(Failure::unreachable("connection refused"))
}
#[test]
fn backoff_doubles_from_half_a_second_to_thirty_and_never_gives_up() {
    let mut s = Sim::new(config(5, 300));
    let log = s.run(secs(3600.0), server(refused(), 0));
    let opens = times(&log, |a| *a == Action::OpenWs);
    assert_eq!(opens[0], 0.0, "the first attempt at once");
    let g = gaps(&opens);
    assert_eq!(&g[..9], [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]);
    assert!(g[9..].iter().all(|d| *d == 30.0), "{g:?}");
    assert!(
        *opens.last().unwrap() > 3570.0,
        "still trying after an hour: {opens:?}"
    );
    assert_eq!(s.published().consecutive_failures, opens.len() as u32);
}

#[test]
fn jitter_moves_each_delay_by_at_most_a_second() {
    for (j, want) in [
        (0.9, [1.4, 1.9, 2.9, 4.9, 8.9, 16.9, 30.9]),
        (-1.0, [0.25, 0.25, 1.0, 3.0, 7.0, 15.0, 29.0]),
    ] {
        let mut s = Sim::new(config(5, 300));
        s.set_jitter(j);
        let log = s.run(secs(120.0), server(refused(), 0));
        let g = gaps(&times(&log, |a| *a == Action::OpenWs));
        assert_eq!(g[..7], want, "jitter {j}");
    }
}

#[test]
fn a_tcp_probe_every_second_while_unreachable_brings_delivery_back_within_one() {
    let mut s = Sim::new(config(5, 300));
    let back_at = 200.3;
    let log = s.run(secs(260.0), |a, at| {
        let up = at.as_secs_f64() >= back_at;
        match a {
            Action::OpenWs if up => vec![Event::WsOpened],
            Action::OpenWs => vec![unreachable()],
            Action::PostBatch if up => vec![Event::BatchEmpty],
            Action::PostBatch => vec![Event::BatchFailed {
                sent: 3,
                failure: BatchFailure::Failed(Failure::unreachable("connection refused")),
            }],
            Action::Probe => vec![Event::Probed { reachable: up }],
            Action::SendWs { .. } => server(Event::WsOpened, 0)(a, at),
            _ => vec![],
        }
    });
    let probes = times(&log, |a| *a == Action::Probe);
    assert_eq!(probes[0], 1.0, "a second after the first refusal");
    assert!(gaps(&probes).iter().all(|g| *g == 1.0), "{probes:?}");
    let last_probe = *probes.last().unwrap();
    assert!((back_at..back_at + 1.0).contains(&last_probe), "{probes:?}");
    // The backoff had reached 30 s; the probe brings the attempt forward.
    let opens = times(&log, |a| *a == Action::OpenWs);
    let reopened = opens.iter().find(|t| **t >= back_at).unwrap();
    assert_eq!(*reopened, last_probe, "the WebSocket at once: {opens:?}");
    // The queue goes over it at once, and not in a batch as well.
    let sends = times(&log, |a| matches!(a, Action::SendWs { .. }));
    assert_eq!(sends.first(), Some(&last_probe), "{sends:?}");
    let batch = times(&log, |a| *a == Action::PostBatch);
    assert!(
        batch.iter().all(|t| *t < back_at),
        "no batch once the WebSocket is back: {batch:?}"
    );
    assert_eq!(s.state(), ConnectionState::Connected);
}

#[test]
fn offline_batch_mode_after_exactly_ten_failed_attempts_and_back_when_one_succeeds() {
    let mut s = Sim::new(config(5, 300));
    let mut states = Vec::new();
    for _ in 0..12 {
        assert_eq!(s.expect(secs(600.0)), Action::OpenWs);
        s.on(refused());
        states.push(s.state());
        // Batches go on meanwhile, in every state.
        while let Some(a) = s.request(s.at() + secs(0.4)) {
            assert_eq!(a, Action::PostBatch);
            s.on(Event::BatchEmpty);
        }
    }
    let mut want = vec![ConnectionState::Reconnecting; 9];
    want.extend([ConnectionState::OfflineBatchMode; 3]);
    assert_eq!(states, want);
    assert_eq!(s.published().state, ConnectionState::OfflineBatchMode);

    s.on(Event::Committed);
    assert_eq!(
        s.expect(secs(600.0)),
        Action::PostBatch,
        "batches carry the queue"
    );
    s.on(Event::BatchEmpty);
    assert_eq!(s.expect(secs(600.0)), Action::OpenWs);
    s.on(Event::WsOpened);
    let r = s.published();
    assert_eq!(
        (r.state, r.consecutive_failures),
        (ConnectionState::Connected, 0)
    );
}

#[test]
fn heartbeat_every_20_s_and_a_minute_of_silence_is_a_dead_link() {
    let mut s = Sim::new(config(5, 300));
    assert_eq!(s.expect(secs(1.0)), Action::OpenWs);
    s.on(Event::WsOpened);
    let log = s.run(secs(200.0), |a, at| match a {
        // The server answers pings until 100 s, then falls silent.
        Action::Ping if at <= secs(100.0) => vec![Event::Frame(Inbound::Other)],
        Action::OpenWs => vec![refused()],
        _ => server(refused(), 0)(a, at),
    });
    let pings = times(&log, |a| *a == Action::Ping);
    assert_eq!(pings, [20.0, 40.0, 60.0, 80.0, 100.0, 120.0, 140.0]);
    let closed = times(&log, |a| *a == Action::CloseWs);
    assert_eq!(closed, [160.0], "a minute after the last frame, at 100 s");
    assert_ne!(s.state(), ConnectionState::Connected);
}

fn relayed(lamport: u64) -> crate::uplink::ws::Relayed {
    crate::uplink::ws::Relayed {
        lamport,
        node_id: Some("feedfacecafe".into()),
    }
}

#[test]
fn server_pings_are_answered_and_remote_events_reach_the_clock() {
    let mut s = Sim::new(config(5, 300));
    s.expect(secs(1.0));
    s.on(Event::WsOpened);
    let ts = serde_json::json!(1.5);
    assert!(s.on(Event::Frame(Inbound::Ping(ts.clone()))).is_empty());
    assert_eq!(
        s.on(Event::Frame(Inbound::Event(Some(relayed(42))))),
        [Action::Receive(relayed(42))]
    );
    assert_eq!(s.expect(secs(1.0)), Action::Pong(ts));
}
#[test]
fn acks_count_only_for_events_in_flight_on_the_connection() {
    let mut s = Sim::new(config(5, 300));
    s.expect(secs(1.0));
    s.on(Event::WsOpened);
    assert_eq!(s.expect(secs(1.0)), Action::SendWs { after: None });
    s.on(Event::WsSent {
        last: Some((1, 2)),
        ids: vec!["a".into(), "b".into()],
        full: false,
        bad: vec![],
    });
    let mut counted = Vec::new();
    for id in ["a", "a", "x", "b"] {
        counted.extend(s.on(Event::Frame(Inbound::Verdict(id.into(), Verdict::Accepted))));
    }
    assert_eq!(
        counted,
        [
            Action::Acknowledged("a".into(), Verdict::Accepted),
            Action::Acknowledged("b".into(), Verdict::Accepted)
        ],
        "only these reach the feed"
    );
    let want = vec![
        ("a".into(), Verdict::Accepted),
        ("b".into(), Verdict::Accepted),
    ];
    assert_eq!(
        s.expect(secs(1.0)),
        Action::Apply(want.clone()),
        "once each, x never sent"
    );
    s.on(applied(&want));
    // On the next connection nothing of the first is in flight.
    s.on(Event::WsFailed(Failure::answered("closed")));
    s.until(secs(60.0), |a| *a == Action::OpenWs, server(refused(), 0));
    s.on(Event::WsOpened);
    s.on(Event::Frame(Inbound::Verdict(
        "b".into(),
        Verdict::Duplicate,
    )));
    assert_eq!(
        s.expect(secs(1.0)),
        Action::SendWs {
            after: Some((1, 2))
        }
    );
    assert!(s.published().server_acks);
}
#[test]
fn shutdown_applies_what_is_pending_closes_the_websocket_and_stops() {
    let mut s = Sim::new(config(5, 300));
    s.expect(secs(1.0));
    s.on(Event::WsOpened);
    s.expect(secs(1.0));
    s.on(Event::WsSent {
        last: Some((1, 1)),
        ids: vec!["a".into()],
        full: false,
        bad: vec![],
    });
    s.on(Event::Frame(Inbound::Verdict(
        "a".into(),
        Verdict::Accepted,
    )));
    assert_eq!(s.on(Event::Shutdown), [Action::CloseWs]);
    assert!(matches!(s.expect(s.at()), Action::Apply(_)));
    s.on(applied(&[("a".into(), Verdict::Accepted)]));
    assert_eq!(s.expect(s.at()), Action::Stop);
    assert_eq!(s.report.as_ref().unwrap().state, ConnectionState::Offline);
}
