//! The command line of `kitty-sync`, here rather than in the client so that
//! its shell completions and man page are generated from the one definition,
//! by `kitty-sync` and by `kitty-syncd install` alike.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// How long `kitty-sync sync --wait` waits by default.
pub const SYNC_WAIT_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Parser)]
#[command(
    name = "kitty-sync",
    version,
    about = "Hands spec-kitty events to kitty-syncd"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Emit one event; prints its event_id once it is durable.
    Emit(EmitArgs),
    /// Show what the daemon is doing (exit 3 when it does not answer, 4 when
    /// delivery is stuck).
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Log in to the server and store the session in the credentials file.
    Login {
        /// The server's base URL: https, or http to a loopback address.
        #[arg(long, value_name = "URL")]
        server: String,
        #[arg(long)]
        username: String,
        /// Read the password from the first line of standard input (also the
        /// case whenever standard input is not a terminal).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove the stored session.
    Logout,
    /// Ask the daemon to send its queue to the server now.
    Sync {
        /// Wait until the queue is empty, with a progress bar.
        #[arg(long)]
        wait: bool,
        /// With --wait: give up waiting after this many seconds.
        #[arg(long, value_name = "SECS", default_value_t = SYNC_WAIT_TIMEOUT.as_secs())]
        timeout: u64,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Look at the queue and at dead letters.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Follow the daemon live: each event committed, confirmed, rejected or
    /// set aside, and each change of connection, one line each.
    Tail {
        /// Print each line as the daemon sends it, one JSON object per line.
        #[arg(long)]
        json: bool,
        /// First replay what the daemon still remembers since it started (its
        /// last 1,000 lines).
        #[arg(long)]
        since_start: bool,
    },
    /// Print a shell completion script for kitty-sync.
    Completions {
        #[arg(value_enum)]
        shell: crate::docs::Shell,
    },
    /// Print the man page of kitty-sync (roff; `kitty-sync man | man -l -`).
    Man,
}

#[derive(Subcommand)]
pub enum QueueCommand {
    /// The oldest queued events.
    List {
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
        /// Print the socket API's answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Events the server rejected five times, set aside.
    Dead {
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
        /// Print the socket API's answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Put every dead letter back into the queue.
    RetryDead,
}

#[derive(Args)]
pub struct EmitArgs {
    /// One of the eight 028 event types (WPStatusChanged, WPCreated, ...), or another
    /// PascalCase type with --aggregate-type and --aggregate-id (docs/DRAFTS.md).
    #[arg(required_unless_present = "envelope", conflicts_with = "envelope")]
    pub event_type: Option<String>,
    /// The aggregate (wp_id, feature_slug, or "error"); derived from the payload when left out.
    #[arg(long)]
    pub aggregate_id: Option<String>,
    /// The aggregate's type (WorkPackage, Mission, Project, ...); derived for the 028 types.
    #[arg(long)]
    pub aggregate_type: Option<String>,
    /// The payload as a JSON object.
    #[arg(long, conflicts_with = "payload_file", required_unless_present_any = ["payload_file", "envelope"])]
    pub payload: Option<String>,
    /// Read the payload from a file, or `-` for standard input.
    #[arg(long, value_name = "PATH|-")]
    pub payload_file: Option<String>,
    #[arg(long)]
    pub causation_id: Option<String>,
    #[arg(long)]
    pub project_uuid: Option<String>,
    #[arg(long)]
    pub project_slug: Option<String>,
    /// Relay a complete envelope from a file, or `-` for standard input.
    #[arg(long, value_name = "PATH|-", conflicts_with_all = ["aggregate_id", "aggregate_type", "payload", "payload_file", "causation_id", "project_uuid", "project_slug"])]
    pub envelope: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// The caller already asked the daemon and got no usable answer (REASON):
    /// queue the event directly or spool it without asking again.
    #[arg(long, value_name = "REASON", hide = true)]
    pub skip_daemon: Option<String>,
}
