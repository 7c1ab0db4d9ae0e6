//! Tokens for the uplink: the access token from the credentials file, the
//! refresh (the planner decides when: on a 401, or a token that has expired),
//! and the short-lived WebSocket token. Rotated tokens are written back to the
//! credentials file (under `credentials.lock`, other tables kept) so the
//! spec-kitty CLI sees them too. One task does all of this, so refreshes are
//! single-flight.

use std::time::Duration;

use chrono::Utc;
use kitty_proto::home::Home;
use kitty_proto::session::{self, Session};
use kitty_store::credentials::Credentials;
use reqwest::StatusCode;
use serde_json::json;

use super::target::Target;
use crate::settings::SettingsRx;

/// Refresh this long before the access token expires rather than after. Short:
/// a 401 refreshes anyway, and a margin longer than a token's whole life would
/// refresh on every request.
const EARLY: chrono::TimeDelta = chrono::TimeDelta::seconds(1);
const MAX_REPLY_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    #[error("not logged in (run `kitty-sync login` or `spec-kitty auth login`)")]
    NotLoggedIn,
    /// The server refused the refresh token: only a new login helps.
    #[error("the session is over: {0}; log in again")]
    SessionOver(String),
    /// The access token has expired, or the server refused it (401): a refresh may help.
    #[error("the access token was refused or has expired")]
    Unauthorized,
    /// Worth retrying later (network, 5xx, unreadable reply).
    #[error("{message}")]
    Transient { message: String, connect: bool },
}

impl AuthError {
    fn transient(e: reqwest::Error) -> Self {
        Self::Transient {
            connect: e.is_connect() || e.is_timeout(),
            message: format!("cannot reach the server: {e}"),
        }
    }
}

pub struct Auth {
    home: Home,
    http: reqwest::Client,
    settings: SettingsRx,
    /// Tokens we obtained ourselves, until the file watcher shows them, with
    /// every refresh token they replaced: while the file still holds one of
    /// those (each is dead, rotation spent it), ours are the live ones.
    fresh: Option<(Credentials, Vec<String>)>,
}

impl Auth {
    pub fn new(home: Home, http: reqwest::Client, settings: SettingsRx) -> Self {
        Self {
            home,
            http,
            settings,
            fresh: None,
        }
    }

    /// The credentials in force: ours from a refresh until the file shows them,
    /// else the file's (which also covers a new login by the user).
    pub fn current(&mut self) -> Option<Credentials> {
        let file = self.settings.borrow().credentials.credentials().cloned();
        if let Some((fresh, replaced)) = &self.fresh {
            let file_refresh = file.as_ref().and_then(|c| c.refresh.as_deref());
            if file_refresh.is_some_and(|r| replaced.iter().any(|old| old == r)) {
                return Some(fresh.clone());
            }
            // The file caught up with us, or someone logged in anew.
            self.fresh = None;
        }
        file
    }

    pub fn logged_in(&mut self) -> bool {
        self.current().is_some_and(|c| c.logged_in(Utc::now()))
    }

    /// The session's team, when it has one.
    pub fn team(&mut self) -> Option<String> {
        self.current()
            .and_then(|c| c.team_slug)
            .filter(|t| !t.trim().is_empty())
    }

    /// The access token, unless it has expired (`Unauthorized`: refresh first).
    pub fn access(&mut self) -> Result<String, AuthError> {
        let c = self.current().ok_or(AuthError::NotLoggedIn)?;
        match (&c.access, c.access_expires_at) {
            (Some(token), Some(exp)) if exp > Utc::now() + EARLY && !token.is_empty() => {
                Ok(token.clone())
            }
            _ => Err(AuthError::Unauthorized),
        }
    }

