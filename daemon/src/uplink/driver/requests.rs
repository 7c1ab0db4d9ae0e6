//! The requests the planner asks for, each answered by one event.

use std::time::Duration;

use kitty_store::outbox;

use super::{Driver, WS_CHUNK, auth_failed};
use crate::feed::Via;
use crate::uplink::auth::AuthError;
use crate::uplink::batch::{self, BatchError};
use crate::uplink::plan::{BatchFailure, Event, Failure, Path};
use crate::uplink::ws;

impl Driver {
    pub(super) async fn open_ws(&mut self) -> Option<Event> {
        let Some(target) = self.target() else {
            return Some(self.link_lost("no usable server_url".into()));
        };
        // Shown in status while it lasts (not the planner's: it is about I/O under way).
        let _busy = self.ctx.shared.in_flight("opening the WebSocket".into());
        let token = match self.auth.ws_token(&target).await {
            Ok(t) => t,
            Err(e) => return Some(auth_failed(Path::Ws, e)),
        };
        Some(match ws::connect(&target, &token).await {
            Ok(ws) => {
                tracing::info!(server = %target.base, "WebSocket open");
                self.ws = Some(ws);
                Event::WsOpened
            }
            Err(ws::WsError::Unauthorized) => Event::Unauthorized(Path::Ws),
            Err(ws::WsError::Failed { message, connect }) => Event::WsFailed(Failure {
                message,
                unreachable: connect,
            }),
        })
    }

    pub(super) async fn send_ws(&mut self, after: Option<outbox::Cursor>) -> Option<Event> {
        let rows = match outbox::oldest_after(&mut self.conn, after, WS_CHUNK).await {
            Ok(r) => r,
            Err(e) => {
                // Nothing sent; the next commit or flush tries again.
                tracing::error!("{e}");
                return Some(Event::WsSent {
                    last: None,
                    ids: vec![],
                    full: false,
                    bad: vec![],
                });
            }
        };
        let Some(ws) = self.ws.as_mut() else {
            return Some(self.link_lost("the WebSocket is not open".into()));
        };
        let team = self.auth.team();
        Some(match ws.send_rows(&rows, team.as_deref()).await {
            Ok(bad) => {
                self.ctx.shared.feed.verdicts(&bad, Via::Daemon);
                Event::WsSent {
                    last: rows.last().map(|r| (r.timestamp, r.id)),
                    full: rows.len() as u32 == WS_CHUNK,
                    ids: rows
                        .into_iter()
                        .map(|r| r.event_id)
                        .filter(|id| !bad.iter().any(|(b, _)| b == id))
                        .collect(),
                    bad,
                }
            }
            Err(e) => self.link_lost(e),
        })
    }

    pub(super) async fn post_batch(&mut self) -> Event {
        let rows = match outbox::oldest_after(&mut self.conn, None, batch::MAX_BATCH).await {
            Ok(r) if r.is_empty() => return Event::BatchEmpty,
            Ok(r) => r,
            Err(e) => {
                let failure = BatchFailure::Failed(Failure::answered(e.to_string()));
                return Event::BatchFailed { sent: 0, failure };
            }
        };
        let Some(target) = self.target() else {
            return Event::BatchEmpty;
        };
        let _busy = (self.ctx.shared).in_flight(format!("a batch POST of {} events", rows.len()));
        let token = match self.auth.access() {
            Ok(t) => t,
            Err(e) => return auth_failed(Path::Batch, e),
        };
        let team = self.auth.team();
        let sent = rows.len() as u64;
        let full = rows.len() as u32 == batch::MAX_BATCH;
        let failure = match batch::post(&self.http, &target, &token, team.as_deref(), rows).await {
            Ok(verdicts) => {
                self.ctx.shared.feed.verdicts(&verdicts, Via::Batch);
                return Event::BatchAnswered {
                    sent,
                    full,
                    verdicts,
                };
            }
            Err(BatchError::Unauthorized) => return Event::Unauthorized(Path::Batch),
            Err(BatchError::RateLimited(wait)) => BatchFailure::RateLimited(wait),
            Err(BatchError::Forbidden(why)) => BatchFailure::Forbidden(why),
            Err(BatchError::Failed { message, connect }) => BatchFailure::Failed(Failure {
                message,
                unreachable: connect,
            }),
        };
        Event::BatchFailed { sent, failure }
    }

    pub(super) async fn refresh(&mut self) -> Event {
        let Some(target) = self.target() else {
            return Event::RefreshFailed(Failure::answered("no usable server_url"));
        };
        match self.auth.refresh(&target).await {
            Ok(()) => Event::Refreshed,
            Err(AuthError::Transient { message, connect }) => Event::RefreshFailed(Failure {
                message,
                unreachable: connect,
            }),
            Err(e) => Event::SessionOver(e.to_string()),
        }
    }

    /// A cheap TCP connect: is the server back?
    pub(super) async fn probe(&mut self) -> Event {
        let reachable = match self.target() {
            Some(t) => tokio::time::timeout(
                Duration::from_millis(500),
                tokio::net::TcpStream::connect(&t.authority),
            )
            .await
            .is_ok_and(|r| r.is_ok()),
            None => false,
        };
        Event::Probed { reachable }
    }

    pub(super) async fn apply(&mut self, verdicts: Vec<(String, outbox::Verdict)>) -> Event {
        match self.ctx.writer.apply(verdicts.clone()).await {
            Ok(counts) => {
                self.ctx.shared.feed.dead(&counts.dead_ids);
                Event::Applied {
                    counts,
                    at: kitty_proto::rules::format_utc(chrono::Utc::now()),
                }
            }
            Err(message) => Event::ApplyFailed { verdicts, message },
        }
    }
}
