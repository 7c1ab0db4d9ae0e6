//! The eight event types of feature 028 and their payload schemas (CONTRACT.md §2),
//! widened to the shapes the 3.x and 4.x CLIs send (docs/DRAFTS.md).
//!
//! Validation also completes the optional fields that have defaults, so that a
//! stamped 028-shaped draft carries what the Python CLI's Pydantic models would
//! have sent. Fields the schema does not name are kept: later CLI versions add some.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::rules::{self, Violation};

/// The aggregate an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AggregateType {
    WorkPackage,
    Feature,
}

impl AggregateType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WorkPackage => "WorkPackage",
            Self::Feature => "Feature",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "WorkPackage" => Some(Self::WorkPackage),
            "Feature" => Some(Self::Feature),
            _ => None,
        }
    }

    /// Whether a producer's `aggregate_type` names this aggregate. The 3.x CLIs
    /// call the feature a `Mission`.
    pub fn accepts(self, given: &str) -> bool {
        match self {
            Self::WorkPackage => given == "WorkPackage",
            Self::Feature => matches!(given, "Feature" | "Mission"),
        }
    }

    /// The names [`accepts`](Self::accepts) takes, for error messages.
    pub fn accepted_names(self) -> &'static str {
        match self {
            Self::WorkPackage => "WorkPackage",
            Self::Feature => "Feature or Mission",
        }
    }
}

/// The eight event types the daemon builds from drafts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    WPStatusChanged,
    WPCreated,
    WPAssigned,
    FeatureCreated,
    FeatureCompleted,
    HistoryAdded,
    ErrorLogged,
    DependencyResolved,
}

impl EventType {
    pub const ALL: [EventType; 8] = [
        Self::WPStatusChanged,
        Self::WPCreated,
        Self::WPAssigned,
        Self::FeatureCreated,
        Self::FeatureCompleted,
        Self::HistoryAdded,
        Self::ErrorLogged,
        Self::DependencyResolved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::WPStatusChanged => "WPStatusChanged",
            Self::WPCreated => "WPCreated",
            Self::WPAssigned => "WPAssigned",
            Self::FeatureCreated => "FeatureCreated",
            Self::FeatureCompleted => "FeatureCompleted",
            Self::HistoryAdded => "HistoryAdded",
            Self::ErrorLogged => "ErrorLogged",
            Self::DependencyResolved => "DependencyResolved",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The names, for error messages and `--help`.
    pub fn names() -> String {
        Self::ALL.map(|t| t.as_str()).join(", ")
    }
}

/// Which aggregate a validated payload belongs to, and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregate {
    pub kind: AggregateType,
    pub id: String,
}

const STATUSES: &[&str] = &["planned", "doing", "for_review", "done"];
/// Lanes a work package can move to (spec-kitty-events' `Lane`, without `genesis`).
const TO_LANES: &[&str] = &[
    "planned",
    "claimed",
    "in_progress",
    "for_review",
    "in_review",
    "approved",
    "done",
    "blocked",
    "canceled",
];
/// Lanes it can come from: also `genesis` (before finalize-tasks seeds it) and
/// `uninitialized` (a work package with no lane events yet).
const FROM_LANES: &[&str] = &[
    "genesis",
    "uninitialized",
    "planned",
    "claimed",
    "in_progress",
    "for_review",
    "in_review",
    "approved",
    "done",
    "blocked",
    "canceled",
];
/// The keys of an object `actor` that are read as text (`{role, profile, tool, model}`).
const ACTOR_KEYS: &[&str] = &["role", "profile", "tool", "model"];
/// WPCreated's names in the 3.x and 4.x CLIs; a payload with any of them gets no 028 defaults.
const WP_CREATED_3X_NAMES: &[&str] = &["wp_title", "mission_slug", "depends_on"];
const PHASES: &[&str] = &["implementation", "review"];
const ENTRY_TYPES: &[&str] = &["note", "review", "error", "comment"];
const ERROR_TYPES: &[&str] = &["validation", "runtime", "network", "auth", "unknown"];
const RESOLUTIONS: &[&str] = &["completed", "skipped", "merged"];

