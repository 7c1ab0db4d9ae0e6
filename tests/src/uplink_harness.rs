//! Uplink harness: runs the real `kitty-saas-dev` binary next to the real
//! `kitty-syncd` of a [`TestHome`], steers it through its admin API with a
//! tiny blocking HTTP/1.1 client (loopback only), logs a home in by writing
//! the credentials file from a real login reply, and reads what the daemon's
//! uplink shows (`/v1/status`, `/v1/dead`, queue.db's `dead_letter`).
//!
//! Every wait is bounded ([`DRAIN_GUARD`] for deliveries, [`HANG_GUARD`] for
//! single steps); nothing asserts on elapsed time.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kitty_proto::api::{Accepted, DeadView, Requeued, SyncTriggered, UplinkStatus};
use serde_json::{Value, json};
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

use crate::harness::{Api, HANG_GUARD, Response, TestHome, binary, new_ulid, wait_with_guard};
use crate::saas::Counters;

/// The longest a delivery (a drain, a recovery) may take before the test fails.
pub const DRAIN_GUARD: Duration = Duration::from_secs(60);

/// How often the waits below look again. Each look is an HTTP request or a
/// SQLite read, so not too often on a loaded machine.
pub const POLL: Duration = Duration::from_millis(100);

/// The account every uplink test logs in with, and its team.
pub const USER: &str = "alice";
pub const PASSWORD: &str = "secret";
pub const TEAM: &str = "acme";

/// Another team's account, for cross-tenant cases.
pub const OTHER_USER: &str = "bob";
pub const OTHER_PASSWORD: &str = "pw";
pub const OTHER_TEAM: &str = "other";

/// Most events a `POST /v1/events` may carry.
pub const EMIT_CHUNK: usize = 1000;

// ---------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------

/// Polls `f` every [`POLL`] until it returns `Ok`, for at most `timeout`. The
/// `Err` carries the latest observation, shown when the wait times out.
pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) => {
                if start.elapsed() > timeout {
                    panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
                }
            }
        }
        std::thread::sleep(POLL);
    }
}

/// A loopback port held by a bound socket that does not listen: connects to
/// it are refused, and no other process can bind it while this lives. Hand it
/// to [`SaasDev::start_on`] to bring a server up on exactly this port.
pub struct ReservedPort {
    socket: socket2::Socket,
    port: u16,
}

impl ReservedPort {
    pub fn new() -> Self {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        socket
            .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .expect("bind 127.0.0.1:0");
        let port = socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .expect("local_addr")
            .port();
        Self { socket, port }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Default for ReservedPort {
    fn default() -> Self {
        Self::new()
    }
}

// ---------------------------------------------------------------------------
// A blocking HTTP/1.1 client for loopback TCP
// ---------------------------------------------------------------------------

/// `http://HOST:PORT[/...]` → the socket address (loopback tests only).
pub fn addr_of(url: &str) -> SocketAddr {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("not an http:// URL: {url}"));
    let authority = rest.split('/').next().unwrap_or(rest);
    authority
        .parse()
        .unwrap_or_else(|e| panic!("{url}: {authority:?} is not IP:PORT: {e}"))
}

/// One request over a fresh connection (`Connection: close`), read to the end.
pub fn try_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, HANG_GUARD)?;
    stream.set_read_timeout(Some(HANG_GUARD))?;
    stream.set_write_timeout(Some(HANG_GUARD))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes)?;
    stream.flush()?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf)?;
    crate::harness::parse_response(&buf)
}

/// [`try_http`], panicking on a transport error.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    try_http(addr, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} http://{addr}{path} failed: {e}"))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).expect("gzip");
    enc.finish().expect("gzip")
}

// ---------------------------------------------------------------------------
// kitty-saas-dev as a process
// ---------------------------------------------------------------------------

static SERVERS_STARTED: AtomicUsize = AtomicUsize::new(0);

/// A running `kitty-saas-dev` (the binary), with `alice:secret:acme` and
/// `bob:pw:other`. Dropping it SIGKILLs it; on a panic its log is printed.
pub struct SaasDev {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    exited: bool,
}

