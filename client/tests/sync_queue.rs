//! `kitty-sync sync` and `queue` against a stand-in daemon on the socket that
//! answers the socket API's shapes, so the client's side is checked apart
//! from the real uplink (whose black-box tests live in kitty-tests).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use kitty_proto::api::{
    ClockStatus, DeadEntry, DeadView, QueueEntry, QueueStats, QueueView, Requeued, Status,
    SyncTriggered, UplinkStatus,
};
use serde_json::json;

/// How the stand-in's uplink behaves after a sync is triggered.
#[derive(Clone, Copy)]
enum Script {
    /// Delivers 2 events per status poll, one of them a duplicate at the end.
    Drains,
    /// Stops at AuthRequired with events left.
    AuthRequired,
    /// Rejects the last event for good: it becomes a dead letter.
    DeadLetter,
    /// Never moves.
    Stuck,
}

struct Fake {
    script: Script,
    depth: u64,
    uplink: UplinkStatus,
    triggered: bool,
    requeued: bool,
}

type Shared = Arc<Mutex<Fake>>;

fn status_of(f: &Fake) -> Status {
    Status {
        running: true,
        pid: Some(1),
        version: "test".into(),
        protocol: kitty_proto::api::PROTOCOL,
        uptime_secs: Some(1),
        socket: String::new(),
        home: String::new(),
        queue: QueueStats {
            depth: f.depth,
            ..Default::default()
        },
        clock: ClockStatus {
            value: 1,
            node_id: "n".into(),
        },
        team_slug: "acme".into(),
        server_url: "http://127.0.0.1:9".into(),
        logged_in: true,
        username: Some("alice".into()),
        connection: f.uplink.state,
        supervisor: None,
        spooled: 0,
        spool_rejected: 0,
        start_hint: None,
        config_loaded_at: None,
        refused: 0,
        uplink: f.uplink.clone(),
        writer: Default::default(),
        health: None,
    }
}

async fn status(State(s): State<Shared>) -> Json<Status> {
    let mut f = s.lock().unwrap();
    if f.triggered {
        match f.script {
            Script::Drains if f.depth > 0 => {
                let n = f.depth.min(2);
                f.depth -= n;
                if f.depth == 0 {
                    f.uplink.delivered += n - 1;
                    f.uplink.duplicates += 1;
                } else {
                    f.uplink.delivered += n;
                }
            }
            Script::AuthRequired => {
                f.uplink.state = kitty_proto::api::ConnectionState::AuthRequired;
                f.uplink.last_error = Some("the server refused the refresh (401)".into());
            }
            Script::DeadLetter if f.depth > 0 => {
                f.uplink.delivered += f.depth - 1;
                f.uplink.rejected += 5;
                f.uplink.dead_letters += 1;
                f.depth = 0;
            }
            _ => {}
        }
    }
    Json(status_of(&f))
}

async fn sync(State(s): State<Shared>) -> (StatusCode, Json<SyncTriggered>) {
    let mut f = s.lock().unwrap();
    f.triggered = true;
    (
        StatusCode::ACCEPTED,
        Json(SyncTriggered {
            triggered: true,
            depth: f.depth,
            version: "test".into(),
        }),
    )
}

#[derive(serde::Deserialize)]
struct Limit {
    limit: u32,
}

async fn queue(State(s): State<Shared>, Query(q): Query<Limit>) -> Json<QueueView> {
    let f = s.lock().unwrap();
    let events = (0..f.depth.min(q.limit.into()))
        .map(|i| QueueEntry {
            id: i as i64 + 1,
            event_id: format!("01HX5ZQK3M8N9P0R1S2T3V4W{i:02}"),
            event_type: "WPCreated".into(),
            timestamp: chrono::Utc::now().timestamp() - 90,
            retry_count: i as i64,
            envelope: json!({"event_type": "WPCreated"}),
        })
        .collect();
    Json(QueueView {
        depth: f.depth,
        events,
        version: "test".into(),
    })
}

async fn dead(Query(q): Query<Limit>) -> Json<DeadView> {
    Json(DeadView {
        count: 1,
        events: vec![DeadEntry {
            id: 9,
            event_id: "01HX5ZQK3M8N9P0R1S2T3V4WDD".into(),
            event_type: "HistoryAdded".into(),
            timestamp: 0,
            retry_count: 5,
            error: Some(format!("entry_content is empty (limit {})", q.limit)),
            died_at: chrono::Utc::now().timestamp() - 5,
            envelope: json!({}),
        }],
        version: "test".into(),
    })
}

async fn retry(State(s): State<Shared>) -> Json<Requeued> {
    s.lock().unwrap().requeued = true;
    Json(Requeued {
        requeued: 1,
        version: "test".into(),
    })
}

