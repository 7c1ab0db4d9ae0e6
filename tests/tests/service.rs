//! Issue 4: kitty-syncd as a real service. Install files and commands, unit
//! verification, socket activation, readiness and watchdog notifications,
//! graceful shutdown under load, reload, log targets.
//!
//! The install tests here put recording stand-ins for systemctl and launchctl
//! on PATH, to check exactly what is written and run; everything else is the
//! real daemon. tests/systemd.rs runs the installed units under a real
//! systemd user manager.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kitty_tests::harness::*;

/// A stand-in for systemctl/launchctl that records its arguments, one call per line.
fn stub_tool(dir: &Path, name: &str, exit: i32) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = dir.join(format!("{name}.calls"));
    let script = format!(
        "#!/bin/sh\necho \"{name} $*\" >> '{}'\n[ {exit} -eq 0 ] || echo 'Failed to connect to bus' >&2\nexit {exit}\n",
        log.display()
    );
    let path = bin.join(name);
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    log
}

fn service_cmd(home: &TestHome, args: &[&str], path: &str) -> Output {
    let mut cmd = home.command(&daemon_bin());
    cmd.args(args)
        .env("HOME", home.root())
        .env("PATH", path)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_DATA_HOME");
    run_with_guard(cmd, None)
}

/// Splits dry-run output into (files written, commands run).
fn parse_plan(text: &str) -> (Vec<(String, String)>, Vec<String>) {
    let mut files = Vec::new();
    let mut commands = Vec::new();
    for chunk in text.split("==> ").filter(|c| !c.is_empty()) {
        let (head, body) = chunk.split_once('\n').unwrap_or((chunk, ""));
        if let Some(p) = head.strip_prefix("write ") {
            files.push((p.to_owned(), body.to_owned()));
        } else if let Some(c) = head.strip_prefix("run ") {
            commands.push(c.to_owned());
        } else if let Some(p) = head.strip_prefix("remove ") {
            files.push((p.to_owned(), String::new()));
        } else if head.starts_with("create ") {
            // A directory made before the files; the tests check it by name.
        } else {
            panic!("unexpected plan line {head:?} in:\n{text}");
        }
    }
    (files, commands)
}

fn path_with(dir: &Path) -> String {
    format!("{}:/usr/bin:/bin", dir.join("bin").display())
}

#[test]
fn systemd_install_writes_what_dry_run_shows_and_uninstall_keeps_the_queue() {
    let home = TestHome::new();
    let calls = stub_tool(home.root(), "systemctl", 0);
    let path = path_with(home.root());
    let dry = service_cmd(&home, &["install", "--systemd", "--dry-run"], &path);
    dry.assert_code(0);
    let (files, commands) = parse_plan(&dry.stdout);
    assert_eq!(files.len(), 2, "{dry}");
    assert!(
        dry.stdout
            .starts_with(&format!("==> create {}\n", home.path().display())),
        "ReadWritePaths= must exist before the first start: {dry}"
    );
    for (p, _) in &files {
        assert!(!Path::new(p).exists(), "--dry-run wrote {p}");
    }
    assert!(!calls.exists(), "--dry-run ran systemctl");
    assert_eq!(
        commands,
        vec![
            "systemctl --user daemon-reload",
            "systemctl --user enable --now kitty-syncd.socket kitty-syncd.service"
        ]
    );
    let unit_dir = home.root().join(".config/systemd/user");
    assert_eq!(
        files[0].0,
        unit_dir.join("kitty-syncd.service").display().to_string()
    );
    let service = &files[0].1;
    let real = std::fs::canonicalize(daemon_bin()).unwrap();
    assert!(
        service.contains(&format!("ExecStart={} run", real.display())),
        "{service}"
    );
    assert!(
        service.contains("Type=notify")
            && service.contains("WatchdogSec=")
            && service.contains("NoNewPrivileges=yes")
    );
    assert!(service.contains(&format!("ReadWritePaths={}", home.path().display())));

    let installed = service_cmd(&home, &["install", "--systemd"], &path);
    installed.assert_code(0);
    for (p, text) in &files {
        assert_eq!(
            &std::fs::read_to_string(p).unwrap(),
            text,
            "{p} differs from the dry run"
        );
    }
    let ran: Vec<String> = std::fs::read_to_string(&calls)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(ran, commands);

    // Uninstall stops and removes the units; the queue and the clock stay.
    home.write("queue.db", b"not touched");
    home.write_clock(7, "abcdefabcdef");
    let before = home.clock_text();
    std::fs::remove_file(&calls).unwrap();
    service_cmd(&home, &["uninstall", "--systemd"], &path).assert_code(0);
    for (p, _) in &files {
        assert!(!Path::new(p).exists(), "{p} still there");
    }
    let ran = std::fs::read_to_string(&calls).unwrap();
    assert!(
        ran.contains("systemctl --user disable --now kitty-syncd.service kitty-syncd.socket"),
        "{ran}"
    );
    assert_eq!(
        std::fs::read(home.file("queue.db")).unwrap(),
        b"not touched"
    );
    assert_eq!(home.clock_text(), before);
}

