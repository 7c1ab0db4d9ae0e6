//! The credentials file the spec-kitty CLI writes (CONTRACT.md §1). A corrupt
//! file reads as logged out, never as a crash. Tokens never reach a log line:
//! this type's Debug leaves them out.

use std::path::Path;

use chrono::{DateTime, NaiveDateTime, Utc};

#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub access: Option<String>,
    pub refresh: Option<String>,
    pub access_expires_at: Option<DateTime<Utc>>,
    pub refresh_expires_at: Option<DateTime<Utc>>,
    pub username: Option<String>,
    pub team_slug: Option<String>,
    pub server_url: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access", &self.access.as_ref().map(|_| "<redacted>"))
            .field("refresh", &self.refresh.as_ref().map(|_| "<redacted>"))
            .field("access_expires_at", &self.access_expires_at)
            .field("refresh_expires_at", &self.refresh_expires_at)
            .field("username", &self.username)
            .field("team_slug", &self.team_slug)
            .field("server_url", &self.server_url)
            .finish()
    }
}

impl Credentials {
    /// Logged in = the access token or the refresh token is unexpired.
    pub fn logged_in(&self, now: DateTime<Utc>) -> bool {
        let live = |tok: &Option<String>, exp: &Option<DateTime<Utc>>| {
            tok.is_some() && exp.is_some_and(|e| e > now)
        };
        live(&self.access, &self.access_expires_at) || live(&self.refresh, &self.refresh_expires_at)
    }

    /// The team events are stamped with: `[user].team_slug`, else `"local"`.
    pub fn team_slug(&self) -> &str {
        self.team_slug
            .as_deref()
            .filter(|t| !t.trim().is_empty())
            .unwrap_or("local")
    }
}

/// What reading the credentials file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialsFile {
    Missing,
    Corrupt(String),
    Present(Credentials),
}

impl CredentialsFile {
    pub fn credentials(&self) -> Option<&Credentials> {
        match self {
            Self::Present(c) => Some(c),
            _ => None,
        }
    }

    pub fn team_slug(&self) -> &str {
        self.credentials().map_or("local", Credentials::team_slug)
    }
}

const MAX_FILE_BYTES: u64 = 256 * 1024;

pub fn read(path: &Path) -> CredentialsFile {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return CredentialsFile::Missing,
        Err(e) => return CredentialsFile::Corrupt(format!("cannot read: {e}")),
        Ok(m) if m.len() > MAX_FILE_BYTES => {
            return CredentialsFile::Corrupt(format!("{} bytes, too large", m.len()));
        }
        Ok(_) => {}
    }
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text).map_or_else(CredentialsFile::Corrupt, CredentialsFile::Present),
        Err(e) => CredentialsFile::Corrupt(format!("cannot read: {e}")),
    }
}

pub fn parse(text: &str) -> Result<Credentials, String> {
    let table: toml::Table =
        toml::from_str(text).map_err(|e| format!("not valid TOML: {}", e.message()))?;
    let section = |name: &str| -> Result<Option<&toml::Table>, String> {
        match table.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_table()
                .map(Some)
                .ok_or_else(|| format!("[{name}] must be a table")),
        }
    };
    let string = |t: Option<&toml::Table>, key: &str| -> Result<Option<String>, String> {
        match t.and_then(|t| t.get(key)) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(|s| Some(s.to_owned()))
                .ok_or_else(|| format!("{key} must be a string")),
        }
    };
    let time = |t: Option<&toml::Table>, key: &str| -> Result<Option<DateTime<Utc>>, String> {
        string(t, key)?
            .map(|s| parse_time(&s).ok_or_else(|| format!("{key} is not an ISO-8601 time: {s:?}")))
            .transpose()
    };
    let tokens = section("tokens")?;
    let user = section("user")?;
    let server = section("server")?;
    Ok(Credentials {
        access: string(tokens, "access")?,
        refresh: string(tokens, "refresh")?,
        access_expires_at: time(tokens, "access_expires_at")?,
        refresh_expires_at: time(tokens, "refresh_expires_at")?,
        username: string(user, "username")?,
        team_slug: string(user, "team_slug")?,
        server_url: string(server, "url")?,
    })
}

/// Naive UTC as the CLI writes it (`2026-02-04T13:02:09.123456`), or with a
/// trailing `Z` or an offset.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|n| n.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
[tokens]
access = "aaa"
refresh = "rrr"
access_expires_at = "2026-02-04T13:02:09.123456"
refresh_expires_at = "2026-02-11T12:47:09.123456Z"
[user]
username = "alice@example.com"
team_slug = "acme"
[server]
url = "https://spec-kitty-dev.fly.dev"
"#;

    #[test]
    fn reads_the_cli_file() {
        let c = parse(SAMPLE).unwrap();
        assert_eq!(c.team_slug(), "acme");
        let t = |s| parse_time(s).unwrap();
        assert!(c.logged_in(t("2026-02-04T13:00:00")));
        assert!(c.logged_in(t("2026-02-10T00:00:00")), "refresh still valid");
        assert!(!c.logged_in(t("2026-02-12T00:00:00")));
        assert!(
            !format!("{c:?}").contains("aaa"),
            "tokens must not be printed"
        );
    }

    #[test]
    fn corrupt_reads_as_logged_out() {
        for bad in [
            "[tokens",
            "tokens = 3",
            "[tokens]\naccess_expires_at = \"soon\"",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("credentials");
        std::fs::write(&p, "\u{0}\u{1}garbage").unwrap();
        let f = read(&p);
        assert!(matches!(f, CredentialsFile::Corrupt(_)));
        assert_eq!(f.team_slug(), "local");
        assert_eq!(read(&dir.path().join("none")), CredentialsFile::Missing);
    }
}
