//! `kitty-sync login`, `logout`, and the daemon commands with no daemon,
//! against a small token server in this process that answers as the real
//! one does, or fails as real ones do.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// Starts the token server on a free loopback port; returns its base URL.
/// Each route prefix is one behaviour, so one server serves every case.
fn token_server() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = axum::Router::new()
                .route("/ok/api/v1/token/", post(ok))
                .route("/noteam/api/v1/token/", post(no_team))
                .route(
                    "/err500/api/v1/token/",
                    post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "upstream exploded") }),
                )
                .route(
                    "/garbage/api/v1/token/",
                    post(|| async { (StatusCode::OK, "{\"access\": 12, \"refresh\": ") }),
                )
                .route(
                    "/notokens/api/v1/token/",
                    post(|| async { Json(json!({"detail": "ok"})) }),
                )
                .route(
                    "/slow/api/v1/token/",
                    post(|b: Json<Value>| async move {
                        tokio::time::sleep(Duration::from_secs(3)).await;
                        ok(b).await
                    }),
                );
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    format!("http://{addr}")
}

async fn ok(Json(body): Json<Value>) -> Response {
    if body["username"] == "alice" && body["password"] == "s3cret pass" {
        Json(json!({"access": "acc.tok.en", "refresh": "ref.tok.en",
                    "access_lifetime": 600, "refresh_lifetime": 86400, "team_slug": "acme"}))
        .into_response()
    } else {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({"detail": "No active account found with the given credentials"})),
        )
            .into_response()
    }
}

async fn no_team(Json(_): Json<Value>) -> Response {
    Json(json!({"access": "a2", "refresh": "r2", "expires_in": 60.0})).into_response()
}

fn kitty_sync(home: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kitty-sync"))
        .args(args)
        .env("SPEC_KITTY_HOME", home)
        .env("HOME", home)
        .env_remove("KITTY_SYNCD_SOCKET")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kitty-sync runs");
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn login(home: &Path, server: &str, user: &str, stdin: &[u8]) -> Output {
    kitty_sync(
        home,
        &["login", "--server", server, "--username", user],
        stdin,
    )
}

const OTHER_TOOLS: &str = "[auth]\nprovider = \"github\"\n\n[user]\nusername = \"alice\"\nemail = \"alice@example.com\"\n";

fn is_naive_micros(s: &str) -> bool {
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.6f").is_ok()
        && s.len() == "2026-02-04T13:02:09.123456".len()
}

#[test]
fn login_writes_the_credentials_file_as_the_cli_does() {
    let base = token_server();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    std::fs::write(home.join("credentials"), OTHER_TOOLS).unwrap();
    let before = chrono::Utc::now();
    // Standard input is a pipe here, so the first line is the password.
    let o = login(
        home,
        &format!("{base}/ok/"),
        "alice",
        b"s3cret pass\nignored\n",
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "logged in as alice (team acme)\n");

    let path = home.join("credentials");
    let file = std::fs::read_to_string(&path).unwrap();
    let doc: toml::Table = toml::from_str(&file).unwrap();
    assert_eq!(doc["auth"]["provider"].as_str(), Some("github"), "{file}");
    assert_eq!(doc["user"]["email"].as_str(), Some("alice@example.com"));
    assert_eq!(doc["user"]["username"].as_str(), Some("alice"));
    assert_eq!(doc["user"]["team_slug"].as_str(), Some("acme"));
    assert_eq!(doc["tokens"]["access"].as_str(), Some("acc.tok.en"));
    assert_eq!(doc["tokens"]["refresh"].as_str(), Some("ref.tok.en"));
    assert_eq!(doc["server"]["url"].as_str(), Some(&*format!("{base}/ok")));
    for (key, secs) in [("access_expires_at", 600), ("refresh_expires_at", 86_400)] {
        let at = doc["tokens"][key].as_str().unwrap();
        assert!(is_naive_micros(at), "{key} = {at:?} is not naive UTC");
        let at = chrono::NaiveDateTime::parse_from_str(at, "%Y-%m-%dT%H:%M:%S%.6f")
            .unwrap()
            .and_utc();
        let off = (at - before).num_seconds() - secs;
        assert!((0..=30).contains(&off), "{key} is {off} s off");
    }
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let tmp: Vec<_> = std::fs::read_dir(home)
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            n.ends_with(".tmp").then_some(n)
        })
        .collect();
    assert!(tmp.is_empty(), "{tmp:?}");

    // Logged in to another server that names no team: the old team is not
    // carried over; --password-stdin reads the same way.
    let o = kitty_sync(
        home,
        &[
            "login",
            "--server",
            &format!("{base}/noteam"),
            "--username",
            "bob",
            "--password-stdin",
        ],
        b"pw\r\n",
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).starts_with("logged in as bob (no team"),
        "{}",
        text(&o.stdout)
    );
    let doc: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(doc["user"].get("team_slug").is_none(), "{doc:?}");
    assert_eq!(doc["auth"]["provider"].as_str(), Some("github"));

    let o = kitty_sync(home, &["logout"], b"");
    assert_eq!(o.status.code(), Some(0));
    assert!(
        text(&o.stdout).starts_with("logged out"),
        "{}",
        text(&o.stdout)
    );
    assert!(!path.exists());
    let o = kitty_sync(home, &["logout"], b"");
    assert_eq!(o.status.code(), Some(0));
    assert!(
        text(&o.stdout).starts_with("not logged in"),
        "{}",
        text(&o.stdout)
    );
}

