//! Issue 11: kitty-syncd as a real systemd user service. `kitty-syncd install`
//! runs against a real user manager (in a private namespace, see
//! `harness::user_manager`): enable --now, readiness, restart after kill -9,
//! reload, stop, socket activation, the watchdog, RestartPreventExitStatus,
//! uninstall, and a state directory under /tmp.
//!
//! Skipped, saying why, where there is no root, unshare or systemd. The homes
//! live under the target directory, not /tmp: `PrivateTmp=yes` hides /tmp
//! from the service. Each test's manager, and every daemon it started, dies
//! with the test.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kitty_tests::harness::user_manager::UserManager;
use kitty_tests::harness::*;
use serde_json::json;

const SERVICE: &str = "kitty-syncd.service";
const SOCKET: &str = "kitty-syncd.socket";
/// How long systemd may take to start, restart or stop the daemon here (a
/// loaded machine, a debug build).
const SERVICE_GUARD: Duration = Duration::from_secs(60);

/// A user manager (dropped first: it takes every daemon with it) and a home
/// outside /tmp whose root is the manager's HOME.
struct Setup {
    um: UserManager,
    home: TestHome,
}

fn setup() -> Option<Setup> {
    let home = TestHome::new_in(Path::new(env!("CARGO_TARGET_TMPDIR")));
    match UserManager::start(home.root(), home.root()) {
        Ok(um) => Some(Setup { um, home }),
        Err(why) => {
            eprintln!("SKIPPED: {why}; the service was not tried under a real systemd");
            None
        }
    }
}

impl Setup {
    /// `SPEC_KITTY_HOME` (and `KITTY_SYNCD_SOCKET` when the home moved it) as
    /// `install` must see them.
    fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![("SPEC_KITTY_HOME", self.home.path().display().to_string())];
        if self.home.socket() != self.home.file("kitty-syncd.sock") {
            env.push((
                "KITTY_SYNCD_SOCKET",
                self.home.socket().display().to_string(),
            ));
        }
        env
    }

    fn kitty_syncd(&self, args: &[&str]) -> Output {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.um.run(&daemon_bin(), args, &env)
    }

    /// Where the daemon's stdout and stderr go. There is no journald in the
    /// namespace, so a drop-in sends them to a file instead.
    fn service_log(&self) -> PathBuf {
        self.home.root().join("service.log")
    }

    fn log_to_file(&self) {
        self.um.drop_in(
            SERVICE,
            "test-log",
            &format!(
                "[Service]\nStandardOutput=append:{}\nStandardError=inherit\n",
                self.service_log().display()
            ),
        );
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.service_log()).unwrap_or_default()
    }

    fn install(&self) {
        let out = self.kitty_syncd(&["install", "--systemd"]);
        assert_eq!(
            out.code(),
            Some(0),
            "install failed:\n{out}\n{}",
            self.um.describe(SERVICE)
        );
    }

    fn is_active(&self, unit: &str) -> String {
        self.um
            .systemctl(&["is-active", unit])
            .stdout
            .trim()
            .to_owned()
    }

    fn main_pid(&self) -> u32 {
        self.um.show(SERVICE, "MainPID").parse().expect("MainPID")
    }

    /// Waits until the service runs a main process other than `not` and its
    /// socket answers.
    fn wait_running_other_than(&self, not: u32) -> u32 {
        let pid = eventually("a new main process", SERVICE_GUARD, || {
            let pid = self.main_pid();
            (pid != 0 && pid != not && self.show_is(&[("ActiveState", "active")])).then_some(pid)
        });
        eventually("the restarted daemon's socket", SERVICE_GUARD, || {
            self.home
                .api()
                .try_request("GET", "/v1/health", None)
                .ok()
                .filter(|r| r.status == 200)
        });
        pid
    }

    fn show_is(&self, want: &[(&str, &str)]) -> bool {
        want.iter().all(|(p, v)| self.um.show(SERVICE, p) == *v)
    }
}

