//! Waiting for the next thing to happen, and what arrives on the WebSocket.

use std::time::Instant;

use tokio_tungstenite::tungstenite::{self, Message};

use super::{Driver, MAX_DRAIN, plan_config, session};
use crate::uplink::plan::Event;
use crate::uplink::ws::{self, Inbound, Ws};

impl Driver {
    /// Waits for the next thing to happen: a timer, a commit, a frame,
    /// `sync now`, a settings change or shutdown.
    pub(super) async fn wait(&mut self, until: Option<Instant>) -> Vec<Event> {
        let stopping = |ctx: &crate::uplink::UplinkCtx| {
            // A shutdown sender that is gone means the daemon is going too.
            *ctx.shutdown.borrow() || ctx.shutdown.has_changed().is_err()
        };
        if stopping(&self.ctx) {
            return vec![Event::Shutdown];
        }
        let Self { ctx, ws, .. } = self;
        // A sender that is gone (its task ended) is never heard from again:
        // leave it out rather than wake on it over and over.
        let settings_alive = ctx.settings.has_changed().is_ok();
        let committed_alive = ctx.committed.has_changed().is_ok();
        let sync_now = ctx.shared.sync_now.clone();
        let frame = async {
            match ws {
                Some(ws) => ws.next().await,
                None => std::future::pending().await,
            }
        };
        let timer = async {
            match until {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        let woke = tokio::select! {
            _ = ctx.shutdown.changed() => Woke::Shutdown,
            _ = ctx.settings.changed(), if settings_alive => Woke::Settings,
            _ = ctx.committed.changed(), if committed_alive => Woke::Committed,
            _ = sync_now.notified() => Woke::Sync,
            item = frame => Woke::Frame(item),
            _ = timer => Woke::Timer,
        };
        match woke {
            Woke::Shutdown if stopping(&self.ctx) => vec![Event::Shutdown],
            Woke::Shutdown => vec![],
            Woke::Settings => self.settings_events(),
            Woke::Committed => vec![Event::Committed],
            Woke::Sync => vec![Event::SyncRequested],
            Woke::Timer => vec![Event::Timer],
            Woke::Frame(item) => {
                let mut events = vec![self.frame_event(item)];
                self.drain(&mut events);
                events
            }
        }
    }

    /// Frames already here, up to `MAX_DRAIN`, or until the link ends.
    pub(super) fn drain(&mut self, events: &mut Vec<Event>) {
        for _ in 0..MAX_DRAIN {
            let Some(item) = self.ws.as_mut().and_then(Ws::ready) else {
                return;
            };
            events.push(self.frame_event(item));
        }
    }

    fn frame_event(&mut self, item: Option<Result<Message, tungstenite::Error>>) -> Event {
        match item {
            Some(Ok(Message::Text(text))) => Event::Frame(ws::classify(&text)),
            Some(Ok(Message::Close(frame))) => {
                let why = frame
                    .map(|f| format!("{} {}", f.code, f.reason))
                    .unwrap_or_default();
                self.link_lost(
                    format!("the server closed the WebSocket {why}")
                        .trim()
                        .to_owned(),
                )
            }
            // Pings, pongs, binary: the link is alive.
            Some(Ok(_)) => Event::Frame(Inbound::Other),
            Some(Err(e)) => self.link_lost(format!("WebSocket: {e}")),
            None => self.link_lost("the WebSocket closed".into()),
        }
    }

    /// What changed in config.toml and the credentials, as events.
    fn settings_events(&mut self) -> Vec<Event> {
        let now = self.ctx.settings.borrow_and_update().clone();
        let mut events = Vec::new();
        if now.config != self.seen.config {
            events.push(Event::Config(plan_config(&now)));
        }
        if now.credentials != self.seen.credentials {
            events.push(Event::Credentials(session(&mut self.auth)));
        }
        self.seen = now;
        events
    }
}

enum Woke {
    Shutdown,
    Settings,
    Committed,
    Sync,
    Frame(Option<Result<Message, tungstenite::Error>>),
    Timer,
}
