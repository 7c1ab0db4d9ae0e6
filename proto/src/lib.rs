//! The language kitty-syncd, its client and its tests share.
//!
//! Everything here is pure: no sockets, no database, no clock. The only I/O is
//! reading environment variables to find `<home>` ([`home`]).
//!
//! - [`rules`]: the small lexical rules of CONTRACT.md §2 (ULID, `WPnn`, slugs, times).
//! - [`payloads`]: the eight 028 event types and their payload schemas.
//! - [`draft`]: an event the daemon completes (stamps) before queueing.
//! - [`envelope`]: a complete envelope built elsewhere, relayed unchanged.
//! - [`request`]: parsing a `POST /v1/events` body into validated submissions.
//! - [`unique_keys`]: finding a key one JSON object repeats.
//! - [`api`]: the JSON shapes of the socket API's answers.
//! - [`vocab`]: its fixed words: connection states, error codes, supervisor kinds.
//! - [`home`]: where `<home>` is and the files in it.
//! - [`service`]: where the systemd and launchd service files live and their names.
//! - [`session`]: a login session's tokens and when they expire.

pub mod api;
pub mod draft;
pub mod envelope;
pub mod home;
pub mod payloads;
pub mod request;
pub mod rules;
pub mod service;
pub mod session;
pub mod unique_keys;
pub mod vocab;

pub use draft::Draft;
pub use envelope::{Envelope, RelayedEnvelope};
pub use request::{RequestError, Submission, parse_events_request};
pub use rules::Violation;

/// The version every binary and every socket answer reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The largest request body the socket API reads (1 MiB).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The most events one request (or one batch) may carry.
pub const MAX_EVENTS_PER_REQUEST: usize = 1000;

/// The largest Lamport value accepted: 2^53 - 1, the largest integer that the
/// Python and JavaScript ends of spec-kitty read back exactly.
pub const MAX_LAMPORT: u64 = (1 << 53) - 1;

/// How far ahead of the last value it issued the daemon keeps clock.json:
/// the file holds a value no event has yet, and is rewritten only when the
/// clock passes it (once per this many values, not once per commit). A CLI
/// process that loads the file then ticks above everything the daemon issues
/// until the daemon has issued this many more; a restart skips at most this
/// many values. A process queueing directly (one event and exit) keeps the
/// file exact.
pub const CLOCK_JSON_HEADROOM: u64 = 1000;
