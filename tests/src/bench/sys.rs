//! The operating system's side: starting and reaping processes with their
//! resource usage (`wait4`), memory and CPU time from `/proc`, the machine's
//! description, and the disk's own sync latency.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::http::{self, RawConn};

/// Besides the service manager's variables (`harness::SERVICE_MANAGER_VARS`),
/// a bench must not pass on these either: they would move the socket or flood
/// the daemon's log.
const BENCH_ONLY_VARS: &[&str] = &["KITTY_SYNCD_SOCKET", "RUST_LOG"];

/// The longest a daemon may take to get ready or to stop.
pub const PROCESS_GUARD: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Homes
// ---------------------------------------------------------------------------

/// A fresh temporary `SPEC_KITTY_HOME` (also `HOME`) with a config whose queue
/// cap never interferes. Removed on drop.
pub struct BenchHome {
    tmp: tempfile::TempDir,
    home: PathBuf,
}

impl BenchHome {
    pub fn new(max_queue_size: u64) -> Result<Self> {
        let tmp = tempfile::Builder::new().prefix("kb").tempdir()?;
        let home = tmp.path().join("home");
        fs::create_dir(&home)?;
        fs::set_permissions(&home, fs::Permissions::from_mode(0o700))?;
        fs::write(
            home.join("config.toml"),
            format!("[sync]\nmax_queue_size = {max_queue_size}\n"),
        )?;
        Ok(Self { tmp, home })
    }

    pub fn path(&self) -> &Path {
        &self.home
    }

    pub fn socket(&self) -> PathBuf {
        self.home.join("kitty-syncd.sock")
    }

    pub fn queue_db(&self) -> PathBuf {
        self.home.join("queue.db")
    }

    pub fn log(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// A command for `bin` that sees only this home.
    pub fn command(&self, bin: &Path) -> Command {
        let mut cmd = Command::new(bin);
        cmd.env("SPEC_KITTY_HOME", &self.home)
            .env("HOME", &self.home)
            .current_dir(self.tmp.path())
            .stdin(Stdio::null());
        for var in crate::harness::SERVICE_MANAGER_VARS
            .iter()
            .chain(BENCH_ONLY_VARS)
        {
            cmd.env_remove(var);
        }
        cmd
    }
}

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

/// How a reaped child ended, and what it used.
#[derive(Debug, Clone, Copy)]
pub struct Reaped {
    /// The raw wait status.
    pub status: libc::c_int,
    /// Peak resident set size, bytes (`ru_maxrss`).
    pub max_rss: u64,
    /// User + system CPU time.
    pub cpu: Duration,
}

impl Reaped {
    /// The exit code, when the child exited (rather than being killed).
    pub fn code(&self) -> Option<i32> {
        libc::WIFEXITED(self.status).then(|| libc::WEXITSTATUS(self.status))
    }

    /// The signal that ended the child, when one did.
    pub fn signal(&self) -> Option<i32> {
        libc::WIFSIGNALED(self.status).then(|| libc::WTERMSIG(self.status))
    }

    fn from(status: libc::c_int, ru: &libc::rusage) -> Self {
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        Self {
            status,
            // Linux reports ru_maxrss in KiB.
            max_rss: ru.ru_maxrss.max(0) as u64 * 1024,
            cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
        }
    }
}

/// `wait4(pid, WNOHANG)`: `Some` once the child has exited and is reaped.
fn try_wait4(pid: i32) -> Result<Option<Reaped>> {
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value of the plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for writes for the call's duration.
    let rc = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
    match rc {
        0 => Ok(None),
        r if r == pid => Ok(Some(Reaped::from(status, &ru))),
        _ => bail!("wait4({pid}): {}", std::io::Error::last_os_error()),
    }
}

/// Blocking `wait4(pid)`.
fn wait4_blocking(pid: i32) -> Result<Reaped> {
    let mut status: libc::c_int = 0;
    // SAFETY: as in try_wait4.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: both pointers are valid for writes for the call's duration.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if rc == pid {
            return Ok(Reaped::from(status, &ru));
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            bail!("wait4({pid}): {e}");
        }
    }
}