fn payload(n: u32) -> serde_json::Value {
    json!({"wp_id": format!("WP{n:02}"), "previous_status": "planned", "new_status": "doing"})
}

#[test]
fn install_restart_reload_stop_activation_and_uninstall_under_a_real_user_manager() {
    let Some(s) = setup() else { return };
    let (home, um) = (&s.home, &s.um);
    s.log_to_file();
    s.install();
    assert_eq!(s.is_active(SERVICE), "active", "{}", um.describe(SERVICE));
    assert_eq!(s.is_active(SOCKET), "active");
    let status = home.api().status();
    assert_eq!(status.supervisor.map(|k| k.as_str()), Some("systemd"));
    assert_eq!(
        um.show(SERVICE, "StatusText").split(',').next(),
        Some("queue 0 events")
    );

    let first = home.client_emit("WPStatusChanged", &payload(1));
    assert_eq!(first["path"], "daemon", "{first}");

    // kill -9: systemd restarts it, and the clock goes on from where it was.
    let pid = s.main_pid();
    um.systemctl(&["kill", "--signal=SIGKILL", "--kill-whom=main", SERVICE])
        .assert_code(0);
    let pid = s.wait_running_other_than(pid);
    assert_eq!(um.show(SERVICE, "NRestarts"), "1");
    let second = home.client_emit("WPStatusChanged", &payload(2));
    assert_eq!(second["path"], "daemon");
    let (first, second) = (
        first["lamport_clock"].as_u64().unwrap(),
        second["lamport_clock"].as_u64().unwrap(),
    );
    assert!(second > first, "{second} after {first}");

    // reload: config.toml is read again; the log level changes, the process stays.
    assert!(!s.log().contains("log filter is now debug"));
    home.write("config.toml", "[daemon]\nlog = \"debug\"\n");
    um.systemctl(&["reload", SERVICE]).assert_code(0);
    eventually("the new log level", HANG_GUARD, || {
        s.log().contains("log filter is now debug").then_some(())
    });
    let third = home.api().emit(&status_draft(3)).lamport_clock;
    assert!(third > second, "{third} after {second}");
    eventually("a debug line", HANG_GUARD, || {
        s.log().contains("queued").then_some(())
    });
    assert_eq!(s.main_pid(), pid, "a reload is not a restart");

    // stop: a clean exit, and clock.json covers the last value issued.
    um.systemctl(&["stop", SERVICE]).assert_code(0);
    um.wait_props(
        SERVICE,
        &[("ActiveState", "inactive"), ("Result", "success")],
        SERVICE_GUARD,
    );
    home.assert_clock_covers(third, "after a stop");
    assert_eq!(s.is_active(SOCKET), "active", "the socket keeps listening");

    // A connection while stopped starts the daemon through the socket.
    let a = home.api().emit(&status_draft(4));
    assert!(a.lamport_clock > third, "{} after {third}", a.lamport_clock);
    assert_eq!(s.is_active(SERVICE), "active");

    // uninstall: stopped and gone, the queue and the clock stay.
    s.kitty_syncd(&["uninstall", "--systemd"]).assert_code(0);
    assert!(!um.unit_dir().join(SERVICE).exists());
    assert!(!um.unit_dir().join(SOCKET).exists());
    assert_ne!(s.is_active(SERVICE), "active");
    assert_ne!(s.is_active(SOCKET), "active");
    assert!(!home.socket().exists(), "the socket goes with its unit");
    assert_eq!(home.db().count(), 4);
    home.assert_clock_covers(a.lamport_clock, "after uninstall");
}

