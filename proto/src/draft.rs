//! A draft: the part of an event its producer knows. The daemon completes it
//! (event_id, lamport_clock, node_id, timestamp, team_slug) when it stamps it.

use serde_json::{Map, Value};

use crate::envelope::{Envelope, non_empty, required_str};
use crate::payloads::{AggregateType, EventType, validate_payload};
use crate::rules::{self, Violation};

const DRAFT_FIELDS: &[&str] = &[
    "event_type",
    "aggregate_id",
    "aggregate_type",
    "payload",
    "causation_id",
    "project_uuid",
    "project_slug",
    "event_id",
];

/// A validated draft: its payload is one of the eight 028 schemas, with defaults filled.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    pub event_type: EventType,
    pub aggregate_id: String,
    pub aggregate_type: AggregateType,
    pub payload: Map<String, Value>,
    pub causation_id: Option<String>,
    pub project_uuid: Option<String>,
    pub project_slug: Option<String>,
    /// Chosen by the producer so that a retry of the same event (after a
    /// timeout, say) leaves one row, not two.
    pub event_id: Option<String>,
}

/// What the daemon adds to a draft.
#[derive(Debug, Clone)]
pub struct Stamp<'a> {
    pub event_id: &'a str,
    pub lamport_clock: u64,
    pub node_id: &'a str,
    pub timestamp: &'a str,
    pub team_slug: &'a str,
}

impl Draft {
    /// Validates a draft object. `aggregate_id` and `aggregate_type` may be left
    /// out: they follow from the payload (`wp_id`, `feature_slug`, or `"error"`);
    /// when given they must agree with it.
    pub fn from_object(mut obj: Map<String, Value>) -> Result<Self, Violation> {
        if let Some(unknown) = obj.keys().find(|k| !DRAFT_FIELDS.contains(&k.as_str())) {
            return Err(Violation::new(
                unknown.clone(),
                format!(
                    "is not a draft field (a draft has {})",
                    DRAFT_FIELDS.join(", ")
                ),
            ));
        }
        let type_name = non_empty(&obj, "event_type")?;
        let event_type = EventType::parse(type_name).ok_or_else(|| {
            Violation::new(
                "event_type",
                format!("must be one of the 028 event types: {}", EventType::names()),
            )
        })?;
        let mut payload = match obj.remove("payload") {
            Some(Value::Object(map)) => map,
            None | Some(Value::Null) => return Err(Violation::new("payload", "is required")),
            Some(_) => return Err(Violation::new("payload", "must be a JSON object")),
        };
        let derived = validate_payload(event_type, &mut payload)?;
        let aggregate_id = match obj.get("aggregate_id") {
            None | Some(Value::Null) => derived.id.clone(),
            Some(_) => {
                let id = non_empty(&obj, "aggregate_id")?;
                if id != derived.id {
                    return Err(Violation::new(
                        "aggregate_id",
                        format!(
                            "must be \"{}\" for this {} event",
                            derived.id,
                            event_type.as_str()
                        ),
                    ));
                }
                id.to_owned()
            }
        };
        let aggregate_type = match obj.get("aggregate_type") {
            None | Some(Value::Null) => derived.kind,
            Some(_) => {
                let given = required_str(&obj, "aggregate_type")?;
                match AggregateType::parse(given) {
                    Some(t) if t == derived.kind => t,
                    _ => {
                        return Err(Violation::new(
                            "aggregate_type",
                            format!("must be {} for this event", derived.kind.as_str()),
                        ));
                    }
                }
            }
        };
        let causation_id = optional_ulid(&obj, "causation_id")?;
        let event_id = optional_ulid(&obj, "event_id")?;
        let project_uuid = optional_str(&obj, "project_uuid")?;
        let project_slug = optional_str(&obj, "project_slug")?;
        Ok(Self {
            event_type,
            aggregate_id,
            aggregate_type,
            payload,
            causation_id,
            project_uuid,
            project_slug,
            event_id,
        })
    }

