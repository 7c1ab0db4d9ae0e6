//! At most one warning of a kind per hour per home, however many processes
//! ask: `<home>/warned` holds one `<kind> <epoch seconds>` line per kind,
//! read and rewritten under an exclusive lock on the file itself.

use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;

use kitty_proto::home::Home;

/// How long a warning of one kind stays quiet after it was shown.
pub const PERIOD: Duration = Duration::from_secs(3600);
/// The longest an emit waits for another process's turn at the file.
const PATIENCE: Duration = Duration::from_millis(100);

/// The file's name in `<home>`.
pub const FILE: &str = "warned";

/// Whether a warning of `kind` is due now; if so, it is recorded as shown.
/// When the file cannot be used at all, every warning is due: better loud
/// than silent.
pub fn due(home: &Home, kind: &str) -> bool {
    due_at(home, kind, chrono::Utc::now().timestamp())
}

fn due_at(home: &Home, kind: &str, now: i64) -> bool {
    let path = home.dir().join(FILE);
    let held = match kitty_store::lock::lock_within(&path, PATIENCE) {
        Ok(Some(h)) => h,
        // Another process is deciding right now: it warns, we do not.
        Ok(None) => return false,
        Err(_) => return true,
    };
    let mut file = held.file();
    let mut text = String::new();
    if file.take(64 * 1024).read_to_string(&mut text).is_err() {
        text.clear();
    }
    let mut lines: Vec<(String, i64)> = text
        .lines()
        .filter_map(|l| {
            let (k, t) = l.split_once(' ')?;
            Some((k.to_owned(), t.trim().parse().ok()?))
        })
        .collect();
    let last = lines.iter().find(|(k, _)| k == kind).map(|(_, t)| *t);
    let period = PERIOD.as_secs() as i64;
    // A time in the future means the clock went back: do not stay quiet for it.
    let due = last.is_none_or(|t| now - t >= period || t > now + 60);
    if !due {
        return false;
    }
    lines.retain(|(k, _)| k != kind);
    lines.push((kind.to_owned(), now));
    let out: String = lines.iter().map(|(k, t)| format!("{k} {t}\n")).collect();
    let _ = file
        .set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| file.write_all(out.as_bytes()));
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_an_hour_per_kind() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path().to_path_buf());
        let t = 1_800_000_000;
        assert!(due_at(&home, "delivery", t));
        assert!(!due_at(&home, "delivery", t + 10));
        assert!(due_at(&home, "protocol", t + 10), "kinds are apart");
        assert!(!due_at(&home, "delivery", t + 3599));
        assert!(due_at(&home, "delivery", t + 3600));
        assert!(!due_at(&home, "protocol", t + 20));
        assert!(due_at(&home, "delivery", t - 7200), "the clock went back");
        let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
    }

    #[test]
    fn an_unusable_file_means_loud() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path().join("missing"));
        assert!(due(&home, "delivery"));
        assert!(due(&home, "delivery"));
    }
}
