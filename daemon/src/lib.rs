//! kitty-syncd: one daemon per user that owns spec-kitty's Lamport clock and
//! the delivery of its events.
//!
//! A request flows one way through these modules:
//! [`server`] (read and validate, with `kitty_proto`; [`accept`] decides who
//! gets a connection, [`socket_guard`] keeps the socket file) → [`writer`] (stamp and
//! group-commit through the `kitty_store` ledger) → answer. Around them:
//! [`startup`] claims the home and recovers the clock, [`spool`] queues what
//! clients left while we were not answering, [`settings`] follows config.toml
//! and credentials, [`status`] reports all of it, and [`feed`] tells
//! `kitty-sync tail` what happens as it happens.
//!
//! One line each:
//! - [`accept`]: who gets a connection, and the descriptor limit.
//! - [`cli`]: the command line's clap definitions (also for completions and man pages).
//! - [`feed`]: the live event feed behind `GET /v1/feed`.
//! - [`file_watch`]: tells when config.toml or credentials change on disk.
//! - [`health`]: the delivery-health hint on each 202.
//! - [`logging`]: tracing output in the form its destination expects.
//! - [`server`]: the socket API's routes: read, validate, answer.
//! - [`settings`]: config.toml and credentials, followed while running.
//! - [`socket_guard`]: keeps our socket file in place, or stops us when it is taken.
//! - [`spool`]: queues what clients spooled while we did not answer.
//! - [`startup`]: the running daemon: claims the home, recovers the clock, serves, shuts down.
//! - [`status`]: the status report of the running daemon.
//! - [`systemd_notify`]: the service manager's notify protocol, watchdog and socket activation.
//! - [`unit_install`]: `install` and `uninstall` of the systemd unit or launchd agent.
//! - [`uplink`]: delivers the queue to the server.
//! - [`writer`]: stamps and group-commits through the ledger.

pub mod accept;
pub mod cli;
pub mod feed;
pub mod file_watch;
pub mod health;
pub mod logging;
pub mod server;
pub mod settings;
pub mod socket_guard;
pub mod spool;
pub mod startup;
pub mod status;
pub mod systemd_notify;
pub mod unit_install;
pub mod uplink;
pub mod writer;

/// How the daemon was started, as systemd and launchd tell their children.
pub fn supervisor() -> kitty_proto::api::Supervisor {
    use kitty_proto::api::Supervisor;
    if std::env::var_os("INVOCATION_ID").is_some() || std::env::var_os("NOTIFY_SOCKET").is_some() {
        Supervisor::Systemd
    } else if std::env::var_os("XPC_SERVICE_NAME").is_some_and(|v| v != "0") {
        Supervisor::Launchd
    } else {
        Supervisor::Manual
    }
}
