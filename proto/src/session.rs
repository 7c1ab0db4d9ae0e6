//! A login session: the tokens the server hands out (CONTRACT.md §3) and how
//! long they live. Reading a token reply is pure; writing the credentials file
//! is `kitty_store::credentials`' job.

use chrono::{DateTime, Utc};

/// Access token lifetime when the server names none.
pub const DEFAULT_ACCESS_LIFETIME_SECS: i64 = 900;
/// Refresh token lifetime when the server names none.
pub const DEFAULT_REFRESH_LIFETIME_SECS: i64 = 604_800;

#[derive(Clone, PartialEq, Eq)]
pub struct Session {
    pub access: String,
    pub refresh: String,
    pub access_expires_at: DateTime<Utc>,
    pub refresh_expires_at: DateTime<Utc>,
    pub username: Option<String>,
    /// `None` keeps the team already stored.
    pub team_slug: Option<String>,
    pub server_url: Option<String>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("access", &"<redacted>")
            .field("refresh", &"<redacted>")
            .field("access_expires_at", &self.access_expires_at)
            .field("refresh_expires_at", &self.refresh_expires_at)
            .field("username", &self.username)
            .field("team_slug", &self.team_slug)
            .field("server_url", &self.server_url)
            .finish()
    }
}

/// The largest token reply read: the body of a login or refresh answer.
pub const MAX_TOKEN_REPLY_BYTES: usize = 1024 * 1024;

/// The longest lifetime believed: anything longer is a server bug or an
/// attack, and would overflow a timestamp long before it mattered.
pub const MAX_LIFETIME_SECS: i64 = 100 * 366 * 86_400;

/// Why a token reply was refused. The messages name the field and never
/// quote a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the token reply is {0} bytes, over the {MAX_TOKEN_REPLY_BYTES} byte limit")]
    TooLarge(usize),
    #[error("the token reply is not JSON: {0}")]
    NotJson(String),
    #[error("the token reply is not a JSON object")]
    NotObject,
    #[error("the token reply has no {0}")]
    Missing(&'static str),
    #[error("{field} in the token reply {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
}

/// Reads the 200 answer of `POST /api/v1/token/` or `/api/v1/token/refresh/`
/// (CONTRACT.md §3) into a session that starts at `now`.
///
/// Lifetimes come from `access_lifetime` or `expires_in`, and
/// `refresh_lifetime` or `refresh_expires_in` (the first one present wins),
/// else the defaults. A `team_slug` that is absent, null or blank is `None`,
/// so the stored team is kept.
pub fn from_token_reply(
    body: &[u8],
    now: DateTime<Utc>,
    username: Option<String>,
    server_url: Option<String>,
) -> Result<Session, SessionError> {
    if body.len() > MAX_TOKEN_REPLY_BYTES {
        return Err(SessionError::TooLarge(body.len()));
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| SessionError::NotJson(e.to_string()))?;
    let obj = value.as_object().ok_or(SessionError::NotObject)?;
    let access = token(obj, "access")?;
    let refresh = token(obj, "refresh")?;
    let access_life = lifetime(
        obj,
        ["access_lifetime", "expires_in"],
        DEFAULT_ACCESS_LIFETIME_SECS,
    )?;
    let refresh_life = lifetime(
        obj,
        ["refresh_lifetime", "refresh_expires_in"],
        DEFAULT_REFRESH_LIFETIME_SECS,
    )?;
    let team_slug = match obj.get("team_slug") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) if s.trim().is_empty() => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(SessionError::Invalid {
                field: "team_slug",
                problem: format!("must be a string, not {}", kind(other)),
            });
        }
    };
    Ok(Session {
        access,
        refresh,
        access_expires_at: expiry(now, access_life.0, access_life.1)?,
        refresh_expires_at: expiry(now, refresh_life.0, refresh_life.1)?,
        username,
        team_slug,
        server_url,
    })
}

fn token(
    obj: &serde_json::Map<String, serde_json::Value>,
    field: &'static str,
) -> Result<String, SessionError> {
    match obj.get(field) {
        None | Some(serde_json::Value::Null) => Err(SessionError::Missing(field)),
        Some(serde_json::Value::String(s)) if s.trim().is_empty() => Err(SessionError::Invalid {
            field,
            problem: "is empty".into(),
        }),
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(SessionError::Invalid {
            field,
            problem: format!("must be a string, not {}", kind(other)),
        }),
    }
}