fn kill(pid: i32, sig: libc::c_int) {
    // SAFETY: kill(2) on a child we started and have not reaped yet.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Runs `cmd` to completion and returns its wall time (spawn to reap) and what
/// it used. A watchdog SIGKILLs it after `limit`, so a hang cannot stall the bench.
pub fn run_timed(cmd: &mut Command, limit: Duration) -> Result<(Duration, Reaped)> {
    let (tx, rx) = std::sync::mpsc::channel::<i32>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if let Ok(pid) = rx.recv()
            && let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(limit)
        {
            kill(pid, libc::SIGKILL);
        }
    });
    let start = Instant::now();
    let child = cmd.spawn().with_context(|| format!("spawn {cmd:?}"))?;
    let pid = child.id() as i32;
    let _ = tx.send(pid);
    // std's Child neither waits nor kills on drop: wait4 below reaps it.
    drop(child);
    let reaped = wait4_blocking(pid)?;
    let wall = start.elapsed();
    let _ = done_tx.send(());
    let _ = watchdog.join();
    Ok((wall, reaped))
}

// ---------------------------------------------------------------------------
// The spawner
// ---------------------------------------------------------------------------

/// The argument that turns `kitty-bench` into a [`Spawner`].
pub const SPAWNER_ARG: &str = "--spawner";

/// A small helper process (`kitty-bench --spawner`) that starts the measured
/// processes for the bench and reports what `wait4` says of each.
///
/// Why: on Linux a child's `ru_maxrss` is at least the resident size of the
/// process it was forked (or vforked) from, because `execve` folds the old
/// memory's high-water mark into it. Spawned straight from the bench (tens of
/// MiB after the load runs), every child would look that big. The spawner
/// does nothing but spawn, so it stays a few MiB; the report gives its floor
/// (`/bin/true` through the same spawner).
///
/// Protocol, one line each way per process: the bench writes the argv joined
/// by tabs; the spawner answers `<wait status> <wall ns> <max rss bytes> <cpu ns>`
/// or `error <message>`. It exits at the end of its input.
pub struct Spawner {
    pid: i32,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    reaped: bool,
}

impl Spawner {
    /// Starts `exe --spawner` as `cmd` (built with `exe`) says: environment
    /// and working directory pass on to every process it starts.
    pub fn start(mut cmd: Command) -> Result<Self> {
        cmd.arg(SPAWNER_ARG)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().with_context(|| format!("spawn {cmd:?}"))?;
        Ok(Self {
            pid: child.id() as i32,
            stdin: child.stdin.take().context("spawner stdin")?,
            stdout: std::io::BufReader::new(child.stdout.take().context("spawner stdout")?),
            reaped: false,
        })
    }

    /// Runs `argv` to completion through the spawner.
    pub fn run(&mut self, argv: &[&str]) -> Result<(Duration, Reaped)> {
        use std::io::BufRead;
        ensure_no_tabs(argv)?;
        writeln!(self.stdin, "{}", argv.join("\t")).context("write to the spawner")?;
        self.stdin.flush()?;
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .context("read from the spawner")?;
        if let Some(e) = line.strip_prefix("error ") {
            bail!("spawner: {}", e.trim());
        }
        let f: Vec<u64> = line
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .with_context(|| format!("spawner answered {line:?}"))?;
        let [status, wall, max_rss, cpu] = f[..] else {
            bail!("spawner answered {line:?}");
        };
        Ok((
            Duration::from_nanos(wall),
            Reaped {
                status: status as libc::c_int,
                max_rss,
                cpu: Duration::from_nanos(cpu),
            },
        ))
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        if !self.reaped {
            kill(self.pid, libc::SIGKILL);
            let _ = wait4_blocking(self.pid);
            self.reaped = true;
        }
    }
}

