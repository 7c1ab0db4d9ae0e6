//! The batch path in virtual time (`sim`): the rate, the
//! flush, Retry-After, answers that confirm nothing, 403, dead letters.

use super::sim::{Sim, applied, config, gaps, secs, server, times};
use super::*;
use crate::uplink::ws::Inbound;

fn down() -> Event {
    Event::WsFailed(Failure::answered("the WebSocket upgrade was answered 503"))
}

fn accepted(ids: &[&str]) -> Event {
    Event::BatchAnswered {
        sent: ids.len() as u64,
        full: false,
        verdicts: ids
            .iter()
            .map(|id| (id.to_string(), Verdict::Accepted))
            .collect(),
    }
}

fn failed(failure: BatchFailure) -> Event {
    Event::BatchFailed { sent: 3, failure }
}

#[test]
fn at_most_one_batch_per_batch_interval_however_much_is_committed() {
    let mut s = Sim::new(config(5, 300));
    // Commits and `sync now` every 100 ms.
    s.ticks = Some((
        secs(0.1),
        vec![Event::Committed, Event::SyncRequested],
        s.t0,
    ));
    let log = s.run(secs(120.0), |a, _| match a {
        // A full batch each time: more is always waiting.
        Action::PostBatch => vec![Event::BatchAnswered {
            sent: 1000,
            full: true,
            verdicts: vec![("e".into(), Verdict::Accepted)],
        }],
        Action::OpenWs => vec![down()],
        Action::Apply(v) => vec![applied(v)],
        _ => vec![],
    });
    assert!(
        times(&log, |a| *a == Action::OpenWs).len() > 1000,
        "sync now tries the WebSocket at once, each time"
    );
    let posts = times(&log, |a| *a == Action::PostBatch);
    assert!(posts.len() >= 20, "{posts:?}");
    assert!(gaps(&posts).iter().all(|g| *g >= 5.0), "{posts:?}");
}

#[test]
fn a_batch_interval_of_zero_is_no_limit() {
    let mut s = Sim::new(config(0, 300));
    s.run(secs(1.0), server(down(), 0));
    for _ in 0..3 {
        s.on(Event::Committed);
        assert_eq!(s.expect(s.at()), Action::PostBatch, "at once");
        s.on(accepted(&["a"]));
        assert!(matches!(s.expect(s.at()), Action::Apply(_)));
        s.on(applied(&[]));
    }
}

#[test]
fn the_queue_is_flushed_every_flush_interval() {
    let mut s = Sim::new(config(5, 300));
    s.expect(secs(1.0));
    s.on(Event::WsOpened);
    let mut pongs = server(Event::WsOpened, 0);
    let log = s.run(secs(1000.0), |a, at| match a {
        Action::Ping => vec![Event::Frame(Inbound::Other)],
        _ => pongs(a, at),
    });
    // The flush asks; the driver finds the queue empty and posts nothing
    // (`BatchEmpty`), so an empty queue costs no request to the server. At
    // the start the WebSocket, open first, carried the queue: no batch then.
    let posts = times(&log, |a| *a == Action::PostBatch);
    assert_eq!(posts, [300.0, 600.0, 900.0]);
    assert_eq!(s.state(), ConnectionState::Connected);
}

#[test]
fn a_shorter_flush_interval_applies_at_once() {
    let mut s = Sim::new(config(5, 300));
    s.run(secs(10.0), server(down(), 0));
    s.on(Event::Config(config(5, 1)));
    let posts = times(&s.run(secs(13.5), server(down(), 0)), |a| {
        *a == Action::PostBatch
    });
    assert!(posts.contains(&11.0) && posts.contains(&12.0), "{posts:?}");
}

/// A connected server that answers our pings.
fn online() -> impl FnMut(&Action, Duration) -> Vec<Event> {
    let mut rest = server(down(), 0);
    move |a, at| match a {
        Action::Ping => vec![Event::Frame(Inbound::Other)],
        _ => rest(a, at),
    }
}

fn sent(id: &str) -> Event {
    Event::WsSent {
        last: Some((1, 1)),
        ids: vec![id.into()],
        full: false,
        bad: vec![],
    }
}

#[test]
fn websocket_sends_are_confirmed_by_a_batch_one_interval_later() {
    for (acks, want) in [(false, secs(5.0)), (true, ACK_GRACE)] {
        let mut s = Sim::new(config(5, 300));
        s.expect(secs(1.0));
        s.on(Event::WsOpened);
        s.run(secs(1.0), online());
        if acks {
            s.on(Event::Committed);
            assert!(matches!(s.expect(s.at()), Action::SendWs { .. }));
            s.on(sent("a"));
            s.on(Event::Frame(Inbound::Verdict(
                "a".into(),
                Verdict::Accepted,
            )));
            s.run(secs(30.0), online());
        }
        s.on(Event::Committed);
        let start = s.at();
        assert!(matches!(s.expect(start), Action::SendWs { .. }));
        s.on(sent("b"));
        s.until(secs(100.0), |a| *a == Action::PostBatch, online());
        assert_eq!(s.at() - start, want, "acks: {acks}");
    }
}

