//! `kitty-sync login` and `logout`: get a session from the server's token
//! endpoint (CONTRACT.md §3) and store it in the credentials file the
//! spec-kitty CLI shares, where the daemon picks it up without a restart.

use std::io::{BufRead, IsTerminal, Read};
use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use chrono::Utc;
use kitty_proto::home::Home;
use kitty_proto::session::{self, MAX_TOKEN_REPLY_BYTES, Session};
use kitty_store::credentials;
use reqwest::{StatusCode, Url};

/// The whole login request, connecting included, gets this long.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(15);

/// The longest password line read from standard input.
const MAX_PASSWORD_BYTES: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The server URL breaks the rules; nothing was sent.
    #[error("{0}")]
    BadUrl(String),
    /// The username or password is missing; nothing was sent.
    #[error("{0}")]
    Usage(String),
    #[error("wrong username or password")]
    WrongCredentials,
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Home(#[from] kitty_proto::home::HomeError),
    /// The request failed, or its answer could not be used: `what` says which.
    #[error("{what}")]
    Broken {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl LoginError {
    fn broken(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Broken {
            what: what.into(),
            source: source.into(),
        }
    }
}

impl LoginError {
    /// The exit status of `kitty-sync login` (sysexits.h).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::BadUrl(_) | Self::Usage(_) => 64, // EX_USAGE
            Self::WrongCredentials => 77,           // EX_NOPERM
            Self::Failed(_) | Self::Home(_) | Self::Broken { .. } => 1,
        }
    }
}

/// Checks a server URL and returns it as the base the API paths are joined
/// to (no trailing slash). A password may go only over https, or over plain
/// http to this machine (127.0.0.0/8, ::1, localhost), which is how the
/// reference server runs.
pub fn server_base(url: &str) -> Result<String, LoginError> {
    let bad = |why: String| LoginError::BadUrl(format!("server URL {url:?} {why}"));
    let parsed = Url::parse(url.trim()).map_err(|e| bad(format!("is not a URL: {e}")))?;
    let host = parsed.host_str().ok_or_else(|| bad("has no host".into()))?;
    match parsed.scheme() {
        "https" => {}
        "http" if is_loopback(host) => {}
        "http" => {
            return Err(bad(format!(
                "is plain http to {host}; a password is sent only over https, \
                 or over http to a loopback address (127.0.0.0/8, ::1, localhost)"
            )));
        }
        other => return Err(bad(format!("has scheme {other:?}; use https"))),
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(bad(
            "has a query or fragment; give the server's base URL".into()
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad(
            "carries a username or password; use --username and the prompt".into(),
        ));
    }
    Ok(parsed.as_str().trim_end_matches('/').to_owned())
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Logs in and stores the session. The credentials file is written only
/// after the server said yes, so any failure leaves it as it was. Returns
/// the session as stored (its team is the one kept from the file when the
/// server named none).
pub async fn login(
    home: &Home,
    server: &str,
    username: &str,
    password: &str,
) -> Result<Session, LoginError> {
    login_within(home, server, username, password, LOGIN_TIMEOUT).await
}

/// [`login`] with another time limit for the request.
pub async fn login_within(
    home: &Home,
    server: &str,
    username: &str,
    password: &str,
    timeout: Duration,
) -> Result<Session, LoginError> {
    let base = server_base(server)?;
    if username.trim().is_empty() {
        return Err(LoginError::Usage("the username is empty".into()));
    }
    if password.is_empty() {
        return Err(LoginError::Usage("the password is empty".into()));
    }
    let body = post_token(&base, username, password, timeout).await?;
    let mut session =
        session::from_token_reply(&body, Utc::now(), Some(username.to_owned()), Some(base))
            .map_err(|e| LoginError::broken("the server's answer is unusable", e))?;
    let home2 = home.clone();
    let to_save = session.clone();
    tokio::task::spawn_blocking(move || credentials::save_session(&home2, &to_save))
        .await
        .map_err(|e| LoginError::broken("storing the session failed", e))?
        .map_err(|e| LoginError::broken("logged in, but the session was not stored", e))?;
    if session.team_slug.is_none() {
        session.team_slug = credentials::read(&home.credentials())
            .credentials()
            .and_then(|c| c.team_slug.clone());
    }
    Ok(session)
}

async fn post_token(
    base: &str,
    username: &str,
    password: &str,
    timeout: Duration,
) -> Result<Vec<u8>, LoginError> {
    // reqwest is built without a default crypto provider (ring is the
    // workspace's choice); an error only means one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = format!("{base}/api/v1/token/");
    let loopback = Url::parse(base)
        .ok()
        .and_then(|u| u.host_str().map(is_loopback))
        .unwrap_or(false);
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        // A redirect could carry the password to another host or to plain http.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("kitty-sync/", env!("CARGO_PKG_VERSION")));
    if loopback {
        // A proxy cannot reach this machine's loopback on our behalf.
        builder = builder.no_proxy();
    }
    let http = builder
        .build()
        .map_err(|e| LoginError::broken("cannot set up HTTPS", e))?;
    let mut res = http
        .post(&url)
        .json(&serde_json::json!({ "username": username, "password": password }))
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                LoginError::Failed(format!("{url} did not answer within {timeout:?}"))
            } else {
                LoginError::broken(format!("cannot reach {url}"), e)
            }
        })?;
    let status = res.status();
    let mut body = Vec::new();
    loop {
        match res.chunk().await {
            Ok(Some(c)) => {
                body.extend_from_slice(&c);
                // One byte over is enough for from_token_reply to refuse it.
                if body.len() > MAX_TOKEN_REPLY_BYTES {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                return Err(LoginError::broken(
                    format!("reading the answer of {url}"),
                    e,
                ));
            }
        }
    }
    match status {
        StatusCode::OK => Ok(body),
        StatusCode::UNAUTHORIZED => Err(LoginError::WrongCredentials),
        s if s.is_redirection() => Err(LoginError::Failed(format!(
            "{url} answered {s} to {}; log in with that server URL instead",
            res.headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .unwrap_or("elsewhere")
        ))),
        s => Err(LoginError::Failed(format!(
            "{url} answered {s}{}",
            snippet(&body)
        ))),
    }
}

