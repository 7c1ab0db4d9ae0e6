//! A draft: the part of an event its producer knows. The daemon completes it
//! (event_id, lamport_clock, node_id, timestamp, team_slug) when it stamps it.
//!
//! The exact rules are in docs/DRAFTS.md: drafts of the eight 028 types are
//! checked against their (widened) schemas; drafts of any other PascalCase type
//! need their aggregate named, and their producer answers for the payload.

use serde_json::{Map, Value};

use crate::envelope::{Envelope, non_empty, required_str};
use crate::payloads::{EventType, validate_payload};
use crate::rules::{self, MAX_TEXT_LEN, Violation};

const DRAFT_FIELDS: &[&str] = &[
    "event_type",
    "aggregate_id",
    "aggregate_type",
    "payload",
    "causation_id",
    "project_uuid",
    "project_slug",
    "event_id",
    "occurred_at",
    "correlation_id",
    "schema_version",
    "build_id",
    "git_branch",
    "head_commit_sha",
    "repo_slug",
];

/// Keys producers might put at the top level that belong in the payload.
const PAYLOAD_KEYS: &[&str] = &["mission_slug", "mission_id", "wp_id", "feature_slug"];

/// A validated draft. A draft of a 028 type has its payload checked and its
/// defaults filled; a draft of another type carries its payload as given.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    /// The 028 type, or `None` for another (PascalCase) type.
    pub known: Option<EventType>,
    pub event_type: String,
    pub aggregate_id: String,
    pub aggregate_type: String,
    pub payload: Map<String, Value>,
    pub causation_id: Option<String>,
    pub project_uuid: Option<String>,
    pub project_slug: Option<String>,
    /// Chosen by the producer so that a retry of the same event (after a
    /// timeout, say) leaves one row, not two.
    pub event_id: Option<String>,
    /// When the event happened, in UTC; the envelope's `timestamp` when given
    /// (spec-kitty-events: the timestamp is the producer's occurrence time).
    pub occurred_at: Option<String>,
    pub extra: Extra,
}