#[test]
fn failures_leave_the_credentials_file_untouched() {
    let base = token_server();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let path = home.join("credentials");
    std::fs::write(&path, OTHER_TOOLS).unwrap();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        drop(l);
        format!("http://{a}")
    };
    // (server, password, exit status, what stderr must say)
    let cases = [
        (
            format!("{base}/ok"),
            "wrong",
            77,
            "wrong username or password",
        ),
        (format!("{base}/err500"), "pw", 1, "500"),
        (format!("{base}/garbage"), "pw", 1, "not JSON"),
        (format!("{base}/notokens"), "pw", 1, "no access"),
        (format!("{base}/missing"), "pw", 1, "404"),
        (closed, "pw", 1, "cannot reach"),
        (format!("{base}/ok"), "", 64, "password is empty"),
    ];
    for (server, pw, code, needle) in cases {
        let o = login(home, &server, "alice", format!("{pw}\n").as_bytes());
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(code), "{server}: {err}");
        assert!(err.contains(needle), "{server}: {err}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            OTHER_TOOLS,
            "{server}"
        );
    }
    assert!(!home.join("credentials.corrupt").exists());
}

#[test]
fn a_password_goes_only_over_https_or_loopback_http() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    for server in [
        "http://example.com",
        "http://192.168.1.10:8000",
        "ftp://127.0.0.1",
        "not a url",
        "https://host?x=1",
    ] {
        let o = login(&home, server, "alice", b"pw\n");
        assert_eq!(o.status.code(), Some(64), "{server}: {}", text(&o.stderr));
        assert!(
            text(&o.stderr).contains("server URL"),
            "{}",
            text(&o.stderr)
        );
    }
    assert!(
        text(&login(&home, "http://example.com", "alice", b"pw\n").stderr).contains("loopback")
    );
    assert!(!home.exists(), "nothing written for a refused URL");
}

#[test]
fn a_slow_server_is_waited_for_then_given_up_on() {
    let base = token_server();
    let dir = tempfile::tempdir().unwrap();
    let home = kitty_proto::home::Home::new(dir.path());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let e = rt
        .block_on(kitty_sync::login::login_within(
            &home,
            &format!("{base}/slow"),
            "alice",
            "s3cret pass",
            Duration::from_millis(300),
        ))
        .unwrap_err();
    assert_eq!(e.exit_code(), 1);
    assert!(e.to_string().contains("did not answer within 300ms"), "{e}");
    assert!(!home.credentials().exists());
    let s = rt
        .block_on(kitty_sync::login::login_within(
            &home,
            &format!("{base}/slow"),
            "alice",
            "s3cret pass",
            Duration::from_secs(10),
        ))
        .unwrap();
    assert_eq!(s.team_slug.as_deref(), Some("acme"));
    assert!(home.credentials().exists());
}

#[test]
fn daemon_commands_without_a_daemon_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["sync"][..],
        &["sync", "--wait", "--timeout", "1"],
        &["sync", "--json"],
        &["queue", "list"],
        &["queue", "list", "--limit", "5", "--json"],
        &["queue", "dead"],
        &["queue", "retry-dead"],
    ] {
        let o = kitty_sync(dir.path(), args, b"");
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(3), "{args:?}: {err}");
        assert!(
            err.contains("kitty-syncd is not running; start it with: "),
            "{args:?}: {err}"
        );
        assert!(o.stdout.is_empty(), "{args:?}");
    }
    for args in [
        &["queue", "list", "--limit", "0"][..],
        &["queue"],
        &["login"],
    ] {
        assert_eq!(
            kitty_sync(dir.path(), args, b"").status.code(),
            Some(2),
            "{args:?}"
        );
    }
}
