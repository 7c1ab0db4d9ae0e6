//! The credentials file the spec-kitty CLI writes (CONTRACT.md §1). A corrupt
//! file reads as logged out, never as a crash. Tokens never reach a log line:
//! this type's Debug leaves them out.

use std::io;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use kitty_proto::home::Home;
use kitty_proto::session::Session;
use toml_edit::{DocumentMut, Item, Table, TableLike};

use crate::fsutil::{atomic_write, ensure_private_dir};
use crate::lock::{Held, lock_within};

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
    match crate::fsutil::read_state_file(path, MAX_FILE_BYTES) {
        Ok(None) => CredentialsFile::Missing,
        Err(e) => CredentialsFile::Corrupt(e.problem.to_string()),
        Ok(Some(bytes)) => match String::from_utf8(bytes) {
            Ok(text) => {
                parse(&text).map_or_else(CredentialsFile::Corrupt, CredentialsFile::Present)
            }
            Err(e) => CredentialsFile::Corrupt(format!("not UTF-8: {e}")),
        },
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

/// How the CLI writes times: naive UTC with microseconds.
pub const TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6f";

/// How long a writer waits for another to finish with the file.
const LOCK_PATIENCE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("another process has held {path} for over {waited:?}; try again")]
    Busy { path: String, waited: Duration },
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CredentialsError {
    let path = path.display().to_string();
    move |source| CredentialsError::Io { what, path, source }
}

fn lock(home: &Home, patience: Duration) -> Result<Held, CredentialsError> {
    let path = home.credentials_lock();
    lock_within(&path, patience)
        .map_err(io_err("lock", &path))?
        .ok_or_else(|| CredentialsError::Busy {
            path: path.display().to_string(),
            waited: patience,
        })
}

/// Writes a session into the credentials file as the spec-kitty CLI does
/// (CONTRACT.md §1), under the exclusive `credentials.lock`, replacing the
/// file atomically (0600).
///
/// Every table and key we do not own is kept, since other tools share the
/// file. `None` in the session keeps the stored username and server URL; a
/// `None` team keeps the stored team, unless the stored file belongs to
/// another user or server, whose team would be wrong for this session. A
/// file that cannot be edited is kept as `credentials.corrupt` and replaced.
pub fn save_session(home: &Home, s: &Session) -> Result<(), CredentialsError> {
    save_session_within(home, s, LOCK_PATIENCE)
}

fn save_session_within(
    home: &Home,
    s: &Session,
    patience: Duration,
) -> Result<(), CredentialsError> {
    ensure_private_dir(home.dir()).map_err(io_err("create", home.dir()))?;
    let _held = lock(home, patience)?;
    let path = home.credentials();
    let text = match load_for_edit(&path)? {
        Existing::Missing => fresh(s, None),
        Existing::Unreadable(Some(bytes)) => {
            keep_corrupt(home, &bytes)?;
            fresh(s, None)
        }
        Existing::Unreadable(None) => {
            let copy = home.dir().join("credentials.corrupt");
            std::fs::rename(&path, &copy)
                .map_err(io_err("move the unreadable credentials to", &copy))?;
            fresh(s, None)
        }
        Existing::Text(text) => {
            let stored = parse(&text).ok();
            let edited = text.parse::<DocumentMut>().ok().and_then(|mut doc| {
                apply(&mut doc, s, stored.as_ref());
                let out = doc.to_string();
                // Keys of ours with the wrong type (`username = 5`) survive an
                // edit that does not touch them; such a result would read as
                // logged out, so it is not good enough.
                parse(&out).is_ok().then_some(out)
            });
            if stored.is_none() {
                keep_corrupt(home, text.as_bytes())?;
            }
            edited.unwrap_or_else(|| fresh(s, stored.as_ref()))
        }
    };
    atomic_write(&path, text.as_bytes(), 0o600).map_err(io_err("write", &path))
}

