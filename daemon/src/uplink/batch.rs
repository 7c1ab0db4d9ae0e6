//! One batch POST (CONTRACT.md §3): up to 1,000 queued events, gzipped, in
//! queue order, and the server's verdict on each.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, SystemTime};

use flate2::Compression;
use flate2::write::GzEncoder;
use kitty_store::outbox::{Outgoing, Verdict};
use reqwest::StatusCode;
use serde::Deserialize;

use super::auth::{AuthError, read_limited};
use super::envelope;
use super::target::Target;

/// The server's limit, and ours.
pub const MAX_BATCH: u32 = kitty_proto::MAX_EVENTS_PER_REQUEST as u32;
/// A batch may take longer than the other calls (up to 1,000 events up, as
/// many results down), but not the minute it once could.
const BATCH_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, thiserror::Error)]
pub enum BatchError {
    #[error("the server refused the token (401)")]
    Unauthorized,
    #[error("forbidden (403): {0}")]
    Forbidden(String),
    #[error("rate limited (429); retrying in {0:?}")]
    RateLimited(Duration),
    #[error("{message}")]
    Failed { message: String, connect: bool },
}

impl From<AuthError> for BatchError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Transient { message, connect } => Self::Failed { message, connect },
            other => Self::Failed {
                message: other.to_string(),
                connect: false,
            },
        }
    }
}

#[derive(Deserialize)]
struct Reply {
    results: Vec<ResultItem>,
}

#[derive(Deserialize)]
struct ResultItem {
    event_id: Option<String>,
    status: Option<String>,
    error_message: Option<String>,
    error: Option<String>,
}

/// The body: `gzip({"events":[...]})`. Rows that are not JSON objects are not
/// sent; they come back as rejections.
pub fn body(rows: &[Outgoing], team: Option<&str>) -> (Vec<u8>, Vec<(String, Verdict)>) {
    let mut json = String::with_capacity(rows.iter().map(|r| r.data.len() + 1).sum::<usize>() + 16);
    let mut bad = Vec::new();
    json.push_str("{\"events\":[");
    let mut first = true;
    for row in rows {
        match envelope::outgoing(&row.data, team) {
            Some(text) => {
                if !first {
                    json.push(',');
                }
                first = false;
                json.push_str(&text);
            }
            None => bad.push((
                row.event_id.clone(),
                Verdict::Rejected("stored data is not a JSON object".into()),
            )),
        }
    }
    json.push_str("]}");
    let mut gz = GzEncoder::new(Vec::with_capacity(json.len() / 4), Compression::fast());
    gz.write_all(json.as_bytes())
        .expect("writing to a Vec cannot fail");
    (gz.finish().expect("writing to a Vec cannot fail"), bad)
}

