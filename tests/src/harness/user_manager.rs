//! A real systemd user manager for the service tests, in a private mount and
//! pid namespace so that it sees nothing of the machine's own /run and leaves
//! nothing behind.
//!
//! `unshare --mount --pid --fork --kill-child` runs a small shell as pid 1 of
//! a new pid namespace; it mounts a tmpfs over `/run/systemd` (with the
//! `system/` directory that tells systemd it is the init system's world) and
//! one over `/run/user`, and starts `/lib/systemd/systemd --user` with
//! `XDG_RUNTIME_DIR=/run/user/0`. That directory is not under `/tmp` on
//! purpose: the unit's `PrivateTmp=yes` would hide a notify socket there.
//! Commands run inside with `nsenter`. Killing `unshare` kills its child
//! (`--kill-child`), and the death of a namespace's pid 1 kills every process
//! in it: the manager and every daemon it started go with the test, whether
//! it passes or panics.
//!
//! Needs root (a mount namespace), `unshare` and `nsenter` (util-linux) and
//! systemd; [`UserManager::start`] says which is missing so the test can skip.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{HANG_GUARD, Output, is_root, run_with_guard, wait_with_guard};

/// The systemd binary Debian's `systemd` package installs.
pub const SYSTEMD: &str = "/lib/systemd/systemd";
/// `XDG_RUNTIME_DIR` inside the namespace (on its own tmpfs).
pub const RUNTIME_DIR: &str = "/run/user/0";
/// PATH of every process inside.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const NAMESPACE_INIT: &str = r#"set -e
mkdir -p /run/systemd /run/user
mount -t tmpfs -o mode=0755 kitty-test /run/systemd
mkdir /run/systemd/system
mount -t tmpfs -o mode=0755 kitty-test /run/user
mkdir -m 0700 /run/user/0
"$0" --user --log-target=console &
wait
"#;

/// A running user manager. Dropping it kills the namespace and all in it.
pub struct UserManager {
    unshare: Child,
    /// pid (as this process sees it) of the namespace's pid 1, for nsenter.
    init_pid: u32,
    user_home: PathBuf,
    log: PathBuf,
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        || ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
            .iter()
            .any(|d| Path::new(d).join(tool).is_file())
}

/// Why a real user manager cannot run here, if it cannot.
pub fn unavailable() -> Option<String> {
    if !is_root() {
        return Some("not root, so no private mount namespace for a user manager".into());
    }
    for tool in ["unshare", "nsenter", "systemctl"] {
        if !on_path(tool) {
            return Some(format!("{tool} is not installed"));
        }
    }
    if !Path::new(SYSTEMD).is_file() {
        return Some(format!(
            "{SYSTEMD} is missing (apt-get install systemd provides it)"
        ));
    }
    None
}

/// The pid of a child of `parent`, from /proc.
fn child_of(parent: u32) -> Option<u32> {
    let kids = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).ok();
    if let Some(pid) = kids.and_then(|k| k.split_whitespace().next()?.parse().ok()) {
        return Some(pid);
    }
    std::fs::read_dir("/proc").ok()?.find_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
        let ppid: u32 = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        (ppid == parent).then_some(pid)
    })
}

/// Whether `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().to_owned())
        })
        .is_some_and(|rest| !rest.starts_with('Z') && !rest.starts_with('X'))
}

