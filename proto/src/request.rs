//! Parsing a `POST /v1/events` body: one event or an array of up to 1,000, each
//! a draft or a complete envelope. All or nothing: the first broken rule fails
//! the whole request.
//!
//! An object that carries `lamport_clock` is a complete envelope; any other
//! object is a draft. Neither may repeat a key in any of its objects
//! ([`crate::unique_keys`]).

use serde_json::Value;
use serde_json::value::RawValue;

use crate::draft::Draft;
use crate::envelope::{RelayedEnvelope, validate_envelope};
use crate::rules::Violation;
use crate::{MAX_BODY_BYTES, MAX_EVENTS_PER_REQUEST};

/// One event of a request, validated.
#[derive(Debug, Clone, PartialEq)]
pub enum Submission {
    /// Boxed: a draft is several times the size of an envelope's summary.
    Draft(Box<Draft>),
    Envelope(RelayedEnvelope),
}

impl Submission {
    /// The event_id fixed before stamping, if any.
    pub fn event_id(&self) -> Option<&str> {
        match self {
            Self::Draft(d) => d.event_id.as_deref(),
            Self::Envelope(e) => Some(&e.event_id),
        }
    }

    pub fn event_type(&self) -> &str {
        match self {
            Self::Draft(d) => d.event_type.as_str(),
            Self::Envelope(e) => &e.event_type,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    #[error("request body is {len} bytes; the limit is {MAX_BODY_BYTES}")]
    TooLarge { len: usize },
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("{}{violation}", index.map(|i| format!("event {i}: ")).unwrap_or_default())]
    Invalid {
        /// Position in the array, when the body was an array.
        index: Option<usize>,
        violation: Violation,
    },
}

impl RequestError {
    /// The HTTP status the socket API answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::TooLarge { .. } => 413,
            Self::InvalidJson(_) => 400,
            Self::Invalid { .. } => 422,
        }
    }

    /// A short machine-readable code.
    pub fn code(&self) -> crate::vocab::ErrorCode {
        use crate::vocab::ErrorCode;
        match self {
            Self::TooLarge { .. } => ErrorCode::PayloadTooLarge,
            Self::InvalidJson(_) => ErrorCode::InvalidJson,
            Self::Invalid { .. } => ErrorCode::InvalidEvent,
        }
    }
}

/// Parses and validates a request body.
pub fn parse_events_request(body: &[u8]) -> Result<Vec<Submission>, RequestError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(RequestError::TooLarge { len: body.len() });
    }
    let text = std::str::from_utf8(body)
        .map_err(|e| RequestError::InvalidJson(format!("not UTF-8: {e}")))?;
    // One event, the common request: one pass over the text. Anything it
    // refuses goes the long way below, which names the error as always.
    let one = text.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r'));
    if one.starts_with('{')
        && let Ok(obj) = crate::unique_keys::parse_unique(one)
    {
        return validated(one, obj)
            .map(|s| vec![s])
            .map_err(|v| RequestError::Invalid {
                index: None,
                violation: v,
            });
    }
    let top: &RawValue =
        serde_json::from_str(text).map_err(|e| RequestError::InvalidJson(e.to_string()))?;
    let whole = |v: Violation| RequestError::Invalid {
        index: None,
        violation: v,
    };
    if top.get().starts_with('[') {
        let items: Vec<&RawValue> = serde_json::from_str(top.get())
            .map_err(|e| RequestError::InvalidJson(e.to_string()))?;
        if items.is_empty() {
            return Err(whole(Violation::new(
                "events",
                "must hold at least one event",
            )));
        }
        if items.len() > MAX_EVENTS_PER_REQUEST {
            return Err(whole(Violation::new(
                "events",
                format!(
                    "holds {}; at most {MAX_EVENTS_PER_REQUEST} events per request",
                    items.len()
                ),
            )));
        }
        items
            .iter()
            .enumerate()
            .map(|(i, raw)| {
                parse_one(raw).map_err(|violation| RequestError::Invalid {
                    index: Some(i),
                    violation,
                })
            })
            .collect()
    } else {
        parse_one(top).map(|s| vec![s]).map_err(whole)
    }
}

/// Validates one event given as JSON text: a draft or a complete envelope.
pub fn parse_one(raw: &RawValue) -> Result<Submission, Violation> {
    use crate::unique_keys::{Unique, parse_unique};
    // A RawValue is valid JSON with no blank around it: `{` is an object.
    if !raw.get().starts_with('{') {
        return Err(Violation::new("event", "must be a JSON object"));
    }
    let obj = match parse_unique(raw.get()) {
        Ok(obj) => obj,
        Err(Unique::Repeated(path)) => {
            return Err(Violation::new(
                path,
                "appears more than once in one object; every key must be unique, since \
                 readers of a repeated key disagree on its value",
            ));
        }
        // Valid JSON that serde_json still refuses: nested deeper than 128 levels.
        Err(Unique::Unreadable(e)) => {
            return Err(Violation::new("event", format!("cannot be read: {e}")));
        }
    };
    validated(raw.get(), obj)
}

