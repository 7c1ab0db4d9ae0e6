//! Black-box harness: runs the real `kitty-syncd` and `kitty-sync` binaries in a
//! temporary `SPEC_KITTY_HOME`, talks HTTP/1.1 to the daemon over its Unix socket
//! (raw bytes, so tests can also send malformed requests), and reads `queue.db`
//! and `clock.json` straight from disk.
//!
//! Every wait is bounded by [`HANG_GUARD`]: a test that hangs fails instead of
//! blocking the suite. No test checks a wall-clock threshold.
//!
//! Layout of one [`TestHome`]:
//! ```text
//! <tmp>/ksXXXXXX/            root (removed on drop)
//!   home/                    SPEC_KITTY_HOME and HOME of every process started
//!   daemon-<n>.log           stdout + stderr of the n-th daemon started here
//! ```

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kitty_proto::api::{
    Accepted, EmitResponse, ErrorBody, Health, QueueView, Status, VERSION_HEADER,
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode};
use sqlx::{AssertSqlSafe, Connection};

pub mod follow;
pub mod user_manager;

/// The longest any single wait in a test may take before the test fails.
pub const HANG_GUARD: Duration = Duration::from_secs(20);

/// The username every started process sees (first of LOGNAME, USER, ...), so
/// that the node_id is predictable: sha256("<hostname>:kitty-tester")[..12].
pub const TEST_USER: &str = "kitty-tester";

/// Variables through which systemd and launchd talk to a service.
pub const SERVICE_MANAGER_VARS: &[&str] = &[
    "NOTIFY_SOCKET",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "JOURNAL_STREAM",
    "INVOCATION_ID",
    "XPC_SERVICE_NAME",
];

/// Exit code of `status` when no daemon answers.
pub const EXIT_NOT_RUNNING: i32 = 3;
/// Exit code of `status` when the daemon runs but delivery is stuck (events
/// queued while it needs a login, or older than `[sync] stale_after_secs`).
pub const EXIT_STUCK: i32 = 4;
/// `kitty-sync emit`: invalid input.
pub const EXIT_DATAERR: i32 = 65;
/// `kitty-sync emit`: queue full.
pub const EXIT_TEMPFAIL: i32 = 75;
/// `kitty-sync emit`: refused by the daemon (403).
pub const EXIT_NOPERM: i32 = 77;

// ---------------------------------------------------------------------------
// Binaries
// ---------------------------------------------------------------------------

/// A binary of the workspace, found next to the running test executable
/// (`target/<profile>/deps/<test>` → `target/<profile>/<name>`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // A test runs from target/<profile>/deps, a bench binary from target/<profile>.
    let dir = exe.parent().expect("the executable has a directory");
    let path = [
        dir.join(name),
        dir.parent().map(|p| p.join(name)).unwrap_or_default(),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .unwrap_or_else(|| dir.join(name));
    if !path.is_file() {
        panic!(
            "{} not found: build the binaries first: cargo test --workspace builds them \
             (or cargo build -p kitty-syncd -p kitty-sync)",
            path.display()
        );
    }
    path
}

/// `kitty-syncd`, rebuilt first if its sources changed (see [`fresh_binaries`]).
pub fn daemon_bin() -> PathBuf {
    fresh_binaries();
    binary("kitty-syncd")
}

/// `kitty-sync`, rebuilt first if its sources changed (see [`fresh_binaries`]).
pub fn client_bin() -> PathBuf {
    fresh_binaries();
    binary("kitty-sync")
}

