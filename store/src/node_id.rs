//! The node id: the first 12 hex characters of sha256("<hostname>:<username>").

use sha2::{Digest, Sha256};

/// Computes this machine's node id as the Python CLI does.
pub fn compute() -> String {
    from_parts(&hostname(), &username())
}

pub fn from_parts(host: &str, user: &str) -> String {
    let digest = Sha256::digest(format!("{host}:{user}").as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// `socket.gethostname()`.
fn hostname() -> String {
    crate::sys::hostname().unwrap_or_else(|| "localhost".into())
}

/// `getpass.getuser()`: LOGNAME, USER, LNAME, USERNAME, then the password database.
fn username() -> String {
    for var in ["LOGNAME", "USER", "LNAME", "USERNAME"] {
        if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            return v.to_string_lossy().into_owned();
        }
    }
    crate::sys::passwd_name().unwrap_or_else(|| crate::sys::uid().to_string())
}

/// A stored node id is usable when non-empty and free of control characters.
pub fn is_valid(s: &str) -> bool {
    !s.trim().is_empty() && s.len() <= 128 && !s.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_python() {
        // hashlib.sha256(b"devbox:alice").hexdigest()[:12]
        assert_eq!(from_parts("devbox", "alice"), "37e1946a7e09");
        let id = compute();
        assert_eq!(id.len(), 12);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
    }
}
