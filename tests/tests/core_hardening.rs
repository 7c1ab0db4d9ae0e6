//! What a hostile neighbour or a broken file in `<home>` cannot do: lose a
//! spooled event, hang the client or the daemon (FIFOs, huge files), redirect a
//! write through a planted symlink, pose as the daemon, or get its files
//! imported. Tests that need another uid run only as root (they say SKIPPED
//! otherwise).

use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt, symlink};
use std::path::Path;
use std::time::Duration;

use kitty_tests::harness::*;
use serde_json::{Value, json};

const PAYLOAD: &str = r#"{"wp_id":"WP01","previous_status":"planned","new_status":"doing"}"#;

fn emit_text(home: &TestHome, event: &str) -> Output {
    home.client_stdin(&["emit", "--envelope", "-", "--json"], event)
}

fn emit_flags(home: &TestHome) -> Output {
    home.client(&["emit", "WPStatusChanged", "--payload", PAYLOAD, "--json"])
}

fn set_mode(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

fn skip_unless_root(test: &str) -> bool {
    if !is_root() {
        eprintln!("SKIPPED {test}: it must run as root to act as uid {OTHER_UID}");
    }
    !is_root()
}

// ---------------------------------------------------------------------------
// The spool (issue item 1)
// ---------------------------------------------------------------------------

#[test]
fn drafts_with_a_null_event_id_spooled_while_the_daemon_hangs_are_all_queued() {
    let home = TestHome::new();
    let d = home.start_daemon();
    d.api().emit(&status_draft(1));
    d.freeze();
    let draft = json!({"event_type": "WPStatusChanged", "event_id": null,
                       "payload": serde_json::from_str::<Value>(PAYLOAD).unwrap()});
    let mut ids = Vec::new();
    for _ in 0..2 {
        let out = emit_text(&home, &draft.to_string());
        out.assert_code(0);
        let v: Value = out.json();
        assert_eq!(v["path"], "spool", "{out}");
        let id = v["event_id"].as_str().unwrap().to_owned();
        assert!(
            kitty_proto::rules::is_ulid(&id),
            "the client reports a real event_id: {out}"
        );
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1]);
    assert_eq!(home.spool_files().len(), 2, "two events, two files");

    // The hung daemon dies; the next one finds both.
    d.kill9();
    let d = home.start_daemon();
    for id in &ids {
        eventually(
            &format!("spooled {id} to be queued"),
            Duration::from_secs(10),
            || (home.db().rows_with_event_id(id).len() == 1).then_some(()),
        );
    }
    eventually("the spool to empty", Duration::from_secs(10), || {
        home.spool_files().is_empty().then_some(())
    });
    let status = d.api().status();
    assert_eq!((status.spooled, status.spool_rejected), (0, 0));
    assert_eq!(home.db().count(), 3);
}

#[test]
fn whatever_lands_in_the_spool_is_imported_once_or_set_aside_and_counted() {
    let home = TestHome::new();
    // What an old client wrote for a draft with "event_id": null.
    home.write_spool_entry(".json", &status_draft(2));
    home.write(
        "spool/01HX5ZQK3M8N9P0R1S2T3V4W5X.json",
        "{\"made_at\": \"yesterday\"",
    );
    home.write("spool/notes.txt", "not an entry");
    mkfifo(&home.file("spool/fifo.json"));
    let victim = home.root().join("victim.json");
    fs::write(
        &victim,
        json!({"made_at": "2026-02-04T13:47:09Z", "event": status_draft(3)}).to_string(),
    )
    .unwrap();
    symlink(&victim, home.file("spool/link.json")).unwrap();
    let big = vec![b' '; kitty_proto::MAX_BODY_BYTES + 2048];
    home.write("spool/big.json", &big);

    let d = home.start_daemon();
    eventually(
        "every spool file to be handled",
        Duration::from_secs(10),
        || (home.spool_rejected().len() == 5 && home.db().count() == 1).then_some(()),
    );
    let status = d.api().status();
    assert_eq!(status.spooled, 0, "{status:?}");
    assert_eq!(status.spool_rejected, 5, "{status:?}");
    let out = home.client(&["status"]);
    assert!(
        out.stdout.contains("5 spool files in spool/rejected/"),
        "{out}"
    );
    assert_eq!(
        home.db().rows()[0].envelope()["payload"]["wp_id"],
        "WP02",
        "the old client's file is queued"
    );
    let log = d.log();
    for why in [
        "FIFO",
        "symbolic link",
        "not a spool entry",
        "over the limit",
    ] {
        assert!(log.contains(why), "the log says {why:?}:\n{log}");
    }
    // Nothing stalled intake: SIGTERM still stops the daemon at once.
    d.stop_gracefully();
    assert!(fs::read_to_string(&victim).unwrap().contains("WP03"));
    assert_eq!(home.db().count(), 1, "the symlinked file was not imported");
}

