//! Lexical rules of CONTRACT.md §2 and the violation type that names them.

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

/// The time stamp format of the Python CLI: `datetime.now(timezone.utc).isoformat()`.
pub fn format_utc(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
