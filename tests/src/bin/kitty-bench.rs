//! kitty-bench: measures the real kitty-syncd and kitty-sync binaries (issue 2,
//! "Performance") and prints a Markdown report on stdout; progress goes to
//! stderr. See `kitty_tests::bench` for what is measured and how.
//!
//! ```sh
//! cargo build --release -p kitty-syncd -p kitty-sync -p kitty-tests
//! target/release/kitty-bench --out /tmp/bench.md
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use kitty_tests::bench::{self, Options};

#[derive(Parser, Debug)]
#[command(
    name = "kitty-bench",
    version,
    about = "Benchmarks kitty-syncd and kitty-sync (socket round trip, durable events/s, \
             whole-process emit, memory, start-up) and prints a Markdown report",
    after_help = "Build first: cargo build --release -p kitty-syncd -p kitty-sync -p kitty-tests"
)]
struct Args {
    /// A short run with tiny counts (a smoke test; the numbers mean little).
    #[arg(long)]
    quick: bool,

    /// Also write the report to this file.
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,

    /// Also write every figure as JSON to this file (times in seconds, sizes
    /// in bytes), with the ratios between figures of the same run.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,

    /// Where kitty-syncd and kitty-sync are; by default next to this executable.
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    // The helper that starts the measured processes (see bench::sys::Spawner):
    // checked before anything else so that it stays small.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == bench::sys::SPAWNER_ARG)
    {
        return bench::sys::spawner_main();
    }
    // The closed-loop floor's server (see bench::ideal), started by the bench.
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).is_some_and(|a| a == bench::ideal::SERVER_ARG) {
        return bench::ideal::server_main(&argv[2..]);
    }
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kitty-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<()> {
    let dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()
            .context("cannot find this executable")?
            .parent()
            .map(Path::to_path_buf)
            .context("this executable has no directory")?,
    };
    let (daemon, client) = (dir.join("kitty-syncd"), dir.join("kitty-sync"));
    let mut opts = if args.quick {
        Options::quick(daemon, client)
    } else {
        Options::full(daemon, client)
    };
    opts.command = command_line();
    opts.spawner = Some(std::env::current_exe().context("cannot find this executable")?);
    let start = Instant::now();
    let results = bench::run(&opts, &mut |what| {
        eprintln!(
            "kitty-bench: [{:>5.1} s] {what}",
            start.elapsed().as_secs_f64()
        )
    })?;
    let report = results.markdown(&opts);
    print!("{report}");
    if let Some(path) = &args.out {
        std::fs::write(path, &report).with_context(|| format!("write {}", path.display()))?;
        eprintln!("kitty-bench: report written to {}", path.display());
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&results.json(&opts))
            .context("serializing the figures")?;
        std::fs::write(path, text + "\n").with_context(|| format!("write {}", path.display()))?;
        eprintln!("kitty-bench: figures written to {}", path.display());
    }
    Ok(())
}

/// This process's command line, quoted for a POSIX shell where needed.
fn command_line() -> String {
    std::env::args()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
            {
                a
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