/// Checks `payload` against the schema of `ty`, fills in defaults, and returns
/// the aggregate the event belongs to.
pub fn validate_payload(
    ty: EventType,
    payload: &mut Map<String, Value>,
) -> Result<Aggregate, Violation> {
    let p = Fields(&*payload);
    let aggregate = match ty {
        EventType::WPStatusChanged => {
            let wp = p.wp_id("wp_id")?;
            if p.0.contains_key("from_lane") || p.0.contains_key("to_lane") {
                // The lane shape the CLI sends from mid-February 2026 on.
                p.one_of("from_lane", FROM_LANES)?;
                p.one_of("to_lane", TO_LANES)?;
                p.actor()?;
                p.opt_non_empty("mission_slug")?;
                p.opt_non_empty("mission_id")?;
                p.opt_non_empty("execution_mode")?;
                p.opt_bool("force")?;
                p.opt_str("reason")?;
                p.opt_str("review_ref")?;
                p.opt_object("evidence")?;
            } else {
                p.one_of("previous_status", STATUSES)?;
                p.one_of("new_status", STATUSES)?;
                p.opt_str("changed_by")?;
            }
            p.opt_str("feature_slug")?;
            work_package(wp)
        }
        EventType::WPCreated => {
            let wp = p.wp_id("wp_id")?;
            // 028 names beside the 3.x ones: one of each pair is required.
            p.either_non_empty("title", "wp_title")?;
            p.either_non_empty("feature_slug", "mission_slug")?;
            p.wp_id_list("dependencies")?;
            p.wp_id_list("depends_on")?;
            p.actor()?;
            p.opt_time("created_at")?;
            work_package(wp)
        }
        EventType::WPAssigned => {
            let wp = p.wp_id("wp_id")?;
            p.non_empty("agent_id")?;
            p.one_of("phase", PHASES)?;
            p.opt_uint("retry_count")?;
            work_package(wp)
        }
        EventType::FeatureCreated => {
            let slug = p.str_matching(
                "feature_slug",
                rules::is_feature_slug,
                "must match ^\\d{3}-[a-z0-9-]+$",
            )?;
            p.str_matching(
                "feature_number",
                rules::is_feature_number,
                "must match ^\\d{3}$",
            )?;
            p.non_empty("target_branch")?;
            p.uint("wp_count")?;
            p.opt_time("created_at")?;
            feature(slug)
        }
        EventType::FeatureCompleted => {
            let slug = p.non_empty("feature_slug")?;
            p.uint("total_wps")?;
            p.opt_time("completed_at")?;
            match p.0.get("total_duration") {
                None | Some(Value::Null | Value::String(_) | Value::Number(_)) => {}
                Some(_) => {
                    return Err(field_rule("total_duration", "must be a string or a number"));
                }
            }
            feature(slug)
        }
        EventType::HistoryAdded => {
            let wp = p.wp_id("wp_id")?;
            p.one_of("entry_type", ENTRY_TYPES)?;
            p.non_empty("entry_content")?;
            p.opt_str("author")?;
            work_package(wp)
        }
        EventType::ErrorLogged => {
            p.one_of("error_type", ERROR_TYPES)?;
            p.non_empty("error_message")?;
            p.opt_str("stack_trace")?;
            p.opt_str("agent_id")?;
            match p.opt_str("wp_id")? {
                Some(wp) if rules::is_wp_id(wp) => work_package(wp),
                Some(_) => return Err(field_rule("wp_id", "must match ^WP\\d{2}$")),
                None => Aggregate {
                    kind: AggregateType::Feature,
                    id: "error".into(),
                },
            }
        }
        EventType::DependencyResolved => {
            let wp = p.wp_id("wp_id")?;
            p.wp_id("dependency_wp_id")?;
            p.one_of("resolution_type", RESOLUTIONS)?;
            work_package(wp)
        }
    };
    fill_defaults(ty, payload);
    Ok(aggregate)
}

