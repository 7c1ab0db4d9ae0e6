//! The `kitty-syncd` command line: bad arguments, bad config and bad paths
//! get a clear error and change nothing.

use std::process::{Command, Output};

fn syncd(home: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kitty-syncd"))
        .args(args)
        .env("SPEC_KITTY_HOME", home)
        .env_remove("KITTY_SYNCD_SOCKET")
        .output()
        .expect("kitty-syncd runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn version_and_usage() {
    let dir = tempfile::tempdir().unwrap();
    let o = syncd(dir.path(), &["version"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains(env!("CARGO_PKG_VERSION")));
    let o = syncd(dir.path(), &["frobnicate"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = syncd(dir.path(), &["run", "--no-such-flag"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn broken_config_refuses_to_start_and_creates_no_queue() {
    let dir = tempfile::tempdir().unwrap();
    for (text, needle) in [
        ("[sync\n", "TOML"),
        ("[sync]\nmax_queue_size = \"lots\"\n", "max_queue_size"),
        ("[sync]\nmax_queue_size = -5\n", "max_queue_size"),
        ("[sync]\nserver_url = \"gopher://x\"\n", "server_url"),
    ] {
        std::fs::write(dir.path().join("config.toml"), text).unwrap();
        let o = syncd(dir.path(), &["run"]);
        assert_eq!(o.status.code(), Some(78), "{text}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{text}: {}", stderr(&o));
        assert!(!dir.path().join("queue.db").exists());
        assert!(!dir.path().join("kitty-syncd.sock").exists());
    }
}

#[test]
fn socket_path_too_long_names_the_override() {
    let dir = tempfile::tempdir().unwrap();
    let deep = dir.path().join("d".repeat(120));
    let o = syncd(&deep, &["run"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("KITTY_SYNCD_SOCKET"), "{}", stderr(&o));
}

#[test]
fn refuses_to_replace_a_file_that_is_not_a_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("kitty-syncd.sock");
    std::fs::write(&sock, "precious").unwrap();
    let o = syncd(dir.path(), &["run"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not a socket"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&sock).unwrap(), "precious");
}

#[test]
fn home_that_is_a_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("file");
    std::fs::write(&f, "").unwrap();
    let o = syncd(&f, &["run"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not a directory"), "{}", stderr(&o));
}
