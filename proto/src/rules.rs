//! Lexical rules of CONTRACT.md §2 and docs/DRAFTS.md, and the violation type that names them.

use serde::Serialize;

/// One broken rule: which field (a dotted path such as `payload.wp_id`) and what
/// the rule is, worded for the person who sent the event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub field: String,
    pub rule: String,
}

impl Violation {
    pub fn new(field: impl Into<String>, rule: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            rule: rule.into(),
        }
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.rule)
    }
}

impl std::error::Error for Violation {}

/// Crockford base32 as ULIDs use it: `^[0-9A-HJKMNP-TV-Z]{26}$`. The first
/// character is at most `7`, or the value would not fit 128 bits.
pub fn is_ulid(s: &str) -> bool {
    s.len() == 26
        && s.bytes().all(|b| {
            b.is_ascii_digit()
                || (b.is_ascii_uppercase() && !matches!(b, b'I' | b'L' | b'O' | b'U'))
        })
        && s.as_bytes()[0] <= b'7'
}

/// `^WP\d{2}$`
pub fn is_wp_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 4 && b.starts_with(b"WP") && b[2].is_ascii_digit() && b[3].is_ascii_digit()
}

/// `^\d{3}$`
pub fn is_feature_number(s: &str) -> bool {
    s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit())
}

/// `^\d{3}-[a-z0-9-]+$`
pub fn is_feature_slug(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() > 4
        && b[..3].iter().all(u8::is_ascii_digit)
        && b[3] == b'-'
        && b[4..]
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// An ISO-8601 date-time that carries a zone (`Z` or `±hh:mm`), as Python's
/// `datetime.isoformat()` writes for an aware value.
pub fn is_iso8601_with_zone(s: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

/// An ISO-8601 date-time in UTC: a zone that is `Z` or an offset of zero.
pub fn is_iso8601_utc(s: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(s).is_ok_and(|t| t.offset().local_minus_utc() == 0)
}

/// An ISO-8601 date-time, with or without a zone (the optional `created_at` and
/// `completed_at` of the payload schemas are naive in some CLI versions).
pub fn is_iso8601(s: &str) -> bool {
    is_iso8601_with_zone(s)
        || chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").is_ok()
        || chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
}

/// The longest event_type or aggregate_type name a draft may carry.
pub const MAX_NAME_LEN: usize = 64;

/// The longest free-text identifier (aggregate_id of another type, build_id,
/// git_branch, repo_slug, project_slug, ...) a draft may carry, in bytes.
pub const MAX_TEXT_LEN: usize = 256;

/// `^[A-Z][A-Za-z0-9]*$`, at most [`MAX_NAME_LEN`] bytes: the names spec-kitty
/// gives its event types (`MissionCreated`) and aggregates (`WorkPackage`).
pub fn is_pascal_case(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_NAME_LEN
        && b[0].is_ascii_uppercase()
        && b.iter().all(u8::is_ascii_alphanumeric)
}

/// A UUID: 8-4-4-4-12 hex digits, or the 32 digits bare (as spec-kitty-events accepts).
pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    match b.len() {
        32 => b.iter().all(u8::is_ascii_hexdigit),
        36 => b.iter().enumerate().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                *c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        }),
        _ => false,
    }
}

/// `^\d+\.\d+\.\d+$` with at most 6 digits a part: the envelope's `schema_version`.
pub fn is_semver(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| (1..=6).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}