/// Validates one object, parsed from `raw` with every key unique.
fn validated(raw: &str, obj: Value) -> Result<Submission, Violation> {
    let Value::Object(obj) = obj else {
        return Err(Violation::new("event", "must be a JSON object"));
    };
    if obj.contains_key("lamport_clock") {
        validate_envelope(raw, &obj).map(Submission::Envelope)
    } else {
        Draft::from_object(obj).map(|d| Submission::Draft(Box::new(d)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DRAFT: &str = r#"{"event_type":"WPCreated","payload":{"wp_id":"WP01","title":"T","feature_slug":"028-x"}}"#;

    #[test]
    fn single_and_array() {
        assert_eq!(parse_events_request(DRAFT.as_bytes()).unwrap().len(), 1);
        let arr = format!("[{DRAFT},{DRAFT}]");
        assert_eq!(parse_events_request(arr.as_bytes()).unwrap().len(), 2);
    }

    #[test]
    fn statuses() {
        assert_eq!(parse_events_request(b"{").unwrap_err().http_status(), 400);
        assert_eq!(
            parse_events_request(b"\xff\xfe").unwrap_err().http_status(),
            400
        );
        assert_eq!(parse_events_request(b"[]").unwrap_err().http_status(), 422);
        assert_eq!(parse_events_request(b"42").unwrap_err().http_status(), 422);
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(parse_events_request(&big).unwrap_err().http_status(), 413);
        let many = format!("[{}]", vec![DRAFT; MAX_EVENTS_PER_REQUEST + 1].join(","));
        assert_eq!(
            parse_events_request(many.as_bytes())
                .unwrap_err()
                .http_status(),
            422
        );
    }

    #[test]
    fn array_is_all_or_nothing_and_names_the_index() {
        let arr = format!(r#"[{DRAFT},{{"event_type":"WPCreated","payload":{{"wp_id":"WP1"}}}}]"#);
        match parse_events_request(arr.as_bytes()).unwrap_err() {
            RequestError::Invalid { index, violation } => {
                assert_eq!(index, Some(1));
                assert_eq!(violation.field, "payload.wp_id");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn one_event_reads_as_the_same_event_alone_in_an_array() {
        let env = r#"{"event_id":"01HX5ZQK3M8N9P0R1S2T3V4W5X","event_type":"X","aggregate_id":"WP01","aggregate_type":"WorkPackage","payload":{},"node_id":"n","lamport_clock":5,"timestamp":"2026-02-04T13:47:09+00:00","team_slug":"t"}"#;
        let deep = format!(
            "{{\"event_type\":\"X\",\"payload\":{}{}}}",
            "[".repeat(200),
            "]".repeat(200)
        );
        for body in [
            DRAFT.to_owned(),
            format!(" \n\t{DRAFT}\r\n "),
            format!(" {env} "),
            r#"{"event_type":"WPCreated","payload":{"wp_id":"WP1"}}"#.to_owned(),
            r#"{"event_type":"WPCreated","payload":{"a":1,"a":2}}"#.to_owned(),
            r#"{"event_type":"A","event_type":"B"} x"#.to_owned(),
            format!("{DRAFT} {DRAFT}"),
            format!("{DRAFT},"),
            deep,
            "{}".to_owned(),
        ] {
            let alone = parse_events_request(body.as_bytes());
            let in_array = parse_events_request(format!("[{}]", body.trim()).as_bytes());
            match (alone, in_array) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a, b, "{body}");
                    if let Submission::Envelope(e) = &a[0] {
                        assert_eq!(
                            e.raw,
                            body.trim(),
                            "kept byte for byte, without the blanks around it"
                        );
                    }
                }
                (
                    Err(RequestError::Invalid {
                        index: None,
                        violation: a,
                    }),
                    Err(RequestError::Invalid {
                        index: Some(0),
                        violation: b,
                    }),
                ) => {
                    assert_eq!(a, b, "{body}");
                }
                (Err(RequestError::InvalidJson(_)), Err(RequestError::InvalidJson(_))) => {}
                (a, b) => panic!("{body}: {a:?} against {b:?}"),
            }
        }
    }

    #[test]
    fn a_repeated_key_is_refused_naming_it() {
        let env = r#"{"event_id":"01HX5ZQK3M8N9P0R1S2T3V4W5X","event_type":"X","aggregate_id":"WP01","aggregate_type":"WorkPackage","payload":{},"node_id":"n","lamport_clock":5,"timestamp":"2026-02-04T13:47:09+00:00","team_slug":"t","lamport_clock":900}"#;
        let inner = r#"{"event_type":"WPCreated","payload":{"wp_id":"WP01","title":"T","feature_slug":"028-x","wp_id":"WP02"}}"#;
        for (text, field) in [(env, "lamport_clock"), (inner, "payload.wp_id")] {
            match parse_events_request(text.as_bytes()).unwrap_err() {
                RequestError::Invalid { violation, .. } => {
                    assert_eq!(violation.field, field, "{text}");
                    assert!(violation.rule.contains("more than once"), "{violation}");
                }
                other => panic!("{other:?}"),
            }
        }
        let arr = format!("[{DRAFT},{inner}]");
        match parse_events_request(arr.as_bytes()).unwrap_err() {
            RequestError::Invalid { index, .. } => assert_eq!(index, Some(1)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn deep_nesting_is_a_clean_error() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse_events_request(deep.as_bytes()).is_err());
        let deep = format!(
            r#"{{"event_type":"WPCreated","payload":{}1{}}}"#,
            r#"{"a":"#.repeat(500),
            "}".repeat(500)
        );
        let err = parse_events_request(deep.as_bytes()).unwrap_err();
        assert_eq!(err.http_status(), 422);
        assert!(err.to_string().contains("recursion limit"), "{err}");
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            prop_oneof![
                "[a-zA-Z0-9_ -]{0,12}",
                Just("WP01".to_string()),
                Just("028-x".to_string()),
                Just("01HX5ZQK3M8N9P0R1S2T3V4W5X".to_string()),
                Just("2026-02-04T13:47:09+00:00".to_string()),
                Just("planned".to_string()),
            ]
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("event_type".to_string()),
                        Just("payload".to_string()),
                        Just("wp_id".to_string()),
                        Just("lamport_clock".to_string()),
                        Just("event_id".to_string()),
                        Just("aggregate_id".to_string()),
                        "[a-z_]{1,10}",
                    ],
                    inner,
                    0..8
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            if let Err(e) = parse_events_request(&bytes) {
                prop_assert!([400, 413, 422].contains(&e.http_status()));
                prop_assert!(!e.to_string().is_empty());
            }
        }

        #[test]
        fn random_json_never_panics(v in arb_json(), ty in prop::sample::select(crate::payloads::EventType::ALL.to_vec())) {
            let _ = parse_events_request(v.to_string().as_bytes());
            // Aim at the validators too: a plausible draft with a random payload.
            let draft = serde_json::json!({"event_type": ty.as_str(), "payload": v});
            if let Err(e) = parse_events_request(draft.to_string().as_bytes()) {
                prop_assert_eq!(e.http_status(), 422);
            }
        }

        /// Whatever a draft of any type carries, once accepted it stamps into an
        /// envelope that passes the envelope rules (the uplink relays it as is).
        #[test]
        fn accepted_drafts_stamp_into_valid_envelopes(
            ty in prop_oneof![
                prop::sample::select(crate::payloads::EventType::ALL.map(|t| t.as_str().to_owned()).to_vec()),
                "[A-Z][A-Za-z0-9]{0,8}",
                "[A-Za-z_ \u{0}-\u{1f}]{0,8}",
            ],
            agg_type in prop::option::of(prop_oneof!["[A-Z][a-zA-Z]{0,8}", "[a-z ]{0,4}"]),
            agg_id in prop::option::of(prop_oneof![Just("WP01".to_string()), "\\PC{0,12}", "[\u{0}-\u{20}]{0,3}"]),
            occurred in prop::option::of(prop_oneof![
                Just("2026-02-04T13:47:09+05:30".to_string()),
                Just("2026-02-04T13:47:09.1Z".to_string()),
                "[0-9T:.+Z-]{0,26}",
            ]),
            extra in prop::option::of((prop::sample::select(vec!["git_branch", "head_commit_sha", "schema_version", "correlation_id", "build_id", "repo_slug"]), "\\PC{0,20}")),
            payload in arb_json(),
        ) {
            let mut d = serde_json::json!({"event_type": ty, "payload": payload});
            if let Some(t) = agg_type { d["aggregate_type"] = t.into(); }
            if let Some(id) = agg_id { d["aggregate_id"] = id.into(); }
            if let Some(t) = occurred { d["occurred_at"] = t.into(); }
            if let Some((k, v)) = extra { d[k] = v.into(); }
            if let Ok(subs) = parse_events_request(d.to_string().as_bytes()) {
                let Submission::Draft(draft) = &subs[0] else { panic!("a draft") };
                let text = draft.stamp(&crate::draft::Stamp {
                    event_id: "01HX5ZQK3M8N9P0R1S2T3V4W5X",
                    lamport_clock: 1,
                    node_id: "n",
                    timestamp: "2026-02-04T13:47:09.123456+00:00",
                    team_slug: "local",
                });
                let v: Value = serde_json::from_str(&text).unwrap();
                prop_assert!(validate_envelope(&text, v.as_object().unwrap()).is_ok(), "{}", text);
            }
        }
    }
}