#[test]
fn another_users_spool_file_is_not_imported() {
    if skip_unless_root("another_users_spool_file_is_not_imported") {
        return;
    }
    let home = TestHome::new();
    let planted = home.write_spool_entry("01HX5ZQK3M8N9P0R1S2T3V4W5X.json", &status_draft(4));
    chown(&planted, OTHER_UID);
    let d = home.start_daemon();
    eventually(
        "the planted file to be set aside",
        Duration::from_secs(10),
        || (home.spool_rejected().len() == 1).then_some(()),
    );
    assert_eq!(home.db().count(), 0, "nothing of uid {OTHER_UID} is queued");
    assert!(d.log().contains(&format!("uid {OTHER_UID}")), "{}", d.log());
    assert_eq!(d.api().status().spool_rejected, 1);
}

// ---------------------------------------------------------------------------
// FIFOs and oversized files (issue item 8)
// ---------------------------------------------------------------------------

#[test]
fn a_fifo_config_or_credentials_does_not_hang_the_client() {
    for name in ["config.toml", "credentials"] {
        let home = TestHome::new();
        mkfifo(&home.file(name));
        let out = emit_flags(&home);
        out.assert_code(0);
        let v: Value = out.json();
        assert_eq!(v["path"], "direct", "{name}: {out}");
        let row = &home.db().rows()[0];
        assert_eq!(row.envelope()["team_slug"], "local", "{name}");
    }
}

#[test]
fn a_fifo_config_stops_the_daemon_naming_it() {
    let home = TestHome::new();
    mkfifo(&home.file("config.toml"));
    let out = home.daemon_cmd(&["run"]);
    assert_eq!(out.code(), Some(78), "{out}");
    assert!(out.stderr.contains("FIFO"), "{out}");
    assert!(!home.file("queue.db").exists());
}

#[test]
fn a_fifo_credentials_reads_as_logged_out_and_the_daemon_runs() {
    let home = TestHome::new();
    mkfifo(&home.file("credentials"));
    let d = home.start_daemon();
    let status = d.api().status();
    assert!(!status.logged_in);
    assert_eq!(d.api().emit(&status_draft(1)).lamport_clock, 1);
    d.stop_gracefully();
}

#[test]
fn a_fifo_clock_json_is_set_aside_and_the_daemon_starts_and_stops() {
    let home = TestHome::new();
    mkfifo(&home.file("clock.json"));
    let d = home.start_daemon();
    assert_eq!(d.api().emit(&status_draft(1)).lamport_clock, 1);
    let kept = fs::symlink_metadata(home.file("clock.json.corrupt")).unwrap();
    assert!(kept.file_type().is_fifo(), "the FIFO is kept aside");
    assert!(d.log().contains("FIFO"), "{}", d.log());
    d.stop_gracefully();
    home.assert_clock_covers(1, "clock.json is a real file again");
}

#[test]
fn oversized_state_files_are_refused_with_the_limit() {
    let home = TestHome::new();
    home.write("config.toml", vec![b'#'; 1024 * 1024 + 1]);
    let out = home.daemon_cmd(&["run"]);
    assert_eq!(out.code(), Some(78), "{out}");
    assert!(
        out.stderr.contains("over the limit of 1048576 bytes"),
        "{out}"
    );

    let home = TestHome::new();
    home.write("clock.json", vec![b' '; 64 * 1024 + 1]);
    home.write("credentials", vec![b'#'; 256 * 1024 + 1]);
    let d = home.start_daemon();
    assert_eq!(d.api().emit(&status_draft(1)).lamport_clock, 1);
    assert!(
        d.log().contains("over the limit of 65536 bytes"),
        "{}",
        d.log()
    );
    assert!(!d.api().status().logged_in);
    assert_eq!(
        fs::metadata(home.file("clock.json.corrupt")).unwrap().len(),
        64 * 1024 + 1,
        "the oversized clock.json is kept whole"
    );
}

// ---------------------------------------------------------------------------
// Planted symlinks (issue item 10)
// ---------------------------------------------------------------------------

#[test]
fn a_planted_clock_json_corrupt_symlink_redirects_nothing() {
    let home = TestHome::new();
    let victim = home.root().join("victim");
    fs::write(&victim, "precious").unwrap();
    symlink(&victim, home.file("clock.json.corrupt")).unwrap();
    home.write("clock.json", "{corrupt");
    let d = home.start_daemon();
    assert_eq!(d.api().emit(&status_draft(1)).lamport_clock, 1);
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
    let kept = home.file("clock.json.corrupt");
    assert!(fs::symlink_metadata(&kept).unwrap().is_file());
    assert_eq!(fs::read_to_string(&kept).unwrap(), "{corrupt");
    d.stop_gracefully();
}

#[test]
fn a_planted_lock_symlink_is_refused_and_its_target_untouched() {
    let home = TestHome::new();
    let victim = home.root().join("victim");
    fs::write(&victim, "precious").unwrap();
    symlink(&victim, home.file("kitty-syncd.lock")).unwrap();
    let out = home.daemon_cmd(&["run"]);
    assert_ne!(out.code(), Some(0), "{out}");
    assert!(out.stderr.contains("symbolic link"), "{out}");
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
}

// ---------------------------------------------------------------------------
// Who may be trusted (issue item 6)
// ---------------------------------------------------------------------------

