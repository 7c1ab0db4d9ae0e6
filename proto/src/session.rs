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