    /// Exchanges the refresh token for new tokens and stores them.
    pub async fn refresh(&mut self, target: &Target) -> Result<(), AuthError> {
        let c = self.current().ok_or(AuthError::NotLoggedIn)?;
        let refresh = c
            .refresh
            .clone()
            .filter(|r| !r.is_empty())
            .ok_or(AuthError::NotLoggedIn)?;
        if c.refresh_expires_at.is_some_and(|e| e <= Utc::now()) {
            return Err(AuthError::SessionOver(
                "the refresh token has expired".into(),
            ));
        }
        let res = self
            .http
            .post(target.url("/api/v1/token/refresh/"))
            .json(&json!({ "refresh": refresh }))
            .send()
            .await
            .map_err(AuthError::transient)?;
        let status = res.status();
        if let Some(message) = super::redirect::refused("the token refresh", status, res.headers())
        {
            return Err(AuthError::Transient {
                message,
                connect: false,
            });
        }
        let body = read_limited(res).await?;
        match status {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED | StatusCode::BAD_REQUEST | StatusCode::FORBIDDEN => {
                return Err(AuthError::SessionOver(format!(
                    "the server refused the refresh ({status})"
                )));
            }
            _ => {
                return Err(AuthError::Transient {
                    message: format!("token refresh answered {status}"),
                    connect: false,
                });
            }
        }
        let mut s: Session = session::from_token_reply(
            &body,
            Utc::now(),
            c.username.clone(),
            Some(target.base.clone()),
        )
        .map_err(|e| AuthError::Transient {
            message: format!("unreadable refresh reply: {e}"),
            connect: false,
        })?;
        if s.team_slug.is_none() {
            s.team_slug = c.team_slug.clone();
        }
        let home = self.home.clone();
        let to_save = s.clone();
        match tokio::task::spawn_blocking(move || {
            kitty_store::credentials::save_session(&home, &to_save)
        })
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("refreshed, but cannot store the new tokens: {e}"),
            Err(e) => tracing::warn!("refreshed, but cannot store the new tokens: {e}"),
        }
        tracing::info!("access token refreshed");
        let creds = Credentials {
            access: Some(s.access.clone()),
            refresh: Some(s.refresh.clone()),
            access_expires_at: Some(s.access_expires_at),
            refresh_expires_at: Some(s.refresh_expires_at),
            username: s.username.clone(),
            team_slug: s.team_slug.clone(),
            server_url: s.server_url.clone(),
        };
        let mut replaced = self.fresh.take().map(|(_, r)| r).unwrap_or_default();
        replaced.push(refresh);
        // Only grows while saving to the file fails; the newest few suffice.
        if replaced.len() > 16 {
            replaced.remove(0);
        }
        self.fresh = Some((creds, replaced));
        Ok(())
    }

    /// A WebSocket token (`POST /api/v1/ws-token/`) for the access token.
    pub async fn ws_token(&mut self, target: &Target) -> Result<String, AuthError> {
        let access = self.access()?;
        let res = self
            .http
            .post(target.url("/api/v1/ws-token/"))
            .bearer_auth(&access)
            .send()
            .await
            .map_err(AuthError::transient)?;
        let status = res.status();
        if let Some(message) = super::redirect::refused("ws-token", status, res.headers()) {
            return Err(AuthError::Transient {
                message,
                connect: false,
            });
        }
        let body = read_limited(res).await?;
        if status == StatusCode::UNAUTHORIZED {
            return Err(AuthError::Unauthorized);
        }
        if status != StatusCode::OK {
            return Err(AuthError::Transient {
                message: format!("ws-token answered {status}"),
                connect: false,
            });
        }
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| AuthError::Transient {
                message: format!("unreadable ws-token reply: {e}"),
                connect: false,
            })?;
        v.get("ws_token")
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| AuthError::Transient {
                message: "ws-token reply has no ws_token".into(),
                connect: false,
            })
    }
}

/// Reads a reply body, refusing one over `MAX_REPLY_BYTES`.
pub async fn read_limited(mut res: reqwest::Response) -> Result<Vec<u8>, AuthError> {
    let mut body = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(30), res.chunk()).await {
            Ok(Ok(Some(chunk))) => {
                if body.len() + chunk.len() > MAX_REPLY_BYTES {
                    return Err(AuthError::Transient {
                        message: "the server's reply is over 1 MiB".into(),
                        connect: false,
                    });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Ok(None)) => return Ok(body),
            Ok(Err(e)) => return Err(AuthError::transient(e)),
            Err(_) => {
                return Err(AuthError::Transient {
                    message: "the server's reply stalled".into(),
                    connect: false,
                });
            }
        }
    }
}