impl SaasDev {
    /// Starts the server on a free loopback port with extra `args` (flags of
    /// `kitty-saas-dev --help`); its stderr goes to `<log_dir>/saas-<n>.log`.
    pub fn start(log_dir: &Path, args: &[&str]) -> Self {
        Self::spawn(log_dir, "127.0.0.1:0", None, args)
    }

    /// Starts the server on a port reserved earlier (e.g. one the daemon has
    /// been failing to reach): the socket starts listening here and is passed
    /// to the server as fd 3, so the port never is free for anyone else.
    pub fn start_on(log_dir: &Path, reserved: ReservedPort, args: &[&str]) -> Self {
        reserved
            .socket
            .listen(1024)
            .expect("listen on the reserved port");
        let listener = TcpListener::from(reserved.socket);
        Self::spawn(log_dir, "fd 3", Some(listener), args)
    }

    fn spawn(log_dir: &Path, listen: &str, inherit: Option<TcpListener>, args: &[&str]) -> Self {
        let n = SERVERS_STARTED.fetch_add(1, Ordering::SeqCst);
        let log = log_dir.join(format!("saas-{}-{n}.log", std::process::id()));
        let file = std::fs::File::create(&log).expect("server log");
        let mut cmd = Command::new(binary("kitty-saas-dev"));
        match &inherit {
            Some(listener) => {
                let fd = listener.as_raw_fd();
                cmd.args(["--listen-fd", "3"]);
                // SAFETY: only async-signal-safe calls between fork and exec;
                // `inherit` outlives the spawn.
                unsafe {
                    cmd.pre_exec(move || {
                        // dup2 onto itself keeps close-on-exec, so clear it by hand then.
                        let ok = if fd == 3 {
                            libc::fcntl(3, libc::F_SETFD, 0) >= 0
                        } else {
                            libc::dup2(fd, 3) >= 0
                        };
                        if ok {
                            Ok(())
                        } else {
                            Err(std::io::Error::last_os_error())
                        }
                    });
                }
            }
            None => {
                cmd.args(["--listen", listen]);
            }
        }
        cmd.arg("--memory")
            .args(["--user", &format!("{USER}:{PASSWORD}:{TEAM}")])
            .args([
                "--user",
                &format!("{OTHER_USER}:{OTHER_PASSWORD}:{OTHER_TEAM}"),
            ])
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("KITTY_SAAS_JWT_SECRET")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(file);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn kitty-saas-dev: {e}"));
        // The server has its own copy now; ours would keep the port alive
        // (queuing connects) after the server stops.
        drop(inherit);
        let stdout = child.stdout.take().expect("stdout pipe");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            let _ = tx.send(first);
            // Keep draining so the server never writes into a closed pipe.
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let first = rx.recv_timeout(HANG_GUARD).unwrap_or_default();
        let Some(addr) = first
            .trim()
            .strip_prefix("listening on http://")
            .and_then(|a| a.parse::<SocketAddr>().ok())
        else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "kitty-saas-dev {listen} {args:?} did not start (first line {first:?}):\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        Self {
            child,
            addr,
            log,
            exited: false,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT`, the daemon's `server_url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        http(self.addr, method, path, headers, body)
    }

    fn admin(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let headers: &[(&str, &str)] = if body.is_some() {
            &[("Content-Type", "application/json")]
        } else {
            &[]
        };
        let r = self.request(method, path, headers, &bytes);
        r.assert_status(200);
        r.json()
    }

    /// `GET /admin/counters`.
    pub fn counters(&self) -> Counters {
        serde_json::from_value(self.admin("GET", "/admin/counters", None))
            .expect("/admin/counters has the Counters shape")
    }

    /// `POST /admin/faults` with a partial patch; returns the switches now in force.
    pub fn set_faults(&self, patch: Value) -> Value {
        self.admin("POST", "/admin/faults", Some(&patch))
    }

    /// `GET /admin/faults`.
    pub fn faults(&self) -> Value {
        self.admin("GET", "/admin/faults", None)
    }

    /// `POST /admin/ws/drop`: closes every open WebSocket; returns how many.
    pub fn drop_websockets(&self) -> u64 {
        self.admin("POST", "/admin/ws/drop", Some(&json!({})))["dropped"]
            .as_u64()
            .expect("dropped")
    }

