//! The WebSocket to the server (CONTRACT.md §4): events out as bare envelopes,
//! pings answered, acknowledgements and other nodes' events in.

use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use kitty_store::outbox::{Outgoing, Verdict};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::envelope;
use super::target::Target;

type Stream = WebSocketStream<MaybeTlsStream<TcpStream>>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest frame we accept from the server: a snapshot can be large, but not this.
const MAX_FRAME: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, thiserror::Error)]
pub enum WsError {
    #[error("the server refused the WebSocket token (401)")]
    Unauthorized,
    #[error("{message}")]
    Failed { message: String, connect: bool },
}

pub struct Ws {
    sink: SplitSink<Stream, Message>,
    stream: SplitStream<Stream>,
}

pub async fn connect(target: &Target, ws_token: &str) -> Result<Ws, WsError> {
    let mut req = target
        .ws_url
        .as_str()
        .into_client_request()
        .map_err(|e| WsError::Failed {
            message: format!("bad WebSocket URL {}: {e}", target.ws_url),
            connect: false,
        })?;
    let auth =
        HeaderValue::from_str(&format!("Bearer {ws_token}")).map_err(|_| WsError::Failed {
            message: "the ws_token cannot be sent in a header".into(),
            connect: false,
        })?;
    req.headers_mut().insert("authorization", auth);
    let config = tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME))
        .max_frame_size(Some(MAX_FRAME));
    let connecting = tokio_tungstenite::connect_async_with_config(req, Some(config), true);
    let (stream, _) = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Err(_) => {
            return Err(WsError::Failed {
                message: "the WebSocket handshake timed out".into(),
                connect: true,
            });
        }
        Ok(Err(tungstenite::Error::Http(res))) if res.status() == 401 => {
            return Err(WsError::Unauthorized);
        }
        Ok(Err(tungstenite::Error::Http(res))) => {
            let message = super::redirect::refused_upgrade(res.status(), res.headers())
                .unwrap_or_else(|| format!("the WebSocket upgrade was answered {}", res.status()));
            return Err(WsError::Failed {
                message,
                connect: false,
            });
        }
        Ok(Err(e)) => {
            let connect = matches!(e, tungstenite::Error::Io(_));
            return Err(WsError::Failed {
                message: format!("cannot open the WebSocket: {e}"),
                connect,
            });
        }
        Ok(Ok(s)) => s,
    };
    let (sink, stream) = stream.split();
    Ok(Ws { sink, stream })
}

impl Ws {
    /// Sends the rows as bare envelopes in order. Rows that are not JSON objects
    /// are not sent and come back as rejections.
    pub async fn send_rows(
        &mut self,
        rows: &[Outgoing],
        team: Option<&str>,
    ) -> Result<Vec<(String, Verdict)>, String> {
        let mut bad = Vec::new();
        for row in rows {
            match envelope::outgoing(&row.data, team) {
                Some(text) => self
                    .sink
                    .feed(Message::text(text.into_owned()))
                    .await
                    .map_err(|e| format!("WebSocket send failed: {e}"))?,
                None => bad.push((
                    row.event_id.clone(),
                    Verdict::Rejected("stored data is not a JSON object".into()),
                )),
            }
        }
        self.sink
            .flush()
            .await
            .map_err(|e| format!("WebSocket send failed: {e}"))?;
        Ok(bad)
    }

    pub async fn send_text(&mut self, text: String) -> Result<(), String> {
        self.sink
            .send(Message::text(text))
            .await
            .map_err(|e| format!("WebSocket send failed: {e}"))
    }

    /// Our own heartbeat: a WebSocket ping; any frame back counts as alive.
    pub async fn ping(&mut self) -> Result<(), String> {
        self.sink
            .send(Message::Ping(Vec::new().into()))
            .await
            .map_err(|e| format!("WebSocket ping failed: {e}"))
    }

    pub async fn next(&mut self) -> Option<Result<Message, tungstenite::Error>> {
        self.stream.next().await
    }

    /// The next frame if one is already here.
    pub fn ready(&mut self) -> Option<Option<Result<Message, tungstenite::Error>>> {
        futures_util::FutureExt::now_or_never(self.stream.next())
    }

    /// Closes with a close frame, as a clean shutdown should.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = self.sink.send(Message::Close(None)).await;
            let _ = self.sink.flush().await;
        })
        .await;
    }
}

