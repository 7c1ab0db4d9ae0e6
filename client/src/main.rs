//! `kitty-sync`: emit events, look at the daemon, log in and sync.

use std::io::Read;
use std::process::ExitCode;

use clap::Parser;
use kitty_sync::cli::{Cli, Command, EmitArgs, QueueCommand};
use kitty_sync::{Client, EmitError};
use serde_json::{Map, Value};

const EX_DATAERR: u8 = 65;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Emit(args) => emit(args),
        Command::Status { json } => kitty_sync::status::main(json),
        Command::Login {
            server,
            username,
            password_stdin,
        } => kitty_sync::login::main(&server, &username, password_stdin),
        Command::Logout => kitty_sync::login::logout(),
        Command::Sync {
            wait,
            timeout,
            json,
        } => kitty_sync::sync::main(kitty_sync::sync::SyncOptions {
            wait,
            timeout: std::time::Duration::from_secs(timeout),
            json,
        }),
        Command::Queue(QueueCommand::List { limit, json }) => {
            kitty_sync::queue_cmd::list(limit, json)
        }
        Command::Queue(QueueCommand::Dead { limit, json }) => {
            kitty_sync::queue_cmd::dead(limit, json)
        }
        Command::Queue(QueueCommand::RetryDead) => kitty_sync::queue_cmd::retry_dead(),
        Command::Tail { json, since_start } => {
            kitty_sync::tail::main(kitty_sync::tail::TailOptions { json, since_start })
        }
        Command::Completions { shell } => kitty_sync::docs::print_completions::<Cli>(shell),
        Command::Man => kitty_sync::docs::print_man::<Cli>(),
    }
}

fn emit(args: EmitArgs) -> ExitCode {
    let event = match build_event(&args) {
        Ok(e) => e,
        Err(msg) => {
            eprintln!("kitty-sync: error: {msg}");
            return ExitCode::from(EX_DATAERR);
        }
    };
    let client = match Client::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kitty-sync: error: {e}");
            return ExitCode::from(1);
        }
    };
    let result = match &args.skip_daemon {
        Some(why) => kitty_sync::block_on(client.emit_without_daemon(&event, why)),
        None => kitty_sync::block_on(client.emit(&event)),
    };
    match result {
        Ok(Ok(emitted)) => {
            if args.json {
                println!("{}", serde_json::to_string(&emitted).expect("serialises"));
            } else {
                println!("{}", emitted.event_id);
            }
            kitty_sync::staleness::after_emit(client.home(), &emitted);
            if let Some((protocol, version)) = &emitted.daemon {
                let daemon = kitty_sync::skew::Daemon {
                    protocol: *protocol,
                    version: Some(version),
                    ..Default::default()
                };
                kitty_sync::skew::warn(client.home(), &daemon);
            }
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            report(&e);
            ExitCode::from(e.exit_code())
        }
        Err(e) => {
            eprintln!("kitty-sync: error: cannot start a runtime: {e}");
            ExitCode::from(1)
        }
    }
}

fn report(e: &EmitError) {
    match e {
        EmitError::Invalid(body) => {
            eprintln!("kitty-sync: invalid event: {}", body.message);
            if let (Some(field), Some(rule)) = (&body.field, &body.rule) {
                eprintln!("  field: {field}\n  rule:  {rule}");
            }
        }
        EmitError::QueueFull(m) => eprintln!("kitty-sync: warning: event refused: {m}"),
        EmitError::Forbidden(m) => eprintln!("kitty-sync: error: refused by the daemon: {m}"),
        e => eprintln!("kitty-sync: error: {}", kitty_cli_common::error_chain(e)),
    }
}

/// Reads a file or standard input, refusing more than a request may carry.
fn read_source(src: &str) -> Result<String, String> {
    let limit = kitty_proto::MAX_BODY_BYTES as u64 + 1;
    let mut text = String::new();
    let res = if src == "-" {
        std::io::stdin().take(limit).read_to_string(&mut text)
    } else {
        std::fs::File::open(src).and_then(|f| f.take(limit).read_to_string(&mut text))
    };
    res.map_err(|e| format!("cannot read {src}: {e}"))?;
    if text.len() as u64 >= limit {
        return Err(format!(
            "{src} is over the {} byte limit",
            kitty_proto::MAX_BODY_BYTES
        ));
    }
    Ok(text)
}

/// The event as JSON text: the envelope as read, or a draft built from the flags.
fn build_event(args: &EmitArgs) -> Result<String, String> {
    if let Some(src) = &args.envelope {
        let text = read_source(src)?;
        serde_json::from_str::<Map<String, Value>>(&text)
            .map_err(|e| format!("the envelope is not a JSON object: {e}"))?;
        return Ok(text);
    }
    let payload_text = match (&args.payload, &args.payload_file) {
        (Some(p), _) => p.clone(),
        (None, Some(src)) => read_source(src)?,
        (None, None) => return Err("--payload or --payload-file is required".into()),
    };
    let payload: Value = serde_json::from_str(&payload_text)
        .map_err(|e| format!("the payload is not valid JSON: {e}"))?;
    let mut draft = Map::new();
    draft.insert(
        "event_type".into(),
        args.event_type.clone().unwrap_or_default().into(),
    );
    draft.insert("payload".into(), payload);
    for (key, value) in [
        ("aggregate_id", &args.aggregate_id),
        ("aggregate_type", &args.aggregate_type),
        ("causation_id", &args.causation_id),
        ("project_uuid", &args.project_uuid),
        ("project_slug", &args.project_slug),
    ] {
        if let Some(v) = value {
            draft.insert(key.into(), v.clone().into());
        }
    }
    Ok(Value::Object(draft).to_string())
}
