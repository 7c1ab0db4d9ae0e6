//! `kitty-sync queue list|dead|retry-dead`: look at what waits for the
//! server, and put dead letters back into the queue.

use std::process::ExitCode;
use std::time::Duration;

use kitty_proto::api::{DeadView, QueueView};

use crate::status::{human_duration, not_running, unreachable};
use crate::{Client, TransportError};

/// Listing up to 10,000 rows from a busy daemon can take a moment.
const CALL_DEADLINE: Duration = Duration::from_secs(5);

fn client() -> Result<Client, ExitCode> {
    Client::from_env()
        .map(|c| c.with_deadline(CALL_DEADLINE))
        .map_err(|e| {
            eprintln!("kitty-sync: error: {e}");
            ExitCode::from(1)
        })
}

/// Runs one call to the daemon; no daemon is exit 3, any other failure 1.
fn call<T, F, Fut>(f: F) -> Result<T, ExitCode>
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = Result<T, TransportError>>,
{
    let client = client()?;
    match crate::block_on(f(client)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) if unreachable(&e) => Err(not_running(&e)),
        Ok(Err(e)) => {
            eprintln!("kitty-sync: error: {}", kitty_cli_common::error_chain(&e));
            Err(ExitCode::from(1))
        }
        Err(e) => {
            eprintln!("kitty-sync: error: cannot start a runtime: {e}");
            Err(ExitCode::from(1))
        }
    }
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

fn age(now: i64, then: i64) -> String {
    human_duration(now.saturating_sub(then).max(0) as u64)
}

/// `kitty-sync queue list`.
pub fn list(limit: u32, json: bool) -> ExitCode {
    match call(|c| async move { c.queue(limit).await }) {
        Ok(view) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&view).expect("serialises")
                );
            } else {
                print!("{}", render_queue(&view, now_secs()));
            }
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// `kitty-sync queue dead`.
pub fn dead(limit: u32, json: bool) -> ExitCode {
    match call(|c| async move { c.dead(limit).await }) {
        Ok(view) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&view).expect("serialises")
                );
            } else {
                print!("{}", render_dead(&view, now_secs()));
            }
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// `kitty-sync queue retry-dead`.
pub fn retry_dead() -> ExitCode {
    match call(|c| async move { c.retry_dead().await }) {
        Ok(r) => {
            println!("requeued {} events", r.requeued);
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// Columns padded to their widest cell, so a person can scan them.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

pub fn render_queue(view: &QueueView, now: i64) -> String {
    if view.events.is_empty() {
        return "the queue is empty\n".into();
    }
    let rows: Vec<Vec<String>> = view
        .events
        .iter()
        .map(|e| {
            vec![
                e.id.to_string(),
                e.event_id.clone(),
                e.event_type.clone(),
                age(now, e.timestamp),
                e.retry_count.to_string(),
            ]
        })
        .collect();
    let mut out = table(&["id", "event_id", "event_type", "age", "retries"], &rows);
    out.push_str(&format!(
        "{} of {} queued events, oldest first\n",
        view.events.len(),
        view.depth
    ));
    out
}

pub fn render_dead(view: &DeadView, now: i64) -> String {
    if view.events.is_empty() {
        return "no dead letters\n".into();
    }
    let rows: Vec<Vec<String>> = view
        .events
        .iter()
        .map(|e| {
            vec![
                e.id.to_string(),
                e.event_id.clone(),
                e.event_type.clone(),
                age(now, e.died_at),
                e.retry_count.to_string(),
                e.error.clone().unwrap_or_default().replace('\n', " "),
            ]
        })
        .collect();
    let mut out = table(
        &["id", "event_id", "event_type", "died", "retries", "error"],
        &rows,
    );
    out.push_str(&format!(
        "{} of {} dead letters; `kitty-sync queue retry-dead` puts them back in the queue\n",
        view.events.len(),
        view.count
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kitty_proto::api::{DeadEntry, QueueEntry};
    use serde_json::json;

    #[test]
    fn queue_table() {
        let view = QueueView {
            depth: 7,
            events: vec![
                QueueEntry {
                    id: 1,
                    event_id: "01HX5ZQK3M8N9P0R1S2T3V4W5X".into(),
                    event_type: "WPCreated".into(),
                    timestamp: 1000,
                    retry_count: 0,
                    envelope: json!({}),
                },
                QueueEntry {
                    id: 12,
                    event_id: "01HX5ZQK3M8N9P0R1S2T3V4W5Y".into(),
                    event_type: "X".into(),
                    timestamp: 1000 - 3700,
                    retry_count: 3,
                    envelope: json!("not json"),
                },
            ],
            version: "0".into(),
        };
        let out = render_queue(&view, 1042);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "id  event_id                    event_type  age    retries"
        );
        assert_eq!(
            lines[1],
            "1   01HX5ZQK3M8N9P0R1S2T3V4W5X  WPCreated   42s    0"
        );
        assert_eq!(
            lines[2],
            "12  01HX5ZQK3M8N9P0R1S2T3V4W5Y  X           1h 2m  3"
        );
        assert_eq!(lines[3], "2 of 7 queued events, oldest first");
        let empty = QueueView {
            depth: 0,
            events: vec![],
            version: "0".into(),
        };
        assert_eq!(render_queue(&empty, 0), "the queue is empty\n");
    }

    #[test]
    fn dead_table() {
        let view = DeadView {
            count: 1,
            events: vec![DeadEntry {
                id: 3,
                event_id: "E".into(),
                event_type: "T".into(),
                timestamp: 0,
                retry_count: 5,
                error: Some("bad\nenvelope".into()),
                died_at: 100,
                envelope: json!({}),
            }],
            version: "0".into(),
        };
        let out = render_dead(&view, 160);
        assert!(
            out.contains("3   E         T           1m 0s  5        bad envelope"),
            "{out}"
        );
        assert!(out.contains("retry-dead"));
    }
}
