//! The command line of `kitty-syncd`, as a library item so that its shell
//! completions and man page come from the one definition.

use clap::{Parser, Subcommand};

use crate::unit_install;

#[derive(Parser)]
#[command(
    name = "kitty-syncd",
    version,
    about = "Owns spec-kitty's Lamport clock and delivers its events"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground (as a service manager expects).
    Run {
        /// Log to this file, rotated daily (a week is kept), instead of stderr.
        #[arg(long, value_name = "PATH")]
        log_file: Option<std::path::PathBuf>,
    },
    /// Show what the daemon is doing (exit 3 when it does not answer, 4 when
    /// delivery is stuck).
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Install and start the daemon as a systemd user service (Linux) or a
    /// launchd agent (macOS).
    Install(ServiceArgs),
    /// Stop and remove the service; the queue and the clock stay.
    Uninstall(ServiceArgs),
    /// Print the version.
    Version,
    /// Print a shell completion script for kitty-syncd.
    Completions {
        #[arg(value_enum)]
        shell: kitty_cli_common::docs::Shell,
    },
    /// Print the man page of kitty-syncd (roff; `kitty-syncd man | man -l -`).
    Man,
}

#[derive(clap::Args)]
pub struct ServiceArgs {
    /// A systemd user service (the default on Linux).
    #[arg(long, conflicts_with = "launchd")]
    pub systemd: bool,
    /// A launchd agent (the default on macOS).
    #[arg(long)]
    pub launchd: bool,
    /// Print what would be written and run, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also write bash, zsh and fish completions of kitty-sync and kitty-syncd
    /// where the shells look for a user's (uninstall removes them).
    #[arg(long)]
    pub completions: bool,
    /// Also write the man pages of kitty-sync and kitty-syncd to
    /// ~/.local/share/man/man1 (uninstall removes them).
    #[arg(long)]
    pub man: bool,
}

impl ServiceArgs {
    pub fn kind(&self) -> unit_install::Kind {
        if self.systemd {
            unit_install::Kind::Systemd
        } else if self.launchd {
            unit_install::Kind::Launchd
        } else {
            unit_install::Kind::for_this_os()
        }
    }

    /// The completions and man pages asked for.
    pub fn extras(&self) -> unit_install::Extras {
        unit_install::Extras {
            completions: self.completions,
            man: self.man,
        }
    }
}
