//! The closed-loop floor: what a daemon that did nothing but group-commit
//! could reach on this machine with the same clients.
//!
//! The multi-row ceiling of [`super::db`] times one transaction with nobody
//! waiting; the throughput runs are a closed loop in which every client waits
//! for its answer before it sends again, on the same two cores as the daemon.
//! This server is the daemon with everything but that loop taken out: its own
//! process, one runtime thread, a Unix socket, and a writer task that takes
//! whatever requests are waiting and commits them as one multi-row statement
//! list (`BEGIN IMMEDIATE; INSERT …; COMMIT`, one trip to sqlx's thread, WAL,
//! `synchronous=FULL`), answering each request after the sync. No HTTP, no
//! JSON, no stamping: the framing is a 4-byte length and the envelope's bytes,
//! the answer one byte. The bench's clients meet it exactly as they meet the
//! daemon, so "daemon / this" is the share of the achievable that the daemon
//! reaches, and a target above this figure cannot be met on this machine by
//! any daemon built on sqlx.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use super::db::ENVELOPE;

/// The argument that turns `kitty-bench` into this server:
/// `kitty-bench --closed-loop-server SOCKET DB`.
pub const SERVER_ARG: &str = "--closed-loop-server";

/// The largest request the server reads; the bench's are 400 bytes.
const MAX_FRAME: usize = 64 * 1024;
/// Rows per statement, as the daemon's `INSERT_CHUNK` (SQLite's bind limit
/// allows 32,766 parameters; four per row).
const MAX_GROUP: usize = 4096;

/// The server's `main`: runs until its stdin closes (the bench ending).
pub fn server_main(args: &[String]) -> std::process::ExitCode {
    match serve(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kitty-bench {SERVER_ARG}: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn serve(args: &[String]) -> Result<()> {
    let [socket, db] = args else {
        bail!("usage: kitty-bench {SERVER_ARG} SOCKET DB");
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let conn = super::db::open_like_queue_db(Path::new(db)).await?;
        let listener = UnixListener::bind(socket).with_context(|| format!("bind {socket}"))?;
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(writer(conn, rx));
        // The bench holds our stdin; its end (or the bench's) stops us. Every
        // answer was sent after its commit's sync, so exiting loses nothing.
        std::thread::spawn(|| {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            std::process::exit(0);
        });
        loop {
            let (stream, _) = listener.accept().await.context("accept")?;
            tokio::spawn(connection(stream, tx.clone()));
        }
    })
}

type Request = (Vec<u8>, oneshot::Sender<bool>);

async fn connection(mut stream: UnixStream, tx: mpsc::Sender<Request>) {
    let mut len = [0u8; 4];
    while stream.read_exact(&mut len).await.is_ok() {
        let n = u32::from_le_bytes(len) as usize;
        if n > MAX_FRAME {
            return;
        }
        let mut body = vec![0; n];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        let (reply, answer) = oneshot::channel();
        if tx.send((body, reply)).await.is_err() {
            return;
        }
        let ok = answer.await.unwrap_or(false);
        if stream.write_all(&[u8::from(ok)]).await.is_err() {
            return;
        }
    }
}

/// Group commit and nothing else: what is waiting, in one transaction.
async fn writer(mut conn: SqliteConnection, mut rx: mpsc::Receiver<Request>) {
    let mut next_id = 0u64;
    let mut group = Vec::new();
    while let Some(first) = rx.recv().await {
        group.push(first);
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(r) => group.push(r),
                Err(_) => break,
            }
        }
        let mut qb = QueryBuilder::<Sqlite>::new(
            "BEGIN IMMEDIATE; INSERT INTO queue (event_id, event_type, data, timestamp, retry_count) ",
        );
        qb.push_values(&group, |mut b, (body, _)| {
            next_id += 1;
            b.push_bind(format!("closed-loop-{next_id}"))
                .push_bind("WPStatusChanged")
                .push_bind(String::from_utf8_lossy(body).into_owned())
                .push_bind(1_770_000_000i64)
                .push("0");
        });
        qb.push("; COMMIT");
        let ok = qb.build().execute(&mut conn).await.is_ok();
        if !ok {
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut conn).await;
        }
        for (_, reply) in group.drain(..) {
            let _ = reply.send(ok);
        }
    }
}

/// A running server, stopped (and reaped) on drop.
pub struct Server {
    child: Child,
    socket: PathBuf,
    db: PathBuf,
}

impl Server {
    /// Starts `bench_exe --closed-loop-server` on a new database in `dir`.
    pub fn spawn(bench_exe: &Path, dir: &Path) -> Result<Self> {
        let socket = dir.join("closed-loop.sock");
        let db = dir.join("closed-loop.db");
        let child = Command::new(bench_exe)
            .arg(SERVER_ARG)
            .arg(&socket)
            .arg(&db)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("spawn {} {SERVER_ARG}", bench_exe.display()))?;
        let mut server = Self { child, socket, db };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&server.socket).is_err() {
            if let Some(status) = server.child.try_wait()? {
                bail!("the closed-loop server exited at start ({status})");
            }
            ensure!(
                Instant::now() < deadline,
                "the closed-loop server did not listen within 10 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(server)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Its database; complete once the server is stopped.
    pub fn db(&self) -> &Path {
        &self.db
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One client's kept-alive connection to the server.
pub struct Client {
    stream: UnixStream,
    frame: Vec<u8>,
}

impl Client {
    pub async fn connect(socket: &Path) -> Result<Self> {
        let stream = UnixStream::connect(socket)
            .await
            .with_context(|| format!("connect {}", socket.display()))?;
        let mut frame = (ENVELOPE.len() as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(ENVELOPE.as_bytes());
        Ok(Self { stream, frame })
    }

    /// Sends the envelope and waits for its answer: whether it is durable.
    pub async fn commit(&mut self) -> Result<bool> {
        self.stream.write_all(&self.frame).await?;
        let mut answer = [0u8; 1];
        self.stream.read_exact(&mut answer).await?;
        Ok(answer[0] == 1)
    }
}