#[test]
fn the_daemon_refuses_a_home_or_socket_directory_others_can_write() {
    let home = TestHome::new();
    set_mode(home.path(), 0o777);
    let out = home.daemon_cmd(&["run"]);
    assert_eq!(out.code(), Some(78), "{out}");
    assert!(out.stderr.contains("writable by every user"), "{out}");
    assert!(out.stderr.contains(&home.path().display().to_string()));
    assert!(!home.file("queue.db").exists(), "nothing written");
    assert!(!home.socket().exists());

    let home = TestHome::new();
    set_mode(home.path(), 0o770);
    let out = home.daemon_cmd(&["run"]);
    assert_eq!(out.code(), Some(78), "{out}");
    assert!(out.stderr.contains("writable by its group"), "{out}");

    let mut home = TestHome::new();
    let shared = home.root().join("shared");
    fs::create_dir(&shared).unwrap();
    set_mode(&shared, 0o1777);
    home.set_socket_override(Some(shared.join("k.sock")));
    let out = home.daemon_cmd(&["run"]);
    assert_eq!(out.code(), Some(78), "{out}");
    assert!(
        out.stderr.contains(&shared.display().to_string()),
        "names the socket's directory: {out}"
    );
    assert!(!shared.join("k.sock").exists());
}

#[test]
fn the_daemon_refuses_a_home_another_user_owns() {
    if skip_unless_root("the_daemon_refuses_a_home_another_user_owns") {
        return;
    }
    let home = TestHome::new();
    chown(home.path(), OTHER_UID);
    let out = home.daemon_cmd(&["run"]);
    assert_eq!(out.code(), Some(78), "{out}");
    assert!(
        out.stderr.contains(&format!("belongs to uid {OTHER_UID}")),
        "{out}"
    );
    assert!(!home.file("queue.db").exists(), "nothing written");
}

#[test]
fn the_client_does_not_trust_another_users_socket_and_queues_itself() {
    if skip_unless_root("the_client_does_not_trust_another_users_socket_and_queues_itself") {
        return;
    }
    let mut home = TestHome::new();
    // A socket directory others can write: the hole an impostor needs.
    set_mode(home.root(), 0o755);
    let shared = home.root().join("shared");
    fs::create_dir(&shared).unwrap();
    set_mode(&shared, 0o777);
    let socket = shared.join("kitty-syncd.sock");
    home.set_socket_override(Some(socket.clone()));
    let impostor = Impostor::start(&socket, &shared);

    let out = emit_flags(&home);
    out.assert_code(0);
    let v: Value = out.json();
    assert_eq!(
        v["path"], "direct",
        "no daemon of ours: queued directly: {out}"
    );
    assert!(
        out.stderr.contains(&format!("uid {OTHER_UID}")),
        "the warning names the impostor's uid: {out}"
    );
    assert!(
        impostor.received().is_empty(),
        "the impostor got nothing: {:?}",
        impostor.received()
    );
    let rows = home.db().rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].event_id, v["event_id"].as_str().unwrap());

    // status does not take the impostor's word either.
    let out = home.client(&["status", "--json"]);
    out.assert_code(EXIT_NOT_RUNNING);
    assert!(impostor.received().is_empty());
}

// ---------------------------------------------------------------------------
// Repeated keys, and an empty SPEC_KITTY_HOME
// ---------------------------------------------------------------------------

#[test]
fn an_envelope_that_repeats_a_key_is_refused_everywhere() {
    let envelope = cli_envelope(&new_ulid(), 5).to_string();
    // The daemon would read the last lamport_clock, SQLite's json_extract the first.
    let twice = format!(
        "{},\"lamport_clock\":900}}",
        &envelope[..envelope.len() - 1]
    );
    let home = TestHome::new();
    let d = home.start_daemon();
    let r = d.api().post_events_raw(twice.as_bytes());
    r.assert_status(422);
    let e = r.error();
    assert_eq!(e.field.as_deref(), Some("lamport_clock"), "{e:?}");
    assert_eq!(home.db().count(), 0);
    assert_eq!(d.api().status().clock.value, 0, "the clock did not move");
    drop(d);

    // With no daemon, the client refuses it the same way.
    let home = TestHome::new();
    let out = emit_text(&home, &twice);
    out.assert_code(EXIT_DATAERR);
    assert!(out.stderr.contains("lamport_clock"), "{out}");
    assert!(!home.file("queue.db").exists(), "nothing queued");
    assert!(home.spool_files().is_empty());
}

#[test]
fn an_empty_spec_kitty_home_means_the_default_home() {
    let home = TestHome::new();
    let user = home.root().join("user");
    fs::create_dir(&user).unwrap();
    let mut cmd = home.command(&client_bin());
    cmd.env("SPEC_KITTY_HOME", "").env("HOME", &user).args([
        "emit",
        "WPStatusChanged",
        "--payload",
        PAYLOAD,
        "--json",
    ]);
    let out = run_with_guard(cmd, None);
    out.assert_code(0);
    let db = Db::new(user.join(".spec-kitty/queue.db"));
    assert_eq!(db.count(), 1, "queued in ~/.spec-kitty: {out}");
    assert!(!home.file("queue.db").exists());
}