#[test]
fn a_websocket_that_opens_at_the_start_carries_the_queue_alone() {
    let mut s = Sim::new(config(5, 300));
    // Rows wait from before: the WebSocket is tried first, and opens.
    assert_eq!(s.expect(secs(1.0)), Action::OpenWs);
    s.on(Event::WsOpened);
    assert_eq!(s.expect(s.at()), Action::SendWs { after: None });
    s.on(sent("a"));
    s.on(Event::Frame(Inbound::Verdict(
        "a".into(),
        Verdict::Accepted,
    )));
    // No batch sends "a" again at once (which the server would answer as a
    // duplicate); the batch that confirms sends comes one interval on, and
    // finds the queue settled.
    let log = s.run(secs(60.0), online());
    assert_eq!(times(&log, |a| *a == Action::PostBatch), [5.0]);
}

#[test]
fn sync_now_gets_its_batch_even_when_the_websocket_opens_first() {
    let mut s = Sim::new(config(5, 300));
    s.run(secs(2.0), server(down(), 0));
    assert_ne!(s.state(), ConnectionState::Connected);
    s.on(Event::SyncRequested);
    assert_eq!(s.expect(s.at()), Action::OpenWs, "the WebSocket at once");
    s.on(Event::WsOpened);
    assert!(matches!(s.expect(s.at()), Action::SendWs { .. }));
    s.on(sent("a"));
    // Without acks only a batch settles "a", and `sync --wait` waits for it.
    assert_eq!(s.expect(s.at()), Action::PostBatch);
    assert_eq!(s.at(), secs(2.0));
}

#[test]
fn sync_now_posts_a_batch_at_once_while_connected() {
    let mut s = Sim::new(config(5, 300));
    s.expect(secs(1.0));
    s.on(Event::WsOpened);
    s.run(secs(100.0), online());
    s.on(Event::SyncRequested);
    s.until(secs(101.0), |a| *a == Action::PostBatch, online());
    assert_eq!(s.at(), secs(100.0));
}

#[test]
fn retry_after_is_honoured_and_the_batch_interval_still_applies() {
    for (interval, retry_after, want) in [(1, 7.0, 7.0), (5, 1.0, 5.0), (0, 3600.0, 3600.0)] {
        let mut s = Sim::new(config(interval, 86_400));
        s.expect(secs(1.0));
        s.on(down());
        assert_eq!(s.expect(secs(1.0)), Action::PostBatch);
        let t = s.at();
        s.on(failed(BatchFailure::RateLimited(secs(retry_after))));
        let r = s.published();
        assert!(r.last_error.unwrap().contains("rate limited"));
        let next = s.until(secs(7200.0), |a| *a == Action::PostBatch, server(down(), 0));
        assert_eq!(next, Action::PostBatch);
        assert_eq!(
            (s.at() - t).as_secs_f64(),
            want,
            "{interval} s, Retry-After {retry_after}"
        );
    }
}

#[test]
fn a_response_that_confirms_nothing_ends_the_round_and_backs_off() {
    let mut s = Sim::new(config(0, 300));
    let log = s.run(secs(120.0), |a, at| match a {
        Action::PostBatch => vec![Event::BatchAnswered {
            sent: 10,
            full: false,
            verdicts: vec![],
        }],
        _ => server(down(), 0)(a, at),
    });
    let posts = times(&log, |a| *a == Action::PostBatch);
    let g = gaps(&posts);
    assert_eq!(&g[..7], [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0], "{posts:?}");
    assert!(
        !log.iter()
            .any(|(_, a)| matches!(a, Action::Apply(v) if !v.is_empty()))
    );
    let r = s.published();
    assert!(
        r.last_error.unwrap().contains("confirmed none of 10"),
        "{:?}",
        s.published()
    );
    assert!(r.consecutive_failures >= 7);
    // The first batch that confirms something ends the backoff.
    s.until(secs(200.0), |a| *a == Action::PostBatch, server(down(), 0));
    s.on(accepted(&["a"]));
    assert_eq!(
        s.published().consecutive_failures,
        s.p.state().ws_failures()
    );
}

#[test]
fn every_event_rejected_also_backs_off() {
    let mut s = Sim::new(config(0, 300));
    s.until(secs(1.0), |a| *a == Action::PostBatch, server(down(), 0));
    let t = s.at();
    s.on(Event::BatchAnswered {
        sent: 1,
        full: false,
        verdicts: vec![("a".into(), Verdict::Rejected("bad".into()))],
    });
    let r = s.published();
    assert!(r.last_error.unwrap().contains("rejected every event"));
    assert!(
        matches!(s.expect(t), Action::Apply(v) if v.len() == 1),
        "the rejection counts"
    );
    s.on(applied(&[]));
    s.until(secs(10.0), |a| *a == Action::PostBatch, server(down(), 0));
    assert_eq!(s.at() - t, secs(0.5));
}