    /// The complete envelope, as JSON text.
    pub fn stamp(&self, s: &Stamp<'_>) -> String {
        let env = Envelope {
            event_id: s.event_id,
            event_type: self.event_type.as_str(),
            aggregate_id: &self.aggregate_id,
            aggregate_type: self.aggregate_type.as_str(),
            payload: &self.payload,
            node_id: s.node_id,
            lamport_clock: s.lamport_clock,
            causation_id: self.causation_id.as_deref(),
            timestamp: s.timestamp,
            team_slug: s.team_slug,
            project_uuid: self.project_uuid.as_deref(),
            project_slug: self.project_slug.as_deref(),
        };
        serde_json::to_string(&env).expect("an envelope of strings and numbers always serialises")
    }

    /// The draft as the JSON object it was read from (with defaults filled), for the spool.
    pub fn to_object(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("event_type".into(), self.event_type.as_str().into());
        m.insert("aggregate_id".into(), self.aggregate_id.clone().into());
        m.insert("aggregate_type".into(), self.aggregate_type.as_str().into());
        m.insert("payload".into(), Value::Object(self.payload.clone()));
        for (k, v) in [
            ("causation_id", &self.causation_id),
            ("project_uuid", &self.project_uuid),
            ("project_slug", &self.project_slug),
            ("event_id", &self.event_id),
        ] {
            if let Some(v) = v {
                m.insert(k.into(), v.clone().into());
            }
        }
        m
    }
}

fn optional_str(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, Violation> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(Violation::new(key, "must be null or a non-empty string")),
    }
}

fn optional_ulid(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, Violation> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if rules::is_ulid(s) => Ok(Some(s.clone())),
        Some(_) => Err(Violation::new(key, "must be null or a ULID")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn draft(v: Value) -> Result<Draft, Violation> {
        Draft::from_object(v.as_object().unwrap().clone())
    }

    #[test]
    fn derives_the_aggregate() {
        let d = draft(json!({"event_type":"WPStatusChanged","payload":{"wp_id":"WP04","previous_status":"planned","new_status":"doing"}})).unwrap();
        assert_eq!(d.aggregate_id, "WP04");
        assert_eq!(d.aggregate_type, AggregateType::WorkPackage);
        let e = draft(json!({"event_type":"WPStatusChanged","aggregate_id":"WP05","payload":{"wp_id":"WP04","previous_status":"planned","new_status":"doing"}})).unwrap_err();
        assert_eq!(e.field, "aggregate_id");
    }

    #[test]
    fn rejects_unknown_fields_and_types() {
        assert_eq!(
            draft(json!({"event_type":"Nope","payload":{}}))
                .unwrap_err()
                .field,
            "event_type"
        );
        assert_eq!(
            draft(json!({"event_typ":"WPCreated","payload":{}}))
                .unwrap_err()
                .field,
            "event_typ"
        );
        assert_eq!(
            draft(json!({"event_type":"WPCreated"})).unwrap_err().field,
            "payload"
        );
    }

    #[test]
    fn stamps_in_cli_field_order() {
        let d = draft(
            json!({"event_type":"ErrorLogged","payload":{"error_type":"auth","error_message":"x"}}),
        )
        .unwrap();
        let text = d.stamp(&Stamp {
            event_id: "01HX5ZQK3M8N9P0R1S2T3V4W5X",
            lamport_clock: 7,
            node_id: "abcdefabcdef",
            timestamp: "2026-02-04T13:47:09.123456+00:00",
            team_slug: "local",
        });
        assert!(text.starts_with(r#"{"event_id":"01HX5ZQK3M8N9P0R1S2T3V4W5X","event_type":"ErrorLogged","aggregate_id":"error","aggregate_type":"Feature","payload":"#), "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        let env = crate::envelope::validate_envelope(&text, v.as_object().unwrap()).unwrap();
        assert_eq!(env.lamport_clock, 7);
        let back = Draft::from_object(d.to_object()).unwrap();
        assert_eq!(back, d);
    }
}