#[test]
fn install_with_completions_and_man_writes_them_where_the_shells_look() {
    let home = TestHome::new();
    let calls = stub_tool(home.root(), "systemctl", 0);
    let path = path_with(home.root());
    let data = home.root().join(".local/share");
    let fish = home.root().join(".config/fish/completions");
    // (file, binary, arguments that print the same bytes)
    let mut expected = Vec::new();
    for (bin, exe) in [("kitty-sync", client_bin()), ("kitty-syncd", daemon_bin())] {
        for (file, args) in [
            (
                data.join("bash-completion/completions").join(bin),
                ["completions", "bash"],
            ),
            (
                data.join("zsh/site-functions").join(format!("_{bin}")),
                ["completions", "zsh"],
            ),
            (fish.join(format!("{bin}.fish")), ["completions", "fish"]),
        ] {
            expected.push((file, exe.clone(), args.to_vec()));
        }
        expected.push((data.join(format!("man/man1/{bin}.1")), exe, vec!["man"]));
    }
    let flags = ["install", "--systemd", "--completions", "--man"];
    let dry = service_cmd(&home, &[&flags[..], &["--dry-run"]].concat(), &path);
    dry.assert_code(0);
    for (file, _, _) in &expected {
        assert!(
            dry.stdout
                .contains(&format!("==> write {} (", file.display())),
            "{}: {dry}",
            file.display()
        );
        assert!(!file.exists(), "--dry-run wrote {}", file.display());
    }
    assert!(!calls.exists());

    service_cmd(&home, &flags, &path).assert_code(0);
    for (file, exe, args) in &expected {
        let mut cmd = home.command(exe);
        cmd.args(args);
        let printed = run_with_guard(cmd, None);
        printed.assert_code(0);
        assert_eq!(
            std::fs::read_to_string(file).unwrap(),
            printed.stdout,
            "{} is what `{} {}` prints",
            file.display(),
            exe.display(),
            args.join(" ")
        );
    }
    // Without the flags, install writes none of them; uninstall removes them all.
    service_cmd(&home, &["uninstall", "--systemd"], &path).assert_code(0);
    for (file, _, _) in &expected {
        assert!(!file.exists(), "{} still there", file.display());
    }
    service_cmd(&home, &["install", "--systemd"], &path).assert_code(0);
    assert!(expected.iter().all(|(f, _, _)| !f.exists()));
}

