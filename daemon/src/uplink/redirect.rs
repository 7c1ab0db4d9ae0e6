//! API calls never follow redirects. A redirect could carry the events, the
//! refresh token or a bearer token to another origin (reqwest drops the
//! Authorization header across origins, but not the body), and a "success"
//! from there would delete rows the real server never saw. So the HTTP client
//! is built with redirects off, and a 3xx is an error that says where it
//! pointed and what to do.

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION};

/// The error text for `what` answered by a redirect, or None when `status`
/// is not one.
pub fn refused(what: &str, status: StatusCode, headers: &HeaderMap) -> Option<String> {
    if !status.is_redirection() {
        return None;
    }
    Some(message(
        what,
        status,
        headers.get(LOCATION).map(|v| v.as_bytes()),
    ))
}

/// The same for a WebSocket upgrade answered by a redirect (tungstenite's
/// own http types).
pub fn refused_upgrade(
    status: tokio_tungstenite::tungstenite::http::StatusCode,
    headers: &tokio_tungstenite::tungstenite::http::HeaderMap,
) -> Option<String> {
    if !status.is_redirection() {
        return None;
    }
    let status = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::TEMPORARY_REDIRECT);
    Some(message(
        "the WebSocket upgrade",
        status,
        headers.get("location").map(|v| v.as_bytes()),
    ))
}

fn message(what: &str, status: StatusCode, location: Option<&[u8]>) -> String {
    // The server's text, shown but bounded and printable only.
    let to: String = location
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .unwrap_or_else(|| "nowhere".into())
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    format!(
        "{what} was answered {status} (redirect to {to}); kitty-syncd follows no redirects \
         on API calls: set [sync] server_url to the server's real address"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_redirects_are_refused_and_the_location_is_bounded() {
        let mut h = HeaderMap::new();
        assert!(refused("batch", StatusCode::OK, &h).is_none());
        assert!(refused("batch", StatusCode::BAD_REQUEST, &h).is_none());
        h.insert(
            LOCATION,
            format!("https://evil.example/{}", "x".repeat(500))
                .parse()
                .unwrap(),
        );
        let m = refused("batch", StatusCode::TEMPORARY_REDIRECT, &h).unwrap();
        assert!(m.contains("307"), "{m}");
        assert!(m.contains("https://evil.example/"), "{m}");
        assert!(m.contains("server_url"), "{m}");
        assert!(m.len() < 400, "{m}");
        let m = refused("refresh", StatusCode::MOVED_PERMANENTLY, &HeaderMap::new()).unwrap();
        assert!(m.contains("nowhere"), "{m}");
    }
}