    /// Every stored envelope (of `team`, if given), in arrival order.
    pub fn events(&self, team: Option<&str>) -> Vec<Value> {
        let mut out: Vec<Value> = Vec::new();
        let team_q = team.map(|t| format!("&team={t}")).unwrap_or_default();
        loop {
            let page = self.admin(
                "GET",
                &format!("/admin/events?limit=1000&offset={}{team_q}", out.len()),
                None,
            );
            let total = page["total"].as_u64().expect("total") as usize;
            let events = page["events"].as_array().expect("events").clone();
            let got = events.len();
            out.extend(events);
            if out.len() >= total || got == 0 {
                return out;
            }
        }
    }

    /// `POST /api/v1/token/`: the raw reply.
    pub fn try_login(&self, user: &str, password: &str) -> Response {
        let body = json!({"username": user, "password": password}).to_string();
        self.request(
            "POST",
            "/api/v1/token/",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
    }

    /// A fresh access token of `user`.
    pub fn access_token(&self, user: &str, password: &str) -> String {
        let r = self.try_login(user, password);
        r.assert_status(200);
        let v: Value = r.json();
        v["access"].as_str().expect("access").to_owned()
    }

    /// A gzip batch POST as the daemon sends it, from the test as another node.
    pub fn post_batch(&self, access: &str, events: &[Value]) -> Response {
        let body = gzip(json!({ "events": events }).to_string().as_bytes());
        let auth = format!("Bearer {access}");
        self.request(
            "POST",
            "/api/v1/events/batch/",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
                ("Content-Encoding", "gzip"),
            ],
            &body,
        )
    }

    /// SIGTERM, then wait (hang guard); the port is free afterwards.
    pub fn stop(mut self) {
        self.stop_in_place();
    }

    fn stop_in_place(&mut self) {
        if self.exited {
            return;
        }
        // SAFETY: kill(2) on our own, unreaped child.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        if wait_with_guard(&mut self.child, HANG_GUARD).is_none() {
            panic!(
                "kitty-saas-dev did not stop on SIGTERM within {HANG_GUARD:?}; killed it:\n{}",
                self.log()
            );
        }
        self.exited = true;
    }

    /// SIGKILL, then wait.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.exited = true;
    }
}

impl Drop for SaasDev {
    fn drop(&mut self) {
        if !self.exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            let log = self.log();
            // The tail is what matters; a long run logs every connection.
            let tail: String = {
                let lines: Vec<&str> = log.lines().collect();
                lines[lines.len().saturating_sub(200)..].join("\n")
            };
            eprintln!(
                "--- kitty-saas-dev ({}) log, last 200 lines ---\n{tail}",
                self.addr
            );
        }
    }
}

// ---------------------------------------------------------------------------
// config.toml and credentials
// ---------------------------------------------------------------------------

/// `config.toml` with `[sync] server_url`, `batch_interval_secs`, `flush_interval_secs`.
pub fn write_sync_config(
    home: &TestHome,
    server_url: &str,
    batch_interval_secs: u64,
    flush_interval_secs: u64,
) {
    home.write(
        "config.toml",
        format!(
            "[sync]\nserver_url = \"{server_url}\"\nbatch_interval_secs = {batch_interval_secs}\n\
             flush_interval_secs = {flush_interval_secs}\n"
        ),
    );
}

/// Naive UTC as the spec-kitty CLI writes it: `2026-02-04T13:02:09.123456`.
pub fn naive_utc_in(secs: i64) -> String {
    (chrono::Utc::now() + chrono::TimeDelta::seconds(secs))
        .naive_utc()
        .format("%Y-%m-%dT%H:%M:%S%.6f")
        .to_string()
}

fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Runs `f` holding the exclusive lock on `<home>/credentials.lock`, as every
/// writer of the credentials file must (CONTRACT.md §1).
pub fn with_credentials_lock<T>(home: &TestHome, f: impl FnOnce() -> T) -> T {
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(home.file("credentials.lock"))
        .expect("open credentials.lock");
    let start = Instant::now();
    loop {
        // SAFETY: flock on a descriptor we own for the whole call.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            break;
        }
        if start.elapsed() > HANG_GUARD {
            panic!("credentials.lock still held after {HANG_GUARD:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = f();
    // SAFETY: as above; closing the file would release it too.
    unsafe {
        libc::flock(lock.as_raw_fd(), libc::LOCK_UN);
    }
    out
}

/// Writes `<home>/credentials` (mode 0600, atomically, under the lock) from a
/// login or refresh reply of the server at `server_url`.
pub fn write_credentials_from_reply(home: &TestHome, server_url: &str, user: &str, reply: &Value) {
    let field = |k: &str| {
        reply[k]
            .as_str()
            .unwrap_or_else(|| panic!("login reply lacks {k}: {reply}"))
            .to_owned()
    };
    let secs = |a: &str, b: &str, default: i64| {
        reply[a]
            .as_i64()
            .or_else(|| reply[b].as_i64())
            .unwrap_or(default)
    };
    let access_life = secs("access_lifetime", "expires_in", 900);
    let refresh_life = secs("refresh_lifetime", "refresh_expires_in", 604_800);
    let username = reply["username"].as_str().unwrap_or(user);
    let mut text = format!(
        "[tokens]\naccess = {}\nrefresh = {}\naccess_expires_at = {}\nrefresh_expires_at = {}\n\n[user]\nusername = {}\n",
        toml_str(&field("access")),
        toml_str(&field("refresh")),
        toml_str(&naive_utc_in(access_life)),
        toml_str(&naive_utc_in(refresh_life)),
        toml_str(username),
    );
    if let Some(team) = reply["team_slug"].as_str() {
        text.push_str(&format!("team_slug = {}\n", toml_str(team)));
    }
    text.push_str(&format!("\n[server]\nurl = {}\n", toml_str(server_url)));
    with_credentials_lock(home, || {
        let tmp = home.file(&format!(".credentials.{}.tmp", std::process::id()));
        std::fs::write(&tmp, &text).expect("write credentials");
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        std::fs::rename(&tmp, home.file("credentials")).expect("rename credentials");
    });
}

/// Logs `user` in at `server_url` (`POST /api/v1/token/`) and writes the
/// credentials file from the reply, as `spec-kitty auth login` does. Returns
/// the reply.
pub fn login(home: &TestHome, server_url: &str, user: &str, password: &str) -> Value {
    let body = json!({"username": user, "password": password}).to_string();
    let r = http(
        addr_of(server_url),
        "POST",
        "/api/v1/token/",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    );
    r.assert_status(200);
    let reply: Value = r.json();
    write_credentials_from_reply(home, server_url, user, &reply);
    reply
}

/// The credentials file as text, if present.
pub fn credentials_text(home: &TestHome) -> Option<String> {
    std::fs::read_to_string(home.file("credentials")).ok()
}

/// A `key = "value"` of the credentials file (the first such key in any
/// table: `access`, `refresh`, `team_slug`, `url` are unique).
pub fn credentials_field(home: &TestHome, key: &str) -> Option<String> {
    let text = credentials_text(home)?;
    text.lines().find_map(|line| {
        let (k, v) = line.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
    })
}

// ---------------------------------------------------------------------------
// The daemon's uplink through its socket API
// ---------------------------------------------------------------------------

/// The uplink's routes of the socket API.
pub trait UplinkApi {
    /// `GET /v1/status`'s `uplink` object.
    fn uplink(&self) -> UplinkStatus;
    /// `POST /v1/sync`, asserting 202.
    fn sync_now(&self) -> SyncTriggered;
    /// `GET /v1/dead?limit=N`.
    fn dead(&self, limit: usize) -> DeadView;
    /// `POST /v1/dead/retry`.
    fn retry_dead(&self) -> Requeued;
    /// Emits `n` events made by `make(i)`, in requests of up to 1,000.
    fn emit_many(&self, n: usize, make: &dyn Fn(usize) -> Value) -> Vec<Accepted>;
    /// Waits until the uplink's state is `state`; returns the status then.
    fn wait_state(&self, state: &str, timeout: Duration) -> UplinkStatus;
}

impl UplinkApi for Api {
    fn uplink(&self) -> UplinkStatus {
        self.status().uplink
    }

    fn sync_now(&self) -> SyncTriggered {
        let r = self.request("POST", "/v1/sync", Some(b""));
        r.assert_status(202);
        r.json()
    }

    fn dead(&self, limit: usize) -> DeadView {
        let r = self.get(&format!("/v1/dead?limit={limit}"));
        r.assert_status(200);
        r.json()
    }

    fn retry_dead(&self) -> Requeued {
        let r = self.request("POST", "/v1/dead/retry", Some(b""));
        assert!(
            (200..300).contains(&r.status),
            "POST /v1/dead/retry: {} {}",
            r.status,
            r.text()
        );
        r.json()
    }

    fn emit_many(&self, n: usize, make: &dyn Fn(usize) -> Value) -> Vec<Accepted> {
        let mut out = Vec::with_capacity(n);
        let mut i = 0;
        while i < n {
            let end = (i + EMIT_CHUNK).min(n);
            let chunk: Vec<Value> = (i..end).map(make).collect();
            out.extend(self.emit_batch(&chunk));
            i = end;
        }
        out
    }

    fn wait_state(&self, state: &str, timeout: Duration) -> UplinkStatus {
        wait_until(&format!("uplink state {state}"), timeout, || {
            let u = self.uplink();
            if u.state.as_str() == state {
                Ok(u)
            } else {
                Err(format!("{u:?}"))
            }
        })
    }
}

// ---------------------------------------------------------------------------
// queue.db: the dead_letter table
// ---------------------------------------------------------------------------

/// Runs one scalar query on `<home>/queue.db`; None when it fails (e.g. the
/// table does not exist yet).
pub fn sql_i64(home: &TestHome, sql: &str) -> Option<i64> {
    let path = home.file("queue.db");
    let sql = sql.to_owned();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let opts = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(false)
            .busy_timeout(Duration::from_secs(10));
        let mut conn = SqliteConnection::connect_with(&opts).await.ok()?;
        let v: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&mut conn)
            .await
            .ok();
        let _ = conn.close().await;
        v
    })
}