/// The optional envelope fields of the 3.x CLIs that a draft may carry; each
/// is copied into the envelope when set and left out when not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extra {
    pub schema_version: Option<String>,
    pub build_id: Option<String>,
    pub correlation_id: Option<String>,
    pub git_branch: Option<String>,
    pub head_commit_sha: Option<String>,
    pub repo_slug: Option<String>,
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
    /// Validates a draft object. For a 028 type, `aggregate_id` and
    /// `aggregate_type` may be left out: they follow from the payload (`wp_id`,
    /// `feature_slug`, or `"error"`); when given they must agree with it. For
    /// another type both are required.
    pub fn from_object(mut obj: Map<String, Value>) -> Result<Self, Violation> {
        if let Some(unknown) = obj.keys().find(|k| !DRAFT_FIELDS.contains(&k.as_str())) {
            let rule = if PAYLOAD_KEYS.contains(&unknown.as_str()) {
                "is not a draft field: it belongs in the payload".to_owned()
            } else {
                format!(
                    "is not a draft field (a draft has {})",
                    DRAFT_FIELDS.join(", ")
                )
            };
            return Err(Violation::new(unknown.clone(), rule));
        }
        let type_name = non_empty(&obj, "event_type")?.to_owned();
        let known = EventType::parse(&type_name);
        if known.is_none() && !rules::is_pascal_case(&type_name) {
            return Err(Violation::new(
                "event_type",
                format!(
                    "must be one of the 028 event types ({}) or another PascalCase name \
                     (^[A-Z][A-Za-z0-9]*$, at most {} characters)",
                    EventType::names(),
                    rules::MAX_NAME_LEN
                ),
            ));
        }
        let mut payload = match obj.remove("payload") {
            Some(Value::Object(map)) => map,
            None | Some(Value::Null) => return Err(Violation::new("payload", "is required")),
            Some(_) => return Err(Violation::new("payload", "must be a JSON object")),
        };
        let (aggregate_id, aggregate_type) = match known {
            Some(ty) => known_aggregate(&obj, ty, &mut payload)?,
            None => other_aggregate(&obj, &type_name)?,
        };
        let causation_id = optional_ulid(&obj, "causation_id")?;
        let event_id = optional_ulid(&obj, "event_id")?;
        let project_uuid = optional_text(&obj, "project_uuid")?;
        let project_slug = optional_text(&obj, "project_slug")?;
        let occurred_at = match optional_str(&obj, "occurred_at")? {
            None => None,
            Some(s) => Some(rules::to_utc_iso8601(&s).ok_or_else(|| {
                Violation::new(
                    "occurred_at",
                    "must be an ISO-8601 date-time with its zone (e.g. 2026-02-04T13:47:09.123456+00:00)",
                )
            })?),
        };
        let extra = Extra {
            schema_version: optional_matching(
                &obj,
                "schema_version",
                rules::is_semver,
                "must be null or a version such as 3.0.0 (^\\d+\\.\\d+\\.\\d+$)",
            )?,
            build_id: optional_text(&obj, "build_id")?,
            correlation_id: optional_matching(
                &obj,
                "correlation_id",
                |s| rules::is_ulid(s) || rules::is_uuid(s),
                "must be null, a ULID or a UUID",
            )?,
            git_branch: optional_text(&obj, "git_branch")?,
            head_commit_sha: optional_matching(
                &obj,
                "head_commit_sha",
                rules::is_git_sha,
                "must be null or a git commit id (7 to 64 hex digits)",
            )?,
            repo_slug: optional_text(&obj, "repo_slug")?,
        };
        Ok(Self {
            known,
            event_type: type_name,
            aggregate_id,
            aggregate_type,
            payload,
            causation_id,
            project_uuid,
            project_slug,
            event_id,
            occurred_at,
            extra,
        })
    }

    /// The complete envelope, as JSON text.
    pub fn stamp(&self, s: &Stamp<'_>) -> String {
        let x = &self.extra;
        let env = Envelope {
            event_id: s.event_id,
            event_type: &self.event_type,
            aggregate_id: &self.aggregate_id,
            aggregate_type: &self.aggregate_type,
            schema_version: x.schema_version.as_deref(),
            build_id: x.build_id.as_deref(),
            payload: &self.payload,
            node_id: s.node_id,
            lamport_clock: s.lamport_clock,
            causation_id: self.causation_id.as_deref(),
            correlation_id: x.correlation_id.as_deref(),
            timestamp: self.occurred_at.as_deref().unwrap_or(s.timestamp),
            team_slug: s.team_slug,
            project_uuid: self.project_uuid.as_deref(),
            project_slug: self.project_slug.as_deref(),
            git_branch: x.git_branch.as_deref(),
            head_commit_sha: x.head_commit_sha.as_deref(),
            repo_slug: x.repo_slug.as_deref(),
        };
        serde_json::to_string(&env).expect("an envelope of strings and numbers always serialises")
    }

    /// The draft as the JSON object it was read from (with defaults filled), for the spool.
    pub fn to_object(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("event_type".into(), self.event_type.clone().into());
        m.insert("aggregate_id".into(), self.aggregate_id.clone().into());
        m.insert("aggregate_type".into(), self.aggregate_type.clone().into());
        m.insert("payload".into(), Value::Object(self.payload.clone()));
        let x = &self.extra;
        for (k, v) in [
            ("causation_id", &self.causation_id),
            ("project_uuid", &self.project_uuid),
            ("project_slug", &self.project_slug),
            ("event_id", &self.event_id),
            ("occurred_at", &self.occurred_at),
            ("schema_version", &x.schema_version),
            ("build_id", &x.build_id),
            ("correlation_id", &x.correlation_id),
            ("git_branch", &x.git_branch),
            ("head_commit_sha", &x.head_commit_sha),
            ("repo_slug", &x.repo_slug),
        ] {
            if let Some(v) = v {
                m.insert(k.into(), v.clone().into());
            }
        }
        m
    }
}

/// The aggregate of a 028 draft: derived from its payload, and any given
/// `aggregate_id`/`aggregate_type` must agree.
fn known_aggregate(
    obj: &Map<String, Value>,
    ty: EventType,
    payload: &mut Map<String, Value>,
) -> Result<(String, String), Violation> {
    let derived = validate_payload(ty, payload)?;
    let aggregate_id = match obj.get("aggregate_id") {
        None | Some(Value::Null) => derived.id.clone(),
        Some(_) => {
            let id = non_empty(obj, "aggregate_id")?;
            if id != derived.id {
                return Err(Violation::new(
                    "aggregate_id",
                    format!("must be \"{}\" for this {} event", derived.id, ty.as_str()),
                ));
            }
            id.to_owned()
        }
    };
    let aggregate_type = match obj.get("aggregate_type") {
        None | Some(Value::Null) => derived.kind.as_str().to_owned(),
        Some(_) => {
            let given = required_str(obj, "aggregate_type")?;
            if !derived.kind.accepts(given) {
                return Err(Violation::new(
                    "aggregate_type",
                    format!("must be {} for this event", derived.kind.accepted_names()),
                ));
            }
            given.to_owned()
        }
    };
    Ok((aggregate_id, aggregate_type))
}