/// A git object name: 7 to 64 hex digits (abbreviated SHA-1 up to full SHA-256).
pub fn is_git_sha(s: &str) -> bool {
    (7..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Why `s` is not acceptable as a one-line identifier of at most `max` bytes,
/// or `None` when it is. Control characters (NUL, newline, ESC, ...) and the
/// bidirectional overrides that make text display other than it reads are
/// refused: these strings end up in terminals, logs and dashboards.
pub fn text_problem(s: &str, max: usize) -> Option<String> {
    if s.trim().is_empty() {
        return Some("must be a non-empty string".into());
    }
    if s.len() > max {
        return Some(format!("must be at most {max} bytes (it is {})", s.len()));
    }
    if s.chars().any(|c| c.is_control() || is_bidi_control(c)) {
        return Some("must not contain control characters or bidirectional overrides".into());
    }
    None
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// An ISO-8601 date-time with its zone, carried as UTC: a value already in UTC
/// is kept as written, another offset is converted (to microseconds, `+00:00`).
pub fn to_utc_iso8601(s: &str) -> Option<String> {
    let t = chrono::DateTime::parse_from_rfc3339(s).ok()?;
    if t.offset().local_minus_utc() == 0 {
        Some(s.to_owned())
    } else {
        Some(format_utc(t.with_timezone(&chrono::Utc)))
    }
}

/// The time stamp format of the Python CLI: `datetime.now(timezone.utc).isoformat()`.
/// Always with six digits of microseconds (`%Y-%m-%dT%H:%M:%S%.6f+00:00`).
///
/// Written out by hand: chrono's `format` parses its pattern on every call,
/// 2.4% of the daemon's CPU at 64 clients (it runs for every event stamped
/// and every feed line). The same text, as the tests check against chrono.
pub fn format_utc(t: chrono::DateTime<chrono::Utc>) -> String {
    use chrono::{Datelike, Timelike};
    use std::fmt::Write;
    let year = t.year();
    if !(0..=9999).contains(&year) {
        return t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string();
    }
    // As chrono's %S and %.6f: a leap second is second 60.
    let nanos = t.nanosecond();
    let mut out = String::with_capacity(32);
    let _ = write!(
        out,
        "{year:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}+00:00",
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second() + nanos / 1_000_000_000,
        (nanos % 1_000_000_000) / 1_000,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_utc_writes_what_chrono_writes() {
        use chrono::{TimeZone, Utc};
        let chrono_way =
            |t: chrono::DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string();
        let mut times = vec![
            Utc.timestamp_opt(0, 0).unwrap(),
            Utc.timestamp_opt(1_770_212_829, 123_456_789).unwrap(),
            Utc.timestamp_opt(1_770_212_829, 999_999_999).unwrap(),
            Utc.timestamp_opt(253_402_300_799, 999_999_000).unwrap(), // 9999-12-31T23:59:59.999999
            Utc.timestamp_opt(253_402_300_800, 0).unwrap(),           // year 10000
            Utc.timestamp_opt(-62_167_219_200, 0).unwrap(),           // year 0
            Utc.timestamp_opt(-62_167_219_201, 0).unwrap(),           // year -1
            Utc.timestamp_opt(1_483_228_799, 1_500_000_000).unwrap(), // a leap second
            Utc::now(),
        ];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..2_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let secs = (x % 8_000_000_000) as i64 - 1_000_000_000;
            times.push(
                Utc.timestamp_opt(secs, (x >> 33) as u32 % 1_000_000_000)
                    .unwrap(),
            );
        }
        for t in times {
            assert_eq!(format_utc(t), chrono_way(t), "{t:?}");
        }
    }

    #[test]
    fn ulid_rule() {
        assert!(is_ulid("01HX5ZQK3M8N9P0R1S2T3V4W5X"));
        assert!(!is_ulid("01HX5ZQK3M8N9P0R1S2T3V4W5"));
        assert!(!is_ulid("01HX5ZQK3M8N9P0R1S2T3V4W5I"));
        assert!(!is_ulid("01hx5zqk3m8n9p0r1s2t3v4w5x"));
        assert!(!is_ulid("81HX5ZQK3M8N9P0R1S2T3V4W5X"));
    }

    #[test]
    fn slug_rules() {
        assert!(is_wp_id("WP01"));
        assert!(!is_wp_id("WP1"));
        assert!(!is_wp_id("wp01"));
        assert!(is_feature_slug("028-cli-event-emission-sync"));
        assert!(!is_feature_slug("28-x"));
        assert!(!is_feature_slug("028-"));
        assert!(!is_feature_slug("028-Upper"));
        assert!(is_feature_number("028"));
        assert!(!is_feature_number("28"));
    }

    #[test]
    fn time_rules() {
        assert!(is_iso8601_utc("2026-02-04T13:47:09.123456+00:00"));
        assert!(is_iso8601_utc("2026-02-04T13:47:09Z"));
        assert!(!is_iso8601_utc("2026-02-04T13:47:09+02:00"));
        assert!(!is_iso8601_utc("2026-02-04T13:47:09"));
        assert!(is_iso8601("2026-02-04T13:47:09"));
        assert!(!is_iso8601("yesterday"));
        let s = format_utc(chrono::DateTime::from_timestamp(1_770_212_829, 123_456_000).unwrap());
        assert_eq!(s, "2026-02-04T13:47:09.123456+00:00");
    }

    #[test]
    fn name_rules() {
        assert!(is_pascal_case("MissionCreated"));
        assert!(is_pascal_case("WPStatusChanged"));
        assert!(is_pascal_case("Build2"));
        assert!(!is_pascal_case("missionCreated"));
        assert!(!is_pascal_case("Mission_Created"));
        assert!(!is_pascal_case("Mission Created"));
        assert!(!is_pascal_case(""));
        assert!(!is_pascal_case("Ünicode"));
        assert!(is_pascal_case(&"A".repeat(MAX_NAME_LEN)));
        assert!(!is_pascal_case(&"A".repeat(MAX_NAME_LEN + 1)));
    }

    #[test]
    fn id_rules() {
        assert!(is_uuid("3f9a0c1b-2d4e-4f60-8a1b-2c3d4e5f6a7b"));
        assert!(is_uuid("3f9a0c1b2d4e4f608a1b2c3d4e5f6a7b"));
        assert!(!is_uuid("3f9a0c1b-2d4e-4f60-8a1b-2c3d4e5f6a7"));
        assert!(!is_uuid("3f9a0c1b_2d4e_4f60_8a1b_2c3d4e5f6a7b"));
        assert!(is_semver("3.0.0"));
        assert!(!is_semver("3.0"));
        assert!(!is_semver("3.0.0-rc1"));
        assert!(!is_semver("v3.0.0"));
        assert!(is_git_sha("0123abc"));
        assert!(is_git_sha(&"a".repeat(40)));
        assert!(!is_git_sha("012345"));
        assert!(!is_git_sha("0123abg"));
        assert!(!is_git_sha(&"a".repeat(65)));
    }

    #[test]
    fn text_rule() {
        assert_eq!(text_problem("feature/x-1", 256), None);
        assert_eq!(text_problem("élan", 256), None);
        for bad in [
            "",
            " ",
            "a\nb",
            "a\u{0}b",
            "\u{1b}[31mred",
            "a\u{202E}b",
            "a\u{85}b",
        ] {
            assert!(text_problem(bad, 256).is_some(), "{bad:?}");
        }
        assert!(text_problem(&"x".repeat(257), 256).is_some());
    }

    #[test]
    fn occurred_at_becomes_utc() {
        assert_eq!(
            to_utc_iso8601("2026-02-04T13:47:09.5Z").as_deref(),
            Some("2026-02-04T13:47:09.5Z")
        );
        assert_eq!(
            to_utc_iso8601("2026-02-04T15:47:09.123456+02:00").as_deref(),
            Some("2026-02-04T13:47:09.123456+00:00")
        );
        assert_eq!(to_utc_iso8601("2026-02-04T13:47:09"), None);
        assert_eq!(to_utc_iso8601("2026-02-04"), None);
        assert_eq!(to_utc_iso8601("yesterday"), None);
    }
}