fn ensure_no_tabs(argv: &[&str]) -> Result<()> {
    if argv.is_empty() || argv.iter().any(|a| a.contains(['\t', '\n'])) {
        bail!("the spawner cannot pass {argv:?}");
    }
    Ok(())
}

/// The spawner's main loop (see [`Spawner`]): stdin in, stdout out; every
/// process it starts gets null stdin, stdout and stderr.
pub fn spawner_main() -> std::process::ExitCode {
    use std::io::BufRead;
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let argv: Vec<&str> = line.split('\t').collect();
        let mut cmd = Command::new(argv[0]);
        cmd.args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let answer = match run_timed(&mut cmd, SPAWNED_GUARD) {
            Ok((wall, r)) => format!(
                "{} {} {} {}",
                r.status as u32,
                wall.as_nanos(),
                r.max_rss,
                r.cpu.as_nanos()
            ),
            Err(e) => format!("error {}", format!("{e:#}").replace('\n', " ")),
        };
        if writeln!(out, "{answer}")
            .and_then(|()| out.flush())
            .is_err()
        {
            break;
        }
    }
    std::process::ExitCode::SUCCESS
}

/// The longest one process started by the spawner may run.
pub const SPAWNED_GUARD: Duration = Duration::from_secs(20);

/// A running `kitty-syncd run`. Dropping it SIGKILLs and reaps it.
pub struct Daemon {
    pid: i32,
    socket: PathBuf,
    log: PathBuf,
    spawned_at: Instant,
    reaped: bool,
}