/// Removes the credentials file under the lock. `Ok(false)` when there was none.
pub fn remove(home: &Home) -> Result<bool, CredentialsError> {
    if !home.dir().is_dir() {
        return Ok(false);
    }
    let _held = lock(home, LOCK_PATIENCE)?;
    let path = home.credentials();
    match std::fs::remove_file(&path) {
        Ok(()) => {
            // Make the logout durable, like the write it undoes.
            let _ = std::fs::File::open(home.dir()).and_then(|d| d.sync_all());
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("remove", &path)(e)),
    }
}

enum Existing {
    Missing,
    /// Not UTF-8 (its bytes), too large or not a regular file (`None`, not
    /// read): nothing in it can be kept, so it becomes `credentials.corrupt`.
    Unreadable(Option<Vec<u8>>),
    Text(String),
}

fn load_for_edit(path: &Path) -> Result<Existing, CredentialsError> {
    use crate::fsutil::Problem;
    let bytes = match crate::fsutil::read_state_file(path, MAX_FILE_BYTES) {
        Ok(Some(b)) => b,
        Ok(None) => return Ok(Existing::Missing),
        Err(e) => match e.problem {
            Problem::Io(source) => return Err(io_err("read", path)(source)),
            // Too large or not a regular file: not read at all, moved aside whole.
            _ => return Ok(Existing::Unreadable(None)),
        },
    };
    Ok(String::from_utf8(bytes).map_or_else(
        |e| Existing::Unreadable(Some(e.into_bytes())),
        Existing::Text,
    ))
}

fn keep_corrupt(home: &Home, bytes: &[u8]) -> Result<(), CredentialsError> {
    let copy = home.dir().join("credentials.corrupt");
    atomic_write(&copy, bytes, 0o600)
        .map_err(io_err("keep a copy of the corrupt credentials as", &copy))
}

fn fresh(s: &Session, stored: Option<&Credentials>) -> String {
    let mut doc = DocumentMut::new();
    apply(&mut doc, s, stored);
    doc.to_string()
}

/// The table `name`, made one if it is missing or not a table.
fn section<'a>(doc: &'a mut DocumentMut, name: &str) -> &'a mut dyn TableLike {
    let item = doc.entry(name).or_insert_with(|| Item::Table(Table::new()));
    if item.as_table_like().is_none() {
        *item = Item::Table(Table::new());
    }
    item.as_table_like_mut().expect("made a table above")
}

fn same_account(s: &Session, stored: &Credentials) -> bool {
    let differs = |new: &Option<String>, old: &Option<String>| match (new, old) {
        (Some(n), Some(o)) => n.trim_end_matches('/') != o.trim_end_matches('/'),
        _ => false,
    };
    !differs(&s.username, &stored.username) && !differs(&s.server_url, &stored.server_url)
}

