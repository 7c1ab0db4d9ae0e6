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
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // within it or truncates, and we stop at the first NUL either way.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// `getpass.getuser()`: LOGNAME, USER, LNAME, USERNAME, then the password database.
fn username() -> String {
    for var in ["LOGNAME", "USER", "LNAME", "USERNAME"] {
        if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            return v.to_string_lossy().into_owned();
        }
    }
    passwd_name().unwrap_or_else(|| unsafe { libc::getuid() }.to_string())
}

fn passwd_name() -> Option<String> {
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0u8; 4096];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers reference live, correctly sized buffers; on success
    // pw_name points into `buf`, which outlives the read below.
    let rc = unsafe {
        libc::getpwuid_r(
            libc::getuid(),
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    Some(name.to_string_lossy().into_owned())
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
