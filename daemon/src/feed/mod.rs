//! The event feed behind `GET /v1/feed` and `kitty-sync tail`: what the
//! daemon does, as it happens. The writer reports commits, the uplink reports
//! the server's verdicts, dead letters and connection states; every reader
//! gets each line.
//!
//! Publishing never waits for a reader. Lines go into one bounded ring
//! (tokio's broadcast channel): a reader more than [`PER_READER`] lines behind
//! loses the oldest and is told how many ([`FeedEvent::Missed`]), so a stuck
//! `tail` costs memory for at most one ring, and commits never slow down.
//! The last [`HISTORY`] lines are also kept, numbered (`seq`), for readers
//! that ask for what happened since the daemon started or since the last
//! line they read on an earlier connection.

mod http;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use kitty_proto::api::{Accepted, ConnectionState, FeedEvent, FeedLine};
use kitty_proto::request::Submission;
use kitty_store::outbox::Verdict;
use kitty_store::{CommitError, Job};
use tokio::sync::{broadcast, watch};

pub use http::get_feed;

/// Lines a reader may fall behind before it misses some.
pub const PER_READER: usize = 1024;
/// Lines kept for `since_start`.
pub const HISTORY: usize = 1000;

/// How a verdict reached us, as the feed names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    WebSocket,
    Batch,
    /// The daemon itself refused to send a row (its stored data is unreadable).
    Daemon,
}

impl Via {
    fn name(self) -> &'static str {
        match self {
            Self::WebSocket => "websocket",
            Self::Batch => "batch",
            Self::Daemon => "daemon",
        }
    }
}

/// A cheap handle on the feed; every clone publishes to the same readers.
#[derive(Clone)]
pub struct Feed {
    inner: Arc<Inner>,
}

struct Inner {
    tx: broadcast::Sender<Arc<FeedLine>>,
    history: Mutex<History>,
    /// Ends every reader's stream when the daemon shuts down (`None`: never).
    shutdown: Option<watch::Receiver<bool>>,
}

#[derive(Default)]
struct History {
    lines: VecDeque<Arc<FeedLine>>,
    /// The seq of the last line published (0: none yet).
    last_seq: u64,
}

/// What a new reader starts from.
pub struct Subscription {
    /// The kept lines after the seq asked for, oldest first.
    pub backlog: Vec<Arc<FeedLine>>,
    /// Lines after that seq that are no longer kept.
    pub dropped: u64,
    /// The seq of the last line published before this reader began.
    pub last_seq: u64,
    pub live: broadcast::Receiver<Arc<FeedLine>>,
}

impl Default for Feed {
    fn default() -> Self {
        Self::with_shutdown(None)
    }
}

impl Feed {
    /// A feed whose readers' streams end once `shutdown` turns true.
    pub fn new(shutdown: watch::Receiver<bool>) -> Self {
        Self::with_shutdown(Some(shutdown))
    }

    fn with_shutdown(shutdown: Option<watch::Receiver<bool>>) -> Self {
        let (tx, _) = broadcast::channel(PER_READER);
        Self {
            inner: Arc::new(Inner {
                tx,
                history: Mutex::new(History::default()),
                shutdown,
            }),
        }
    }

    pub(crate) fn shutdown(&self) -> Option<watch::Receiver<bool>> {
        self.inner.shutdown.clone()
    }

    /// Starts a reader: the kept lines after seq `after` (0: since start;
    /// `None`: none) and, with no gap or overlap after them, everything from
    /// now on. A seq this daemon has not reached (another run's) means none.
    pub fn subscribe(&self, after: Option<u64>) -> Subscription {
        let h = self.inner.history.lock().unwrap_or_else(|p| p.into_inner());
        // Subscribing under the history lock: a line is either in the
        // backlog or sent to `live`, never both and never neither.
        let live = self.inner.tx.subscribe();
        let after = after.filter(|&a| a <= h.last_seq).unwrap_or(h.last_seq);
        let backlog: Vec<Arc<FeedLine>> = h
            .lines
            .iter()
            .filter(|l| l.seq.is_some_and(|s| s > after))
            .cloned()
            .collect();
        let first_kept = backlog
            .first()
            .and_then(|l| l.seq)
            .unwrap_or(h.last_seq + 1);
        Subscription {
            dropped: first_kept - after - 1,
            backlog,
            last_seq: h.last_seq,
            live,
        }
    }

    fn publish(&self, events: impl IntoIterator<Item = FeedEvent>) {
        let at = kitty_proto::rules::format_utc(chrono::Utc::now());
        let mut h = self.inner.history.lock().unwrap_or_else(|p| p.into_inner());
        for event in events {
            h.last_seq += 1;
            let line = Arc::new(FeedLine {
                at: at.clone(),
                seq: Some(h.last_seq),
                event,
            });
            if h.lines.len() == HISTORY {
                h.lines.pop_front();
            }
            h.lines.push_back(line.clone());
            // No reader is not an error: the line is in the history.
            let _ = self.inner.tx.send(line);
        }
    }

