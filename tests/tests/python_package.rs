//! The kitty-sync Python package: its own unit tests (stdlib unittest, in
//! python/tests/, against the real binaries), the wheel `.ci/run` builds, and
//! the daemon's count of the side file the package's spec-kitty transport
//! writes.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use kitty_tests::harness::{TestHome, client_bin, daemon_bin, run_with_timeout};
use kitty_tests::spec_kitty_cli::{WHEEL_ENV, repo_root};

const PYTHON_GUARD: Duration = Duration::from_secs(900);

fn python3() -> String {
    std::env::var("KITTY_PYTHON").unwrap_or_else(|_| "python3".into())
}

#[test]
fn python_unit_tests_pass() {
    let mut cmd = Command::new(python3());
    cmd.args(["-m", "unittest", "discover", "-s", "tests", "-t", "tests"])
        .current_dir(repo_root().join("python"))
        .env("KITTY_SYNCD_BIN", daemon_bin())
        .env("KITTY_SYNC_BIN", client_bin())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("SPEC_KITTY_HOME")
        .env_remove("KITTY_SYNCD_SOCKET")
        .env_remove("KITTY_SYNC_DISABLE");
    let out = run_with_timeout(cmd, None, PYTHON_GUARD);
    assert_eq!(
        out.code(),
        Some(0),
        "python -m unittest failed (needs Python 3.10 or later as python3, or KITTY_PYTHON):\n{out}"
    );
    // unittest reports on stderr: "Ran N tests" then "OK".
    assert!(out.stderr.contains("\nOK"), "no OK from unittest:\n{out}");
    eprintln!(
        "{}",
        out.stderr
            .lines()
            .rev()
            .take(3)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn status_counts_the_lines_of_the_side_file() {
    let home = TestHome::new();
    home.write(
        "kitty-sync-refused.jsonl",
        "{\"error\":{}}\n{\"error\":{}}\n{\"error\":{}}\n",
    );
    // Not running: read from disk.
    let out = home.client(&["status", "--json"]);
    let status: serde_json::Value = out.json();
    assert_eq!(status["refused"], 3, "{out}");
    let d = home.start_daemon();
    assert_eq!(d.api().status().refused, 3);
    let text = home.client(&["status"]);
    assert!(
        text.stdout
            .contains("3 spec-kitty events the daemon refused, kept in"),
        "{text}"
    );
    // A FIFO planted there is not a file of lines: 0, and status does not hang.
    std::fs::remove_file(home.file("kitty-sync-refused.jsonl")).unwrap();
    let fifo = home.file("kitty-sync-refused.jsonl");
    let c = std::ffi::CString::new(fifo.to_string_lossy().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    assert_eq!(d.api().status().refused, 0);
    d.stop_gracefully();
}

/// The wheel's crate compiles daemon/ and client/'s main.rs as its own bins
/// (only with its `wheel` feature, so a plain `cargo test` never builds them):
/// it must depend on every crate theirs do, or a new `use` there breaks the
/// wheel long after the change.
#[test]
fn the_wheel_crate_depends_on_everything_the_two_binaries_do() {
    let deps = |rel: &str| -> std::collections::BTreeSet<String> {
        let text = std::fs::read_to_string(repo_root().join(rel)).unwrap();
        let doc: toml::Table = text.parse().unwrap_or_else(|e| panic!("{rel}: {e}"));
        // [dependencies] and every [target.'cfg(..)'.dependencies].
        let targets = doc
            .get("target")
            .and_then(|t| t.as_table())
            .into_iter()
            .flat_map(|t| t.iter().map(|(cfg, v)| (cfg.clone(), v.clone())))
            .map(|(cfg, v)| (format!("{cfg}:"), v.get("dependencies").cloned()));
        std::iter::once((String::new(), doc.get("dependencies").cloned()))
            .chain(targets)
            .flat_map(|(cfg, deps)| {
                let keys: Vec<String> = deps
                    .and_then(|d| d.as_table().cloned())
                    .map(|t| t.keys().map(|k| format!("{cfg}{k}")).collect())
                    .unwrap_or_default();
                keys
            })
            .collect()
    };
    let wheel = deps("python/Cargo.toml");
    for (krate, own) in [
        ("kitty-syncd", "daemon/Cargo.toml"),
        ("kitty-sync", "client/Cargo.toml"),
    ] {
        assert!(wheel.contains(krate), "python/Cargo.toml lacks {krate}");
        let missing: Vec<String> = deps(own).difference(&wheel).cloned().collect();
        assert!(
            missing.is_empty(),
            "python/Cargo.toml lacks dependencies of {own}: {missing:?}"
        );
    }
    let doc: toml::Table = std::fs::read_to_string(repo_root().join("python/Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let bins = doc["bin"].as_array().expect("[[bin]] targets");
    for (name, path) in [
        ("kitty-syncd", "../daemon/src/main.rs"),
        ("kitty-sync", "../client/src/main.rs"),
    ] {
        assert!(
            bins.iter().any(|b| b["name"].as_str() == Some(name)
                && b["path"].as_str() == Some(path)
                && b["required-features"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|x| x.as_str() == Some("wheel")))),
            "python/Cargo.toml builds {name} from {path}, only with the wheel feature: {bins:?}"
        );
    }
}

/// The wheel `.ci/run` builds: both binaries, the package and its start-up
/// hook, installed into a fresh venv. Without `$KITTY_SYNC_WHEEL` (a plain
/// `cargo test`) there is no wheel to look at; the spec-kitty CLI tests then
/// install the package from python/ instead.
#[test]
fn the_wheel_brings_both_binaries_the_package_and_the_hook() {
    let Some(wheel) = std::env::var_os(WHEEL_ENV).map(PathBuf::from) else {
        eprintln!("{WHEEL_ENV} is not set: no wheel to check (.ci/run builds one)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let venv = tmp.path().join("venv");
    let mut cmd = Command::new(python3());
    cmd.args(["-m", "venv"]).arg(&venv);
    run_with_timeout(cmd, None, PYTHON_GUARD).assert_code(0);
    let mut cmd = Command::new(venv.join("bin/python"));
    cmd.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-index",
        "--no-deps",
    ])
    .arg(&wheel);
    run_with_timeout(cmd, None, PYTHON_GUARD).assert_code(0);
    for bin in ["kitty-syncd", "kitty-sync"] {
        let mut cmd = Command::new(venv.join("bin").join(bin));
        cmd.arg("--version");
        let out = run_with_timeout(cmd, None, PYTHON_GUARD);
        out.assert_code(0);
        assert!(out.stdout.contains(env!("CARGO_PKG_VERSION")), "{out}");
    }
    let mut cmd = Command::new(venv.join("bin/python"));
    cmd.args([
        "-c",
        "import sys, sysconfig, os, kitty_sync, _kitty_sync_hook\n\
         site = sysconfig.get_path('purelib')\n\
         print(type(sys.meta_path[0]).__name__)\n\
         print(sorted(n for n in os.listdir(site) if n.startswith(('kitty_sync', '_kitty_sync'))))\n\
         print(os.path.exists(os.path.join(os.path.dirname(kitty_sync.__file__), 'py.typed')))",
    ]);
    let out = run_with_timeout(cmd, None, PYTHON_GUARD);
    out.assert_code(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "_Finder", "the .pth hook ran at start-up: {out}");
    for name in [
        "_kitty_sync_hook.py",
        "kitty_sync",
        "kitty_sync.pth",
        "kitty_sync.start",
    ] {
        assert!(
            lines[1].contains(&format!("'{name}'")),
            "{name} missing: {out}"
        );
    }
    assert_eq!(lines[2], "True", "py.typed shipped: {out}");
}