#[test]
fn launchd_install_writes_a_plist_with_every_key() {
    let home = TestHome::new();
    let calls = stub_tool(home.root(), "launchctl", 0);
    let path = path_with(home.root());
    let dry = service_cmd(&home, &["install", "--launchd", "--dry-run"], &path);
    dry.assert_code(0);
    let (files, commands) = parse_plan(&dry.stdout);
    let plist_path = home
        .root()
        .join("Library/LaunchAgents/dev.spec-kitty.kitty-syncd.plist");
    assert_eq!(files[0].0, plist_path.display().to_string());
    let uid = unsafe { libc::getuid() };
    assert_eq!(
        commands,
        vec![format!(
            "launchctl bootstrap gui/{uid} {}",
            plist_path.display()
        )]
    );

    let v: plist::Value = plist::from_bytes(files[0].1.as_bytes()).expect("a real plist");
    let d = v.as_dictionary().unwrap();
    assert_eq!(d["Label"].as_string(), Some("dev.spec-kitty.kitty-syncd"));
    assert_eq!(d["RunAtLoad"].as_boolean(), Some(true));
    assert_eq!(
        d["KeepAlive"].as_dictionary().unwrap()["SuccessfulExit"].as_boolean(),
        Some(false)
    );
    assert_eq!(d["ProcessType"].as_string(), Some("Background"));
    let args: Vec<&str> = d["ProgramArguments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_string().unwrap())
        .collect();
    let real = std::fs::canonicalize(daemon_bin()).unwrap();
    assert_eq!(args[0], real.to_str().unwrap());
    assert_eq!(args[1], "run");
    let logs = home.root().join("Library/Logs/kitty-syncd");
    for key in ["StandardOutPath", "StandardErrorPath"] {
        assert!(
            Path::new(d[key].as_string().unwrap()).starts_with(&logs),
            "{key}"
        );
    }
    assert_eq!(
        d["EnvironmentVariables"].as_dictionary().unwrap()["SPEC_KITTY_HOME"].as_string(),
        home.path().to_str()
    );

    service_cmd(&home, &["install", "--launchd"], &path).assert_code(0);
    assert_eq!(std::fs::read_to_string(&plist_path).unwrap(), files[0].1);
    assert!(logs.is_dir());
    let ran = std::fs::read_to_string(&calls).unwrap();
    assert!(ran.ends_with(&format!("{}\n", commands[0])), "{ran}");
    service_cmd(&home, &["uninstall", "--launchd"], &path).assert_code(0);
    assert!(!plist_path.exists());
    assert!(std::fs::read_to_string(&calls).unwrap().contains(&format!(
        "launchctl bootout gui/{uid}/dev.spec-kitty.kitty-syncd"
    )));
}

#[test]
fn missing_or_failing_service_manager_is_said_plainly() {
    let home = TestHome::new();
    let empty = home.root().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = service_cmd(&home, &["install", "--systemd"], empty.to_str().unwrap());
    assert_ne!(out.code(), Some(0));
    assert!(out.stderr.contains("systemctl is not on PATH"), "{out}");
    assert!(
        !home
            .root()
            .join(".config/systemd/user/kitty-syncd.service")
            .exists(),
        "nothing may be written"
    );

    stub_tool(home.root(), "systemctl", 1);
    let out = service_cmd(&home, &["install", "--systemd"], &path_with(home.root()));
    assert_ne!(out.code(), Some(0));
    assert!(
        out.stderr.contains("systemctl --user daemon-reload")
            && out.stderr.contains("Failed to connect to bus"),
        "{out}"
    );
}

#[test]
fn rendered_units_pass_systemd_analyze_verify() {
    if !Path::new("/usr/bin/systemd-analyze").exists() && which("systemd-analyze").is_none() {
        eprintln!(
            "SKIPPED: systemd-analyze is not installed on this machine; the units were not verified"
        );
        return;
    }
    let home = TestHome::new();
    let dry = service_cmd(
        &home,
        &["install", "--systemd", "--dry-run"],
        "/usr/bin:/bin",
    );
    dry.assert_code(0);
    let (files, _) = parse_plan(&dry.stdout);
    let dir = home.root().join("units");
    std::fs::create_dir_all(&dir).unwrap();
    let runtime = home.root().join("run");
    std::fs::create_dir_all(&runtime).unwrap();
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut names = Vec::new();
    for (p, text) in &files {
        let name = Path::new(p).file_name().unwrap();
        std::fs::write(dir.join(name), text).unwrap();
        names.push(dir.join(name));
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", "--user"])
        .args(&names)
        .env("XDG_RUNTIME_DIR", &runtime)
        .env("HOME", home.root())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed: {stderr}"
    );
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze verify warned: {stderr}"
    );
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Socket activation the systemd way: the listening socket is fd 3, with
/// LISTEN_FDS=1 and LISTEN_PID = the daemon's pid. A client that connected and
/// sent its whole request before the daemon existed is answered on that very
/// connection, which only a daemon serving the inherited socket can do (one
/// that binds its own socket leaves it in the old listener's backlog).
#[test]
fn socket_activation_serves_a_client_that_connected_before_start() {
    let home = TestHome::new();
    let listener = UnixListener::bind(home.socket()).unwrap();
    let mut early = UnixStream::connect(home.socket()).unwrap();
    early
        .write_all(b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    early.set_read_timeout(Some(HANG_GUARD)).unwrap();
    let fd = listener.as_raw_fd();
    // `exec` keeps the shell's pid, so $$ is the daemon's pid, as LISTEN_PID must be.
    let mut cmd = home.command(Path::new("/bin/sh"));
    cmd.args([
        "-c",
        &format!("LISTEN_PID=$$ exec '{}' run", daemon_bin().display()),
    ])
    .env("LISTEN_FDS", "1")
    .env("LISTEN_FDNAMES", "kitty-syncd.socket")
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(home.root().join("activated.log")).unwrap());
    // SAFETY: dup2 and fcntl are async-signal-safe; the listener outlives the spawn.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto itself keeps close-on-exec, so clear it by hand then.
            let ok = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0) >= 0
            } else {
                libc::dup2(fd, 3) >= 0
            };
            if !ok {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let log = || std::fs::read_to_string(home.root().join("activated.log")).unwrap_or_default();
    let mut answer = String::new();
    if let Err(e) = early.read_to_string(&mut answer) {
        panic!(
            "the early client got no answer ({e}); daemon log:\n{}",
            log()
        );
    }
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains("\"ok\":true"),
        "the early client's answer: {answer:?}; daemon log:\n{}",
        log()
    );
    assert!(
        log().contains("using the socket passed by the service manager"),
        "the daemon says it took the listener from LISTEN_FDS:\n{}",
        log()
    );
    home.client_emit(
        "WPStatusChanged",
        &serde_json::json!({"wp_id":"WP01","previous_status":"planned","new_status":"doing"}),
    );
    assert_eq!(home.db().count(), 1);
    send_signal(child.id(), libc::SIGTERM);
    let st = wait_with_guard(&mut child, HANG_GUARD).expect("daemon exits");
    assert_eq!(st.code(), Some(0));
    assert!(
        home.socket().exists(),
        "the service manager's socket is left for it to manage"
    );
    drop(listener);
}

