//! `kitty-sync tail [--json] [--since-start]`: follows `GET /v1/feed` and
//! prints each line as it comes, readable at a glance, or (`--json`) as the
//! daemon sent it, one JSON object per line.
//!
//! Exit codes: 0 when the daemon stopped (the feed ends with `stopping`) or
//! standard output was closed; 3 when no daemon answers; 1 otherwise.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use kitty_proto::api::{ErrorBody, FeedEvent, FeedLine};

use crate::{Client, TransportError};

/// How long the daemon gets to answer the request (not to send events).
const ANSWER_DEADLINE: Duration = Duration::from_secs(2);
/// The longest line we accept from the daemon.
const MAX_LINE: usize = 1024 * 1024;

#[derive(Debug, Clone, Copy, Default)]
pub struct TailOptions {
    pub json: bool,
    pub since_start: bool,
}

pub fn main(opts: TailOptions) -> ExitCode {
    let client = match Client::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kitty-sync: error: {e}");
            return ExitCode::from(1);
        }
    };
    match crate::block_on(run(&client, opts)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kitty-sync: error: cannot start a runtime: {e}");
            ExitCode::from(1)
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum TailError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("{0}")]
    Refused(String),
}

async fn run(client: &Client, opts: TailOptions) -> ExitCode {
    let mut at = Position {
        after: opts.since_start.then_some(0),
        ..Position::default()
    };
    loop {
        let body = match open(client.socket(), at.after).await {
            Ok(b) => b,
            Err(TailError::Transport(e)) if crate::status::unreachable(&e) && !at.resumed => {
                return crate::status::not_running(&e);
            }
            Err(e) => {
                eprintln!("kitty-sync: error: {}", kitty_cli_common::error_chain(&e));
                return ExitCode::from(1);
            }
        };
        match follow(client.home(), body, opts, &mut at).await {
            End::Reconnect => {
                // The daemon ended this response (a connection lives a
                // minute); ask again from the last line read.
                at.after = Some(at.last_seq);
                at.resumed = true;
            }
            End::Exit(code) => return code,
        }
    }
}

/// Where a tail stands across the responses it reads.
#[derive(Debug, Default)]
struct Position {
    /// `after=` of the next request.
    after: Option<u64>,
    /// The seq of the last line read (or, before any, the daemon's last).
    last_seq: u64,
    /// Not the first request: its hello is not shown again.
    resumed: bool,
}

enum End {
    Reconnect,
    Exit(ExitCode),
}

/// Connects, checks who serves the socket, and sends the request.
async fn open(socket: &Path, after: Option<u64>) -> Result<hyper::body::Incoming, TailError> {
    let deadline = ANSWER_DEADLINE;
    // Only a daemon of our own user may tell us what happens to our events.
    let stream = tokio::time::timeout(deadline, crate::transport::connect(socket))
        .await
        .map_err(|_| TransportError::Timeout(deadline))??;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| TransportError::broken("HTTP handshake", e))?;
    tokio::spawn(conn);
    let path = match after {
        Some(seq) => format!("/v1/feed?after={seq}"),
        None => "/v1/feed".to_owned(),
    };
    let req = Request::get(path)
        .header(hyper::header::HOST, "localhost")
        .body(Empty::<Bytes>::new())
        .map_err(|e| TransportError::broken("building the request", e))?;
    let res = tokio::time::timeout(deadline, sender.send_request(req))
        .await
        .map_err(|_| TransportError::Timeout(deadline))?
        .map_err(|e| TransportError::broken("the daemon did not answer", e))?;
    let status = res.status();
    if status == StatusCode::OK {
        return Ok(res.into_body());
    }
    let body = tokio::time::timeout(deadline, res.into_body().collect())
        .await
        .ok()
        .and_then(Result::ok)
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let msg = serde_json::from_slice::<ErrorBody>(&body)
        .map(|b| b.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
    Err(TailError::Refused(if status == StatusCode::NOT_FOUND {
        format!(
            "this kitty-syncd has no event feed ({status}: {msg}): it runs an older binary; \
             restart it with: {}",
            crate::staleness::restart_hint(None)
        )
    } else {
        format!("the daemon answered {status}: {msg}")
    }))
}