/// Posts `rows` and returns the verdicts on the events the server named.
/// Events it did not name are left out: they stay queued, untouched.
pub async fn post(
    http: &reqwest::Client,
    target: &Target,
    token: &str,
    team: Option<&str>,
    rows: Vec<Outgoing>,
) -> Result<Vec<(String, Verdict)>, BatchError> {
    // Off the runtime's one thread: re-serialising and compressing a
    // thousand events takes milliseconds the socket's requests would wait.
    // The rows go there and come back, uncopied.
    let team_owned = team.map(str::to_owned);
    let ((gz, mut verdicts), rows) = tokio::task::spawn_blocking(move || {
        let built = body(&rows, team_owned.as_deref());
        (built, rows)
    })
    .await
    .map_err(|e| BatchError::Failed {
        message: format!("building the batch failed: {e}"),
        connect: false,
    })?;
    if verdicts.len() == rows.len() {
        return Ok(verdicts);
    }
    let mut req = http
        .post(target.url("/api/v1/events/batch/"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .timeout(BATCH_TIMEOUT)
        .body(gz);
    if let Some(team) = team {
        req = req.header("x-team-slug", team);
    }
    let res = req.send().await.map_err(|e| BatchError::Failed {
        connect: e.is_connect(),
        message: if e.is_timeout() {
            format!(
                "the batch POST got no answer within {} s; it will be sent again",
                BATCH_TIMEOUT.as_secs()
            )
        } else {
            format!("cannot reach the server: {e}")
        },
    })?;
    let status = res.status();
    let retry_after = retry_after(
        res.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        SystemTime::now(),
    );
    if let Some(msg) = super::redirect::refused("the batch POST", status, res.headers()) {
        return Err(BatchError::Failed {
            message: msg,
            connect: false,
        });
    }
    let reply = read_limited(res).await?;
    match status {
        StatusCode::OK => {}
        StatusCode::UNAUTHORIZED => return Err(BatchError::Unauthorized),
        StatusCode::FORBIDDEN => return Err(BatchError::Forbidden(error_text(&reply))),
        StatusCode::TOO_MANY_REQUESTS => return Err(BatchError::RateLimited(retry_after)),
        other => {
            return Err(BatchError::Failed {
                message: format!("batch answered {other}: {}", error_text(&reply)),
                connect: false,
            });
        }
    }
    let parsed: Reply = serde_json::from_slice(&reply).map_err(|e| BatchError::Failed {
        message: format!("unreadable batch reply: {e}"),
        connect: false,
    })?;
    let sent: HashMap<&str, ()> = rows.iter().map(|r| (r.event_id.as_str(), ())).collect();
    for item in parsed.results {
        let Some(id) = item.event_id.filter(|id| sent.contains_key(id.as_str())) else {
            continue;
        };
        let verdict = match item.status.as_deref() {
            Some("success") | Some("accepted") => Verdict::Accepted,
            Some("duplicate") => Verdict::Duplicate,
            other => Verdict::Rejected(
                item.error_message
                    .or(item.error)
                    .unwrap_or_else(|| format!("status {}", other.unwrap_or("missing"))),
            ),
        };
        verdicts.push((id, verdict));
    }
    Ok(verdicts)
}

/// How long a 429 asks us to wait: `Retry-After` in seconds or as an HTTP
/// date (RFC 9110 §10.2.3), read at `now`. Absent or unreadable, the design's
/// 5 s; at least 1 s, at most an hour, whatever the server says.
pub fn retry_after(header: Option<&str>, now: SystemTime) -> Duration {
    const DEFAULT: Duration = Duration::from_secs(5);
    const MIN: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(3600);
    let Some(value) = header.map(str::trim) else {
        return DEFAULT;
    };
    let wait = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 is still "a very long time".
        value.parse::<u64>().map_or(MAX, Duration::from_secs)
    } else if let Ok(at) = httpdate::parse_http_date(value) {
        at.duration_since(now).unwrap_or(Duration::ZERO)
    } else {
        DEFAULT
    };
    wait.clamp(MIN, MAX)
}

/// The `error` (and `details`) of an error reply, short, for status and logs.
fn error_text(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => v
            .get("error")
            .or_else(|| v.get("detail"))
            .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_owned))
            .unwrap_or_else(|| v.to_string()),
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    text.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn retry_after_in_seconds_and_as_a_date_within_bounds() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let secs = |s: u64| Duration::from_secs(s);
        assert_eq!(retry_after(Some("7"), now), secs(7));
        assert_eq!(retry_after(Some(" 120 "), now), secs(120));
        let in_30 = httpdate::fmt_http_date(now + secs(30));
        assert_eq!(retry_after(Some(&in_30), now), secs(30), "{in_30}");
        // The two obsolete date forms a recipient must also read.
        let at = now + secs(90);
        let imf = httpdate::fmt_http_date(at);
        let day = &imf[..3];
        let rest = &imf[5..];
        let (dd, mon, yyyy, time) = (&rest[..2], &rest[3..6], &rest[7..11], &rest[12..20]);
        let long_day = [
            "Monday",
            "Tuesday",
            "Wednesday",
            "Thursday",
            "Friday",
            "Saturday",
            "Sunday",
        ]
        .into_iter()
        .find(|d| d.starts_with(day))
        .unwrap();
        let rfc850 = format!("{long_day}, {dd}-{mon}-{} {time} GMT", &yyyy[2..]);
        assert_eq!(retry_after(Some(&rfc850), now), secs(90), "{rfc850}");
        let asctime = format!(
            "{day} {mon} {:>2} {time} {yyyy}",
            dd.trim_start_matches('0')
        );
        assert_eq!(retry_after(Some(&asctime), now), secs(90), "{asctime}");
        // Absent, garbage, past, zero, negative, huge.
        assert_eq!(retry_after(None, now), secs(5));
        assert_eq!(retry_after(Some("soon"), now), secs(5));
        assert_eq!(retry_after(Some(""), now), secs(5));
        assert_eq!(retry_after(Some("-3"), now), secs(5));
        assert_eq!(retry_after(Some("1.5"), now), secs(5));
        let past = httpdate::fmt_http_date(now - secs(3600));
        assert_eq!(retry_after(Some(&past), now), secs(1));
        assert_eq!(retry_after(Some("0"), now), secs(1));
        assert_eq!(retry_after(Some("99999999999"), now), secs(3600));
        assert_eq!(
            retry_after(Some("99999999999999999999999"), now),
            secs(3600)
        );
        let far = httpdate::fmt_http_date(now + secs(86_400 * 365));
        assert_eq!(retry_after(Some(&far), now), secs(3600));
    }

    #[test]
    fn body_is_gzipped_events_in_order_and_skips_garbage() {
        let rows = vec![
            Outgoing {
                id: 1,
                timestamp: 1,
                event_id: "a".into(),
                data: r#"{"event_id":"a","team_slug":"local"}"#.into(),
            },
            Outgoing {
                id: 2,
                timestamp: 1,
                event_id: "b".into(),
                data: "garbage".into(),
            },
            Outgoing {
                id: 3,
                timestamp: 2,
                event_id: "c".into(),
                data: r#"{"event_id":"c"}"#.into(),
            },
        ];
        let (gz, bad) = body(&rows, Some("acme"));
        let mut text = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(
            text,
            r#"{"events":[{"event_id":"a","team_slug":"acme"},{"event_id":"c"}]}"#
        );
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0, "b");
    }
}
