//! The socket's accept loop: who gets in, how many at once, and for how long.
//!
//! - The peer's uid (SO_PEERCRED, from the kernel) is checked as the
//!   connection is accepted, before a byte of it is read: another user gets a
//!   fixed 403 and is closed, and never reaches the HTTP parser or the router.
//! - At most [`MAX_CONNECTIONS`] are served at once. Past that, new ones wait
//!   in the kernel's backlog, costing this process no descriptor, until one
//!   ends: held connections cannot use up the descriptors the queue, the
//!   WebSocket and the log need.
//! - A connection must send each request head within [`HEADER_TIMEOUT`] (an
//!   idle keep-alive one too), a body within `server::BODY_TIMEOUT`, and is
//!   closed after [`MAX_LIFETIME`] once its request in flight is answered.
//! - [`raise_fd_limit`] lifts the soft descriptor limit to the hard one.
//!
//! The [`SocketGuard`] runs in the same loop: when the socket file is deleted
//! it hands over a new listener, and when the home's instance lock is lost
//! the loop ends with an error.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use kitty_proto::VERSION;
use kitty_proto::api::{ErrorBody, ErrorCode, PROTOCOL, PROTOCOL_HEADER, VERSION_HEADER};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tower::ServiceExt;

use crate::server::{self, Peer};
use crate::socket_guard::{GuardEvent, SocketGuard};

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 256;
/// Time to send a request head, from the connection's start or the previous answer.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a connection lives; its request in flight still gets its answer.
pub const MAX_LIFETIME: Duration = Duration::from_secs(60);
/// How long a closing connection may take to finish its request.
const GRACE: Duration = Duration::from_secs(5);
/// Refusals of other users written at once; past that they are just closed.
const MAX_REFUSING: usize = 8;
/// How long a refusal may take to write (and to read what the peer sent).
const REFUSE_TIME: Duration = Duration::from_secs(1);

/// Serves `router` on `listener` until `shutdown` resolves, then lets the
/// connections finish their requests (the caller bounds that wait).
pub async fn serve(
    mut listener: UnixListener,
    router: Router,
    mut guard: Option<SocketGuard>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(true);
    let ours = kitty_store::sys::uid();
    let mut refusals = Throttle::default();
    let mut accept_errors = Throttle::default();
    let mut slot: Option<OwnedSemaphorePermit> = None;
    tokio::pin!(shutdown);
    let result = loop {
        let Some(held) = slot.take() else {
            tokio::select! {
                _ = &mut shutdown => break Ok(()),
                ev = next_event(&mut guard) => if let Err(e) = on_guard(ev, &mut listener) { break Err(e) },
                s = slots.clone().acquire_owned() => slot = Some(s.expect("the semaphore is never closed")),
            }
            continue;
        };
        tokio::select! {
            _ = &mut shutdown => break Ok(()),
            ev = next_event(&mut guard) => {
                slot = Some(held);
                if let Err(e) = on_guard(ev, &mut listener) { break Err(e) }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let peer = peer_of(&stream);
                    if peer.uid == Some(ours) {
                        serve_one(&http, stream, peer, ours, router.clone(), held, stop_rx.clone());
                    } else {
                        slot = Some(held);
                        if refusals.allow() {
                            tracing::warn!(peer_uid = ?peer.uid, peer_pid = ?peer.pid, also = refusals.take_suppressed(),
                                "refused a connection from another user");
                        }
                        match refusing.clone().try_acquire_owned() {
                            Ok(permit) => { tokio::spawn(refuse(stream, permit)); }
                            Err(_) => drop(stream),
                        }
                    }
                }
                Err(e) => {
                    slot = Some(held);
                    if accept_errors.allow() {
                        tracing::warn!(also = accept_errors.take_suppressed(), "cannot accept a connection: {e}");
                    }
                    // Out of descriptors (or memory): give the connections
                    // being served a moment to end instead of spinning.
                    if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)) {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            },
        }
    };
    drop(listener);
    drop(slot);
    let _ = stop_tx.send(true);
    let _ = slots.acquire_many(MAX_CONNECTIONS as u32).await;
    result
}

async fn next_event(guard: &mut Option<SocketGuard>) -> GuardEvent {
    match guard {
        Some(g) => g.next().await,
        None => std::future::pending().await,
    }
}