/// The aggregate of a draft of another type: both named by the producer.
fn other_aggregate(
    obj: &Map<String, Value>,
    type_name: &str,
) -> Result<(String, String), Violation> {
    let needed = |key: &str| {
        Violation::new(
            key,
            format!(
                "is required: event_type {type_name} is not one of the 028 types ({}), \
                 and a draft of another type names its aggregate_type and aggregate_id",
                EventType::names()
            ),
        )
    };
    let aggregate_type = match obj.get("aggregate_type") {
        None | Some(Value::Null) => return Err(needed("aggregate_type")),
        Some(Value::String(s)) if rules::is_pascal_case(s) => s.clone(),
        Some(_) => {
            return Err(Violation::new(
                "aggregate_type",
                format!(
                    "must be a PascalCase name such as Project, Mission, WorkPackage \
                     (^[A-Z][A-Za-z0-9]*$, at most {} characters)",
                    rules::MAX_NAME_LEN
                ),
            ));
        }
    };
    let aggregate_id = match obj.get("aggregate_id") {
        None | Some(Value::Null) => return Err(needed("aggregate_id")),
        Some(_) => text(obj, "aggregate_id")?,
    };
    Ok((aggregate_id, aggregate_type))
}

fn optional_str(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, Violation> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(Violation::new(key, "must be null or a non-empty string")),
    }
}

/// A required one-line identifier (see [`rules::text_problem`]).
fn text(obj: &Map<String, Value>, key: &str) -> Result<String, Violation> {
    let s = required_str(obj, key)?;
    match rules::text_problem(s, MAX_TEXT_LEN) {
        None => Ok(s.to_owned()),
        Some(rule) => Err(Violation::new(key, rule)),
    }
}

/// An optional one-line identifier: null, absent, or as [`text`] requires.
fn optional_text(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, Violation> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => match rules::text_problem(s, MAX_TEXT_LEN) {
            None => Ok(Some(s.clone())),
            Some(_) if s.trim().is_empty() => {
                Err(Violation::new(key, "must be null or a non-empty string"))
            }
            Some(rule) => Err(Violation::new(key, rule)),
        },
        Some(_) => Err(Violation::new(key, "must be null or a non-empty string")),
    }
}