    /// The writer's hook: the events of `jobs` that `results` says are committed.
    pub fn committed(&self, jobs: &[Job], results: &[Result<Vec<Accepted>, CommitError>]) {
        let lines = jobs.iter().zip(results).flat_map(|(job, result)| {
            // Only spool intake says when the producer made the events.
            let path = if job.made_at.is_some() {
                "spool"
            } else {
                "daemon"
            };
            let accepted = result.as_deref().unwrap_or_default();
            job.events
                .iter()
                .zip(accepted)
                .map(move |(event, a)| FeedEvent::Committed {
                    event_id: a.event_id.clone(),
                    event_type: event.event_type().to_owned(),
                    aggregate_id: aggregate_id(event),
                    lamport_clock: a.lamport_clock,
                    path: path.into(),
                    duplicate: a.duplicate,
                })
        });
        self.publish(lines.collect::<Vec<_>>());
    }

    /// The uplink's hook: what the server (or the daemon) said about events.
    pub fn verdicts(&self, verdicts: &[(String, Verdict)], via: Via) {
        self.publish(verdicts.iter().map(|(id, v)| verdict_line(id, v, via)));
    }

    pub fn verdict(&self, event_id: &str, verdict: &Verdict, via: Via) {
        self.publish([verdict_line(event_id, verdict, via)]);
    }

    /// The uplink's hook: events moved to `dead_letter`.
    pub fn dead(&self, event_ids: &[String]) {
        self.publish(event_ids.iter().map(|id| FeedEvent::Dead {
            event_id: id.clone(),
        }));
    }

    /// The uplink's hook: the connection state is now `state`.
    pub fn state(&self, state: ConnectionState, error: Option<&str>) {
        self.publish([FeedEvent::State {
            state,
            error: error.map(str::to_owned),
        }]);
    }
}

fn verdict_line(event_id: &str, verdict: &Verdict, via: Via) -> FeedEvent {
    let event_id = event_id.to_owned();
    let via = via.name().to_owned();
    match verdict {
        Verdict::Accepted => FeedEvent::Confirmed {
            event_id,
            status: "accepted".into(),
            via,
        },
        Verdict::Duplicate => FeedEvent::Confirmed {
            event_id,
            status: "duplicate".into(),
            via,
        },
        Verdict::Rejected(error) => FeedEvent::Rejected {
            event_id,
            error: error.clone(),
            via,
        },
    }
}

/// A draft knows its aggregate; a relayed envelope holds it in its text.
fn aggregate_id(event: &Submission) -> String {
    #[derive(serde::Deserialize)]
    struct Aggregate<'a> {
        #[serde(borrow)]
        aggregate_id: Option<std::borrow::Cow<'a, str>>,
    }
    match event {
        Submission::Draft(d) => d.aggregate_id.clone(),
        Submission::Envelope(e) => serde_json::from_str::<Aggregate>(&e.raw)
            .ok()
            .and_then(|a| a.aggregate_id)
            .map(|a| a.into_owned())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_line(n: usize) -> FeedEvent {
        FeedEvent::State {
            state: ConnectionState::Reconnecting,
            error: Some(format!("attempt {n}")),
        }
    }

    #[test]
    fn a_reader_that_falls_behind_is_told_how_much_it_missed() {
        let feed = Feed::default();
        let mut sub = feed.subscribe(None);
        feed.publish((0..PER_READER + 10).map(state_line));
        match sub.live.try_recv() {
            Err(broadcast::error::TryRecvError::Lagged(n)) => assert_eq!(n, 10),
            other => panic!("expected a lag, got {other:?}"),
        }
        let next = sub.live.try_recv().unwrap();
        assert_eq!(next.event, state_line(10));
    }

    #[test]
    fn since_start_gets_the_history_then_live_lines_without_a_gap() {
        let feed = Feed::default();
        feed.publish((0..HISTORY + 3).map(state_line));
        let mut sub = feed.subscribe(Some(0));
        assert_eq!(sub.dropped, 3);
        assert_eq!(sub.backlog.len(), HISTORY);
        assert_eq!(sub.backlog[0].event, state_line(3));
        assert_eq!(sub.backlog[0].seq, Some(4));
        assert_eq!(sub.last_seq, HISTORY as u64 + 3);
        feed.state(ConnectionState::AuthRequired, Some("why"));
        let live = sub.live.try_recv().unwrap();
        assert_eq!(
            live.event,
            FeedEvent::State {
                state: ConnectionState::AuthRequired,
                error: Some("why".into())
            }
        );
        assert!(feed.subscribe(None).backlog.is_empty());
        // Resuming after a seq: what came later, and nothing of another run.
        let sub = feed.subscribe(Some(HISTORY as u64 + 1));
        assert_eq!(sub.dropped, 0);
        assert_eq!(sub.backlog.len(), 3);
        assert_eq!(sub.backlog[0].seq, Some(HISTORY as u64 + 2));
        let sub = feed.subscribe(Some(1));
        assert_eq!((sub.dropped, sub.backlog.len()), (3, HISTORY));
        let sub = feed.subscribe(Some(u64::MAX));
        assert_eq!((sub.dropped, sub.backlog.len()), (0, 0));
    }

    #[test]
    fn envelope_aggregates_are_read_from_the_text() {
        let env = kitty_proto::envelope::RelayedEnvelope {
            raw: r#"{"event_type":"X","aggregate_id":"WP\u00307","lamport_clock":3}"#.into(),
            event_id: "01J0000000000000000000000A".into(),
            event_type: "X".into(),
            lamport_clock: 3,
        };
        assert_eq!(aggregate_id(&Submission::Envelope(env)), "WP07");
    }
}
