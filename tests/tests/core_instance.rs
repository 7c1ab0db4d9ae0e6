//! Issue 2, one daemon per home: stale sockets, the single-instance lock, the
//! socket path rules, `status` exit codes, and refusing other users.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;

use kitty_proto::api::Status;
use kitty_tests::harness::*;

#[test]
fn a_stale_socket_file_is_replaced() {
    let home = TestHome::new();
    // A socket file nobody listens on.
    drop(std::os::unix::net::UnixListener::bind(home.socket()).unwrap());
    assert!(home.socket().exists());
    assert!(
        home.api().try_request("GET", "/v1/health", None).is_err(),
        "nobody listens yet"
    );
    let d = home.start_daemon();
    assert_eq!(d.api().health().pid, d.pid());
    assert_eq!(d.api().emit(&status_draft(1)).lamport_clock, 1);
}

#[test]
fn the_socket_left_by_kill_9_is_replaced() {
    let home = TestHome::new();
    let d = home.start_daemon();
    d.api().emit(&status_draft(1));
    d.kill9();
    assert!(
        home.socket().exists(),
        "kill -9 leaves the socket file behind"
    );
    let d = home.start_daemon();
    assert_eq!(d.api().health().pid, d.pid());
    assert!(d.api().emit(&status_draft(2)).lamport_clock > 1);
}

#[test]
fn socket_and_directory_are_private() {
    let home = TestHome::new();
    let d = home.start_daemon();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&home.socket()), 0o600, "socket mode");
    assert_eq!(mode(home.path()), 0o700, "home directory mode");
    drop(d);
}

#[test]
fn a_second_instance_is_refused_and_the_first_keeps_running() {
    let home = TestHome::new();
    let d = home.start_daemon();
    let second = home.daemon_cmd(&["run"]);
    assert_ne!(
        second.code(),
        Some(0),
        "a second daemon must not run:\n{second}"
    );
    assert!(
        second.status.code().is_some(),
        "it exits, not crashes:\n{second}"
    );
    assert!(
        second.stderr.contains("already runs"),
        "says a daemon already runs:\n{second}"
    );
    assert!(
        second.stderr.contains(&d.pid().to_string()),
        "names the running daemon's pid {}:\n{second}",
        d.pid()
    );
    // The first one's socket was not taken away.
    assert!(home.socket().exists());
    assert_eq!(d.api().health().pid, d.pid());
    assert_eq!(d.api().emit(&status_draft(1)).lamport_clock, 1);
    let lock = std::fs::read_to_string(home.file("kitty-syncd.lock")).unwrap_or_default();
    assert!(
        lock.contains(&d.pid().to_string()),
        "the lock file holds the pid: {lock:?}"
    );
}

#[test]
fn a_second_instance_on_another_socket_is_refused_too() {
    // The lock is per home, not per socket path.
    let mut home = TestHome::new();
    let d = home.start_daemon();
    home.set_socket_override(Some(home.root().join("other.sock")));
    let second = home.daemon_cmd(&["run"]);
    assert_ne!(second.code(), Some(0), "{second}");
    assert!(second.stderr.contains("already runs"), "{second}");
    assert!(second.stderr.contains(&d.pid().to_string()), "{second}");
    assert!(d.api().health().ok);
}

#[test]
fn a_socket_path_too_long_fails_naming_the_override() {
    // Through the override...
    let mut home = TestHome::new();
    home.set_socket_override(Some(home.root().join("s".repeat(120))));
    let out = home.daemon_cmd(&["run"]);
    assert_ne!(out.code(), Some(0), "{out}");
    assert!(
        out.stderr.contains("KITTY_SYNCD_SOCKET"),
        "the error names KITTY_SYNCD_SOCKET:\n{out}"
    );

    // ...and through a deep home with the default socket name.
    let mut home = TestHome::with_home_at(&format!("{}/{}", "d".repeat(60), "e".repeat(60)));
    assert!(home.socket().as_os_str().len() > 107);
    let out = home.daemon_cmd(&["run"]);
    assert_ne!(out.code(), Some(0), "{out}");
    assert!(
        out.stderr.contains("KITTY_SYNCD_SOCKET"),
        "the error names KITTY_SYNCD_SOCKET:\n{out}"
    );

    // The override is the way out.
    home.set_socket_override(Some(home.root().join("k.sock")));
    let d = home.start_daemon();
    assert_eq!(d.api().emit(&status_draft(1)).lamport_clock, 1);
    assert_eq!(home.db().count(), 1, "state still lives in the deep home");
    let emitted = home.client_emit(
        "WPStatusChanged",
        &serde_json::json!({"wp_id":"WP02","previous_status":"planned","new_status":"doing"}),
    );
    assert_eq!(
        emitted["path"], "daemon",
        "the client follows KITTY_SYNCD_SOCKET: {emitted}"
    );
}

/// `clock`: the last value issued. A running daemon reports it; without one,
/// status reads clock.json, which a daemon keeps up to its headroom ahead.
fn check_status_json(out: &Output, running: bool, depth: u64, clock: u64) -> Status {
    let st: Status = out.json();
    assert_eq!(st.running, running, "{out}");
    assert_eq!(st.queue.depth, depth, "{out}");
    if running || clock == 0 {
        assert_eq!(st.clock.value, clock, "{out}");
    } else {
        assert!(clock_covers(st.clock.value, clock), "{out}");
    }
    if running {
        assert!(st.pid.is_some());
    } else {
        assert!(
            st.start_hint
                .as_deref()
                .is_some_and(|h| h.contains("kitty-syncd run")),
            "a hint on how to start it: {out}"
        );
    }
    st
}