/// The daemon pings the watchdog only after a real request through its own
/// socket succeeds; a stopped (SIGSTOP) daemon pings nothing and is restarted.
/// The state directory does not exist before install, and the socket lives
/// elsewhere, so only install can have created the ReadWritePaths= directory.
#[test]
fn the_watchdog_restarts_a_daemon_that_stops_answering() {
    let Some(mut s) = setup() else { return };
    std::fs::remove_dir(s.home.path()).unwrap();
    let socket = s.home.root().join("run/kitty-syncd.sock");
    s.home.set_socket_override(Some(socket));
    s.log_to_file();
    s.um.drop_in(
        SERVICE,
        "test-watchdog",
        "[Service]\nWatchdogSec=5\nTimeoutAbortSec=2\n",
    );
    s.install();
    assert_eq!(s.um.show(SERVICE, "WatchdogUSec"), "5s");
    let first = s.home.api().emit(&status_draft(1)).lamport_clock;
    let pid = s.main_pid();
    s.um.systemctl(&["kill", "--signal=SIGSTOP", "--kill-whom=main", SERVICE])
        .assert_code(0);
    s.wait_running_other_than(pid);
    assert_eq!(s.um.show(SERVICE, "NRestarts"), "1");
    let a = s.home.api().emit(&status_draft(2));
    assert!(a.lamport_clock > first, "{} after {first}", a.lamport_clock);
}

/// Exit 78 (config.toml is broken) is in RestartPreventExitStatus=: the
/// service fails once instead of restarting every RestartSec=2.
#[test]
fn a_broken_config_fails_the_service_without_a_restart_loop() {
    let Some(s) = setup() else { return };
    s.log_to_file();
    s.install();
    s.home.write("config.toml", "[sync\nbroken");
    let out = s.um.systemctl(&["restart", SERVICE]);
    assert_ne!(out.code(), Some(0), "{out}");
    let failed = [
        ("ActiveState", "failed"),
        ("Result", "exit-code"),
        ("ExecMainStatus", "78"),
        ("NRestarts", "0"),
    ];
    s.um.wait_props(SERVICE, &failed, SERVICE_GUARD);
    // Three times RestartSec: a restart would have come and failed again by now.
    std::thread::sleep(Duration::from_secs(6));
    assert!(s.show_is(&failed), "{}", s.um.describe(SERVICE));
    assert!(s.log().contains("config.toml is invalid"), "{}", s.log());

    // Fixed, it starts again.
    s.home
        .write("config.toml", "[sync]\nmax_queue_size = 100\n");
    let out = s.um.systemctl(&["start", SERVICE]);
    assert_eq!(
        out.code(),
        Some(0),
        "{out}\n{}\n--- service log ---\n{}",
        s.um.describe(SERVICE),
        s.log()
    );
    assert_eq!(s.home.api().status().queue.max_queue_size, 100);
}

/// With the state directory under /tmp, PrivateTmp=yes would hide it (and
/// ReadWritePaths= on it fails the start with 226/NAMESPACE): install renders
/// the unit without it, and the service runs.
#[test]
fn a_state_directory_under_tmp_gets_a_unit_that_starts() {
    // Made before the manager, so removed after it (and its daemon) are gone.
    let tmp = tempfile::Builder::new().prefix("ks").tempdir().unwrap();
    let Some(s) = setup() else { return };
    assert!(tmp.path().starts_with("/tmp"), "{}", tmp.path().display());
    let state = tmp.path().join("state");
    let socket = tmp.path().join("kitty-syncd.sock");
    let env = [
        ("SPEC_KITTY_HOME", state.to_str().unwrap()),
        ("KITTY_SYNCD_SOCKET", socket.to_str().unwrap()),
    ];
    let dry =
        s.um.run(&daemon_bin(), &["install", "--systemd", "--dry-run"], &env);
    dry.assert_code(0);
    assert!(!dry.stdout.contains("\nPrivateTmp=yes"), "{dry}");
    let out = s.um.run(&daemon_bin(), &["install", "--systemd"], &env);
    assert_eq!(out.code(), Some(0), "{out}\n{}", s.um.describe(SERVICE));
    assert_eq!(s.is_active(SERVICE), "active");
    let a = Api::new(socket).emit(&status_draft(1));
    assert_eq!(a.lamport_clock, 1);
    assert_eq!(Db::new(state.join("queue.db")).count(), 1);
}