/// Prints the lines of one response until it ends. A later response's
/// `hello` and every `reconnect` are not shown: they are not events.
async fn follow(
    home: &kitty_proto::home::Home,
    mut body: hyper::body::Incoming,
    opts: TailOptions,
    at: &mut Position,
) -> End {
    let mut buf: Vec<u8> = Vec::new();
    let mut end = None;
    let mut out = std::io::stdout().lock();
    loop {
        let frame = match body.frame().await {
            None => break,
            Some(Ok(f)) => f,
            Some(Err(e)) => {
                eprintln!(
                    "kitty-sync: error: the feed broke off: {}",
                    kitty_cli_common::error_chain(&e)
                );
                return End::Exit(ExitCode::from(1));
            }
        };
        let Some(data) = frame.data_ref() else {
            continue;
        };
        buf.extend_from_slice(data);
        while let Some(eol) = buf.iter().position(|&b| b == b'\n') {
            let raw: Vec<u8> = buf.drain(..=eol).collect();
            let raw = &raw[..raw.len() - 1];
            let line = serde_json::from_slice::<FeedLine>(raw).ok();
            let mut show = true;
            if let Some(l) = &line {
                if let Some(seq) = l.seq {
                    at.last_seq = at.last_seq.max(seq);
                }
                match &l.event {
                    FeedEvent::Hello {
                        protocol,
                        version,
                        pid,
                        last_seq,
                        ..
                    } => {
                        show = !at.resumed;
                        if at.after.is_none() {
                            at.last_seq = *last_seq;
                        }
                        if show && !opts.json {
                            eprintln!("{}", hello(l));
                        }
                        let daemon = crate::skew::Daemon {
                            protocol: *protocol,
                            version: Some(version),
                            pid: Some(*pid),
                            supervisor: None,
                        };
                        crate::skew::warn(home, &daemon);
                    }
                    FeedEvent::Stopping => end = Some(End::Exit(ExitCode::SUCCESS)),
                    FeedEvent::Reconnect => {
                        show = false;
                        end = Some(End::Reconnect);
                    }
                    _ => {}
                }
            }
            if !show {
                continue;
            }
            let text = if opts.json {
                Some(String::from_utf8_lossy(raw).into_owned())
            } else {
                match &line {
                    Some(l) => render(l),
                    None => Some(format!(
                        "(an unreadable line: {})",
                        clean(&String::from_utf8_lossy(raw))
                    )),
                }
            };
            if let Some(text) = text
                && writeln!(out, "{text}").and_then(|()| out.flush()).is_err()
            {
                // Standard output is gone (`| head`): nothing more to do.
                return End::Exit(ExitCode::SUCCESS);
            }
        }
        if buf.len() > MAX_LINE {
            eprintln!("kitty-sync: error: the daemon sent a line over {MAX_LINE} bytes");
            return End::Exit(ExitCode::from(1));
        }
    }
    match end {
        Some(End::Exit(code)) => {
            if !opts.json {
                eprintln!("kitty-syncd stopped; the feed ended");
            }
            End::Exit(code)
        }
        Some(End::Reconnect) => End::Reconnect,
        None => {
            eprintln!("kitty-sync: error: the daemon closed the feed");
            End::Exit(ExitCode::from(1))
        }
    }
}

fn hello(l: &FeedLine) -> String {
    match &l.event {
        FeedEvent::Hello {
            version,
            pid,
            state,
            ..
        } => clean(&format!(
            "kitty-syncd {version} (pid {pid}), connection {state}; following its events (Ctrl-C stops)"
        )),
        _ => String::new(),
    }
}

/// `HH:MM:SS.mmm` of an RFC 3339 time, or the text as it is.
fn clock(at: &str) -> &str {
    at.get(11..23).unwrap_or(at)
}

/// One line a person reads at a glance; `None` for lines printed elsewhere.
pub fn render(l: &FeedLine) -> Option<String> {
    let t = clock(&l.at);
    let text = match &l.event {
        FeedEvent::Committed {
            event_id,
            event_type,
            aggregate_id,
            lamport_clock,
            path,
            duplicate,
        } => format!(
            "{t} committed  {event_id}  {event_type} {aggregate_id}  lamport {lamport_clock}  from {path}{}",
            if *duplicate {
                "  (duplicate: already queued)"
            } else {
                ""
            }
        ),
        FeedEvent::Confirmed {
            event_id,
            status,
            via,
        } => format!("{t} confirmed  {event_id}  {status} via {via}"),
        FeedEvent::Rejected {
            event_id,
            error,
            via,
        } => format!("{t} rejected   {event_id}  via {via}: {error}"),
        FeedEvent::Dead { event_id } => {
            format!("{t} dead       {event_id}  rejected five times; see `kitty-sync queue dead`")
        }
        FeedEvent::State { state, error } => match error {
            Some(e) => format!("{t} connection {state}: {e}"),
            None => format!("{t} connection {state}"),
        },
        FeedEvent::Missed { missed } => {
            format!("{t} missed     {missed} lines: this reader fell behind")
        }
        FeedEvent::Hello { .. }
        | FeedEvent::Reconnect
        | FeedEvent::Stopping
        | FeedEvent::Unknown => return None,
    };
    Some(clean(&text))
}

/// Control characters shown escaped: text from the server or from another
/// producer must not drive the terminal.
fn clean(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_unicode().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(event: FeedEvent) -> FeedLine {
        FeedLine {
            at: "2026-02-04T13:47:09.123456+00:00".into(),
            seq: Some(1),
            event,
        }
    }

    #[test]
    fn lines_read_at_a_glance() {
        let l = line(FeedEvent::Committed {
            event_id: "01J0".into(),
            event_type: "WPCreated".into(),
            aggregate_id: "WP02".into(),
            lamport_clock: 8,
            path: "daemon".into(),
            duplicate: false,
        });
        assert_eq!(
            render(&l).unwrap(),
            "13:47:09.123 committed  01J0  WPCreated WP02  lamport 8  from daemon"
        );
        let l = line(FeedEvent::State {
            state: kitty_proto::api::ConnectionState::Reconnecting,
            error: Some("refused".into()),
        });
        assert_eq!(
            render(&l).unwrap(),
            "13:47:09.123 connection Reconnecting: refused"
        );
        assert!(render(&line(FeedEvent::Stopping)).is_none());
    }

    #[test]
    fn control_characters_from_the_server_are_escaped() {
        let l = line(FeedEvent::Rejected {
            event_id: "01J0".into(),
            error: "bad\u{1b}[2J\r\nthing".into(),
            via: "batch".into(),
        });
        let text = render(&l).unwrap();
        assert!(!text.chars().any(char::is_control), "{text:?}");
        assert!(text.contains("bad\\u{1b}[2J\\u{d}\\u{a}thing"), "{text}");
    }
}
