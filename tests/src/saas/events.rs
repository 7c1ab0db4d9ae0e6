//! The one path every envelope takes, by batch or by WebSocket: the envelope
//! rules, the tenant check, the store, and the broadcast to the team.

use kitty_proto::envelope::{RelayedEnvelope, validate_envelope};
use serde_json::{Map, Value};

use super::AppState;
use super::store::NewEvent;

/// An envelope that passed CONTRACT.md §2, with its fields for the broadcast.
pub(crate) struct Checked {
    pub envelope: RelayedEnvelope,
    pub fields: Map<String, Value>,
}

/// Why one event was refused.
pub(crate) struct Refusal {
    /// The event's event_id when it had a string one, so the client can match it.
    pub event_id: Option<String>,
    pub message: String,
}

pub(crate) fn parse_object(raw: &str) -> Result<Map<String, Value>, Refusal> {
    serde_json::from_str(raw).map_err(|e| Refusal {
        event_id: None,
        message: format!("event must be a JSON object: {e}"),
    })
}

pub(crate) fn check(raw: &str, fields: Map<String, Value>) -> Result<Checked, Refusal> {
    match validate_envelope(raw, &fields) {
        Ok(envelope) => Ok(Checked { envelope, fields }),
        Err(v) => Err(Refusal {
            event_id: event_id_of(&fields),
            message: v.to_string(),
        }),
    }
}

pub(crate) fn event_id_of(fields: &Map<String, Value>) -> Option<String> {
    fields
        .get("event_id")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The team an event names when it names a team other than `tenant`. An
/// event without a usable `team_slug` is left to the envelope rules.
pub(crate) fn foreign_team<'a>(fields: &'a Map<String, Value>, tenant: &str) -> Option<&'a str> {
    fields
        .get("team_slug")
        .and_then(Value::as_str)
        .filter(|t| *t != tenant)
}

impl AppState {
    /// Stores checked events of `team` and sends each new one to the team's
    /// sockets, all but `origin` (the socket it came in on, if any). Returns
    /// per event whether it was new.
    pub(crate) async fn accept(
        &self,
        team: &str,
        events: &[Checked],
        via: &'static str,
        origin: Option<u64>,
    ) -> anyhow::Result<Vec<bool>> {
        let rows: Vec<NewEvent<'_>> = events
            .iter()
            .map(|c| NewEvent {
                event_id: &c.envelope.event_id,
                event_type: &c.envelope.event_type,
                team,
                lamport_clock: c.envelope.lamport_clock,
                raw: &c.envelope.raw,
                via,
            })
            .collect();
        let fresh = self.store.insert(&rows).await?;
        let stored = fresh.iter().filter(|f| **f).count() as u64;
        self.counters.events_stored.add(stored);
        self.counters
            .duplicates_seen
            .add(fresh.len() as u64 - stored);
        for (c, _) in events.iter().zip(&fresh).filter(|(_, f)| **f) {
            let sent = self.hub.broadcast(team, origin, || event_frame(&c.fields));
            self.counters.ws_broadcasts.add(sent);
        }
        Ok(fresh)
    }
}

/// `{"type":"event", ...envelope}`. An envelope field named `type` would
/// collide with the frame's own, so it is left out.
fn event_frame(fields: &Map<String, Value>) -> String {
    let mut frame = Map::with_capacity(fields.len() + 1);
    frame.insert("type".into(), "event".into());
    frame.extend(
        fields
            .iter()
            .filter(|(k, _)| *k != "type")
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    Value::Object(frame).to_string()
}
