//! `kitty-syncd`: run the daemon, or report on it.

use std::process::ExitCode;

use clap::Parser;
use kitty_cli_common::error_chain;
use kitty_proto::home::Home;
use kitty_syncd::cli::{Cli, Command, ServiceArgs};
use kitty_syncd::startup::{RunningDaemon, StartError};
use kitty_syncd::unit_install;

/// sysexits.h: a configuration file is broken.
const EX_CONFIG: u8 = 78;
/// Another daemon already runs for this home. The systemd unit lists this code
/// (and EX_CONFIG) in RestartPreventExitStatus=, so neither causes a restart loop.
const EX_ALREADY_RUNS: u8 = 73;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { log_file } => run(log_file),
        Command::Status { json } => kitty_cli_common::status::main(json),
        Command::Install(args) => manage(&args, true),
        Command::Uninstall(args) => manage(&args, false),
        Command::Version => {
            println!("kitty-syncd {}", kitty_proto::VERSION);
            ExitCode::SUCCESS
        }
        Command::Completions { shell } => kitty_cli_common::docs::print_completions::<Cli>(shell),
        Command::Man => kitty_cli_common::docs::print_man::<Cli>(),
    }
}

fn run(log_file: Option<std::path::PathBuf>) -> ExitCode {
    let home = match Home::from_env() {
        Ok(h) => h,
        Err(e) => return fail(&error_chain(&e), 1),
    };
    if let Err(e) = kitty_store::fsutil::ensure_private_dir(home.dir()) {
        return fail(&format!("cannot create {}: {e}", home.dir().display()), 1);
    }
    let socket = match home.socket_path() {
        Ok(s) => s,
        Err(e) => return fail(&error_chain(&e), 1),
    };
    let settings = match kitty_syncd::settings::load(&home) {
        Ok(s) => s,
        Err(e) => return fail(&format!("config.toml is invalid: {e}"), EX_CONFIG),
    };
    let target = kitty_syncd::logging::Target::detect(log_file);
    let _log_guard =
        match kitty_syncd::logging::init(&target, settings.config.log_filter.as_deref()) {
            Ok(g) => g,
            Err(e) => return fail(&format!("cannot open the log file: {e}"), 1),
        };
    // Descriptors for every connection accept.rs allows, and the rest.
    match kitty_syncd::accept::raise_fd_limit() {
        Ok(n) => tracing::debug!(open_files = n, "descriptor limit"),
        Err(e) => tracing::warn!("cannot raise the descriptor limit: {e}"),
    }
    // reqwest and tungstenite share rustls; ring is its crypto here (see Cargo.toml).
    let _ = rustls::crypto::ring::default_provider().install_default();
    // One thread for every task: the work per request is small, and on two
    // cores the hand-offs between worker threads cost more than they spread
    // (BENCHMARKS.md, issue 10: 16 clients 10,519/s on two workers, 17,764/s
    // on one). sqlx's threads and spawn_blocking still run beside it.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&format!("cannot start the runtime: {e}"), 1),
    };
    let ran = runtime.block_on(async {
        let mut running = RunningDaemon::start(home, socket, settings).await?;
        let stop = running.wait().await;
        running.shutdown(stop).await
    });
    match ran {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ StartError::AlreadyRuns(_)) => fail(&error_chain(&e), EX_ALREADY_RUNS),
        // A home or socket directory others can write is a configuration
        // error too, and no restart can fix it.
        Err(e @ StartError::UnsafeDir(_)) => fail(&error_chain(&e), EX_CONFIG),
        Err(e) => fail(&error_chain(&e), 1),
    }
}

fn manage(args: &ServiceArgs, install: bool) -> ExitCode {
    let ctx = match unit_install::Context::from_env() {
        Ok(c) => c,
        Err(e) => return fail(&error_chain(&e), 1),
    };
    let kind = args.kind();
    let extras = args.extras();
    if args.dry_run {
        let text = if install {
            unit_install::install_plan(kind, &ctx, extras)
                .map(|p| unit_install::describe_install(&p))
        } else {
            Ok(unit_install::describe_uninstall(
                &unit_install::uninstall_plan(kind, &ctx),
            ))
        };
        return match text {
            Ok(t) => {
                print!("{t}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&error_chain(&e), 1),
        };
    }
    let done = if install {
        unit_install::install(kind, &ctx, extras)
    } else {
        unit_install::uninstall(kind, &ctx)
    };
    match done {
        Ok(t) => {
            print!("{t}");
            println!(
                "{}",
                if install {
                    "installed; `kitty-syncd status` shows the daemon"
                } else {
                    "uninstalled; queue.db and clock.json are kept"
                }
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(&error_chain(&e), 1),
    }
}

fn fail(msg: &str, code: u8) -> ExitCode {
    eprintln!("kitty-syncd: error: {msg}");
    ExitCode::from(code)
}