/// The start of an error body, enough to tell a proxy's HTML page from the
/// server's JSON message.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return String::new();
    }
    let short: String = text.chars().take(200).collect();
    let more = if short.len() < text.len() { "…" } else { "" };
    format!(": {}{more}", short.replace('\n', " "))
}

/// The password: the first line of standard input when asked to or when
/// standard input is not a terminal (scripts, CI), else a prompt without echo.
pub fn read_password(from_stdin: bool, prompt: &str) -> std::io::Result<String> {
    let stdin = std::io::stdin();
    if from_stdin || !stdin.is_terminal() {
        let mut line = String::new();
        stdin.lock().take(MAX_PASSWORD_BYTES).read_line(&mut line)?;
        let line = line.strip_suffix('\n').unwrap_or(&line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        return Ok(line.to_owned());
    }
    rpassword::prompt_password(prompt)
}

/// `kitty-sync login`.
pub fn main(server: &str, username: &str, password_stdin: bool) -> ExitCode {
    let home = match Home::from_env() {
        Ok(h) => h,
        Err(e) => return fail(&e.into()),
    };
    // Refuse a bad URL before asking for a password that would not be sent.
    let base = match server_base(server) {
        Ok(b) => b,
        Err(e) => return fail(&e),
    };
    let password = match read_password(
        password_stdin,
        &format!("Password for {username} at {base}: "),
    ) {
        Ok(p) => p,
        Err(e) => {
            return fail(&LoginError::broken("cannot read the password", e));
        }
    };
    let session = match crate::block_on(login(&home, &base, username, &password)) {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return fail(&e),
        Err(e) => return fail(&LoginError::broken("cannot start a runtime", e)),
    };
    match &session.team_slug {
        Some(team) => println!("logged in as {username} (team {team})"),
        None => println!("logged in as {username} (no team: events are stamped \"local\")"),
    }
    warn_if_config_differs(&home, &base);
    ExitCode::SUCCESS
}

/// The daemon sends events to config.toml's server, not to the one logged in
/// to; say so when they differ, since the tokens would be refused there.
fn warn_if_config_differs(home: &Home, base: &str) {
    if let Ok(cfg) = kitty_store::config::load(&home.config_toml())
        && cfg.server_url.trim_end_matches('/') != base
    {
        eprintln!(
            "kitty-sync: note: kitty-syncd sends events to {} ([sync] server_url in {}); \
             set it to {base} to sync with this login",
            cfg.server_url,
            home.config_toml().display()
        );
    }
}

fn fail(e: &LoginError) -> ExitCode {
    eprintln!(
        "kitty-sync: login failed: {}",
        kitty_cli_common::error_chain(e)
    );
    ExitCode::from(e.exit_code())
}

/// `kitty-sync logout`.
pub fn logout() -> ExitCode {
    let home = match Home::from_env() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("kitty-sync: error: {e}");
            return ExitCode::from(1);
        }
    };
    match credentials::remove(&home) {
        Ok(true) => {
            println!("logged out (removed {})", home.credentials().display());
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("not logged in (no {})", home.credentials().display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kitty-sync: logout failed: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_url_rules() {
        assert_eq!(
            server_base("https://spec-kitty-dev.fly.dev/").unwrap(),
            "https://spec-kitty-dev.fly.dev"
        );
        assert_eq!(
            server_base("https://x.example:8443/base/").unwrap(),
            "https://x.example:8443/base"
        );
        for ok in [
            "http://127.0.0.1:8000",
            "http://127.9.8.7",
            "http://[::1]:9/",
            "http://localhost:1",
            "http://LOCALHOST",
        ] {
            assert!(server_base(ok).is_ok(), "{ok}");
        }
        for (bad, needle) in [
            ("http://example.com", "loopback"),
            ("http://10.0.0.1:8000", "loopback"),
            ("http://128.0.0.1", "loopback"),
            ("http://localhost.example.com", "loopback"),
            ("ftp://x", "scheme"),
            ("ws://127.0.0.1", "scheme"),
            ("nonsense", "not a URL"),
            ("", "not a URL"),
            ("https://x?a=b", "query"),
            ("https://u:p@x", "password"),
        ] {
            let e = server_base(bad).unwrap_err();
            assert_eq!(e.exit_code(), 64);
            assert!(e.to_string().contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn snippet_is_short_and_one_line() {
        assert_eq!(snippet(b""), "");
        assert_eq!(snippet(b"oops\nmore"), ": oops more");
        let long = "x".repeat(1000);
        assert_eq!(snippet(long.as_bytes()).chars().count(), 2 + 200 + 1);
    }
}