fn fill_defaults(ty: EventType, payload: &mut Map<String, Value>) {
    match ty {
        EventType::WPStatusChanged
            if !payload.contains_key("from_lane") && !payload.contains_key("to_lane") =>
        {
            default(payload, "changed_by", "user")
        }
        EventType::WPCreated if !WP_CREATED_3X_NAMES.iter().any(|k| payload.contains_key(*k)) => {
            default(payload, "dependencies", Value::Array(vec![]))
        }
        EventType::WPAssigned => default(payload, "retry_count", 0),
        EventType::HistoryAdded => default(payload, "author", "user"),
        _ => {}
    }
}

fn work_package(wp: &str) -> Aggregate {
    Aggregate {
        kind: AggregateType::WorkPackage,
        id: wp.to_owned(),
    }
}

fn feature(slug: &str) -> Aggregate {
    Aggregate {
        kind: AggregateType::Feature,
        id: slug.to_owned(),
    }
}

fn default(payload: &mut Map<String, Value>, key: &str, value: impl Into<Value>) {
    if matches!(payload.get(key), None | Some(Value::Null)) {
        payload.insert(key.to_owned(), value.into());
    }
}

fn field_rule(key: &str, rule: &str) -> Violation {
    Violation::new(format!("payload.{key}"), rule)
}

/// Typed reads of payload fields that fail with a [`Violation`] naming the field.
struct Fields<'a>(&'a Map<String, Value>);

