//! Version skew: a new `kitty-sync` talking to a daemon started from another
//! binary (a new one installed while the old daemon runs is the common case).
//! Every answer carries the daemon's protocol number (an older daemon's
//! carries none, which reads as [`PROTOCOL_UNNUMBERED`]); when it is not ours,
//! `kitty-sync` says so on stderr at most once an hour per home, and `status`
//! says "daemon needs restart" on its first line, with the command.
//!
//! [`PROTOCOL_UNNUMBERED`]: kitty_proto::api::PROTOCOL_UNNUMBERED

use kitty_proto::api::{PROTOCOL, Supervisor};
use kitty_proto::home::Home;

/// What the daemon said about itself.
#[derive(Debug, Clone, Default)]
pub struct Daemon<'a> {
    pub protocol: u32,
    pub version: Option<&'a str>,
    pub pid: Option<u32>,
    /// How it was started, when known.
    pub supervisor: Option<Supervisor>,
}

/// "daemon needs restart: ..." when the daemon speaks another protocol.
pub fn describe(d: &Daemon) -> Option<String> {
    if d.protocol == PROTOCOL {
        return None;
    }
    let who = match (d.version, d.pid) {
        (Some(v), Some(pid)) => format!("kitty-syncd {v} (pid {pid})"),
        (Some(v), None) => format!("kitty-syncd {v}"),
        (None, Some(pid)) => format!("kitty-syncd (pid {pid})"),
        (None, None) => "kitty-syncd".to_owned(),
    };
    Some(format!(
        "daemon needs restart: {who} speaks protocol {}, this client ({}) protocol {PROTOCOL}; \
         restart it with: {}",
        d.protocol,
        kitty_proto::VERSION,
        crate::staleness::restart_hint(d.supervisor)
    ))
}

/// Says so on stderr, at most once an hour per home.
pub fn warn(home: &Home, d: &Daemon) {
    if let Some(text) = describe(d)
        && crate::warn_once::due(home, "protocol")
    {
        eprintln!("kitty-sync: warning: {text}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_another_protocol_needs_a_restart() {
        let same = Daemon {
            protocol: PROTOCOL,
            ..Default::default()
        };
        assert_eq!(describe(&same), None);
        let old = Daemon {
            protocol: 1,
            version: Some("0.1.0"),
            pid: Some(42),
            supervisor: Some(Supervisor::Systemd),
        };
        let text = describe(&old).unwrap();
        assert!(
            text.starts_with("daemon needs restart: kitty-syncd 0.1.0 (pid 42) speaks protocol 1"),
            "{text}"
        );
        assert!(text.ends_with("restart it with: systemctl --user restart kitty-syncd.service"));
    }
}