fn notify_daemon(
    home: &TestHome,
    watchdog_usec: Option<u64>,
) -> (Daemon, Arc<Mutex<Vec<String>>>, Arc<AtomicBool>) {
    let sock = home.root().join("notify.sock");
    let rx = UnixDatagram::bind(&sock).unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    std::thread::spawn({
        let (got, stop) = (got.clone(), stop.clone());
        move || {
            let mut buf = [0u8; 4096];
            while !stop.load(Ordering::Relaxed) {
                if let Ok(n) = rx.recv(&mut buf) {
                    got.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
            }
        }
    });
    let mut env = vec![("NOTIFY_SOCKET", sock.display().to_string())];
    if let Some(us) = watchdog_usec {
        env.push(("WATCHDOG_USEC", us.to_string()));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut d = home.spawn_daemon_with(&env);
    d.wait_ready();
    (d, got, stop)
}

#[test]
fn readiness_status_watchdog_and_stopping_reach_notify_socket() {
    let home = TestHome::new();
    let (d, got, stop) = notify_daemon(&home, Some(2_000_000));
    let seen = |needle: &str| {
        got.lock()
            .unwrap()
            .iter()
            .any(|m| m.lines().any(|l| l.starts_with(needle)))
    };
    eventually("READY=1", HANG_GUARD, || seen("READY=1").then_some(()));
    eventually("STATUS= with the queue depth", HANG_GUARD, || {
        seen("STATUS=queue 0 events").then_some(())
    });
    eventually("WATCHDOG=1", HANG_GUARD, || {
        seen("WATCHDOG=1").then_some(())
    });
    let st = d.terminate();
    assert_eq!(st.code(), Some(0));
    eventually("STOPPING=1", HANG_GUARD, || {
        seen("STOPPING=1").then_some(())
    });
    stop.store(true, Ordering::Relaxed);
}

#[test]
fn sigterm_during_a_16_client_storm_loses_no_acknowledged_event() {
    let home = TestHome::new();
    let d = home.start_daemon();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<(String, u64)>::new()));
    let workers: Vec<_> = (0..16)
        .map(|i| {
            let (api, stop, acked) = (home.api(), stop.clone(), acked.clone());
            std::thread::spawn(move || {
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    match api.try_request(
                        "POST",
                        "/v1/events",
                        Some(status_draft(i * 1000 + n).to_string().as_bytes()),
                    ) {
                        Ok(r) if r.status == 202 => {
                            let resp: kitty_proto::api::EmitResponse = r.json();
                            let a = &resp.events[0];
                            acked
                                .lock()
                                .unwrap()
                                .push((a.event_id.clone(), a.lamport_clock));
                        }
                        // The daemon is going away: refused or cut connections are expected.
                        _ => break,
                    }
                    n += 1;
                }
            })
        })
        .collect();
    eventually("a few hundred acknowledged emits", HANG_GUARD, || {
        (acked.lock().unwrap().len() > 300).then_some(())
    });
    let st = d.terminate();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(st.code(), Some(0), "SIGTERM must end in exit 0");
    let acked = acked.lock().unwrap().clone();
    let rows = home.db().rows();
    let stored: HashSet<&str> = rows.iter().map(|r| r.event_id.as_str()).collect();
    for (id, _) in &acked {
        assert!(
            stored.contains(id.as_str()),
            "acknowledged {id} is not in queue.db"
        );
    }
    let highest = rows.iter().map(|r| r.lamport()).max().unwrap();
    assert!(highest >= acked.iter().map(|a| a.1).max().unwrap());
    home.assert_clock_covers(highest, "clock.json must cover the last value issued");
    assert!(home.tmp_leftovers().is_empty());
}