impl Daemon {
    /// Starts `<bin> run` in `home`, its output going to `<root>/<log_name>`.
    pub fn spawn(bin: &Path, home: &BenchHome, log_name: &str) -> Result<Self> {
        let log = home.log(log_name);
        let file = fs::File::create(&log)?;
        let mut cmd = home.command(bin);
        cmd.arg("run").stdout(file.try_clone()?).stderr(file);
        let spawned_at = Instant::now();
        let child = cmd.spawn().with_context(|| format!("spawn {cmd:?}"))?;
        Ok(Self {
            pid: child.id() as i32,
            socket: home.socket(),
            log,
            spawned_at,
            reaped: false,
        })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `GET /v1/health` (a fresh connection each time, every
    /// `poll`) until it answers 200; returns the time since the spawn.
    pub fn wait_ready(&mut self, poll: Duration) -> Result<Duration> {
        let req = http::request_bytes("GET", "/v1/health", None, true);
        loop {
            if let Ok(a) = http::one_shot(&self.socket, &req)
                && a.status == 200
            {
                return Ok(self.spawned_at.elapsed());
            }
            if let Some(r) = try_wait4(self.pid)? {
                self.reaped = true;
                bail!(
                    "kitty-syncd exited (status {:#x}) before it was ready:\n{}",
                    r.status,
                    self.log_text()
                );
            }
            if self.spawned_at.elapsed() > PROCESS_GUARD {
                bail!(
                    "kitty-syncd not ready within {PROCESS_GUARD:?}:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(poll);
        }
    }

    /// A kept-alive connection to it.
    pub fn connect(&self) -> Result<RawConn> {
        RawConn::connect(&self.socket)
    }

    /// Its memory now, from `/proc/<pid>/status`.
    pub fn memory(&mut self) -> Result<Memory> {
        match Memory::of(self.pid) {
            Ok(m) => Ok(m),
            Err(e) => match try_wait4(self.pid)? {
                Some(r) => {
                    self.reaped = true;
                    bail!(
                        "kitty-syncd exited unexpectedly (status {:#x}):\n{}",
                        r.status,
                        self.log_text()
                    )
                }
                None => Err(e),
            },
        }
    }

    /// User + system CPU time it has used so far.
    pub fn cpu_time(&self) -> Result<Duration> {
        cpu_time(self.pid)
    }

    /// SIGTERM, then waits for a clean exit (0); the time it took and what
    /// the daemon used over its whole life.
    pub fn stop(self) -> Result<(Duration, Reaped)> {
        let log = self.log.clone();
        let (took, r) = self.terminate()?;
        if r.code() != Some(0) {
            bail!(
                "kitty-syncd did not exit 0 on SIGTERM (status {:#x}):\n{}",
                r.status,
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        Ok((took, r))
    }

    /// SIGTERM, then waits for the exit, however it ends.
    pub fn terminate(mut self) -> Result<(Duration, Reaped)> {
        let start = Instant::now();
        kill(self.pid, libc::SIGTERM);
        loop {
            if let Some(r) = try_wait4(self.pid)? {
                self.reaped = true;
                return Ok((start.elapsed(), r));
            }
            if start.elapsed() > PROCESS_GUARD {
                bail!("kitty-syncd did not stop within {PROCESS_GUARD:?}");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if !self.reaped {
            kill(self.pid, libc::SIGKILL);
            let _ = wait4_blocking(self.pid);
        }
    }
}

/// Resident memory of a process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// VmRSS, bytes.
    pub rss: u64,
    /// VmHWM (peak RSS so far), bytes.
    pub hwm: u64,
}

impl Memory {
    pub fn of(pid: i32) -> Result<Self> {
        let text = fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("read /proc/{pid}/status"))?;
        let kib = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map(|k| k * 1024)
        };
        Ok(Self {
            rss: kib("VmRSS:").context("no VmRSS")?,
            hwm: kib("VmHWM:").unwrap_or(0),
        })
    }
}

/// User + system CPU time of a process, from `/proc/<pid>/stat`.
pub fn cpu_time(pid: i32) -> Result<Duration> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which sits in parentheses and may hold spaces.
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5); `rest` starts at field 3.
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(Duration::from_secs_f64(ticks as f64 / hz as f64))
}

/// CPU time and context switches of a process's threads, summed by thread
/// name (`tokio-rt-worker`, `sqlx-sqlite-worker`, ...), from `/proc/<pid>/task`.
pub fn thread_stats(pid: i32) -> Result<std::collections::BTreeMap<String, ThreadStat>> {
    let mut out = std::collections::BTreeMap::<String, ThreadStat>::new();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    for entry in fs::read_dir(format!("/proc/{pid}/task"))? {
        let dir = entry?.path();
        // A thread may end between the listing and the reads.
        let (Ok(stat), Ok(status)) = (
            fs::read_to_string(dir.join("stat")),
            fs::read_to_string(dir.join("status")),
        ) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let name = head.split_once('(').map_or("?", |(_, n)| n).to_owned();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0)
            + fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0);
        let switches: u64 = status
            .lines()
            .filter(|l| l.contains("ctxt_switches:"))
            .filter_map(|l| l.split(':').nth(1)?.trim().parse::<u64>().ok())
            .sum();
        let e = out.entry(name).or_default();
        e.threads += 1;
        e.cpu += Duration::from_secs_f64(ticks as f64 / hz);
        e.switches += switches;
    }
    Ok(out)
}

/// One thread name's share of a process (see [`thread_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ThreadStat {
    pub threads: usize,
    pub cpu: Duration,
    /// Voluntary and involuntary context switches.
    pub switches: u64,
}

/// User + system CPU time of this process (all threads).
pub fn self_cpu_time() -> Duration {
    // SAFETY: an all-zero rusage is valid; getrusage writes into it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the pointer is valid for writes.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    Reaped::from(0, &ru).cpu
}

// ---------------------------------------------------------------------------
// The machine
// ---------------------------------------------------------------------------

/// What the report says about the machine.
#[derive(Debug, Clone)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub memory: String,
    pub load_average: String,
    /// The file system the temporary homes live on.
    pub temp_fs: String,
}

