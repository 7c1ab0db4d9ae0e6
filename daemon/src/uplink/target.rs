//! The server the uplink talks to: `[sync] server_url`, https only, except
//! plain http to a loopback address for local use.

use std::net::IpAddr;

use reqwest::Url;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Base URL without a trailing slash.
    pub base: String,
    pub ws_url: String,
    /// `host:port`, for the reachability probe.
    pub authority: String,
}

impl Target {
    pub fn parse(server_url: &str) -> Result<Self, String> {
        let url = Url::parse(server_url)
            .map_err(|e| format!("server_url {server_url:?} is not a URL: {e}"))?;
        let host = url
            .host_str()
            .ok_or_else(|| format!("server_url {server_url:?} has no host"))?;
        // A user or password in the URL would ride along in every request and
        // every error message (and so the log); the session is the credentials file.
        if !url.username().is_empty() || url.password().is_some() {
            return Err("server_url holds a user name or password; remove it                  (the session comes from the credentials file)"
                .into());
        }
        let ws_scheme = match url.scheme() {
            "https" => "wss",
            "http" if is_loopback(host) => "ws",
            "http" => {
                return Err(format!(
                    "server_url {server_url:?} is plain http to a non-loopback host; use https"
                ));
            }
            other => {
                return Err(format!(
                    "server_url {server_url:?} has scheme {other}; use https"
                ));
            }
        };
        let port = url.port_or_known_default().unwrap_or(443);
        let base = server_url.trim_end_matches('/').to_owned();
        let mut ws = url.clone();
        ws.set_scheme(ws_scheme)
            .map_err(|_| format!("server_url {server_url:?} cannot become a WebSocket URL"))?;
        let ws_url = format!("{}/ws/v1/events/", ws.as_str().trim_end_matches('/'));
        let authority = match host.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("[{v6}]:{port}"),
            _ => format!("{host}:{port}"),
        };
        Ok(Self {
            base,
            ws_url,
            authority,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes() {
        let t = Target::parse("https://spec-kitty-dev.fly.dev/").unwrap();
        assert_eq!(t.ws_url, "wss://spec-kitty-dev.fly.dev/ws/v1/events/");
        assert_eq!(
            t.url("/api/v1/token/"),
            "https://spec-kitty-dev.fly.dev/api/v1/token/"
        );
        assert_eq!(t.authority, "spec-kitty-dev.fly.dev:443");
        let t = Target::parse("http://127.0.0.1:8000").unwrap();
        assert_eq!(t.ws_url, "ws://127.0.0.1:8000/ws/v1/events/");
        assert!(Target::parse("http://[::1]:9/").is_ok());
        assert!(Target::parse("http://localhost:9").is_ok());
        assert!(
            Target::parse("http://example.com")
                .unwrap_err()
                .contains("https")
        );
        assert!(Target::parse("ftp://x").is_err());
        let e = Target::parse("https://alice:hunter2@example.com").unwrap_err();
        assert!(e.contains("password") && !e.contains("hunter2"), "{e}");
        assert!(Target::parse("nonsense").is_err());
    }
}