/// `cargo test -p kitty-tests` builds only this package's binaries, so the
/// daemon and client next to the test could be older than their sources: run
/// `cargo build -p kitty-syncd -p kitty-sync` into the same target directory
/// and profile once per test process (a no-op costs about a second).
/// `KITTY_TESTS_NO_BUILD=1` skips it, for runs with binaries built elsewhere.
fn fresh_binaries() {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        if std::env::var_os("KITTY_TESTS_NO_BUILD").is_some_and(|v| v == "1") {
            return;
        }
        let exe = std::env::current_exe().expect("current_exe");
        // target/<profile>/deps/<test> or target/<profile>/<bench>.
        let mut profile_dir = exe.parent().expect("the executable has a directory");
        if profile_dir.file_name().is_some_and(|n| n == "deps") {
            profile_dir = profile_dir.parent().expect("deps has a parent");
        }
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a profile directory");
        // Cargo's directory for the dev profile is "debug", the profile "dev".
        let profile = if profile == "debug" { "dev" } else { profile };
        let target_dir = profile_dir.parent().expect("a target directory");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = Command::new(&cargo)
            .args(["build", "--quiet", "-p", "kitty-syncd", "-p", "kitty-sync"])
            .args(["--profile", profile])
            .arg("--target-dir")
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {cargo:?} build: {e}"));
        if !out.status.success() {
            panic!(
                "cargo build -p kitty-syncd -p kitty-sync failed ({}), so the tests would run \
                 stale binaries:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    });
}

// ---------------------------------------------------------------------------
// Small utilities
// ---------------------------------------------------------------------------

/// Polls `f` every 20 ms until it returns `Some`, for at most `timeout`.
pub fn eventually<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A fresh ULID (26 Crockford base-32 characters).
pub fn new_ulid() -> String {
    ulid::Ulid::generate().to_string()
}

/// Whether `unshare` can give a process a private mount namespace in which it
/// may mount a tmpfs (unprivileged user namespaces).
pub fn private_mounts_work() -> bool {
    static WORKS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WORKS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        Command::new("unshare")
            .args([
                "--user",
                "--map-root-user",
                "--mount",
                "mount",
                "-t",
                "tmpfs",
                "kitty-test",
            ])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Sends `sig` to `pid`; panics when the process does not exist.
pub fn send_signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) with a pid we started; no memory is involved.
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}

/// The uid tests run "another user" as (nobody), when they run as root.
pub const OTHER_UID: u32 = 65534;

/// Makes a FIFO at `path`.
pub fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("no NUL in path");
    // SAFETY: a valid NUL-terminated path.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(
        rc,
        0,
        "mkfifo {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

/// Gives `path` to `uid` (root only).
pub fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(uid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

/// A copy of the workspace binary `name` in `dir` that any user may run
/// (the build directory may not be reachable by another uid).
pub fn runnable_by_anyone(name: &str, dir: &Path) -> PathBuf {
    let to = dir.join(name);
    fs::copy(binary(name), &to).unwrap_or_else(|e| panic!("copy {name}: {e}"));
    fs::set_permissions(&to, fs::Permissions::from_mode(0o755)).unwrap();
    to
}

/// `kitty-impostor`, run as [`OTHER_UID`]: another user's process listening
/// at a socket path, answering `202 queued` to anything and keeping what it
/// was sent. Killed on drop.
pub struct Impostor {
    child: Child,
    capture: PathBuf,
}

impl Impostor {
    /// Binds `socket` (whose directory uid 65534 must be able to write);
    /// the binary and the capture file live in `dir`, which it must reach.
    pub fn start(socket: &Path, dir: &Path) -> Self {
        use std::os::unix::process::CommandExt;
        let bin = runnable_by_anyone("kitty-impostor", dir);
        let capture = dir.join(format!("impostor-{}.capture", new_ulid()));
        let mut cmd = Command::new(bin);
        cmd.arg(socket)
            .arg(&capture)
            .uid(OTHER_UID)
            .gid(OTHER_UID)
            .stdin(Stdio::null());
        let child = cmd.spawn().expect("spawn kitty-impostor");
        let mut me = Self { child, capture };
        eventually("the impostor to listen", HANG_GUARD, || {
            if let Some(st) = me.child.try_wait().expect("try_wait") {
                panic!("kitty-impostor exited ({st}) before it listened");
            }
            UnixStream::connect(socket).ok().map(|_| ())
        });
        // That probe was a connection too; start counting from here.
        eventually("the impostor to record the probe", HANG_GUARD, || {
            me.capture.exists().then_some(())
        });
        let _ = fs::remove_file(&me.capture);
        me
    }

    /// Everything the impostor was sent.
    pub fn received(&self) -> String {
        fs::read_to_string(&self.capture).unwrap_or_default()
    }
}

impl Drop for Impostor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The machine's hostname as Python's `socket.gethostname()` gives it.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    assert_eq!(rc, 0, "gethostname");
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// A process's output, decoded.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// stdout parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not the expected JSON ({e}):\n{self}"))
    }

    /// Asserts the exit code, printing everything on failure.
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code(), Some(code), "unexpected exit code:\n{self}");
        self
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` with `stdin` as its input, kills it after [`HANG_GUARD`].
pub fn run_with_guard(cmd: Command, stdin: Option<&[u8]>) -> Output {
    run_with_timeout(cmd, stdin, HANG_GUARD)
}

/// [`run_with_guard`] with a guard of `timeout`.
pub fn run_with_timeout(mut cmd: Command, stdin: Option<&[u8]>, timeout: Duration) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let mut out_pipe = child.stdout.take().expect("stdout pipe");
    let mut err_pipe = child.stderr.take().expect("stderr pipe");
    let out_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out_pipe.read_to_end(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err_pipe.read_to_end(&mut s);
        s
    });
    let status = wait_with_guard(&mut child, timeout)
        .unwrap_or_else(|| panic!("{cmd:?} did not finish within {timeout:?}; killed it"));
    Output {
        status,
        stdout: String::from_utf8_lossy(&out_t.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&err_t.join().unwrap()).into_owned(),
    }
}

/// Waits for `child` at most `timeout`; on timeout kills it and returns None.
pub fn wait_with_guard(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return Some(st);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------
// TestHome
// ---------------------------------------------------------------------------

/// Whether a clock.json value `file`, as a daemon keeps it, covers `last`,
/// the largest value issued: at or above it, at most the daemon's headroom
/// ahead ([`kitty_proto::CLOCK_JSON_HEADROOM`]).
pub fn clock_covers(file: u64, last: u64) -> bool {
    (last..=last.saturating_add(kitty_proto::CLOCK_JSON_HEADROOM)).contains(&file)
}

/// A temporary `SPEC_KITTY_HOME` and the processes that use it.
pub struct TestHome {
    tmp: tempfile::TempDir,
    home: PathBuf,
    socket_override: Option<PathBuf>,
    daemons_started: AtomicUsize,
}

impl Default for TestHome {
    fn default() -> Self {
        Self::new()
    }
}

impl TestHome {
    /// A fresh, empty home (`<root>/home`, mode 0700).
    pub fn new() -> Self {
        Self::new_in(&std::env::temp_dir())
    }

    /// A fresh home whose root is a new directory in `dir` (for a home that
    /// must not be under /tmp, e.g. for a unit with `PrivateTmp=yes`).
    pub fn new_in(dir: &Path) -> Self {
        // Build now, before a test starts any clock (a token's lifetime, an
        // event's age), not at its first daemon or client.
        fresh_binaries();
        std::fs::create_dir_all(dir).expect("create the parent of a test home");
        let tmp = tempfile::Builder::new()
            .prefix("ks")
            .tempdir_in(dir)
            .expect("tempdir");
        let home = tmp.path().join("home");
        fs::create_dir(&home).expect("create home");
        fs::set_permissions(&home, fs::Permissions::from_mode(0o700)).expect("chmod home");
        Self {
            tmp,
            home,
            socket_override: None,
            daemons_started: AtomicUsize::new(0),
        }
    }

    /// A home whose directory is `<root>/<rel>` (created; for long paths).
    pub fn with_home_at(rel: &str) -> Self {
        let mut h = Self::new();
        let home = h.tmp.path().join(rel);
        fs::create_dir_all(&home).expect("create nested home");
        h.home = home;
        h
    }

    /// The temporary directory that holds the home and the daemon logs.
    pub fn root(&self) -> &Path {
        self.tmp.path()
    }

    /// `SPEC_KITTY_HOME`.
    pub fn path(&self) -> &Path {
        &self.home
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.home.join(name)
    }

    /// Sets `KITTY_SYNCD_SOCKET` for every process started from now on.
    pub fn set_socket_override(&mut self, path: Option<PathBuf>) {
        self.socket_override = path;
    }

    /// The socket the daemon listens on.
    pub fn socket(&self) -> PathBuf {
        self.socket_override
            .clone()
            .unwrap_or_else(|| self.home.join("kitty-syncd.sock"))
    }

    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) {
        fs::write(self.file(name), contents).unwrap_or_else(|e| panic!("write {name}: {e}"));
    }

    /// `config.toml` with `[sync] max_queue_size = n`.
    pub fn write_config(&self, max_queue_size: u64) {
        self.write(
            "config.toml",
            format!("[sync]\nmax_queue_size = {max_queue_size}\n"),
        );
    }

    /// `credentials` with `[user] team_slug`, mode 0600.
    pub fn write_credentials_team(&self, team_slug: &str) {
        self.write(
            "credentials",
            format!("[user]\nusername = \"alice@example.com\"\nteam_slug = \"{team_slug}\"\n"),
        );
        fs::set_permissions(self.file("credentials"), fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// A `clock.json` in the CONTRACT.md format.
    pub fn write_clock(&self, value: u64, node_id: &str) {
        let v = json!({"value": value, "node_id": node_id, "updated_at": "2026-02-04T13:47:09.123456+00:00"});
        self.write("clock.json", serde_json::to_string_pretty(&v).unwrap());
        fs::set_permissions(self.file("clock.json"), fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// `clock.json` as text, if present.
    pub fn clock_text(&self) -> Option<String> {
        fs::read_to_string(self.file("clock.json")).ok()
    }

    /// `clock.json` parsed, if present and valid JSON.
    pub fn clock_json(&self) -> Option<Value> {
        self.clock_text()
            .and_then(|t| serde_json::from_str(&t).ok())
    }

    /// `clock.json`'s `value`, if present and valid.
    pub fn clock_value(&self) -> Option<u64> {
        self.clock_json()
            .and_then(|v| v.get("value").and_then(Value::as_u64))
    }

    /// Asserts that clock.json, as a daemon keeps it, covers `last` (the
    /// largest value issued): at or above it, and at most the daemon's
    /// headroom ahead ([`kitty_proto::CLOCK_JSON_HEADROOM`]). Returns the value.
    #[track_caller]
    pub fn assert_clock_covers(&self, last: u64, why: &str) -> u64 {
        let v = self
            .clock_value()
            .unwrap_or_else(|| panic!("{why}: no valid clock.json: {:?}", self.clock_text()));
        assert!(
            clock_covers(v, last),
            "{why}: clock.json holds {v}, expected {last} to {} (covering the last value issued)",
            last.saturating_add(kitty_proto::CLOCK_JSON_HEADROOM)
        );
        v
    }

    /// Waits (≤ 5 s; the daemon rewrites it when a commit passes it) until
    /// clock.json holds a value ≥ `at_least`; returns it.
    pub fn wait_clock_at_least(&self, at_least: u64) -> u64 {
        eventually(
            &format!(
                "clock.json to reach {at_least} (now {:?})",
                self.clock_text()
            ),
            Duration::from_secs(5),
            || self.clock_value().filter(|&v| v >= at_least),
        )
    }

    /// Files in `<home>/spool/` ending in `.json`.
    pub fn spool_files(&self) -> Vec<PathBuf> {
        match fs::read_dir(self.file("spool")) {
            Ok(rd) => rd
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Writes a spool entry as a client would, `spool/<name>`, holding `event`.
    pub fn write_spool_entry(&self, name: &str, event: &Value) -> PathBuf {
        let dir = self.file("spool");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let entry = json!({"made_at": chrono::Utc::now().to_rfc3339(), "event": event});
        fs::write(&path, entry.to_string()).unwrap();
        path
    }

    /// Names in `<home>/spool/rejected/`.
    pub fn spool_rejected(&self) -> Vec<String> {
        match fs::read_dir(self.file("spool/rejected")) {
            Ok(rd) => rd
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Names in `<home>` ending in `.tmp` (atomic writes must leave none).
    pub fn tmp_leftovers(&self) -> Vec<String> {
        fs::read_dir(&self.home)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect()
    }

    /// A command for `bin` with this home's environment.
    pub fn command(&self, bin: &Path) -> Command {
        let mut cmd = Command::new(bin);
        cmd.env("SPEC_KITTY_HOME", &self.home)
            .env("HOME", &self.home)
            .env("LOGNAME", TEST_USER)
            .env("USER", TEST_USER)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env_remove("KITTY_SYNCD_SOCKET")
            .current_dir(self.root());
        // A test runner started by a service manager must not hand its own
        // notify socket, listening sockets or journal to the daemon under test.
        for var in SERVICE_MANAGER_VARS {
            cmd.env_remove(var);
        }
        if let Some(s) = &self.socket_override {
            cmd.env("KITTY_SYNCD_SOCKET", s);
        }
        cmd
    }

    /// Runs `kitty-sync <args>` to completion.
    pub fn client(&self, args: &[&str]) -> Output {
        let mut cmd = self.command(&client_bin());
        cmd.args(args);
        run_with_guard(cmd, None)
    }

    /// Runs `kitty-sync <args>` with `stdin` as its input.
    pub fn client_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut cmd = self.command(&client_bin());
        cmd.args(args);
        run_with_guard(cmd, Some(stdin.as_bytes()))
    }

    /// Runs `kitty-syncd <args>` to completion (e.g. `status`, or a second `run`).
    pub fn daemon_cmd(&self, args: &[&str]) -> Output {
        let mut cmd = self.command(&daemon_bin());
        cmd.args(args);
        run_with_guard(cmd, None)
    }

    /// `kitty-sync emit <ty> --payload <payload> --json`, asserting exit 0;
    /// returns the parsed JSON answer (`event_id`, `lamport_clock`, `path`, `duplicate`).
    pub fn client_emit(&self, ty: &str, payload: &Value) -> Value {
        let out = self.client(&["emit", ty, "--payload", &payload.to_string(), "--json"]);
        out.assert_code(0);
        out.json()
    }

    /// Starts `kitty-syncd run` and waits until `/v1/health` answers 200.
    pub fn start_daemon(&self) -> Daemon {
        let mut d = self.spawn_daemon();
        d.wait_ready();
        d
    }

    /// Starts `kitty-syncd run` without waiting for it.
    pub fn spawn_daemon(&self) -> Daemon {
        self.spawn_daemon_with(&[])
    }

    /// Starts `kitty-syncd run` with extra environment variables; an empty
    /// value removes the variable instead.
    pub fn spawn_daemon_with(&self, env: &[(&str, &str)]) -> Daemon {
        self.spawn_daemon_tweaked(env, |_| {})
    }

    /// [`Self::spawn_daemon_with`], letting `tweak` change the command last:
    /// arguments after `run` (`--log-file`), limits set in `pre_exec`.
    pub fn spawn_daemon_tweaked(
        &self,
        env: &[(&str, &str)],
        tweak: impl FnOnce(&mut Command),
    ) -> Daemon {
        let mut cmd = self.command(&daemon_bin());
        for (k, v) in env {
            if v.is_empty() {
                cmd.env_remove(k);
            } else {
                cmd.env(k, v);
            }
        }
        cmd.arg("run");
        tweak(&mut cmd);
        self.spawn_daemon_cmd(cmd)
    }

    /// Starts `kitty-syncd run` with its home on a file system of its own,
    /// `size` bytes large: a tmpfs mounted over the home (holding a copy of
    /// what it held) in a private mount namespace (`unshare`), so that filling
    /// it is a real "no space left on device". We see its files only through
    /// [`Daemon::view`]; put the socket outside the home
    /// ([`Self::set_socket_override`]) to talk to it as usual.
    ///
    /// `None` where unprivileged user namespaces are not available.
    pub fn spawn_daemon_on_tmpfs(&self, size: u64) -> Option<Daemon> {
        if !private_mounts_work() {
            return None;
        }
        let n = self.daemons_started.load(Ordering::SeqCst);
        let seed = self.root().join(format!("tmpfs-seed-{n}"));
        fs::create_dir(&seed).expect("seed dir");
        for entry in fs::read_dir(&self.home).expect("read home").flatten() {
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                fs::copy(entry.path(), seed.join(entry.file_name())).expect("seed the tmpfs");
            }
        }
        let mut cmd = self.command(Path::new("unshare"));
        cmd.args(["--user", "--map-root-user", "--mount", "sh", "-c"])
            .arg(
                r#"mount -t tmpfs -o "size=$1,mode=0700" kitty-test "$2" && cp -a "$3"/. "$2"/ && exec "$4" run"#,
            )
            .arg("sh")
            .arg(size.to_string())
            .arg(&self.home)
            .arg(&seed)
            .arg(daemon_bin());
        Some(self.spawn_daemon_cmd(cmd))
    }

    fn spawn_daemon_cmd(&self, mut cmd: Command) -> Daemon {
        let n = self.daemons_started.fetch_add(1, Ordering::SeqCst);
        let log = self.root().join(format!("daemon-{n}.log"));
        let file = fs::File::create(&log).expect("daemon log");
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn kitty-syncd run: {e}"));
        Daemon {
            pid: child.id(),
            child,
            exited: None,
            socket: self.socket(),
            log,
        }
    }

    /// A socket client for this home's socket (whether or not a daemon runs).
    pub fn api(&self) -> Api {
        Api::new(self.socket())
    }

    /// queue.db, read through a separate SQLite connection.
    pub fn db(&self) -> Db {
        Db::new(self.file("queue.db"))
    }
}

// ---------------------------------------------------------------------------
// Daemon
// ---------------------------------------------------------------------------

/// A running `kitty-syncd run`. Dropping it SIGKILLs it (a stopped one too).
pub struct Daemon {
    child: Child,
    pid: u32,
    exited: Option<ExitStatus>,
    socket: PathBuf,
    log: PathBuf,
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `path` as the daemon sees it, through `/proc/<pid>/root`: a daemon
    /// started by [`TestHome::spawn_daemon_on_tmpfs`] has mounts of its own.
    /// (Not for SQLite, which resolves the link back to our own view.)
    pub fn view(&self, path: &Path) -> PathBuf {
        Path::new(&format!("/proc/{}/root", self.pid)).join(path.strip_prefix("/").unwrap_or(path))
    }

    pub fn api(&self) -> Api {
        Api::new(self.socket.clone())
    }

    /// Its stdout and stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process has exited (without waiting).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().expect("try_wait");
        }
        self.exited
    }

    /// Waits until `/v1/health` answers 200; panics (with the log) if the
    /// daemon exits first or does not get ready within the hang guard.
    pub fn wait_ready(&mut self) {
        let api = self.api();
        let start = Instant::now();
        loop {
            if let Some(st) = self.try_exit() {
                panic!(
                    "kitty-syncd exited before it was ready ({st}):\n{}",
                    self.log()
                );
            }
            if let Ok(r) = api.try_request("GET", "/v1/health", None)
                && r.status == 200
            {
                return;
            }
            if start.elapsed() > HANG_GUARD {
                panic!(
                    "kitty-syncd not ready within {HANG_GUARD:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, sig: libc::c_int) {
        send_signal(self.pid, sig);
    }

    /// Waits for the process to exit (hang guard), returning its status.
    pub fn wait_exit(&mut self) -> ExitStatus {
        if let Some(st) = self.exited {
            return st;
        }
        let st = wait_with_guard(&mut self.child, HANG_GUARD).unwrap_or_else(|| {
            panic!(
                "kitty-syncd did not exit within {HANG_GUARD:?}:\n{}",
                self.log()
            )
        });
        self.exited = Some(st);
        st
    }

    /// SIGTERM, then wait; returns the exit status.
    pub fn terminate(mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit()
    }

    /// SIGTERM, wait, and assert a clean exit 0.
    pub fn stop_gracefully(self) {
        let log_path = self.log.clone();
        let st = self.terminate();
        assert_eq!(
            st.code(),
            Some(0),
            "kitty-syncd did not exit 0 on SIGTERM ({st}):\n{}",
            fs::read_to_string(log_path).unwrap_or_default()
        );
    }

    /// SIGKILL, then wait (reaps it so the pid and lock are gone).
    pub fn kill9(mut self) {
        self.signal(libc::SIGKILL);
        self.wait_exit();
    }

    /// SIGSTOP: the daemon stays alive but answers nothing.
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// SIGCONT.
    pub fn thaw(&self) {
        self.signal(libc::SIGCONT);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.try_exit().is_none() {
            // SAFETY: signalling our own child; SIGKILL also ends a stopped process.
            unsafe {
                libc::kill(self.pid as libc::pid_t, libc::SIGKILL);
            }
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- kitty-syncd (pid {}) log ---\n{}", self.pid, self.log());
        }
    }
}

// ---------------------------------------------------------------------------
// HTTP over the Unix socket
// ---------------------------------------------------------------------------

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not the expected JSON ({e}): {} {}",
                self.status,
                self.text()
            )
        })
    }

    /// The body as an [`ErrorBody`].
    pub fn error(&self) -> ErrorBody {
        self.json()
    }

    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Self {
        assert_eq!(
            self.status,
            status,
            "unexpected HTTP status; body: {}",
            self.text()
        );
        self
    }
}

/// A client of the socket API. Each request uses its own connection with
/// `Connection: close`.
#[derive(Debug, Clone)]
pub struct Api {
    socket: PathBuf,
}

impl Api {
    pub fn new(socket: PathBuf) -> Self {
        Self { socket }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends raw bytes and reads the answer until the server closes.
    pub fn try_raw(&self, bytes: &[u8]) -> std::io::Result<Response> {
        let stream = UnixStream::connect(&self.socket)?;
        stream.set_read_timeout(Some(HANG_GUARD))?;
        stream.set_write_timeout(Some(HANG_GUARD))?;
        // Write from another thread: the server may answer (413) and close
        // before it has read the whole body.
        let mut writer = stream.try_clone()?;
        let bytes = bytes.to_vec();
        let w = std::thread::spawn(move || {
            let _ = writer.write_all(&bytes);
            let _ = writer.flush();
        });
        let mut reader = stream;
        let mut buf = Vec::new();
        let read = reader.read_to_end(&mut buf);
        let _ = w.join();
        match read {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !buf.is_empty() => {}
            Err(e) => return Err(e),
        }
        parse_response(&buf)
    }

    pub fn raw(&self, bytes: &[u8]) -> Response {
        self.try_raw(bytes)
            .unwrap_or_else(|e| panic!("request over {} failed: {e}", self.socket.display()))
    }

    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> std::io::Result<Response> {
        let mut req =
            format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
        if let Some(b) = body {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        if let Some(b) = body {
            bytes.extend_from_slice(b);
        }
        self.try_raw(&bytes)
    }

    pub fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> Response {
        self.try_request(method, path, body).unwrap_or_else(|e| {
            panic!("{method} {path} over {} failed: {e}", self.socket.display())
        })
    }

    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, None)
    }

    /// `POST /v1/events` with raw bytes as the body.
    pub fn post_events_raw(&self, body: &[u8]) -> Response {
        self.request("POST", "/v1/events", Some(body))
    }

    /// `POST /v1/events` with a JSON body (an object or an array).
    pub fn post_events(&self, body: &Value) -> Response {
        self.post_events_raw(body.to_string().as_bytes())
    }

    /// Posts one event and asserts 202; returns what the daemon assigned.
    #[track_caller]
    pub fn emit(&self, event: &Value) -> Accepted {
        let r = self.post_events(event);
        r.assert_status(202);
        let mut resp: EmitResponse = r.json();
        assert_eq!(resp.status, "queued");
        assert_eq!(
            resp.events.len(),
            1,
            "one event in, one answer out: {}",
            r.text()
        );
        resp.events.remove(0)
    }

    /// Posts an array and asserts 202; returns the answers in order.
    #[track_caller]
    pub fn emit_batch(&self, events: &[Value]) -> Vec<Accepted> {
        let r = self.post_events(&Value::Array(events.to_vec()));
        r.assert_status(202);
        let resp: EmitResponse = r.json();
        assert_eq!(resp.status, "queued");
        assert_eq!(resp.events.len(), events.len(), "answers for every event");
        resp.events
    }

    pub fn status(&self) -> Status {
        let r = self.get("/v1/status");
        r.assert_status(200);
        r.json()
    }

    pub fn health(&self) -> Health {
        let r = self.get("/v1/health");
        r.assert_status(200);
        r.json()
    }

    pub fn queue(&self, limit: usize) -> QueueView {
        let r = self.get(&format!("/v1/queue?limit={limit}"));
        r.assert_status(200);
        r.json()
    }
}

/// Parses an HTTP/1.1 answer read to its end (Content-Length or chunked).
pub fn parse_response(buf: &[u8]) -> std::io::Result<Response> {
    let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            bad(format!(
                "no complete HTTP head in {:?}",
                String::from_utf8_lossy(buf)
            ))
        })?;
    let head = std::str::from_utf8(&buf[..split]).map_err(|e| bad(e.to_string()))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &buf[split + 4..];
    let find = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    let body = if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(rest).ok_or_else(|| bad("bad chunked body".into()))?
    } else if let Some(len) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
        if rest.len() < len {
            return Err(bad(format!(
                "body cut short: {} of {len} bytes",
                rest.len()
            )));
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

// ---------------------------------------------------------------------------
// queue.db through a separate SQLite connection
// ---------------------------------------------------------------------------

/// One row of the `queue` table.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueRow {
    pub id: i64,
    pub event_id: String,
    pub event_type: String,
    pub data: String,
    pub timestamp: i64,
    pub retry_count: Option<i64>,
}

impl QueueRow {
    pub fn envelope(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("row {} data is not JSON: {e}", self.id))
    }

    pub fn lamport(&self) -> u64 {
        self.envelope()["lamport_clock"]
            .as_u64()
            .unwrap_or_else(|| {
                panic!(
                    "row {} has no integer lamport_clock: {}",
                    self.id, self.data
                )
            })
    }
}

/// The schema the spec-kitty CLI creates (CONTRACT.md §1).
pub const CLI_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT UNIQUE NOT NULL,
    event_type TEXT NOT NULL,
    data TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    retry_count INTEGER DEFAULT 0
);
CREATE INDEX IF NOT EXISTS idx_timestamp ON queue(timestamp);
CREATE INDEX IF NOT EXISTS idx_retry ON queue(retry_count);";

/// queue.db opened by a separate connection, as another process would.
/// Each call opens and closes its own connection.
#[derive(Debug, Clone)]
pub struct Db {
    path: PathBuf,
}

impl Db {
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    pub fn exists(&self) -> bool {
        self.path.exists()
    }

    fn with_conn<T>(
        &self,
        create: bool,
        f: impl for<'c> AsyncFnOnce(&'c mut SqliteConnection) -> Result<T, sqlx::Error>,
    ) -> T {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let mut opts = SqliteConnectOptions::new()
                .filename(&self.path)
                .create_if_missing(create)
                .busy_timeout(Duration::from_secs(10));
            if create {
                // What Python's sqlite3 module leaves: a rollback journal.
                opts = opts.journal_mode(SqliteJournalMode::Delete);
            }
            let mut conn = SqliteConnection::connect_with(&opts)
                .await
                .unwrap_or_else(|e| panic!("open {}: {e}", self.path.display()));
            let out = f(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("sqlite on {}: {e}", self.path.display()));
            let _ = conn.close().await;
            out
        })
    }

    /// Creates queue.db the way the spec-kitty CLI does (optionally with the
    /// later nullable `coalesce_key` column).
    pub fn create_cli_schema(&self, with_coalesce_key: bool) {
        self.with_conn(true, async move |c| {
            sqlx::raw_sql(CLI_SCHEMA).execute(&mut *c).await?;
            if with_coalesce_key {
                sqlx::query("ALTER TABLE queue ADD COLUMN coalesce_key TEXT")
                    .execute(&mut *c)
                    .await?;
            }
            Ok(())
        })
    }

    /// Every row, in drain order (`ORDER BY timestamp, id`).
    pub fn rows(&self) -> Vec<QueueRow> {
        self.with_conn(false, async |c| {
            let rows: Vec<(i64, String, String, String, i64, Option<i64>)> = sqlx::query_as(
                "SELECT id, event_id, event_type, data, timestamp, retry_count FROM queue ORDER BY timestamp, id",
            )
            .fetch_all(&mut *c)
            .await?;
            Ok(rows
                .into_iter()
                .map(|(id, event_id, event_type, data, timestamp, retry_count)| QueueRow {
                    id,
                    event_id,
                    event_type,
                    data,
                    timestamp,
                    retry_count,
                })
                .collect())
        })
    }

    pub fn count(&self) -> i64 {
        self.with_conn(false, async |c| {
            sqlx::query_scalar("SELECT COUNT(*) FROM queue")
                .fetch_one(&mut *c)
                .await
        })
    }

    /// Rows with this event_id (0 or 1 when the table is intact).
    pub fn rows_with_event_id(&self, event_id: &str) -> Vec<QueueRow> {
        self.rows()
            .into_iter()
            .filter(|r| r.event_id == event_id)
            .collect()
    }

    /// Runs one or more statements; returns the rows affected.
    pub fn execute(&self, sql: &str) -> u64 {
        let sql = sql.to_owned();
        self.with_conn(false, async move |c| {
            Ok(sqlx::raw_sql(AssertSqlSafe(sql))
                .execute(&mut *c)
                .await?
                .rows_affected())
        })
    }

    /// Inserts a row exactly as the Python CLI does.
    pub fn insert_like_cli(&self, event_id: &str, event_type: &str, data: &str, timestamp: i64) {
        let (event_id, event_type, data) =
            (event_id.to_owned(), event_type.to_owned(), data.to_owned());
        self.with_conn(false, async move |c| {
            sqlx::query(
                "INSERT INTO queue (event_id, event_type, data, timestamp, retry_count) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(event_id)
            .bind(event_type)
            .bind(data)
            .bind(timestamp)
            .bind(0i64)
            .execute(&mut *c)
            .await?;
            Ok(())
        })
    }

    /// `kitty_meta.value` for `key`, if the table and the row exist.
    pub fn meta(&self, key: &str) -> Option<String> {
        let key = key.to_owned();
        self.with_conn(false, async move |c| {
            let has: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'kitty_meta'",
            )
            .fetch_one(&mut *c)
            .await?;
            if has == 0 {
                return Ok(None);
            }
            sqlx::query_scalar("SELECT value FROM kitty_meta WHERE key = ?")
                .bind(key)
                .fetch_optional(&mut *c)
                .await
        })
    }

    /// Column names of `table`.
    pub fn columns(&self, table: &str) -> Vec<String> {
        let sql = format!("SELECT name FROM pragma_table_info('{table}')");
        self.with_conn(false, async move |c| {
            sqlx::query_scalar(AssertSqlSafe(sql))
                .fetch_all(&mut *c)
                .await
        })
    }
}

// ---------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------

/// `n` status drafts for WPs `offset`, `offset + 1`, ...
pub fn status_drafts(n: usize, offset: usize) -> Vec<Value> {
    (0..n).map(|i| status_draft((offset + i) as u32)).collect()
}

/// A valid WPStatusChanged draft for `WP<nn>`.
pub fn status_draft(wp: u32) -> Value {
    json!({
        "event_type": "WPStatusChanged",
        "aggregate_id": format!("WP{:02}", wp % 100),
        "payload": {"wp_id": format!("WP{:02}", wp % 100), "previous_status": "planned", "new_status": "doing"}
    })
}

/// One valid draft of each 028 event type (and both WPStatusChanged shapes),
/// without aggregate_id/aggregate_type so the daemon derives them. Each item:
/// (draft, expected aggregate_id, expected aggregate_type).
pub fn sample_drafts() -> Vec<(Value, &'static str, &'static str)> {
    vec![
        (
            json!({"event_type": "WPStatusChanged", "payload": {"wp_id": "WP01", "previous_status": "planned", "new_status": "doing"}}),
            "WP01",
            "WorkPackage",
        ),
        (
            json!({"event_type": "WPStatusChanged", "payload": {"wp_id": "WP02", "from_lane": "planned", "to_lane": "claimed", "actor": "claude"}}),
            "WP02",
            "WorkPackage",
        ),
        (
            json!({"event_type": "WPCreated", "payload": {"wp_id": "WP03", "title": "Write tests", "feature_slug": "001-demo"}}),
            "WP03",
            "WorkPackage",
        ),
        (
            json!({"event_type": "WPAssigned", "payload": {"wp_id": "WP04", "agent_id": "claude", "phase": "implementation"}}),
            "WP04",
            "WorkPackage",
        ),
        (
            json!({"event_type": "FeatureCreated", "payload": {"feature_slug": "001-demo", "feature_number": "001", "target_branch": "main", "wp_count": 3}}),
            "001-demo",
            "Feature",
        ),
        (
            json!({"event_type": "FeatureCompleted", "payload": {"feature_slug": "001-demo", "total_wps": 3}}),
            "001-demo",
            "Feature",
        ),
        (
            json!({"event_type": "HistoryAdded", "payload": {"wp_id": "WP05", "entry_type": "note", "entry_content": "looks good"}}),
            "WP05",
            "WorkPackage",
        ),
        (
            json!({"event_type": "ErrorLogged", "payload": {"error_type": "runtime", "error_message": "boom"}}),
            "error",
            "Feature",
        ),
        (
            json!({"event_type": "DependencyResolved", "payload": {"wp_id": "WP06", "dependency_wp_id": "WP01", "resolution_type": "completed"}}),
            "WP06",
            "WorkPackage",
        ),
    ]
}

/// A complete, valid envelope as another producer (the spec-kitty CLI) builds
/// it, including a later-CLI extra field.
pub fn cli_envelope(event_id: &str, lamport: u64) -> Value {
    json!({
        "event_id": event_id,
        "event_type": "WPStatusChanged",
        "aggregate_id": "WP07",
        "aggregate_type": "WorkPackage",
        "payload": {"wp_id": "WP07", "from_lane": "planned", "to_lane": "in_progress", "actor": "user"},
        "node_id": "0123456789ab",
        "lamport_clock": lamport,
        "causation_id": null,
        "timestamp": "2026-02-04T13:47:09.123456+00:00",
        "team_slug": "acme",
        "project_uuid": null,
        "project_slug": null,
        "git_branch": "main"
    })
}

/// Asserts that `data` (a queue row) is a valid envelope by the contract's rules.
#[track_caller]
pub fn assert_valid_envelope(data: &str) -> Value {
    let v: Value =
        serde_json::from_str(data).unwrap_or_else(|e| panic!("data is not JSON ({e}): {data}"));
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("data is not an object: {data}"));
    if let Err(e) = kitty_proto::envelope::validate_envelope(data, obj) {
        panic!(
            "data is not a valid envelope ({}: {}): {data}",
            e.field, e.rule
        );
    }
    v
}

/// Asserts the version header is present on a response.
#[track_caller]
pub fn assert_version_header(r: &Response) {
    let v = r.header(VERSION_HEADER);
    assert!(
        v.is_some_and(|v| !v.is_empty()),
        "response {} lacks {VERSION_HEADER}: {:?}",
        r.status,
        r.headers
    );
}