/// A frame from the server, understood.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// `{"type":"ping","timestamp":T}`: answer with the same timestamp.
    Ping(Value),
    /// An event the server relays; its Lamport value when it has a usable one.
    Event(Option<Relayed>),
    /// `ack` / `error` of a later server.
    Verdict(String, Verdict),
    Snapshot,
    Other,
}

/// An event the server relayed: its Lamport value, and the node that made it.
/// The server may relay our own events back (a batch is broadcast to every
/// socket of the team); the ledger moves the clock for other nodes' only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayed {
    pub lamport: u64,
    pub node_id: Option<String>,
}

pub fn classify(text: &str) -> Inbound {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return Inbound::Other;
    };
    let field = |k: &str| v.get(k).and_then(Value::as_str);
    match field("type") {
        Some("ping") => Inbound::Ping(v.get("timestamp").cloned().unwrap_or(Value::Null)),
        Some("event") => Inbound::Event(
            kitty_proto::envelope::lamport(v.get("lamport_clock"))
                .ok()
                .map(|lamport| Relayed {
                    lamport,
                    node_id: field("node_id").map(str::to_owned),
                }),
        ),
        Some("snapshot") => Inbound::Snapshot,
        // Only the statuses that say so are an acceptance; an ack that says
        // "rejected" is a rejection, and one we cannot read is nothing (the
        // row stays, and a batch settles it).
        Some("ack") => match (field("event_id"), field("status")) {
            (Some(id), Some("accepted" | "success")) => {
                Inbound::Verdict(id.into(), Verdict::Accepted)
            }
            (Some(id), Some("duplicate")) => Inbound::Verdict(id.into(), Verdict::Duplicate),
            (Some(id), Some("rejected" | "error")) => Inbound::Verdict(id.into(), rejection(&v)),
            _ => Inbound::Other,
        },
        Some("error") => match field("event_id") {
            Some(id) => Inbound::Verdict(id.into(), rejection(&v)),
            None => Inbound::Other,
        },
        _ => Inbound::Other,
    }
}

fn rejection(frame: &Value) -> Verdict {
    let field = |k: &str| frame.get(k).and_then(Value::as_str);
    let why = field("error")
        .or(field("error_message"))
        .or(field("message"))
        .unwrap_or("rejected by the server");
    Verdict::Rejected(why.chars().take(300).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames() {
        assert_eq!(
            classify(r#"{"type":"ping","timestamp":1.5}"#),
            Inbound::Ping(serde_json::json!(1.5))
        );
        assert_eq!(
            classify(r#"{"type":"event","lamport_clock":12,"node_id":"abc"}"#),
            Inbound::Event(Some(Relayed {
                lamport: 12,
                node_id: Some("abc".into())
            }))
        );
        assert_eq!(
            classify(r#"{"type":"event","lamport_clock":"12"}"#),
            Inbound::Event(None)
        );
        assert_eq!(classify(r#"{"type":"event"}"#), Inbound::Event(None));
        assert_eq!(
            classify(r#"{"type":"ack","event_id":"a","status":"duplicate"}"#),
            Inbound::Verdict("a".into(), Verdict::Duplicate)
        );
        assert_eq!(
            classify(r#"{"type":"ack","event_id":"a","status":"accepted"}"#),
            Inbound::Verdict("a".into(), Verdict::Accepted)
        );
        assert!(matches!(
            classify(r#"{"type":"error","event_id":"a","status":"rejected","error":"bad"}"#),
            Inbound::Verdict(_, Verdict::Rejected(_))
        ));
        assert!(matches!(
            classify(r#"{"type":"ack","event_id":"a","status":"rejected"}"#),
            Inbound::Verdict(_, Verdict::Rejected(_))
        ));
        assert_eq!(classify(r#"{"type":"ack","event_id":"a"}"#), Inbound::Other);
        assert_eq!(
            classify(r#"{"type":"ack","event_id":"a","status":"pending"}"#),
            Inbound::Other
        );
        assert_eq!(
            classify(r#"{"type":"snapshot","work_packages":[]}"#),
            Inbound::Snapshot
        );
        assert_eq!(classify("garbage"), Inbound::Other);
        assert_eq!(classify(r#"{"type":"ack"}"#), Inbound::Other);
    }
}
