//! The fixed words of the socket API: the connection states, the error codes
//! and the supervisor kinds. The daemon writes them and the client reads them
//! (and matches on them), so they are types here, and nowhere else a string.
//!
//! Their serialised forms are the contract (README.md, CONTRACT.md): a test
//! below pins every one. Each enum reads a word it does not know (from a newer
//! daemon) as `Unknown` rather than refusing the whole answer.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The uplink's connection state, as `status`, the feed and each 202 report it:
/// the states of CONTRACT.md §4, plus `AuthRequired`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConnectionState {
    Connected,
    /// WebSocket attempts failed (1 to 9 in a row); backing off.
    Reconnecting,
    /// Not connected, and no attempt has failed yet (also what is on disk when
    /// no daemon runs).
    Offline,
    /// 10 or more attempts failed in a row: batches carry the queue.
    OfflineBatchMode,
    /// The session is over: nothing is sent until a new login.
    AuthRequired,
    /// A state this build does not know (from a newer daemon), or none given
    /// (an older daemon's answer without `uplink`).
    #[default]
    #[serde(other)]
    Unknown,
}

impl ConnectionState {
    pub const ALL: [Self; 6] = [
        Self::Connected,
        Self::Reconnecting,
        Self::Offline,
        Self::OfflineBatchMode,
        Self::AuthRequired,
        Self::Unknown,
    ];

    /// The word on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connected => "Connected",
            Self::Reconnecting => "Reconnecting",
            Self::Offline => "Offline",
            Self::OfflineBatchMode => "OfflineBatchMode",
            Self::AuthRequired => "AuthRequired",
            Self::Unknown => "Unknown",
        }
    }
}

/// The `error` of an [`ErrorBody`](crate::api::ErrorBody): every code the
/// daemon answers with, and `unknown` for an answer the client cannot read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the body is not JSON.
    InvalidJson,
    /// 422: an event breaks a rule (`field` and `rule` say which).
    InvalidEvent,
    /// 413: the body is over [`MAX_BODY_BYTES`](crate::MAX_BODY_BYTES).
    PayloadTooLarge,
    /// 507: the queue holds `max_queue_size` events.
    QueueFull,
    /// 409: the clock is at [`MAX_LAMPORT`](crate::MAX_LAMPORT); no draft can be stamped.
    ClockExhausted,
    /// 500: queue.db refused the commit.
    StorageError,
    /// 403: a request from another user than the daemon's.
    Forbidden,
    /// 404: no such endpoint.
    NotFound,
    /// 405: the endpoint exists, the method does not.
    MethodNotAllowed,
    /// 400: a query string or a parameter the endpoint does not take.
    BadRequest,
    /// 408: the body did not arrive in time.
    RequestTimeout,
    /// An answer the client could not read, or a code this build does not know.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    pub const ALL: [Self; 12] = [
        Self::InvalidJson,
        Self::InvalidEvent,
        Self::PayloadTooLarge,
        Self::QueueFull,
        Self::ClockExhausted,
        Self::StorageError,
        Self::Forbidden,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::BadRequest,
        Self::RequestTimeout,
        Self::Unknown,
    ];

    /// The word on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::InvalidEvent => "invalid_event",
            Self::PayloadTooLarge => "payload_too_large",
            Self::QueueFull => "queue_full",
            Self::ClockExhausted => "clock_exhausted",
            Self::StorageError => "storage_error",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::BadRequest => "bad_request",
            Self::RequestTimeout => "request_timeout",
            Self::Unknown => "unknown",
        }
    }
}

/// How the daemon was started (`Status::supervisor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Supervisor {
    Systemd,
    Launchd,
    /// By hand (`kitty-syncd run` from a shell).
    Manual,
    /// A kind this build does not know (from a newer daemon).
    #[serde(other)]
    Unknown,
}

impl Supervisor {
    pub const ALL: [Self; 4] = [Self::Systemd, Self::Launchd, Self::Manual, Self::Unknown];

    /// The word on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Systemd => "systemd",
            Self::Launchd => "launchd",
            Self::Manual => "manual",
            Self::Unknown => "unknown",
        }
    }
}

/// Display as the wire word, and comparison with it: a test that pins the
/// wire form (`assert_eq!(status.connection, "AuthRequired")`) reads as the
/// contract does. Code that decides something matches on the variants.
macro_rules! wire_word {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<str> for $t {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    )*};
}

wire_word!(ConnectionState, ErrorCode, Supervisor);

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON of every variant, as README.md and CONTRACT.md spell it: a
    /// rename here is a protocol change.
    #[test]
    fn every_word_serialises_as_the_contract_spells_it() {
        let json = |v: serde_json::Value| v.to_string();
        let states: Vec<String> = ConnectionState::ALL
            .iter()
            .map(|s| json(serde_json::to_value(s).unwrap()))
            .collect();
        assert_eq!(
            states,
            [
                r#""Connected""#,
                r#""Reconnecting""#,
                r#""Offline""#,
                r#""OfflineBatchMode""#,
                r#""AuthRequired""#,
                r#""Unknown""#,
            ]
        );
        let codes: Vec<String> = ErrorCode::ALL
            .iter()
            .map(|c| json(serde_json::to_value(c).unwrap()))
            .collect();
        assert_eq!(
            codes,
            [
                r#""invalid_json""#,
                r#""invalid_event""#,
                r#""payload_too_large""#,
                r#""queue_full""#,
                r#""clock_exhausted""#,
                r#""storage_error""#,
                r#""forbidden""#,
                r#""not_found""#,
                r#""method_not_allowed""#,
                r#""bad_request""#,
                r#""request_timeout""#,
                r#""unknown""#,
            ]
        );
        let kinds: Vec<String> = Supervisor::ALL
            .iter()
            .map(|k| json(serde_json::to_value(k).unwrap()))
            .collect();
        assert_eq!(
            kinds,
            [
                r#""systemd""#,
                r#""launchd""#,
                r#""manual""#,
                r#""unknown""#
            ]
        );
    }

    #[test]
    fn display_is_the_wire_word_and_each_reads_back() {
        for s in ConnectionState::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.to_string());
            assert_eq!(
                serde_json::from_value::<ConnectionState>(s.as_str().into()).unwrap(),
                s
            );
        }
        for c in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(c).unwrap(), c.to_string());
            assert_eq!(
                serde_json::from_value::<ErrorCode>(c.as_str().into()).unwrap(),
                c
            );
        }
        for k in Supervisor::ALL {
            assert_eq!(serde_json::to_value(k).unwrap(), k.to_string());
            assert_eq!(
                serde_json::from_value::<Supervisor>(k.as_str().into()).unwrap(),
                k
            );
        }
    }

    #[test]
    fn a_word_from_a_newer_daemon_reads_as_unknown() {
        let read = |s: &str| serde_json::from_value::<ConnectionState>(s.into()).unwrap();
        assert_eq!(read("Degraded"), ConnectionState::Unknown);
        let code: ErrorCode = serde_json::from_value("rate_limited".into()).unwrap();
        assert_eq!(code, ErrorCode::Unknown);
        let kind: Supervisor = serde_json::from_value("runit".into()).unwrap();
        assert_eq!(kind, Supervisor::Unknown);
    }
}
