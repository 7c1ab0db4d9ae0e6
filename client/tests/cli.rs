//! The `kitty-sync` command line: malformed, oversized and hostile input is
//! refused with exit 65 (or 2 for usage) and nothing is queued.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn sync(home: &std::path::Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kitty-sync"))
        .args(args)
        .env("SPEC_KITTY_HOME", home)
        .env_remove("KITTY_SYNCD_SOCKET")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kitty-sync runs");
    let input = stdin.map(<[u8]>::to_vec);
    let mut pipe = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        if let Some(bytes) = input {
            let _ = pipe.write_all(&bytes);
        }
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["emit"],
        vec!["emit", "WPCreated"],
        vec![
            "emit",
            "WPCreated",
            "--payload",
            "{}",
            "--payload-file",
            "x",
        ],
        vec!["emit", "--envelope", "-", "--payload", "{}"],
        vec!["nope"],
    ] {
        let o = sync(dir.path(), &args, None);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
    assert!(!dir.path().join("queue.db").exists());
}

const ENVELOPE_WITH_STRING_CLOCK: &[u8] = br#"{"event_id":"01HX5ZQK3M8N9P0R1S2T3V4W5X","event_type":"X","aggregate_id":"a","aggregate_type":"Feature","payload":{},"node_id":"n","lamport_clock":"7","timestamp":"2026-02-04T13:47:09Z","team_slug":"t"}"#;

#[test]
fn invalid_events_exit_65_and_queue_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.json");
    // (arguments, standard input, what the error must mention)
    type Case<'a> = (Vec<&'a str>, Option<&'a [u8]>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec!["emit", "WPCreated", "--payload", "{not json"],
            None,
            "not valid JSON",
        ),
        (
            vec!["emit", "WPCreated", "--payload", "[1,2]"],
            None,
            "payload",
        ),
        (
            vec!["emit", "Unknown", "--payload", "{}"],
            None,
            "event_type",
        ),
        (
            vec![
                "emit",
                "WPCreated",
                "--payload",
                r#"{"wp_id":"WP1","title":"t","feature_slug":"f"}"#,
            ],
            None,
            "payload.wp_id",
        ),
        (
            vec![
                "emit",
                "WPCreated",
                "--payload-file",
                missing.to_str().unwrap(),
            ],
            None,
            "cannot read",
        ),
        (
            vec!["emit", "--envelope", "-"],
            Some(b"[]"),
            "not a JSON object",
        ),
        (
            vec!["emit", "--envelope", "-"],
            Some(br#"{"lamport_clock":"1"}"#),
            "event_id",
        ),
        (
            vec!["emit", "--envelope", "-"],
            Some(ENVELOPE_WITH_STRING_CLOCK),
            "lamport_clock",
        ),
        (
            vec!["emit", "WPCreated", "--payload-file", "-"],
            Some(b"\xff\xfe\x00"),
            "cannot read",
        ),
    ];
    for (args, input, needle) in cases {
        let o = sync(dir.path(), &args, input);
        assert_eq!(o.status.code(), Some(65), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
    }
    assert!(
        !dir.path().join("queue.db").exists(),
        "nothing may be queued"
    );
}

#[test]
fn oversized_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let big = format!(
        r#"{{"wp_id":"WP01","title":"{}","feature_slug":"028-x"}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    let o = sync(
        dir.path(),
        &["emit", "WPCreated", "--payload-file", "-"],
        Some(big.as_bytes()),
    );
    assert_eq!(o.status.code(), Some(65), "{}", stderr(&o));
    assert!(stderr(&o).contains("limit"), "{}", stderr(&o));
    assert!(!dir.path().join("queue.db").exists());
}
