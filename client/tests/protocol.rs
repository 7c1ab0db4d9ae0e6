//! Version skew: this `kitty-sync` against the daemon it meets after an
//! upgrade, one that still runs the previous binary (protocol 1, no protocol
//! number in its answers). The stand-in on the socket replays what that
//! daemon really answered (fixtures/protocol-1, recorded from it). The client
//! says "daemon needs restart" once on stderr, and `status` on its first line.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};

const EVENTS: &str = include_str!("fixtures/protocol-1/events.json");
const STATUS: &str = include_str!("fixtures/protocol-1/status.json");
const HEALTH: &str = include_str!("fixtures/protocol-1/health.json");
const NOT_FOUND: &str = include_str!("fixtures/protocol-1/feed.json");

fn answer(code: StatusCode, body: &'static str) -> axum::response::Response {
    (
        code,
        [
            (header::CONTENT_TYPE, "application/json"),
            (
                header::HeaderName::from_static("x-kitty-syncd-version"),
                "0.1.0",
            ),
        ],
        body,
    )
        .into_response()
}

/// Serves the recorded answers on `<home>/kitty-syncd.sock`.
fn old_daemon(home: &Path) {
    let listener = std::os::unix::net::UnixListener::bind(home.join("kitty-syncd.sock")).unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = axum::Router::new()
                .route(
                    "/v1/events",
                    post(|| async { answer(StatusCode::ACCEPTED, EVENTS) }),
                )
                .route(
                    "/v1/status",
                    get(|| async { answer(StatusCode::OK, STATUS) }),
                )
                .route(
                    "/v1/health",
                    get(|| async { answer(StatusCode::OK, HEALTH) }),
                )
                .fallback(|| async { answer(StatusCode::NOT_FOUND, NOT_FOUND) });
            let listener = tokio::net::UnixListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
}

fn kitty_sync(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kitty-sync"))
        .args(args)
        .env("SPEC_KITTY_HOME", home)
        .env("HOME", home)
        .env_remove("KITTY_SYNCD_SOCKET")
        .env_remove("XDG_CONFIG_HOME")
        .stdin(Stdio::null())
        .output()
        .expect("kitty-sync runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const PAYLOAD: &str = r#"{"wp_id":"WP01","previous_status":"planned","new_status":"doing"}"#;

#[test]
fn an_old_daemon_is_named_once_and_status_says_it_needs_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    old_daemon(dir.path());

    let o = kitty_sync(
        dir.path(),
        &["emit", "WPStatusChanged", "--payload", PAYLOAD],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout).trim(), "01KAAAAAAAAAAAAAAAAAAAAAAA");
    let err = text(&o.stderr);
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("warning:")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(
        warnings[0].contains("daemon needs restart: kitty-syncd 0.1.0 speaks protocol 1")
            && warnings[0].contains(&format!("protocol {}", kitty_proto::api::PROTOCOL))
            && warnings[0].contains("restart it with: "),
        "{err}"
    );
    // Once: a script's next emits stay quiet.
    let o = kitty_sync(
        dir.path(),
        &["emit", "WPStatusChanged", "--payload", PAYLOAD],
    );
    assert_eq!(o.status.code(), Some(0));
    assert!(
        !text(&o.stderr).contains("needs restart"),
        "{}",
        text(&o.stderr)
    );

    let o = kitty_sync(dir.path(), &["status"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let first = out.lines().next().unwrap();
    assert!(
        first.starts_with("DAEMON NEEDS RESTART: kitty-syncd 0.1.0 (pid 9416) speaks protocol 1")
            && first
                .contains("restart it with: stop it (SIGTERM) and start it again: kitty-syncd run"),
        "{out}"
    );

    // It has no feed: tail says why and what to do.
    let o = kitty_sync(dir.path(), &["tail"]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains("no event feed") && err.contains("restart"),
        "{err}"
    );
}