fn optional_matching(
    obj: &Map<String, Value>,
    key: &str,
    ok: fn(&str) -> bool,
    rule: &str,
) -> Result<Option<String>, Violation> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if ok(s) => Ok(Some(s.clone())),
        Some(_) => Err(Violation::new(key, rule)),
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
        assert_eq!(d.aggregate_type, "WorkPackage");
        let e = draft(json!({"event_type":"WPStatusChanged","aggregate_id":"WP05","payload":{"wp_id":"WP04","previous_status":"planned","new_status":"doing"}})).unwrap_err();
        assert_eq!(e.field, "aggregate_id");
    }

    #[test]
    fn rejects_unknown_fields_and_types() {
        assert_eq!(
            draft(json!({"event_type":"nope","payload":{}}))
                .unwrap_err()
                .field,
            "event_type"
        );
        // A PascalCase name is another type, which must name its aggregate.
        assert_eq!(
            draft(json!({"event_type":"Nope","payload":{}}))
                .unwrap_err()
                .field,
            "aggregate_type"
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

    const STAMP: Stamp<'static> = Stamp {
        event_id: "01HX5ZQK3M8N9P0R1S2T3V4W5X",
        lamport_clock: 9,
        node_id: "abcdefabcdef",
        timestamp: "2026-02-04T13:47:09.123456+00:00",
        team_slug: "acme",
    };

    /// Drafts built from the real CLIs' payload models (fixtures/make-cli-drafts.py).
    fn cli_samples() -> Vec<(String, Value)> {
        let v: Value = serde_json::from_str(include_str!("../fixtures/cli-drafts.json")).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| (s["name"].as_str().unwrap().to_owned(), s["draft"].clone()))
            .collect()
    }

    #[test]
    fn accepts_what_the_real_clis_send_and_keeps_it() {
        let samples = cli_samples();
        assert!(samples.len() >= 12);
        for (name, v) in samples {
            let d = draft(v.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
            let text = d.stamp(&STAMP);
            let env: Value = serde_json::from_str(&text).unwrap();
            crate::envelope::validate_envelope(&text, env.as_object().unwrap())
                .unwrap_or_else(|e| panic!("{name}: the stamped envelope: {e}"));
            // Every payload key the producer sent is kept, with its value.
            for (k, val) in v["payload"].as_object().unwrap() {
                assert_eq!(&env["payload"][k], val, "{name}: payload.{k}");
            }
            for key in [
                "event_type",
                "aggregate_type",
                "aggregate_id",
                "schema_version",
                "build_id",
                "correlation_id",
                "git_branch",
                "head_commit_sha",
                "repo_slug",
                "project_uuid",
                "project_slug",
                "causation_id",
            ] {
                if let Some(given) = v.get(key).filter(|g| !g.is_null()) {
                    assert_eq!(&env[key], given, "{name}: {key}");
                }
            }
            if let Some(id) = v.get("event_id") {
                // The lifecycle seam's own ULID: a retry leaves one row.
                assert_eq!(d.event_id.as_deref(), id.as_str(), "{name}");
            }
            assert_eq!(
                Draft::from_object(d.to_object()).unwrap(),
                d,
                "{name}: spool round trip"
            );
        }
    }

    #[test]
    fn occurred_at_is_the_envelope_timestamp_in_utc() {
        let base = json!({"event_type":"WPStatusChanged","payload":{"wp_id":"WP01","from_lane":"planned","to_lane":"claimed"}});
        let ts = |v: Value| -> Value {
            let text = draft(v).unwrap().stamp(&STAMP);
            serde_json::from_str::<Value>(&text).unwrap()["timestamp"].clone()
        };
        assert_eq!(ts(base.clone()), STAMP.timestamp);
        let mut v = base.clone();
        v["occurred_at"] = json!("2026-05-04T09:15:02.123456+00:00");
        assert_eq!(ts(v), "2026-05-04T09:15:02.123456+00:00");
        let mut v = base.clone();
        v["occurred_at"] = json!("2026-03-01T12:00:00+01:00");
        assert_eq!(ts(v), "2026-03-01T11:00:00.000000+00:00");
    }

    #[test]
    fn a_draft_of_another_type_needs_its_aggregate_and_keeps_its_payload() {
        let v = json!({"event_type":"DecisionPointOpened","aggregate_type":"Mission","aggregate_id":"demo-01KBX3N2Q8","payload":{"anything":[1,{"x":null}]}});
        let d = draft(v.clone()).unwrap();
        assert_eq!(d.known, None);
        assert_eq!(d.payload, *v["payload"].as_object().unwrap());
        let env: Value = serde_json::from_str(&d.stamp(&STAMP)).unwrap();
        assert_eq!(env["event_type"], "DecisionPointOpened");
        assert_eq!(env["aggregate_type"], "Mission");
        // No 3.x field appears unless the draft set it: old envelopes stay byte for byte.
        for key in [
            "schema_version",
            "build_id",
            "correlation_id",
            "git_branch",
            "head_commit_sha",
            "repo_slug",
        ] {
            assert!(env.get(key).is_none(), "{key}");
        }
        for (key, field) in [
            ("aggregate_type", "aggregate_type"),
            ("aggregate_id", "aggregate_id"),
        ] {
            let mut bad = v.clone();
            bad.as_object_mut().unwrap().remove(key);
            assert_eq!(draft(bad).unwrap_err().field, field);
        }
    }

    #[test]
    fn the_028_aggregates_widen_only_where_the_clis_do() {
        let err = json!({"event_type":"ErrorLogged","aggregate_type":"Mission","payload":{"error_type":"auth","error_message":"x"}});
        assert_eq!(draft(err).unwrap().aggregate_type, "Mission");
        let feat = json!({"event_type":"FeatureCompleted","aggregate_type":"Mission","payload":{"feature_slug":"028-x","total_wps":1}});
        assert_eq!(draft(feat).unwrap().aggregate_id, "028-x");
        for (v, field) in [
            (
                json!({"event_type":"WPCreated","aggregate_type":"Mission","payload":{"wp_id":"WP01","title":"T","feature_slug":"028-x"}}),
                "aggregate_type",
            ),
            (
                json!({"event_type":"ErrorLogged","aggregate_type":"Project","payload":{"error_type":"auth","error_message":"x"}}),
                "aggregate_type",
            ),
            (
                json!({"event_type":"ErrorLogged","aggregate_type":"Mission","payload":{"error_type":"auth","error_message":"x","wp_id":"WP01"}}),
                "aggregate_type",
            ),
        ] {
            assert_eq!(draft(v).unwrap_err().field, field);
        }
    }

    /// Every bad value of every draft field is refused, naming the field.
    #[test]
    fn bad_draft_fields_are_refused_by_name() {
        let base = json!({"event_type":"MissionCreated","aggregate_type":"Mission","aggregate_id":"m-1","payload":{}});
        let long = "x".repeat(MAX_TEXT_LEN + 1);
        let cases: Vec<(&str, Value)> = vec![
            ("event_type", json!("missionCreated")),
            ("event_type", json!("Mission_Created")),
            ("event_type", json!("Mission Created")),
            ("event_type", json!("Mission\u{202E}Created")),
            ("event_type", json!("M".repeat(rules::MAX_NAME_LEN + 1))),
            ("event_type", json!(7)),
            ("event_type", json!("")),
            ("aggregate_type", json!("mission")),
            ("aggregate_type", json!("Mission\n")),
            ("aggregate_type", json!(["Mission"])),
            ("aggregate_id", json!("")),
            ("aggregate_id", json!("m\u{0}1")),
            ("aggregate_id", json!("\u{1b}[2Jm")),
            ("aggregate_id", json!(long.clone())),
            ("aggregate_id", json!(1)),
            ("occurred_at", json!("2026-02-04T13:47:09")),
            ("occurred_at", json!("2026-02-04")),
            ("occurred_at", json!("04/02/2026 13:47")),
            ("occurred_at", json!("")),
            ("occurred_at", json!(1_770_212_829)),
            ("correlation_id", json!("not-an-id")),
            ("correlation_id", json!("01hx5zqk3m8n9p0r1s2t3v4w5x")),
            ("correlation_id", json!(42)),
            ("schema_version", json!("3.0")),
            ("schema_version", json!("v3.0.0")),
            ("schema_version", json!(3)),
            ("build_id", json!("")),
            ("build_id", json!(long.clone())),
            ("build_id", json!("b\r\nX-Injected: 1")),
            ("git_branch", json!("main\u{7}")),
            ("git_branch", json!(long.clone())),
            ("git_branch", json!(true)),
            ("head_commit_sha", json!("HEAD")),
            ("head_commit_sha", json!("0123abz")),
            ("head_commit_sha", json!("a".repeat(65))),
            ("repo_slug", json!("acme/\u{2066}app")),
            ("repo_slug", json!({"owner":"acme"})),
            ("project_slug", json!(long)),
            ("project_uuid", json!("")),
            ("causation_id", json!("x")),
            ("event_id", json!("01HX5ZQK3M8N9P0R1S2T3V4W5U")),
            ("mission_slug", json!("m-1")),
            ("mission_id", json!("01KBX3N2Q8ZK4V7W9Y0A1B2C3D")),
        ];
        assert!(draft(base.clone()).is_ok());
        for (key, bad) in cases {
            let mut v = base.clone();
            v[key] = bad.clone();
            let e = draft(v).expect_err(&format!("{key} = {bad}"));
            assert_eq!(e.field, key, "{key} = {bad}: {e}");
            assert!(!e.rule.is_empty());
        }
        // Mission keys at the top level say where they belong.
        let mut v = base.clone();
        v["mission_slug"] = json!("m-1");
        assert!(
            draft(v)
                .unwrap_err()
                .rule
                .contains("belongs in the payload")
        );
        // The good forms of the optional fields, and null for each.
        let mut v = base.clone();
        for (k, good) in [
            (
                "correlation_id",
                json!("3f9a0c1b-2d4e-4f60-8a1b-2c3d4e5f6a7b"),
            ),
            ("schema_version", json!("5.0.0")),
            ("build_id", json!("b-1")),
            ("git_branch", json!("feature/élan")),
            ("head_commit_sha", json!("0123abc")),
            ("repo_slug", json!("acme/app")),
            ("occurred_at", json!("2026-02-04T13:47:09Z")),
        ] {
            v[k] = good;
        }
        assert!(draft(v.clone()).is_ok());
        for k in [
            "correlation_id",
            "schema_version",
            "build_id",
            "git_branch",
            "head_commit_sha",
            "repo_slug",
            "occurred_at",
        ] {
            v[k] = Value::Null;
        }
        assert!(draft(v).is_ok());
    }
}