impl Machine {
    pub fn describe() -> Self {
        let nproc = std::thread::available_parallelism().map_or(0, usize::from);
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = ["model name", "Model", "cpu model", "Processor"]
            .iter()
            .find_map(|key| {
                cpuinfo.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    (k.trim() == *key).then(|| v.trim().to_owned())
                })
            })
            .unwrap_or_else(|| "unknown".into());
        Self {
            nproc,
            cpu_model,
            kernel: kernel(),
            memory: fs::read_to_string("/proc/meminfo")
                .ok()
                .and_then(|t| {
                    t.lines()
                        .find_map(|l| l.strip_prefix("MemTotal:"))
                        .map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.trim_end_matches("kB").trim().parse::<u64>().ok())
                .map_or_else(|| "unknown".into(), |k| super::stats::mib(k * 1024)),
            load_average: load_average(),
            temp_fs: temp_fs(),
        }
    }
}

fn kernel() -> String {
    // SAFETY: an all-zero utsname is valid; uname fills it with C strings.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: the pointer is valid for writes.
    if unsafe { libc::uname(&mut u) } != 0 {
        return "unknown".into();
    }
    let s = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    format!("{} {} {}", s(&u.sysname), s(&u.release), s(&u.machine))
}

/// `/proc/loadavg`'s three averages.
pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The mount that holds the temporary directory: `<dir> on <mount> (<type>, <device>)`.
fn temp_fs() -> String {
    let dir = std::env::temp_dir();
    let dir = dir.canonicalize().unwrap_or(dir);
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let best = mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (dev, mnt, ty) = (f.next()?, f.next()?, f.next()?);
            dir.starts_with(mnt).then_some((mnt.len(), dev, mnt, ty))
        })
        .max_by_key(|m| m.0);
    match best {
        Some((_, dev, mnt, ty)) => format!("{} on {mnt} ({ty}, {dev})", dir.display()),
        None => dir.display().to_string(),
    }
}

// ---------------------------------------------------------------------------
// The disk
// ---------------------------------------------------------------------------

/// Sync latencies of the bare disk (see [`sync_latencies`]).
pub struct SyncProbe {
    /// Append 4 KiB, `fsync`: the file grows, so its metadata is journalled too.
    pub append_fsync: Vec<Duration>,
    /// Overwrite the same 4 KiB, `fsync`: what SQLite does to a reused WAL
    /// (it calls `fsync`, not `fdatasync`, as built here).
    pub overwrite_fsync: Vec<Duration>,
    /// Overwrite the same 4 KiB, `fdatasync`: the cheapest durable write.
    pub overwrite_fdatasync: Vec<Duration>,
}

/// Times `n` syncs of each kind in [`SyncProbe`] on a file in `dir`. A durable
/// SQLite commit (WAL, `synchronous=FULL`) includes at least one such sync,
/// so no durable commit can be faster on the same file system.
pub fn sync_latencies(dir: &Path, n: usize) -> Result<SyncProbe> {
    use std::os::unix::fs::FileExt;
    let path = dir.join("sync-probe");
    let mut f = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&path)?;
    let block = [0x5au8; 4096];
    let mut probe = SyncProbe {
        append_fsync: Vec::with_capacity(n),
        overwrite_fsync: Vec::with_capacity(n),
        overwrite_fdatasync: Vec::with_capacity(n),
    };
    // A warm-up, so the file exists on disk.
    f.write_all(&block)?;
    f.sync_all()?;
    for _ in 0..n {
        f.write_all(&block)?;
        let t = Instant::now();
        f.sync_all()?;
        probe.append_fsync.push(t.elapsed());
        f.write_all_at(&block, 0)?;
        let t = Instant::now();
        f.sync_all()?;
        probe.overwrite_fsync.push(t.elapsed());
        f.write_all_at(&block, 0)?;
        let t = Instant::now();
        f.sync_data()?;
        probe.overwrite_fdatasync.push(t.elapsed());
    }
    drop(f);
    let _ = fs::remove_file(&path);
    Ok(probe)
}