fn on_guard(ev: GuardEvent, listener: &mut UnixListener) -> io::Result<()> {
    match ev {
        GuardEvent::Rebound(fresh) => {
            *listener = fresh;
            Ok(())
        }
        GuardEvent::Lost(why) => Err(io::Error::other(why)),
    }
}

fn peer_of(stream: &UnixStream) -> Peer {
    match stream.peer_cred() {
        Ok(c) => Peer {
            uid: Some(c.uid()),
            pid: c.pid(),
        },
        Err(_) => Peer {
            uid: None,
            pid: None,
        },
    }
}

fn serve_one(
    http: &http1::Builder,
    stream: UnixStream,
    peer: Peer,
    ours: u32,
    router: Router,
    slot: OwnedSemaphorePermit,
    mut stop: watch::Receiver<bool>,
) {
    // One async block per request, not a chain of middleware layers: the
    // uid check and the version headers cost a comparison and two inserts.
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let answer = (peer.uid == Some(ours)).then(|| router.clone().oneshot(req));
        async move {
            let mut res = match answer {
                Some(answer) => match answer.await {
                    Ok(res) => res,
                    Err(never) => match never {},
                },
                None => {
                    tracing::warn!(peer_uid = ?peer.uid, peer_pid = ?peer.pid, "refused a request from another user");
                    server::forbidden()
                }
            };
            server::name_the_version(&mut res);
            Ok::<_, std::convert::Infallible>(res)
        }
    });
    let conn = http.serve_connection(TokioIo::new(stream), service);
    tokio::spawn(async move {
        let _slot = slot;
        tokio::pin!(conn);
        tokio::select! {
            done = conn.as_mut() => return log_end(done),
            _ = tokio::time::sleep(MAX_LIFETIME) => {}
            // The Ref that wait_for yields is not Send; drop it inside.
            _ = async { let _ = stop.wait_for(|s| *s).await; } => {}
        }
        conn.as_mut().graceful_shutdown();
        match tokio::time::timeout(GRACE, conn).await {
            Ok(done) => log_end(done),
            Err(_) => tracing::debug!("closed a connection that did not finish in time"),
        }
    });
}

fn log_end(done: Result<(), hyper::Error>) {
    if let Err(e) = done {
        // Header timeouts and peers that hang up are the usual ones: not news.
        tracing::debug!("connection ended: {e}");
    }
}

/// Answers another user's connection with a fixed 403, then closes it. What
/// it sent is never parsed; the request head is only read up to its end
/// first, because an HTTP client that gets an answer before it has written
/// its request may take it for garbage instead of the refusal.
async fn refuse(mut stream: UnixStream, _permit: OwnedSemaphorePermit) {
    let body = ErrorBody {
        error: ErrorCode::Forbidden,
        message: "this daemon serves only the user that runs it".into(),
        field: None,
        rule: None,
        index: None,
        version: VERSION.into(),
    };
    let body = serde_json::to_vec(&body).expect("an ErrorBody serializes");
    let head = format!(
        "HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\n{VERSION_HEADER}: {VERSION}\r\n\
         {PROTOCOL_HEADER}: {PROTOCOL}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = tokio::time::timeout(REFUSE_TIME, async {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while seen.len() < 16 * 1024 && !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await? {
                0 => break,
                n => seen.extend_from_slice(&buf[..n]),
            }
        }
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&body).await?;
        stream.shutdown().await?;
        // Read (and drop) the rest, so that the peer's write of a body does
        // not fail before it reads the answer.
        let mut left: usize = 64 * 1024;
        while left > 0 {
            match stream.read(&mut buf).await? {
                0 => break,
                n => left = left.saturating_sub(n),
            }
        }
        io::Result::Ok(())
    })
    .await;
}

/// At most one log line a second for a repeated event, counting the rest.
#[derive(Default)]
struct Throttle {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    fn allow(&mut self) -> bool {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            self.suppressed += 1;
            return false;
        }
        self.last = Some(now);
        true
    }

    fn take_suppressed(&mut self) -> u64 {
        std::mem::take(&mut self.suppressed)
    }
}

/// Lifts the soft limit on open descriptors to the hard one (on macOS, to
/// OPEN_MAX when the hard limit is unlimited). Returns the limit now in force.
pub fn raise_fd_limit() -> io::Result<u64> {
    kitty_store::sys::raise_fd_limit()
}