#[test]
fn status_exits_0_with_a_daemon_and_3_without_reading_the_disk() {
    let home = TestHome::new();

    // Never started: nothing on disk yet.
    for bin in ["kitty-syncd", "kitty-sync"] {
        let out = if bin == "kitty-syncd" {
            home.daemon_cmd(&["status", "--json"])
        } else {
            home.client(&["status", "--json"])
        };
        out.assert_code(EXIT_NOT_RUNNING);
        check_status_json(&out, false, 0, 0);
    }

    let d = home.start_daemon();
    for i in 0..4 {
        d.api().emit(&status_draft(i));
    }
    for out in [
        home.daemon_cmd(&["status", "--json"]),
        home.client(&["status", "--json"]),
    ] {
        // Events queued and no session to send them with: delivery is stuck.
        out.assert_code(EXIT_STUCK);
        let st = check_status_json(&out, true, 4, 4);
        assert_eq!(st.pid, Some(d.pid()), "{out}");
        // No credentials in this home: the uplink waits for a login.
        assert_eq!(st.connection, "AuthRequired");
        assert_eq!(st.queue.retries.none, 4);
        assert_eq!(
            st.queue.top_event_types.first().map(|t| t.count),
            Some(4),
            "{out}"
        );
        assert_eq!(st.team_slug, "local");
    }
    for out in [home.daemon_cmd(&["status"]), home.client(&["status"])] {
        out.assert_code(EXIT_STUCK);
        assert!(
            out.stdout.contains(&d.pid().to_string()),
            "the table shows the pid:\n{out}"
        );
    }

    d.stop_gracefully();
    for out in [
        home.daemon_cmd(&["status", "--json"]),
        home.client(&["status", "--json"]),
    ] {
        out.assert_code(EXIT_NOT_RUNNING);
        check_status_json(&out, false, 4, 4);
    }
    for out in [home.daemon_cmd(&["status"]), home.client(&["status"])] {
        out.assert_code(EXIT_NOT_RUNNING);
        let all = format!("{}{}", out.stdout, out.stderr);
        assert!(
            all.contains("kitty-syncd run"),
            "says how to start it:\n{out}"
        );
        assert!(all.contains('4'), "shows depth and clock from disk:\n{out}");
    }
}

#[test]
fn status_says_not_running_when_the_socket_is_stale() {
    let home = TestHome::new();
    let d = home.start_daemon();
    d.api().emit(&status_draft(1));
    home.wait_clock_at_least(1);
    d.kill9();
    assert!(home.socket().exists());
    for out in [
        home.daemon_cmd(&["status", "--json"]),
        home.client(&["status", "--json"]),
    ] {
        out.assert_code(EXIT_NOT_RUNNING);
        check_status_json(&out, false, 1, 1);
    }
}

#[test]
fn a_connection_from_another_uid_is_refused() {
    if !is_root() {
        eprintln!(
            "SKIPPED: this test must run as root to connect as another uid (65534); it runs as a normal user here"
        );
        return;
    }
    let home = TestHome::new();
    let d = home.start_daemon();
    d.api().emit(&status_draft(1));
    // Let uid 65534 reach the socket at all, so the daemon's own check is what refuses it.
    let open =
        |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    let curl = Path::new("/usr/bin/curl").exists();
    open(home.root(), 0o777);
    open(home.path(), 0o777);
    open(&home.socket(), 0o666);
    // The client binary must be runnable by uid 65534: use a copy in /tmp-land.
    let client = home.root().join("kitty-sync");
    std::fs::copy(client_bin(), &client).unwrap();
    open(&client, 0o755);

    // Raw HTTP via curl, when present.
    if curl {
        let mut cmd = std::process::Command::new("/usr/bin/curl");
        cmd.args(["-s", "-o", "-", "-w", "\n%{http_code}", "--unix-socket"])
            .arg(home.socket())
            .arg("http://localhost/v1/status")
            .uid(65534)
            .gid(65534)
            .env("HOME", home.path());
        let out = run_with_guard(cmd, None);
        let code = out.stdout.lines().last().unwrap_or_default().to_owned();
        assert_eq!(code, "403", "another uid gets 403:\n{out}");
        assert!(out.stdout.contains("forbidden"), "error forbidden:\n{out}");
        assert!(
            !out.stdout.contains("\"running\""),
            "no status leaked:\n{out}"
        );
    } else {
        eprintln!("curl not found: checking through kitty-sync only");
    }

    // The client, run as uid 65534, sends nothing to a daemon that is not its
    // own (root's), and will not queue in a home every user can write: it is
    // refused (exit 77) and queues nothing.
    let mut cmd = home.command(&client);
    cmd.args([
        "emit",
        "WPStatusChanged",
        "--payload",
        r#"{"wp_id":"WP01","previous_status":"planned","new_status":"doing"}"#,
    ])
    .uid(65534)
    .gid(65534);
    let out = run_with_guard(cmd, None);
    out.assert_code(EXIT_NOPERM);
    assert!(
        out.stderr.contains("uid 0") && out.stderr.contains("writable by every user"),
        "the client names the daemon's uid and the open home:\n{out}"
    );
    assert_eq!(home.db().count(), 1, "nothing queued for the other uid");
    assert!(
        home.spool_files().is_empty(),
        "nothing spooled for the other uid"
    );
    // The owner is still served.
    assert_eq!(d.api().status().queue.depth, 1);
    assert!(
        !curl || d.log().to_lowercase().contains("65534") || d.log().to_lowercase().contains("uid"),
        "the refusal is logged (with the uid):\n{}",
        d.log()
    );
}
