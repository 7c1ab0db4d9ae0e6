//! `kitty-syncd`: run the daemon, or report on it.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kitty_proto::home::Home;

#[derive(Parser)]
#[command(
    name = "kitty-syncd",
    version,
    about = "Owns spec-kitty's Lamport clock and delivers its events"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground (as a service manager expects).
    Run,
    /// Show what the daemon is doing (exit 3 when it does not answer).
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the version.
    Version,
}

/// sysexits.h: a configuration file is broken.
const EX_CONFIG: u8 = 78;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run => run(),
        Command::Status { json } => kitty_sync::status::main(json),
        Command::Version => {
            println!("kitty-syncd {}", kitty_proto::VERSION);
            ExitCode::SUCCESS
        }
    }
}

fn run() -> ExitCode {
    let home = match Home::from_env() {
        Ok(h) => h,
        Err(e) => return fail(&e.to_string(), 1),
    };
    if let Err(e) = kitty_store::fsutil::ensure_private_dir(home.dir()) {
        return fail(&format!("cannot create {}: {e}", home.dir().display()), 1);
    }
    let socket = match home.socket_path() {
        Ok(s) => s,
        Err(e) => return fail(&e.to_string(), 1),
    };
    let settings = match kitty_syncd::settings::load(&home) {
        Ok(s) => s,
        Err(e) => return fail(&format!("config.toml is invalid: {e}"), EX_CONFIG),
    };
    kitty_syncd::logging::init(settings.config.log_filter.as_deref());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&format!("cannot start the runtime: {e}"), 1),
    };
    match runtime.block_on(kitty_syncd::startup::run(home, socket, settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e.to_string(), 1),
    }
}

fn fail(msg: &str, code: u8) -> ExitCode {
    eprintln!("kitty-syncd: error: {msg}");
    ExitCode::from(code)
}