/// Serves the stand-in on `<home>/kitty-syncd.sock`.
fn fake_daemon(home: &Path, script: Script, depth: u64) -> Shared {
    let shared = Arc::new(Mutex::new(Fake {
        script,
        depth,
        uplink: UplinkStatus {
            state: kitty_proto::api::ConnectionState::Connected,
            delivered: 100,
            duplicates: 7,
            rejected: 3,
            dead_letters: 2,
            ..Default::default()
        },
        triggered: false,
        requeued: false,
    }));
    let listener = std::os::unix::net::UnixListener::bind(home.join("kitty-syncd.sock")).unwrap();
    listener.set_nonblocking(true).unwrap();
    let state = shared.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = axum::Router::new()
                .route("/v1/status", get(status))
                .route("/v1/sync", post(sync))
                .route("/v1/queue", get(queue))
                .route("/v1/dead", get(dead))
                .route("/v1/dead/retry", post(retry))
                .with_state(state);
            let listener = tokio::net::UnixListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    shared
}

fn kitty_sync(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kitty-sync"))
        .args(args)
        .env("SPEC_KITTY_HOME", home)
        .env_remove("KITTY_SYNCD_SOCKET")
        .stdin(Stdio::null())
        .output()
        .expect("kitty-sync runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn sync_without_wait_only_triggers() {
    let dir = tempfile::tempdir().unwrap();
    let fake = fake_daemon(dir.path(), Script::Stuck, 12);
    let o = kitty_sync(dir.path(), &["sync"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "sync triggered; 12 events queued\n");
    assert!(fake.lock().unwrap().triggered);
    let o = kitty_sync(dir.path(), &["sync", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["depth"], 12);
}

#[test]
fn sync_wait_reports_what_was_delivered() {
    let dir = tempfile::tempdir().unwrap();
    fake_daemon(dir.path(), Script::Drains, 5);
    let o = kitty_sync(dir.path(), &["sync", "--wait"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    // Deltas since the start, not the daemon's lifetime totals.
    assert_eq!(text(&o.stdout), "synced 4 / duplicates 1 / errors 0\n");
    assert!(o.stderr.is_empty(), "{}", text(&o.stderr));
}

#[test]
fn sync_wait_json() {
    let dir = tempfile::tempdir().unwrap();
    fake_daemon(dir.path(), Script::Drains, 3);
    let o = kitty_sync(dir.path(), &["sync", "--wait", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["synced"], 2);
    assert_eq!(v["duplicates"], 1);
    assert_eq!(v["remaining"], 0);
    assert_eq!(v["complete"], true);
}

#[test]
fn sync_wait_stops_at_auth_required() {
    let dir = tempfile::tempdir().unwrap();
    fake_daemon(dir.path(), Script::AuthRequired, 4);
    let o = kitty_sync(dir.path(), &["sync", "--wait", "--timeout", "30"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(text(&o.stdout), "synced 0 / duplicates 0 / errors 0\n");
    assert!(err.contains("4 events left"), "{err}");
    assert!(err.contains("AuthRequired"), "{err}");
    assert!(err.contains("refused the refresh (401)"), "{err}");
    assert!(err.contains("kitty-sync login"), "{err}");
}

#[test]
fn sync_wait_fails_on_new_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    fake_daemon(dir.path(), Script::DeadLetter, 4);
    let o = kitty_sync(dir.path(), &["sync", "--wait"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(text(&o.stdout), "synced 3 / duplicates 0 / errors 5\n");
    assert!(err.contains("queue dead"), "{err}");
}

#[test]
fn sync_wait_gives_up_at_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    fake_daemon(dir.path(), Script::Stuck, 4);
    let started = std::time::Instant::now();
    let o = kitty_sync(dir.path(), &["sync", "--wait", "--timeout", "1"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(
        err.contains("4 events left in the queue (state Connected)"),
        "{err}"
    );
    assert!(err.contains("after 1 s"), "{err}");
}

#[test]
fn queue_commands() {
    let dir = tempfile::tempdir().unwrap();
    let fake = fake_daemon(dir.path(), Script::Stuck, 3);
    let o = kitty_sync(dir.path(), &["queue", "list", "--limit", "2"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("id  event_id"), "{out}");
    assert!(lines[1].contains("WPCreated   1m 30s  0"), "{out}");
    assert_eq!(lines[3], "2 of 3 queued events, oldest first");

    let o = kitty_sync(dir.path(), &["queue", "list", "--json"]);
    let v: QueueView = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.events.len(), 3);

    let o = kitty_sync(dir.path(), &["queue", "dead", "--limit", "7"]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(out.contains("HistoryAdded"), "{out}");
    assert!(out.contains("entry_content is empty (limit 7)"), "{out}");
    let o = kitty_sync(dir.path(), &["queue", "dead", "--json"]);
    let v: DeadView = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.count, 1);

    let o = kitty_sync(dir.path(), &["queue", "retry-dead"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "requeued 1 events\n");
    assert!(fake.lock().unwrap().requeued);
}