impl UserManager {
    /// Starts a user manager whose `HOME` is `user_home` (its units are read
    /// from `<user_home>/.config/systemd/user`); its own log goes to
    /// `<log_dir>/systemd-user.log`. Err: why it cannot run here (skip).
    pub fn start(user_home: &Path, log_dir: &Path) -> Result<Self, String> {
        if let Some(why) = unavailable() {
            return Err(why);
        }
        let log = log_dir.join("systemd-user.log");
        let file = std::fs::File::create(&log).expect("user manager log");
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--mount",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "--propagation",
            "private",
            "sh",
            "-c",
            NAMESPACE_INIT,
            SYSTEMD,
        ])
        .env_clear()
        .envs(Self::env_of(user_home))
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file);
        // SAFETY: prctl is async-signal-safe. Should this test process die
        // without running destructors, unshare (and with it the namespace) dies too.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let unshare = cmd
            .spawn()
            .map_err(|e| format!("cannot run unshare: {e}"))?;
        let mut um = Self {
            init_pid: 0,
            unshare,
            user_home: user_home.to_path_buf(),
            log,
        };
        let start = Instant::now();
        um.init_pid = loop {
            if let Some(st) = um.unshare.try_wait().expect("try_wait") {
                let log = um.log();
                if log.contains("Operation not permitted") {
                    return Err(format!("unshare is not permitted here: {}", log.trim()));
                }
                panic!("the user manager's namespace ended at once ({st}):\n{log}");
            }
            if let Some(pid) = child_of(um.unshare.id()) {
                break pid;
            }
            assert!(start.elapsed() < HANG_GUARD, "unshare started no child");
            std::thread::sleep(Duration::from_millis(20));
        };
        um.wait_running();
        Ok(um)
    }

    /// The environment of the manager and of every command run inside.
    fn env_of(user_home: &Path) -> Vec<(String, String)> {
        [
            ("HOME", user_home.to_string_lossy().as_ref()),
            ("XDG_RUNTIME_DIR", RUNTIME_DIR),
            ("PATH", PATH),
            ("USER", "root"),
            ("LOGNAME", "root"),
            ("LANG", "C.UTF-8"),
            ("SYSTEMD_PAGER", ""),
            ("SYSTEMD_COLORS", "0"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn wait_running(&mut self) {
        let start = Instant::now();
        loop {
            let out = self.systemctl(&["is-system-running"]);
            let state = out.stdout.trim();
            if state == "running" || state == "degraded" {
                return;
            }
            if let Some(st) = self.unshare.try_wait().expect("try_wait") {
                panic!("the user manager exited ({st}):\n{}", self.log());
            }
            if start.elapsed() > HANG_GUARD {
                panic!(
                    "the user manager did not come up within {HANG_GUARD:?} (last: {out}):\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `HOME` of the manager and of the commands run inside.
    pub fn user_home(&self) -> &Path {
        &self.user_home
    }

    /// `<HOME>/.config/systemd/user`.
    pub fn unit_dir(&self) -> PathBuf {
        self.user_home.join(".config/systemd/user")
    }

    /// The manager's own log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `program args` inside the namespace, with the manager's environment
    /// plus `env` (a variable with an empty value is left out).
    pub fn command(&self, program: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--target={}", self.init_pid))
            .args(["--mount", "--pid", "--"])
            .arg(program)
            .args(args)
            .env_clear()
            .envs(Self::env_of(&self.user_home));
        for (k, v) in env {
            if !v.is_empty() {
                cmd.env(k, v);
            }
        }
        cmd.current_dir("/");
        cmd
    }

    /// Runs `program args` inside to completion (hang guard).
    pub fn run(&self, program: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
        run_with_guard(self.command(program, args, env), None)
    }

    /// `systemctl --user args`.
    pub fn systemctl(&self, args: &[&str]) -> Output {
        let mut all = vec!["--user", "--no-pager"];
        all.extend_from_slice(args);
        self.run(Path::new("systemctl"), &all, &[])
    }

    /// One property of a unit (`systemctl --user show -p NAME --value`).
    pub fn show(&self, unit: &str, property: &str) -> String {
        let out = self.systemctl(&["show", unit, "-p", property, "--value"]);
        out.assert_code(0);
        out.stdout.trim().to_owned()
    }

    /// Waits until every `(property, value)` of `unit` holds; panics with the
    /// unit's status and both logs when they do not within `timeout`.
    pub fn wait_props(&self, unit: &str, want: &[(&str, &str)], timeout: Duration) {
        let start = Instant::now();
        loop {
            let seen: Vec<(String, String)> = want
                .iter()
                .map(|(p, _)| (p.to_string(), self.show(unit, p)))
                .collect();
            if want.iter().zip(&seen).all(|((_, v), (_, s))| s == v) {
                return;
            }
            if start.elapsed() > timeout {
                panic!(
                    "{unit} did not reach {want:?} within {timeout:?}; last seen {seen:?}\n{}",
                    self.describe(unit)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `systemctl status` of `unit` and the manager's log, for failure messages.
    pub fn describe(&self, unit: &str) -> String {
        let status = self.systemctl(&["status", unit]);
        format!(
            "--- systemctl --user status {unit} ---\n{}{}\n--- user manager log ---\n{}",
            status.stdout,
            status.stderr,
            self.log()
        )
    }

    /// Writes `<unit>.d/<name>.conf` next to the units (a drop-in overriding
    /// some settings); `daemon-reload` makes the manager read it.
    pub fn drop_in(&self, unit: &str, name: &str, text: &str) {
        let dir = self.unit_dir().join(format!("{unit}.d"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.conf")), text).unwrap();
    }
}

impl Drop for UserManager {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- user manager log ---\n{}", self.log());
        }
        // unshare ignores SIGTERM while it waits; SIGKILL makes its
        // --kill-child take pid 1, and with it the whole namespace.
        let _ = self.unshare.kill();
        if wait_with_guard(&mut self.unshare, HANG_GUARD).is_none() {
            eprintln!(
                "unshare (pid {}) did not exit after SIGKILL",
                self.unshare.id()
            );
        }
        // A namespace's dying pid 1 first waits for every other process in
        // it to be gone; once it is a zombie (or reaped), nothing of this
        // test runs any more.
        let start = Instant::now();
        while alive(self.init_pid) && start.elapsed() < HANG_GUARD {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
