//! The event envelope (CONTRACT.md §2): built from a draft by the daemon, or
//! relayed unchanged when another producer built it.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::rules::{self, Violation};

/// An envelope the daemon builds. Field order follows the Python CLI's dict,
/// so rows we write read like rows it writes.
#[derive(Debug, Clone, Serialize)]
/// The 3.x fields (schema_version, build_id, correlation_id, git_*, repo_slug)
/// appear only when the draft set them.
pub struct Envelope<'a> {
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub aggregate_id: &'a str,
    pub aggregate_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_id: Option<&'a str>,
    pub payload: &'a Map<String, Value>,
    pub node_id: &'a str,
    pub lamport_clock: u64,
    pub causation_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<&'a str>,
    pub timestamp: &'a str,
    pub team_slug: &'a str,
    pub project_uuid: Option<&'a str>,
    pub project_slug: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_branch: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head_commit_sha: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo_slug: Option<&'a str>,
}

/// A complete envelope from another producer, checked and kept byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayedEnvelope {
    /// The envelope's JSON text exactly as received.
    pub raw: String,
    pub event_id: String,
    pub event_type: String,
    pub lamport_clock: u64,
}

/// Checks the envelope rules of CONTRACT.md §2. The payload must be an object;
/// its schema is not checked, since any non-empty `event_type` may be relayed.
pub fn validate_envelope(
    raw: &str,
    obj: &Map<String, Value>,
) -> Result<RelayedEnvelope, Violation> {
    let event_id = required_str(obj, "event_id")?;
    if !rules::is_ulid(event_id) {
        return Err(Violation::new(
            "event_id",
            "must be a ULID (26 characters of ^[0-9A-HJKMNP-TV-Z]{26}$)",
        ));
    }
    let event_type = non_empty(obj, "event_type")?;
    non_empty(obj, "aggregate_id")?;
    // Open, as for drafts of other types: the 3.x CLIs add Mission, Project, Build, ...
    let aggregate_type = required_str(obj, "aggregate_type")?;
    if !rules::is_pascal_case(aggregate_type) {
        return Err(Violation::new(
            "aggregate_type",
            "must be a PascalCase name such as WorkPackage, Feature, Mission or Project",
        ));
    }
    if !obj.get("payload").is_some_and(Value::is_object) {
        return Err(Violation::new("payload", "must be a JSON object"));
    }
    non_empty(obj, "node_id")?;
    let lamport_clock = lamport(obj.get("lamport_clock"))?;
    match obj.get("causation_id") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if rules::is_ulid(s) => {}
        Some(_) => return Err(Violation::new("causation_id", "must be null or a ULID")),
    }
    let timestamp = required_str(obj, "timestamp")?;
    if !rules::is_iso8601_utc(timestamp) {
        return Err(Violation::new(
            "timestamp",
            "must be an ISO-8601 date-time in UTC with its zone (e.g. 2026-02-04T13:47:09.123456+00:00)",
        ));
    }
    non_empty(obj, "team_slug")?;
    for key in ["project_uuid", "project_slug"] {
        if !matches!(obj.get(key), None | Some(Value::Null | Value::String(_))) {
            return Err(Violation::new(key, "must be null or a string"));
        }
    }
    Ok(RelayedEnvelope {
        raw: raw.to_owned(),
        event_id: event_id.to_owned(),
        event_type: event_type.to_owned(),
        lamport_clock,
    })
}

/// `lamport_clock`: an integer from 0 to 2^53 - 1 (a string or a float is invalid).
pub fn lamport(v: Option<&Value>) -> Result<u64, Violation> {
    let rule = "must be an integer from 0 to 9007199254740991";
    match v {
        None | Some(Value::Null) => Err(Violation::new("lamport_clock", "is required")),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(x) if x <= crate::MAX_LAMPORT => Ok(x),
            _ => Err(Violation::new("lamport_clock", rule)),
        },
        Some(_) => Err(Violation::new("lamport_clock", rule)),
    }
}

pub(crate) fn required_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
) -> Result<&'a str, Violation> {
    match obj.get(key) {
        None | Some(Value::Null) => Err(Violation::new(key, "is required")),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(Violation::new(key, "must be a string")),
    }
}

pub(crate) fn non_empty<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<&'a str, Violation> {
    let s = required_str(obj, key)?;
    if s.trim().is_empty() {
        return Err(Violation::new(key, "must be a non-empty string"));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn sample() -> Value {
        json!({
            "event_id": "01HX5ZQK3M8N9P0R1S2T3V4W5X",
            "event_type": "WPStatusChanged",
            "aggregate_id": "WP01",
            "aggregate_type": "WorkPackage",
            "payload": {"wp_id": "WP01", "from_lane": "planned", "to_lane": "claimed"},
            "node_id": "3f9a0c1b2d4e",
            "lamport_clock": 42,
            "causation_id": null,
            "timestamp": "2026-02-04T13:47:09.123456+00:00",
            "team_slug": "acme",
            "project_uuid": null,
            "project_slug": null,
            "git_branch": "main"
        })
    }

    fn check(v: &Value) -> Result<RelayedEnvelope, Violation> {
        validate_envelope(&v.to_string(), v.as_object().unwrap())
    }

    #[test]
    fn accepts_a_later_cli_envelope_and_keeps_it() {
        let v = sample();
        let e = check(&v).unwrap();
        assert_eq!(e.lamport_clock, 42);
        assert_eq!(e.raw, v.to_string());
    }

    #[test]
    fn names_the_broken_rule() {
        for (key, bad, field) in [
            ("event_id", json!("nope"), "event_id"),
            ("lamport_clock", json!("42"), "lamport_clock"),
            ("lamport_clock", json!(-1), "lamport_clock"),
            ("lamport_clock", json!(1.5), "lamport_clock"),
            (
                "lamport_clock",
                json!(9_007_199_254_740_992u64),
                "lamport_clock",
            ),
            ("payload", json!([1]), "payload"),
            ("causation_id", json!("x"), "causation_id"),
            ("timestamp", json!("2026-02-04T13:47:09"), "timestamp"),
            ("team_slug", json!(""), "team_slug"),
            ("aggregate_type", json!("work package"), "aggregate_type"),
            ("event_type", json!(" "), "event_type"),
        ] {
            let mut v = sample();
            v[key] = bad;
            assert_eq!(check(&v).unwrap_err().field, field, "{key}");
        }
    }
}
