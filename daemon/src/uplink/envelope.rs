//! An event on its way out: the stored envelope, with `team_slug` "local"
//! replaced by the session's team.
//!
//! An event stamped while logged out carries team_slug "local"; the server
//! files events by team, so it is sent under the team of the session that
//! sends it. Only the outgoing copy changes: the row in queue.db keeps
//! "local". Every other envelope goes out byte for byte as stored.

use std::borrow::Cow;

use serde_json::{Map, Value};

/// The text to send, or `None` when the stored data is not a JSON object
/// (a row some other tool wrote), which the caller counts as a rejection.
pub fn outgoing<'a>(data: &'a str, team: Option<&str>) -> Option<Cow<'a, str>> {
    let team = team.filter(|t| !t.is_empty() && *t != "local");
    if let Some(team) = team
        && data.contains("\"local\"")
    {
        let mut obj: Map<String, Value> = serde_json::from_str(data).ok()?;
        if obj.get("team_slug").and_then(Value::as_str) == Some("local") {
            obj.insert("team_slug".into(), Value::String(team.to_owned()));
            return Some(Cow::Owned(Value::Object(obj).to_string()));
        }
        return Some(Cow::Borrowed(data));
    }
    is_object(data).then_some(Cow::Borrowed(data))
}

/// Whether `data` is one JSON object, checked without building it (a raw
/// value is validated, not allocated): this runs for every event sent.
fn is_object(data: &str) -> bool {
    serde_json::from_str::<&serde_json::value::RawValue>(data)
        .is_ok_and(|raw| raw.get().starts_with('{'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_only_local() {
        let local = r#"{"event_id":"x","team_slug":"local","payload":{"note":"local"}}"#;
        assert_eq!(
            outgoing(local, Some("acme")).unwrap(),
            r#"{"event_id":"x","team_slug":"acme","payload":{"note":"local"}}"#
        );
        assert_eq!(outgoing(local, None).unwrap(), local);
        let other = r#"{"team_slug":"beta","payload":{"x":"local"}}"#;
        assert!(matches!(
            outgoing(other, Some("acme")).unwrap(),
            Cow::Borrowed(_)
        ));
        assert!(outgoing("not json", Some("acme")).is_none());
        assert!(outgoing("[1]", None).is_none());
        assert!(outgoing(" {\"a\":1} ", None).is_some(), "whitespace around");
        for bad in ["{\"a\":1", "{\"a\":1} {}", "{\"a\":}", "\"{\"", "", "   "] {
            assert!(outgoing(bad, None).is_none(), "{bad:?}");
        }
    }
}