#[test]
fn a_403_keeps_the_events_says_forbidden_and_backs_off() {
    let mut s = Sim::new(config(1, 300));
    s.until(secs(1.0), |a| *a == Action::PostBatch, server(down(), 0));
    let t = s.at();
    s.on(failed(BatchFailure::Forbidden("cross-tenant".into())));
    let r = s.published();
    assert!(
        r.last_error.as_deref().unwrap().contains("forbidden"),
        "{r:?}"
    );
    assert_eq!(r.consecutive_failures, 1.max(s.p.state().ws_failures()));
    let log = s.run(secs(3.0), |a, at| match a {
        Action::PostBatch => vec![failed(BatchFailure::Forbidden("cross-tenant".into()))],
        _ => server(down(), 0)(a, at),
    });
    assert!(
        !log.iter().any(|(_, a)| matches!(a, Action::Apply(_))),
        "no verdict: nothing deleted or counted"
    );
    // The interval (1 s, over the first backoff of 0.5 s), then 1 s, then 2 s.
    let posts = times(&log, |a| *a == Action::PostBatch);
    let t = t.as_secs_f64();
    assert_eq!(posts, [t + 1.0, t + 2.0]);
}

#[test]
fn refusals_of_every_kind_back_off_and_never_give_up() {
    let mut s = Sim::new(config(5, 300));
    let log = s.run(secs(3600.0), |a, at| match a {
        Action::PostBatch => vec![failed(BatchFailure::Failed(Failure::answered(
            "batch answered 500",
        )))],
        Action::OpenWs => vec![down()],
        _ => server(down(), 0)(a, at),
    });
    let posts = times(&log, |a| *a == Action::PostBatch);
    let g = gaps(&posts);
    assert_eq!(&g[..8], [5.0, 5.0, 5.0, 5.0, 8.0, 16.0, 30.0, 30.0]);
    assert!(*posts.last().unwrap() > 3560.0);
}

/// The planner and the real store together: five rounds of a batch that
/// rejects one event; the fifth moves it to `dead_letter`, the others go.
#[tokio::test]
async fn the_fifth_rejection_makes_a_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let mut db =
        kitty_store::db::open_writer(&dir.path().join("queue.db"), kitty_store::db::BUSY_TIMEOUT)
            .await
            .unwrap();
    for id in ["bad", "good"] {
        sqlx::query(
            "INSERT INTO queue (event_id, event_type, data, timestamp) VALUES (?, 'T', '{}', 1)",
        )
        .bind(id)
        .execute(&mut db)
        .await
        .unwrap();
    }
    let mut s = Sim::new(config(5, 300));
    let mut rounds = Vec::new();
    while rounds.len() < 6 {
        let Some(a) = s.request(secs(600.0)) else {
            break;
        };
        let events = match &a {
            Action::OpenWs => vec![down()],
            Action::PostBatch => {
                rounds.push(s.at().as_secs_f64());
                let mut verdicts = vec![(
                    "bad".to_string(),
                    Verdict::Rejected("aggregate_type".into()),
                )];
                if rounds.len() == 1 {
                    verdicts.push(("good".into(), Verdict::Accepted));
                }
                if kitty_store::queue::depth(&mut db).await.unwrap() == 0 {
                    vec![Event::BatchEmpty]
                } else {
                    vec![Event::BatchAnswered {
                        sent: verdicts.len() as u64,
                        full: false,
                        verdicts,
                    }]
                }
            }
            Action::Apply(v) => match kitty_store::outbox::apply(&mut db, v).await {
                Ok(counts) => vec![Event::Applied {
                    counts,
                    at: "t".into(),
                }],
                Err(e) => panic!("{e}"),
            },
            _ => vec![],
        };
        for e in events {
            s.on(e);
        }
    }
    let c = s.published().counters;
    assert_eq!((c.delivered, c.rejected), (1, 5), "{c:?}");
    assert_eq!(kitty_store::outbox::dead_count(&mut db).await.unwrap(), 1);
    assert_eq!(kitty_store::queue::depth(&mut db).await.unwrap(), 0);
    let dead = kitty_store::outbox::dead_list(&mut db, 10).await.unwrap();
    assert_eq!((dead[0].event_id.as_str(), dead[0].retry_count), ("bad", 5));
    // Between rounds: the interval, then backoff, since rounds 2-5 confirm nothing.
    assert_eq!(gaps(&rounds[..5]), [5.0, 5.0, 5.0, 5.0], "{rounds:?}");
}