impl<'a> Fields<'a> {
    fn present(&self, key: &str) -> Result<&'a Value, Violation> {
        match self.0.get(key) {
            None | Some(Value::Null) => Err(field_rule(key, "is required")),
            Some(v) => Ok(v),
        }
    }

    fn string(&self, key: &str) -> Result<&'a str, Violation> {
        self.present(key)?
            .as_str()
            .ok_or_else(|| field_rule(key, "must be a string"))
    }

    fn non_empty(&self, key: &str) -> Result<&'a str, Violation> {
        let s = self.string(key)?;
        if s.trim().is_empty() {
            return Err(field_rule(key, "must be a non-empty string"));
        }
        Ok(s)
    }

    fn str_matching(
        &self,
        key: &str,
        ok: fn(&str) -> bool,
        rule: &str,
    ) -> Result<&'a str, Violation> {
        let s = self.string(key)?;
        if !ok(s) {
            return Err(field_rule(key, rule));
        }
        Ok(s)
    }

    fn wp_id(&self, key: &str) -> Result<&'a str, Violation> {
        self.str_matching(key, rules::is_wp_id, "must match ^WP\\d{2}$")
    }

    fn one_of(&self, key: &str, allowed: &[&str]) -> Result<&'a str, Violation> {
        let s = self.string(key)?;
        if !allowed.contains(&s) {
            return Err(field_rule(
                key,
                &format!("must be one of {}", allowed.join(", ")),
            ));
        }
        Ok(s)
    }

    fn opt_str(&self, key: &str) -> Result<Option<&'a str>, Violation> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(field_rule(key, "must be a string")),
        }
    }

    fn opt_non_empty(&self, key: &str) -> Result<Option<&'a str>, Violation> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(_) => self.non_empty(key).map(Some),
        }
    }

    /// One of two names for the same field (028's and 3.x's) must be given;
    /// each that is given must be a non-empty string.
    fn either_non_empty(&self, old: &str, new: &str) -> Result<(), Violation> {
        let a = self.opt_non_empty(old)?;
        let b = self.opt_non_empty(new)?;
        if a.is_none() && b.is_none() {
            return Err(field_rule(old, &format!("is required (or {new})")));
        }
        Ok(())
    }

    fn opt_bool(&self, key: &str) -> Result<(), Violation> {
        match self.0.get(key) {
            None | Some(Value::Null | Value::Bool(_)) => Ok(()),
            Some(_) => Err(field_rule(key, "must be true or false")),
        }
    }

    fn opt_object(&self, key: &str) -> Result<(), Violation> {
        match self.0.get(key) {
            None | Some(Value::Null | Value::Object(_)) => Ok(()),
            Some(_) => Err(field_rule(key, "must be null or a JSON object")),
        }
    }

    /// `actor`: a string, or a non-empty object such as `{role, profile, tool,
    /// model}` (the 4.x CLIs' resolved actor on claim and review hops) whose
    /// text keys are null or strings. Other keys of the object are kept.
    fn actor(&self) -> Result<(), Violation> {
        match self.0.get("actor") {
            None | Some(Value::Null | Value::String(_)) => Ok(()),
            Some(Value::Object(m)) if m.is_empty() => Err(field_rule(
                "actor",
                "must be a string or a non-empty object such as {role, profile, tool, model}",
            )),
            Some(Value::Object(m)) => {
                for key in ACTOR_KEYS {
                    if !matches!(m.get(*key), None | Some(Value::Null | Value::String(_))) {
                        return Err(field_rule(
                            &format!("actor.{key}"),
                            "must be null or a string",
                        ));
                    }
                }
                Ok(())
            }
            Some(_) => Err(field_rule(
                "actor",
                "must be a string or an object such as {role, profile, tool, model}",
            )),
        }
    }

    fn wp_id_list(&self, key: &str) -> Result<(), Violation> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(()),
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    if !item.as_str().is_some_and(rules::is_wp_id) {
                        return Err(field_rule(
                            &format!("{key}[{i}]"),
                            "must be a WP id matching ^WP\\d{2}$",
                        ));
                    }
                }
                Ok(())
            }
            Some(_) => Err(field_rule(key, "must be a list of WP ids")),
        }
    }

    fn uint(&self, key: &str) -> Result<u64, Violation> {
        self.present(key)?
            .as_u64()
            .ok_or_else(|| field_rule(key, "must be an integer >= 0"))
    }

    fn opt_uint(&self, key: &str) -> Result<Option<u64>, Violation> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(_) => self.uint(key).map(Some),
        }
    }

    fn opt_time(&self, key: &str) -> Result<(), Violation> {
        match self.opt_str(key)? {
            Some(s) if !rules::is_iso8601(s) => {
                Err(field_rule(key, "must be an ISO-8601 date-time"))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(ty: EventType, v: Value) -> Result<(Aggregate, Value), Violation> {
        let mut map = v.as_object().unwrap().clone();
        let agg = validate_payload(ty, &mut map)?;
        Ok((agg, Value::Object(map)))
    }

    #[test]
    fn status_changed_both_shapes() {
        let (agg, p) = check(
            EventType::WPStatusChanged,
            json!({"wp_id":"WP01","previous_status":"planned","new_status":"doing"}),
        )
        .unwrap();
        assert_eq!(agg, work_package("WP01"));
        assert_eq!(p["changed_by"], "user");
        let (_, p) = check(
            EventType::WPStatusChanged,
            json!({"wp_id":"WP02","from_lane":"claimed","to_lane":"in_progress","actor":"claude"}),
        )
        .unwrap();
        assert!(p.get("changed_by").is_none());
        let e = check(
            EventType::WPStatusChanged,
            json!({"wp_id":"WP01","previous_status":"planned","new_status":"in_progress"}),
        )
        .unwrap_err();
        assert_eq!(e.field, "payload.new_status");
        let e = check(EventType::WPStatusChanged, json!({"wp_id":"WP1"})).unwrap_err();
        assert_eq!(e.field, "payload.wp_id");
    }

    #[test]
    fn defaults_are_filled() {
        let (_, p) = check(
            EventType::WPCreated,
            json!({"wp_id":"WP03","title":"Build it","feature_slug":"028-x"}),
        )
        .unwrap();
        assert_eq!(p["dependencies"], json!([]));
        let (_, p) = check(
            EventType::WPAssigned,
            json!({"wp_id":"WP03","agent_id":"claude","phase":"review"}),
        )
        .unwrap();
        assert_eq!(p["retry_count"], 0);
        let (_, p) = check(
            EventType::HistoryAdded,
            json!({"wp_id":"WP03","entry_type":"note","entry_content":"hi"}),
        )
        .unwrap();
        assert_eq!(p["author"], "user");
    }

    #[test]
    fn feature_events() {
        let (agg, _) = check(
            EventType::FeatureCreated,
            json!({"feature_slug":"028-cli","feature_number":"028","target_branch":"main","wp_count":3}),
        )
        .unwrap();
        assert_eq!(agg, feature("028-cli"));
        let e = check(
            EventType::FeatureCreated,
            json!({"feature_slug":"028-cli","feature_number":"028","target_branch":"main","wp_count":-1}),
        )
        .unwrap_err();
        assert_eq!(e.field, "payload.wp_count");
        let e = check(
            EventType::FeatureCompleted,
            json!({"feature_slug":"028-cli","total_wps":"3"}),
        )
        .unwrap_err();
        assert_eq!(e.field, "payload.total_wps");
    }

    #[test]
    fn error_logged_aggregate_depends_on_wp_id() {
        let (agg, _) = check(
            EventType::ErrorLogged,
            json!({"error_type":"runtime","error_message":"boom"}),
        )
        .unwrap();
        assert_eq!(
            agg,
            Aggregate {
                kind: AggregateType::Feature,
                id: "error".into()
            }
        );
        let (agg, _) = check(
            EventType::ErrorLogged,
            json!({"error_type":"runtime","error_message":"boom","wp_id":"WP07"}),
        )
        .unwrap();
        assert_eq!(agg, work_package("WP07"));
    }

    #[test]
    fn dependency_resolved() {
        assert!(
            check(
                EventType::DependencyResolved,
                json!({"wp_id":"WP02","dependency_wp_id":"WP01","resolution_type":"merged"}),
            )
            .is_ok()
        );
        let e = check(
            EventType::DependencyResolved,
            json!({"wp_id":"WP02","dependency_wp_id":"WP01","resolution_type":"maybe"}),
        )
        .unwrap_err();
        assert_eq!(e.field, "payload.resolution_type");
    }

    fn lane(from: &str, to: &str) -> Value {
        json!({"wp_id":"WP01","from_lane":from,"to_lane":to})
    }

    #[test]
    fn every_lane_hop_of_the_4x_cli() {
        for from in FROM_LANES {
            for to in TO_LANES {
                check(EventType::WPStatusChanged, lane(from, to))
                    .unwrap_or_else(|e| panic!("{from} -> {to}: {e}"));
            }
        }
        // genesis and uninitialized are where a WP comes from, never where it goes.
        for to in ["genesis", "uninitialized", "doing", "review", "Planned", ""] {
            let e = check(EventType::WPStatusChanged, lane("planned", to)).unwrap_err();
            assert_eq!(e.field, "payload.to_lane", "{to}");
        }
        let e = check(EventType::WPStatusChanged, lane("doing", "planned")).unwrap_err();
        assert_eq!(e.field, "payload.from_lane");
        let e = check(
            EventType::WPStatusChanged,
            json!({"wp_id":"WP01","to_lane":"claimed"}),
        )
        .unwrap_err();
        assert_eq!(e.field, "payload.from_lane");
    }

    #[test]
    fn actor_a_string_or_an_object() {
        let with = |actor: Value| {
            let mut v = lane("planned", "claimed");
            v["actor"] = actor;
            check(EventType::WPStatusChanged, v)
        };
        assert!(with(json!("claude")).is_ok());
        let (_, p) = with(
            json!({"role":"implementer","profile":null,"tool":"claude","model":"opus","extra":[1]}),
        )
        .unwrap();
        assert_eq!(
            p["actor"]["extra"],
            json!([1]),
            "other keys of the actor are kept"
        );
        for (bad, field) in [
            (json!({}), "payload.actor"),
            (json!(["claude"]), "payload.actor"),
            (json!(7), "payload.actor"),
            (json!({"role": 1}), "payload.actor.role"),
            (
                json!({"role":"reviewer","model":{"name":"x"}}),
                "payload.actor.model",
            ),
        ] {
            assert_eq!(with(bad.clone()).unwrap_err().field, field, "{bad}");
        }
    }

    #[test]
    fn lane_shape_optional_fields_have_types() {
        for (key, bad) in [
            ("mission_slug", json!("")),
            ("mission_slug", json!(3)),
            ("mission_id", json!(false)),
            ("execution_mode", json!(1)),
            ("force", json!("yes")),
            ("reason", json!(1)),
            ("review_ref", json!([])),
            ("evidence", json!("none")),
        ] {
            let mut v = lane("in_progress", "for_review");
            v[key] = bad.clone();
            let e = check(EventType::WPStatusChanged, v).unwrap_err();
            assert_eq!(e.field, format!("payload.{key}"), "{key} = {bad}");
        }
    }

    #[test]
    fn wp_created_in_its_3x_names() {
        let v = json!({"wp_id":"WP04","wp_title":"Parser","mission_slug":"demo-01KBX3N2Q8","depends_on":["WP01"],"actor":"cli","mission_number":null,"wp_path":null,"created_at":"2026-05-04T08:59:59Z"});
        let (agg, p) = check(EventType::WPCreated, v.clone()).unwrap();
        assert_eq!(agg, work_package("WP04"));
        // No 028 default is added beside the 3.x names: the payload is as sent.
        assert_eq!(p, v);
        let (_, p) = check(
            EventType::WPCreated,
            json!({"wp_id":"WP04","wp_title":"Parser","mission_slug":"m"}),
        )
        .unwrap();
        assert!(p.get("dependencies").is_none());
        // One name of each pair is required; each given must be right.
        for (remove, field) in [
            (&["title", "wp_title"][..], "payload.title"),
            (
                &["feature_slug", "mission_slug"][..],
                "payload.feature_slug",
            ),
        ] {
            let mut v = json!({"wp_id":"WP04","title":"T","wp_title":"T","feature_slug":"028-x","mission_slug":"m"});
            for k in remove {
                v.as_object_mut().unwrap().remove(*k);
            }
            let e = check(EventType::WPCreated, v).unwrap_err();
            assert_eq!(e.field, field);
            assert!(e.rule.contains("or"), "{e}");
        }
        for (key, bad, field) in [
            ("wp_title", json!(""), "payload.wp_title"),
            ("mission_slug", json!(1), "payload.mission_slug"),
            ("depends_on", json!("WP01"), "payload.depends_on"),
            (
                "depends_on",
                json!(["WP01", "wp2"]),
                "payload.depends_on[1]",
            ),
            ("actor", json!({}), "payload.actor"),
            ("created_at", json!("soon"), "payload.created_at"),
        ] {
            let mut v = json!({"wp_id":"WP04","wp_title":"T","mission_slug":"m"});
            v[key] = bad;
            assert_eq!(
                check(EventType::WPCreated, v).unwrap_err().field,
                field,
                "{key}"
            );
        }
    }

    #[test]
    fn a_known_type_missing_its_required_fields_is_still_refused() {
        for (ty, v, field) in [
            (
                EventType::WPStatusChanged,
                json!({"from_lane":"planned","to_lane":"claimed"}),
                "payload.wp_id",
            ),
            (
                EventType::WPStatusChanged,
                json!({"wp_id":"WP01","mission_slug":"m","actor":"x"}),
                "payload.previous_status",
            ),
            (
                EventType::WPCreated,
                json!({"wp_id":"WP01","actor":"cli","depends_on":[]}),
                "payload.title",
            ),
            (
                EventType::WPAssigned,
                json!({"wp_id":"WP01","phase":"review"}),
                "payload.agent_id",
            ),
            (
                EventType::FeatureCreated,
                json!({"feature_slug":"028-x","feature_number":"028","target_branch":"main"}),
                "payload.wp_count",
            ),
            (
                EventType::FeatureCompleted,
                json!({"feature_slug":"028-x"}),
                "payload.total_wps",
            ),
            (
                EventType::HistoryAdded,
                json!({"wp_id":"WP01","entry_type":"note"}),
                "payload.entry_content",
            ),
            (
                EventType::ErrorLogged,
                json!({"error_message":"x"}),
                "payload.error_type",
            ),
            (
                EventType::DependencyResolved,
                json!({"wp_id":"WP01","resolution_type":"merged"}),
                "payload.dependency_wp_id",
            ),
        ] {
            assert_eq!(check(ty, v).unwrap_err().field, field, "{}", ty.as_str());
        }
    }
}