/// Rows in queue.db's `dead_letter` table (0 when it does not exist).
pub fn dead_letter_rows(home: &TestHome) -> i64 {
    sql_i64(home, "SELECT COUNT(*) FROM dead_letter").unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------

/// A complete, valid envelope of `team` from another node, with `lamport`.
pub fn foreign_envelope(team: &str, lamport: u64) -> Value {
    let mut v = crate::harness::cli_envelope(&new_ulid(), lamport);
    v["team_slug"] = team.into();
    v["node_id"] = "feedfacecafe".into();
    v
}

/// Points `home` at `server` (`config.toml` with batch_interval_secs and
/// flush_interval_secs as given) and, when `logged_in`, logs alice in.
pub fn configure(
    home: &TestHome,
    server: &SaasDev,
    batch_interval_secs: u64,
    flush_interval_secs: u64,
    logged_in: bool,
) {
    write_sync_config(
        home,
        &server.url(),
        batch_interval_secs,
        flush_interval_secs,
    );
    if logged_in {
        login(home, &server.url(), USER, PASSWORD);
    }
}

/// Waits until the server has stored `n` distinct events and the daemon's
/// queue is empty; returns the counters then.
pub fn wait_delivered(server: &SaasDev, home: &TestHome, n: u64, timeout: Duration) -> Counters {
    let db = home.db();
    wait_until(
        &format!("{n} events stored at the server and an empty queue"),
        timeout,
        || {
            let c = server.counters();
            let depth = db.count();
            if c.unique_event_ids >= n && depth == 0 {
                eprintln!("delivered: {c:?}");
                Ok(c)
            } else {
                let uplink = home
                    .api()
                    .try_request("GET", "/v1/status", None)
                    .map(|r| {
                        let v: Value = serde_json::from_slice(&r.body).unwrap_or_default();
                        v["uplink"].to_string()
                    })
                    .unwrap_or_else(|e| format!("no status: {e}"));
                Err(format!(
                    "queue depth {depth}, server {c:?}, daemon uplink {uplink}"
                ))
            }
        },
    )
}