/// The first of `names` present (null counts as absent), in whole seconds.
/// A whole-valued float is accepted because Python servers often send
/// `timedelta.total_seconds()`, which is `900.0`.
fn lifetime(
    obj: &serde_json::Map<String, serde_json::Value>,
    names: [&'static str; 2],
    default: i64,
) -> Result<(&'static str, i64), SessionError> {
    let Some((field, v)) = names
        .iter()
        .find_map(|n| obj.get(*n).filter(|v| !v.is_null()).map(|v| (*n, v)))
    else {
        return Ok((names[0], default));
    };
    let invalid = |problem: String| SessionError::Invalid { field, problem };
    let serde_json::Value::Number(n) = v else {
        return Err(invalid(format!(
            "must be a number of seconds, not {}",
            kind(v)
        )));
    };
    let secs = if let Some(i) = n.as_i64() {
        i
    } else if n.as_u64().is_some() {
        return Err(invalid(format!(
            "is {n} seconds, over the {MAX_LIFETIME_SECS} allowed"
        )));
    } else {
        let f = n.as_f64().unwrap_or(f64::NAN);
        if !f.is_finite() || f.fract() != 0.0 {
            return Err(invalid(format!(
                "must be a whole number of seconds, not {n}"
            )));
        }
        if f.abs() > MAX_LIFETIME_SECS as f64 {
            return Err(invalid(format!(
                "is {n} seconds, outside 0..={MAX_LIFETIME_SECS}"
            )));
        }
        f as i64
    };
    if !(0..=MAX_LIFETIME_SECS).contains(&secs) {
        return Err(invalid(format!(
            "is {secs} seconds, outside 0..={MAX_LIFETIME_SECS}"
        )));
    }
    Ok((field, secs))
}

fn expiry(
    now: DateTime<Utc>,
    field: &'static str,
    secs: i64,
) -> Result<DateTime<Utc>, SessionError> {
    chrono::TimeDelta::try_seconds(secs)
        .and_then(|d| now.checked_add_signed(d))
        .ok_or_else(|| SessionError::Invalid {
            field,
            problem: format!("of {secs} seconds runs past the last representable date"),
        })
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        "2026-02-04T12:47:09.123456Z".parse().unwrap()
    }

    fn parse(v: serde_json::Value) -> Result<Session, SessionError> {
        from_token_reply(v.to_string().as_bytes(), now(), None, None)
    }

    fn err(v: serde_json::Value) -> String {
        parse(v).unwrap_err().to_string()
    }

    #[test]
    fn minimal_reply_gets_default_lifetimes() {
        let s = from_token_reply(
            br#"{"access":"a.b.c","refresh":"r.s.t"}"#,
            now(),
            Some("alice".into()),
            Some("https://x".into()),
        )
        .unwrap();
        assert_eq!(s.access, "a.b.c");
        assert_eq!(s.refresh, "r.s.t");
        assert_eq!((s.access_expires_at - now()).num_seconds(), 900);
        assert_eq!((s.refresh_expires_at - now()).num_seconds(), 604_800);
        assert_eq!(s.team_slug, None);
        assert_eq!(s.username.as_deref(), Some("alice"));
        assert_eq!(s.server_url.as_deref(), Some("https://x"));
    }

    #[test]
    fn lifetimes_from_either_name() {
        let s = parse(json!({"access":"a","refresh":"r","access_lifetime":60,"refresh_lifetime":120,"team_slug":"acme"})).unwrap();
        assert_eq!((s.access_expires_at - now()).num_seconds(), 60);
        assert_eq!((s.refresh_expires_at - now()).num_seconds(), 120);
        assert_eq!(s.team_slug.as_deref(), Some("acme"));
        let s = parse(json!({"access":"a","refresh":"r","expires_in":30,"refresh_expires_in":0}))
            .unwrap();
        assert_eq!((s.access_expires_at - now()).num_seconds(), 30);
        assert_eq!(s.refresh_expires_at, now());
        // The first name wins; null counts as absent; Python's 900.0 is fine.
        let s = parse(
            json!({"access":"a","refresh":"r","access_lifetime":10,"expires_in":20,
            "refresh_lifetime":null,"refresh_expires_in":86400.0,"team_slug":null}),
        )
        .unwrap();
        assert_eq!((s.access_expires_at - now()).num_seconds(), 10);
        assert_eq!((s.refresh_expires_at - now()).num_seconds(), 86_400);
        assert_eq!(s.team_slug, None);
        assert_eq!(
            parse(json!({"access":"a","refresh":"r","team_slug":"  "}))
                .unwrap()
                .team_slug,
            None
        );
    }

    #[test]
    fn not_json_or_not_an_object() {
        for body in [
            &b""[..],
            b"<html>502</html>",
            b"{\"access\":",
            b"\xff\xfe",
            b"nul",
        ] {
            let e = from_token_reply(body, now(), None, None).unwrap_err();
            assert!(matches!(e, SessionError::NotJson(_)), "{e}");
        }
        for body in [&b"[]"[..], b"null", b"\"access\"", b"42"] {
            assert_eq!(
                from_token_reply(body, now(), None, None).unwrap_err(),
                SessionError::NotObject
            );
        }
        let deep = "[".repeat(100_000);
        assert!(from_token_reply(deep.as_bytes(), now(), None, None).is_err());
    }

    #[test]
    fn tokens_are_required_non_empty_strings() {
        assert_eq!(err(json!({"refresh":"r"})), "the token reply has no access");
        assert_eq!(
            err(json!({"access":"a","refresh":null})),
            "the token reply has no refresh"
        );
        assert!(
            err(json!({"access":"","refresh":"r"})).contains("access in the token reply is empty")
        );
        assert!(
            err(json!({"access":"a","refresh":7}))
                .contains("refresh in the token reply must be a string, not a number")
        );
        assert!(err(json!({"access":["a"],"refresh":"r"})).contains("an array"));
        assert!(err(json!({"access":"a","refresh":"r","team_slug":3})).contains("team_slug"));
    }

    #[test]
    fn hostile_lifetimes() {
        let cases = [
            (
                json!({"access":"a","refresh":"r","access_lifetime":-1}),
                "access_lifetime",
            ),
            (
                json!({"access":"a","refresh":"r","expires_in":-900}),
                "expires_in",
            ),
            (
                json!({"access":"a","refresh":"r","access_lifetime":"900"}),
                "must be a number",
            ),
            (
                json!({"access":"a","refresh":"r","refresh_lifetime":true}),
                "refresh_lifetime",
            ),
            (
                json!({"access":"a","refresh":"r","refresh_expires_in":{}}),
                "refresh_expires_in",
            ),
            (
                json!({"access":"a","refresh":"r","access_lifetime":1.5}),
                "whole number",
            ),
            (
                json!({"access":"a","refresh":"r","access_lifetime":i64::MAX}),
                "outside",
            ),
            (
                json!({"access":"a","refresh":"r","access_lifetime":u64::MAX}),
                "over the",
            ),
            (
                json!({"access":"a","refresh":"r","refresh_lifetime":1e300}),
                "outside",
            ),
            (
                json!({"access":"a","refresh":"r","refresh_lifetime":-1e300}),
                "outside",
            ),
        ];
        for (v, needle) in cases {
            let e = err(v.clone());
            assert!(e.contains(needle), "{v}: {e}");
        }
        // Numbers beyond f64 are parse errors in serde_json, not panics.
        let body = format!(
            r#"{{"access":"a","refresh":"r","expires_in":1{}}}"#,
            "0".repeat(400)
        );
        assert!(from_token_reply(body.as_bytes(), now(), None, None).is_err());
        // The longest lifetime allowed still fits.
        assert!(
            parse(json!({"access":"a","refresh":"r","refresh_lifetime":MAX_LIFETIME_SECS})).is_ok()
        );
        // Near the end of chrono's range, adding overflows: an error, not a panic.
        let late = DateTime::<Utc>::MAX_UTC - chrono::TimeDelta::seconds(10);
        let e = from_token_reply(br#"{"access":"a","refresh":"r"}"#, late, None, None).unwrap_err();
        assert!(
            e.to_string().contains("past the last representable date"),
            "{e}"
        );
    }

    #[test]
    fn too_large() {
        let pad = "x".repeat(MAX_TOKEN_REPLY_BYTES);
        let body = format!(r#"{{"access":"a","refresh":"r","pad":"{pad}"}}"#);
        assert!(matches!(
            from_token_reply(body.as_bytes(), now(), None, None),
            Err(SessionError::TooLarge(_))
        ));
    }

    #[test]
    fn errors_never_quote_tokens() {
        let e = err(json!({"access":"secret-token","refresh":"secret-token","expires_in":"x"}));
        assert!(!e.contains("secret"), "{e}");
        let s = parse(json!({"access":"secret-token","refresh":"secret-token"})).unwrap();
        assert!(!format!("{s:?}").contains("secret"));
    }

    fn arb_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(serde_json::Value::from),
            ".{0,8}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 32, 6, |inner| {
            let key = prop_oneof![
                Just("access".to_owned()),
                Just("refresh".to_owned()),
                Just("access_lifetime".to_owned()),
                Just("expires_in".to_owned()),
                Just("refresh_lifetime".to_owned()),
                Just("refresh_expires_in".to_owned()),
                Just("team_slug".to_owned()),
                "[a-z_]{1,6}",
            ];
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::vec((key, inner), 0..8)
                    .prop_map(|kv| serde_json::Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn random_json_never_panics(v in arb_json()) {
            if let Ok(s) = parse(v) {
                prop_assert!(!s.access.trim().is_empty() && !s.refresh.trim().is_empty());
                prop_assert!(s.access_expires_at >= now() && s.refresh_expires_at >= now());
            }
        }

        #[test]
        fn random_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = from_token_reply(&body, now(), None, None);
        }

        #[test]
        fn any_valid_lifetime_is_kept(a in 0..=MAX_LIFETIME_SECS, r in 0..=MAX_LIFETIME_SECS) {
            let s = parse(json!({"access":"a","refresh":"r","expires_in":a,"refresh_lifetime":r})).unwrap();
            prop_assert_eq!((s.access_expires_at - now()).num_seconds(), a);
            prop_assert_eq!((s.refresh_expires_at - now()).num_seconds(), r);
        }
    }
}