/// As careful tools and editors do: a new file renamed over the old one.
fn write_atomically(home: &TestHome, name: &str, text: &str) {
    let tmp = home.root().join(format!("{name}.new"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, home.file(name)).unwrap();
}

#[test]
fn sighup_reloads_the_log_level_and_keeps_settings_when_config_breaks() {
    let home = TestHome::new();
    home.write("config.toml", "[daemon]\nlog = \"info\"\n");
    let mut d = home.spawn_daemon_with(&[("RUST_LOG", "")]);
    d.wait_ready();
    let api = d.api();
    api.emit(&status_draft(1));
    assert!(
        !d.log().contains("queued"),
        "debug lines must not show at info:\n{}",
        d.log()
    );

    write_atomically(
        &home,
        "config.toml",
        "[daemon]\nlog = \"debug\"\n[sync]\nmax_queue_size = 5\n",
    );
    d.signal(libc::SIGHUP);
    eventually("the new filter", HANG_GUARD, || {
        d.log().contains("log filter is now debug").then_some(())
    });
    api.emit(&status_draft(2));
    eventually("a debug line", HANG_GUARD, || {
        d.log().contains("queued").then_some(())
    });
    let loaded = api
        .status()
        .config_loaded_at
        .expect("status says when config was loaded");

    write_atomically(&home, "config.toml", "[sync\nbroken");
    d.signal(libc::SIGHUP);
    eventually("the refusal", HANG_GUARD, || {
        d.log()
            .contains("keeping the previous settings")
            .then_some(())
    });
    let s = api.status();
    assert_eq!(s.queue.max_queue_size, 5, "the last good settings stay");
    assert!(s.config_loaded_at.unwrap() >= loaded);
    d.stop_gracefully();
}

#[test]
fn second_instance_exits_73_with_the_pid_and_kill9_leaves_nothing_in_the_way() {
    let home = TestHome::new();
    let d = home.start_daemon();
    let out = home.daemon_cmd(&["run"]);
    assert_eq!(out.code(), Some(73), "{out}");
    assert!(out.stderr.contains(&format!("pid {}", d.pid())), "{out}");
    d.kill9();
    assert!(
        home.socket().exists(),
        "kill -9 leaves the socket file behind"
    );
    let d = home.start_daemon();
    d.api().emit(&status_draft(3));
    d.stop_gracefully();
}

#[test]
fn status_names_the_supervisor_and_how_to_start_it() {
    let home = TestHome::new();
    let mut d = home.spawn_daemon_with(&[("INVOCATION_ID", "0123456789abcdef")]);
    d.wait_ready();
    let out = home.daemon_cmd(&["status", "--json"]);
    out.assert_code(0);
    let s: kitty_proto::api::Status = out.json();
    assert_eq!(s.supervisor.map(|k| k.as_str()), Some("systemd"));
    d.stop_gracefully();

    // Installed as a user unit: the hint is the systemctl command.
    let unit = home.path().join(".config/systemd/user/kitty-syncd.service");
    std::fs::create_dir_all(unit.parent().unwrap()).unwrap();
    std::fs::write(&unit, "").unwrap();
    let out = home.daemon_cmd(&["status"]);
    out.assert_code(EXIT_NOT_RUNNING);
    assert!(
        out.stdout
            .contains("systemctl --user start kitty-syncd.socket kitty-syncd.service"),
        "{out}"
    );
}

#[test]
fn log_file_and_journal_formats() {
    let home = TestHome::new();
    let log = home.root().join("logs/kitty-syncd.log");
    let mut cmd = home.command(&daemon_bin());
    cmd.args(["run", "--log-file", log.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let dir = log.parent().unwrap().to_path_buf();
    let text = eventually("a log file with the ready line", HANG_GUARD, || {
        let f = std::fs::read_dir(&dir)
            .ok()?
            .filter_map(Result::ok)
            .next()?;
        let t = std::fs::read_to_string(f.path()).ok()?;
        t.contains("ready").then_some(t)
    });
    assert!(!text.contains('\u{1b}'), "no colour codes in a file");
    send_signal(child.id(), libc::SIGTERM);
    assert_eq!(
        wait_with_guard(&mut child, HANG_GUARD).and_then(|s| s.code()),
        Some(0)
    );

    let mut d = home.spawn_daemon_with(&[("JOURNAL_STREAM", "8:12345")]);
    d.wait_ready();
    // The line is written as the socket starts answering, not before: wait for it.
    let first = eventually("a ready line on stderr", HANG_GUARD, || {
        d.log()
            .lines()
            .find(|l| l.contains("ready"))
            .map(str::to_owned)
    });
    assert!(
        first.starts_with("<6>"),
        "journald lines carry a priority prefix: {first}"
    );
    assert!(
        !first.contains("Z "),
        "journald adds its own timestamps: {first}"
    );
    d.stop_gracefully();
}

/// A service manager may stop the daemon the moment it answers: that must be
/// a clean shutdown (exit 0, clock.json written), not death by the default
/// action of SIGTERM.
#[test]
fn sigterm_the_instant_the_socket_answers_is_a_clean_shutdown() {
    for _ in 0..5 {
        let home = TestHome::new();
        let d = home.spawn_daemon();
        // As soon as the socket accepts a connection, not a poll interval later.
        let start = std::time::Instant::now();
        while std::os::unix::net::UnixStream::connect(home.socket()).is_err() {
            assert!(start.elapsed() < HANG_GUARD, "the socket never accepted");
            std::thread::yield_now();
        }
        let st = d.terminate();
        assert_eq!(st.code(), Some(0), "{st}");
        assert!(
            home.clock_text().is_some(),
            "clock.json written at shutdown"
        );
        assert!(!home.socket().exists(), "socket removed");
    }
}
