//! Issue 7, the socket server's limits: held connections are cut off and never
//! use up the daemon's descriptors, whose soft limit it raises to the hard
//! one; a deleted socket is bound again, another process's socket is never
//! taken over, and a daemon that lost its instance lock stops.
//!
//! Real kitty-syncd, real sockets, /proc for descriptors and limits. Waits are
//! bounded; nothing asserts on elapsed time.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

use kitty_tests::harness::*;
use kitty_tests::uplink_harness::{DRAIN_GUARD, wait_until};

/// The daemon's connection cap (daemon/src/accept.rs).
const MAX_CONNECTIONS: usize = 256;

fn nofile() -> (u64, u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    (lim.rlim_cur, lim.rlim_max)
}

/// `Max open files` of /proc/PID/limits: (soft, hard).
fn open_files_limit(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("/proc/PID/limits");
    let line = text
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files line");
    let nums: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (nums[0], nums[1])
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn health_ok(api: &Api) -> Result<(), String> {
    match api.try_request("GET", "/v1/health", None) {
        Ok(r) if r.status == 200 => Ok(()),
        Ok(r) => Err(format!("status {}", r.status)),
        Err(e) => Err(e.to_string()),
    }
}

#[test]
fn held_connections_are_cut_off_and_never_use_up_the_daemons_descriptors() {
    const HELD: usize = 2000;
    const SOFT: u64 = 1024;
    let (soft, hard) = nofile();
    if hard < (HELD + 200) as u64 {
        eprintln!("SKIPPED: the hard descriptor limit {hard} is below what the test needs");
        return;
    }
    // This process holds the connections: it needs the descriptors.
    let raised = libc::rlimit {
        rlim_cur: hard,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads the struct we own.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) }, 0);
    eprintln!("descriptor limits here: soft {soft}, hard {hard}");

    let home = TestHome::new();
    let mut d = home.spawn_daemon_tweaked(&[], |cmd| {
        // SAFETY: only setrlimit, async-signal-safe, between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: SOFT,
                    rlim_max: hard,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    d.wait_ready();
    let pid = d.pid();
    assert_eq!(
        open_files_limit(pid),
        (hard, hard),
        "the daemon raised its soft descriptor limit ({SOFT}) to the hard one"
    );
    let api = d.api();
    api.emit(&status_draft(1));

    // Connections that send nothing, opened from another thread: past the cap
    // and the backlog, connect() waits for the daemon to accept.
    let socket = home.socket();
    let flood = std::thread::spawn(move || {
        let mut held = Vec::with_capacity(HELD);
        for _ in 0..HELD {
            match UnixStream::connect(&socket) {
                Ok(s) => held.push(s),
                Err(e) => panic!("connect {} failed: {e}", held.len()),
            }
        }
        held
    });
    let mut most_fds = 0;
    let held = loop {
        most_fds = most_fds.max(open_fds(pid));
        assert!(
            most_fds <= MAX_CONNECTIONS + 128,
            "the daemon holds {most_fds} descriptors: the connection cap does not hold"
        );
        if flood.is_finished() {
            break flood.join().expect("the flood thread");
        }
        assert!(d.try_exit().is_none(), "the daemon died:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!(
        "{} connections opened; the daemon held at most {most_fds} descriptors",
        held.len()
    );

    // The first ones were accepted first: the daemon has closed them, unasked.
    for (i, mut s) in held.into_iter().take(MAX_CONNECTIONS).enumerate() {
        s.set_read_timeout(Some(DRAIN_GUARD)).unwrap();
        let mut byte = [0u8; 1];
        match s.read(&mut byte) {
            Ok(0) => {}
            Ok(_) => panic!("connection {i} got bytes without asking"),
            Err(e) => panic!("connection {i} was not closed by the daemon: {e}"),
        }
    }
    wait_until("the daemon to answer again", DRAIN_GUARD, || {
        health_ok(&api)
    });
    assert_eq!(api.emit(&status_draft(2)).lamport_clock, 2);
    assert!(d.try_exit().is_none(), "the daemon died:\n{}", d.log());
    d.stop_gracefully();
}

fn inode(path: &Path) -> Option<u64> {
    std::fs::symlink_metadata(path).ok().map(|m| m.ino())
}

#[test]
fn a_deleted_socket_is_bound_again() {
    let home = TestHome::new();
    let d = home.start_daemon();
    let api = d.api();
    api.emit(&status_draft(1));
    std::fs::remove_file(home.socket()).unwrap();
    wait_until("the socket to be back", DRAIN_GUARD, || health_ok(&api));
    // It answers again; with an event queued and no session, delivery is stuck (4).
    home.daemon_cmd(&["status", "--json"])
        .assert_code(EXIT_STUCK);
    assert_eq!(api.emit(&status_draft(2)).lamport_clock, 2);
    assert!(
        d.log().contains("was deleted; listening there again"),
        "{}",
        d.log()
    );
    d.stop_gracefully();
    assert!(!home.socket().exists(), "removed at exit, being ours");
}

#[test]
fn another_live_socket_is_never_taken_over_and_a_lost_instance_lock_stops_the_daemon() {
    let home = TestHome::new();
    let mut d = home.start_daemon();
    let socket = home.socket();
    // Another process listens where our socket was.
    let other = loop {
        let _ = std::fs::remove_file(&socket);
        if let Ok(l) = UnixListener::bind(&socket) {
            break l;
        }
    };
    let other_inode = inode(&socket);
    wait_until("the daemon to notice the other socket", DRAIN_GUARD, || {
        if d.log().contains("another process now listens on") {
            Ok(())
        } else {
            Err("not yet".into())
        }
    });
    assert_eq!(
        inode(&socket),
        other_inode,
        "the other socket is left alone"
    );
    assert!(d.try_exit().is_none(), "the daemon runs on");

    // Once it is gone, the path is ours again.
    drop(other);
    std::fs::remove_file(&socket).unwrap();
    let api = d.api();
    wait_until("the socket to be back", DRAIN_GUARD, || health_ok(&api));

    // A removed instance lock is taken back (core_ownership covers that); one
    // that another process holds now means another daemon may own the home: stop.
    let aside = home.file("planted.lock");
    let planted = std::fs::File::create(&aside).unwrap();
    planted.lock().expect("flock the planted lock file");
    std::fs::rename(&aside, home.file("kitty-syncd.lock")).unwrap();
    let st = wait_until("the daemon to stop", DRAIN_GUARD, || {
        d.try_exit().ok_or_else(|| "still running".to_owned())
    });
    assert_eq!(st.code(), Some(1), "stops with an error:\n{}", d.log());
    assert!(d.log().contains("instance lock"), "{}", d.log());
    assert!(!socket.exists(), "it removed its own socket");
    drop(planted);
}