fn apply(doc: &mut DocumentMut, s: &Session, stored: Option<&Credentials>) {
    let time = |t: DateTime<Utc>| toml_edit::value(t.naive_utc().format(TIME_FORMAT).to_string());
    let tokens = section(doc, "tokens");
    tokens.insert("access", toml_edit::value(&s.access));
    tokens.insert("refresh", toml_edit::value(&s.refresh));
    tokens.insert("access_expires_at", time(s.access_expires_at));
    tokens.insert("refresh_expires_at", time(s.refresh_expires_at));

    let keep_team = stored.is_none_or(|c| same_account(s, c));
    let user_has_team = doc
        .get("user")
        .and_then(Item::as_table_like)
        .is_some_and(|t| t.contains_key("team_slug"));
    if s.username.is_some() || s.team_slug.is_some() || (user_has_team && !keep_team) {
        let user = section(doc, "user");
        if let Some(u) = &s.username {
            user.insert("username", toml_edit::value(u));
        }
        match &s.team_slug {
            Some(t) => {
                user.insert("team_slug", toml_edit::value(t));
            }
            None if !keep_team => {
                user.remove("team_slug");
            }
            None => {}
        }
    }
    if let Some(url) = &s.server_url {
        section(doc, "server").insert("url", toml_edit::value(url));
    }
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

    use std::os::unix::fs::{FileTypeExt, PermissionsExt};

    fn session(tag: &str) -> Session {
        Session {
            access: format!("access-{tag}"),
            refresh: format!("refresh-{tag}"),
            access_expires_at: parse_time("2026-02-04T13:02:09.123456").unwrap(),
            refresh_expires_at: parse_time("2026-02-11T12:47:09.5Z").unwrap(),
            username: Some("alice@example.com".into()),
            team_slug: Some("acme".into()),
            server_url: Some("https://spec-kitty-dev.fly.dev".into()),
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn writes_the_cli_format_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path().join("home"));
        let s = session("1");
        save_session(&home, &s).unwrap();
        let text = std::fs::read_to_string(home.credentials()).unwrap();
        assert!(
            text.contains("access_expires_at = \"2026-02-04T13:02:09.123456\"\n"),
            "{text}"
        );
        assert!(
            text.contains("refresh_expires_at = \"2026-02-11T12:47:09.500000\"\n"),
            "{text}"
        );
        assert!(
            text.starts_with("[tokens]\naccess = \"access-1\"\n"),
            "{text}"
        );
        let c = read(&home.credentials());
        let c = c.credentials().expect("present");
        assert_eq!(c.access.as_deref(), Some("access-1"));
        assert_eq!(c.refresh.as_deref(), Some("refresh-1"));
        assert_eq!(c.access_expires_at, Some(s.access_expires_at));
        assert_eq!(c.refresh_expires_at, Some(s.refresh_expires_at));
        assert_eq!(c.username.as_deref(), Some("alice@example.com"));
        assert_eq!(c.team_slug.as_deref(), Some("acme"));
        assert_eq!(
            c.server_url.as_deref(),
            Some("https://spec-kitty-dev.fly.dev")
        );
        let mode = std::fs::metadata(home.credentials())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(names(home.dir()), ["credentials", "credentials.lock"]);
    }

    #[test]
    fn keeps_what_other_tools_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        std::fs::write(
            home.credentials(),
            "# written by spec-kitty\n[auth]\nprovider = \"github\"\nscopes = [\"a\", \"b\"]\n\n\
             [tokens]\naccess = \"old\"\nkind = \"jwt\"\n\n[user]\nusername = \"alice@example.com\"\n\
             team_slug = \"acme\"\nemail = \"alice@example.com\"\n\n[server]\nurl = \"https://old\"\n",
        )
        .unwrap();
        let mut s = session("2");
        s.team_slug = None;
        s.server_url = None;
        save_session(&home, &s).unwrap();
        let text = std::fs::read_to_string(home.credentials()).unwrap();
        let doc: toml::Table = toml::from_str(&text).unwrap();
        assert!(text.starts_with("# written by spec-kitty\n"), "{text}");
        assert_eq!(doc["auth"]["provider"].as_str(), Some("github"));
        assert_eq!(doc["auth"]["scopes"].as_array().unwrap().len(), 2);
        assert_eq!(doc["tokens"]["kind"].as_str(), Some("jwt"));
        assert_eq!(doc["tokens"]["access"].as_str(), Some("access-2"));
        assert_eq!(doc["user"]["email"].as_str(), Some("alice@example.com"));
        assert_eq!(
            doc["user"]["team_slug"].as_str(),
            Some("acme"),
            "kept: same user"
        );
        assert_eq!(doc["server"]["url"].as_str(), Some("https://old"));
    }

    #[test]
    fn another_accounts_team_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        save_session(&home, &session("1")).unwrap();
        let mut bob = session("2");
        bob.username = Some("bob@example.com".into());
        bob.team_slug = None;
        save_session(&home, &bob).unwrap();
        let c = read(&home.credentials()).credentials().unwrap().clone();
        assert_eq!(c.username.as_deref(), Some("bob@example.com"));
        assert_eq!(c.team_slug, None);
        // With no team anywhere, [user] has no team_slug at all.
        assert!(
            !std::fs::read_to_string(home.credentials())
                .unwrap()
                .contains("team_slug")
        );
    }

    #[test]
    fn a_corrupt_file_is_kept_aside_and_replaced() {
        for bad in [
            &b"[tokens"[..],
            b"\xff\xfe\x00garbage",
            b"tokens = 3\n[user]\nusername = 5\n",
            b"[tokens]\naccess_expires_at = \"soon\"\n",
        ] {
            let dir = tempfile::tempdir().unwrap();
            let home = Home::new(dir.path());
            std::fs::write(home.credentials(), bad).unwrap();
            save_session(&home, &session("3")).unwrap();
            assert!(read(&home.credentials()).credentials().is_some(), "{bad:?}");
            assert_eq!(
                std::fs::read(dir.path().join("credentials.corrupt")).unwrap(),
                bad
            );
            let mode = std::fs::metadata(dir.path().join("credentials.corrupt"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    fn mkfifo(p: &Path) {
        crate::sys::mkfifo(p);
    }

    #[test]
    fn a_fifo_reads_as_logged_out_at_once_and_login_moves_it_aside() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        mkfifo(&home.credentials());
        match read(&home.credentials()) {
            CredentialsFile::Corrupt(why) => assert!(why.contains("FIFO"), "{why}"),
            other => panic!("{other:?}"),
        }
        save_session(&home, &session("6")).unwrap();
        assert!(read(&home.credentials()).credentials().is_some());
        let aside = std::fs::symlink_metadata(dir.path().join("credentials.corrupt")).unwrap();
        assert!(
            aside.file_type().is_fifo(),
            "the FIFO is kept aside, unread"
        );
    }

    #[test]
    fn an_oversized_file_is_refused_unread_and_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        let big = vec![b'#'; MAX_FILE_BYTES as usize + 1];
        std::fs::write(home.credentials(), &big).unwrap();
        match read(&home.credentials()) {
            CredentialsFile::Corrupt(why) => assert!(why.contains("over the limit"), "{why}"),
            other => panic!("{other:?}"),
        }
        save_session(&home, &session("7")).unwrap();
        assert!(read(&home.credentials()).credentials().is_some());
        assert_eq!(
            std::fs::read(dir.path().join("credentials.corrupt")).unwrap(),
            big
        );
    }

    #[test]
    fn remove_says_whether_there_was_a_session() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        assert!(!remove(&home).unwrap());
        assert!(!remove(&Home::new(dir.path().join("none"))).unwrap());
        assert!(!dir.path().join("none").exists(), "logout creates nothing");
        save_session(&home, &session("4")).unwrap();
        assert!(remove(&home).unwrap());
        assert_eq!(read(&home.credentials()), CredentialsFile::Missing);
        assert!(!remove(&home).unwrap());
    }

    #[test]
    fn a_held_lock_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        let _held = crate::lock::try_lock(&home.credentials_lock())
            .unwrap()
            .unwrap();
        let e = save_session_within(&home, &session("5"), Duration::from_millis(30)).unwrap_err();
        assert!(matches!(e, CredentialsError::Busy { .. }));
        assert!(e.to_string().contains("credentials.lock"), "{e}");
        assert!(!home.credentials().exists());
    }

    #[test]
    fn concurrent_writers_never_tear_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        std::fs::write(home.credentials(), "[auth]\nprovider = \"github\"\n").unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (home, stop) = (home.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut seen = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let text = std::fs::read_to_string(home.credentials()).unwrap();
                    let c = parse(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
                    if let Some(a) = &c.access {
                        let tag = a.strip_prefix("access-").unwrap();
                        assert_eq!(c.refresh.as_deref(), Some(&*format!("refresh-{tag}")));
                        seen += 1;
                    }
                }
                seen
            })
        };
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let home = home.clone();
                std::thread::spawn(move || {
                    for i in 0..25 {
                        save_session(&home, &session(&format!("{w}-{i}"))).unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        reader.join().unwrap();
        let text = std::fs::read_to_string(home.credentials()).unwrap();
        assert!(text.contains("provider = \"github\""), "{text}");
        assert_eq!(names(dir.path()), ["credentials", "credentials.lock"]);
    }
}
