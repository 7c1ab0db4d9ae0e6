//! HTTP/JSON to the daemon over its Unix socket, always within a deadline: a
//! hung daemon must never hang the caller.
//!
//! Only a daemon of this user is talked to. Whoever listens on the socket path
//! is asked who it is (SO_PEERCRED / LOCAL_PEERCRED) before a byte is sent: a
//! process of another user bound there (possible when the socket's directory
//! was writable by others) is not our daemon, and gets nothing.

use std::path::Path;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Nothing listens: no socket file, or a stale one.
    #[error("no daemon listens on {0}")]
    NotRunning(String),
    /// Connected, but no answer in time: the daemon is hung or overloaded.
    #[error("the daemon did not answer within {0:?}")]
    Timeout(Duration),
    /// Another user's process listens on the socket: not our daemon.
    #[error(
        "{socket} is served by a process of uid {peer}, not of this user (uid {ours}); \
         it is not our daemon and was sent nothing"
    )]
    ForeignPeer {
        socket: String,
        peer: u32,
        ours: u32,
    },
    /// The daemon answered with an error, or something that is no answer.
    #[error("cannot talk to the daemon: {0}")]
    Failed(String),
    /// The exchange broke off while `doing`.
    #[error("cannot talk to the daemon: {doing}")]
    Broken {
        doing: String,
        #[source]
        source: BoxError,
    },
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl TransportError {
    /// The exchange broke off while `doing`, because of `source`.
    pub fn broken(doing: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Broken {
            doing: doing.into(),
            source: source.into(),
        }
    }
}

impl TransportError {
    /// No daemon of ours answered: nothing listens, it is hung, or what
    /// listens is not ours. A caller that can do without the daemon should.
    pub fn no_daemon(&self) -> bool {
        matches!(
            self,
            Self::NotRunning(_) | Self::Timeout(_) | Self::ForeignPeer { .. }
        )
    }
}

/// The answer of the daemon, as it came.
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

/// Aborts the task driving a connection when the call ends, answered or not.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub async fn call(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
    deadline: Duration,
) -> Result<Answer, TransportError> {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, "localhost");
    if body.is_some() {
        req = req.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| TransportError::broken("building the request", e))?;
    let exchange = async {
        let stream = connect(socket).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| TransportError::broken("HTTP handshake", e))?;
        let _driver = AbortOnDrop(tokio::spawn(async move {
            let _ = conn.await;
        }));
        let res = sender
            .send_request(req)
            .await
            .map_err(|e| TransportError::broken("sending the request", e))?;
        let status = res.status();
        let body = res
            .into_body()
            .collect()
            .await
            .map_err(|e| TransportError::broken("reading the answer", e))?
            .to_bytes();
        Ok(Answer { status, body })
    };
    tokio::time::timeout(deadline, exchange)
        .await
        .map_err(|_| TransportError::Timeout(deadline))?
}

/// Connects, and makes sure the listener is a process of this user (also
/// for `tail`, which streams instead of reading one answer).
pub async fn connect(socket: &Path) -> Result<UnixStream, TransportError> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                TransportError::NotRunning(socket.display().to_string())
            }
            _ => TransportError::broken(format!("cannot connect to {}", socket.display()), e),
        })?;
    let peer = stream
        .peer_cred()
        .map_err(|e| TransportError::broken("cannot tell who serves the socket", e))?
        .uid();
    let ours = kitty_store::sys::euid();
    if peer != ours {
        return Err(TransportError::ForeignPeer {
            socket: socket.display().to_string(),
            peer,
            ours,
        });
    }
    Ok(stream)
}

/// A call whose success answer is `T`; an error answer becomes
/// [`TransportError::Failed`] with the daemon's message.
pub async fn call_json<T: serde::de::DeserializeOwned>(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
    deadline: Duration,
) -> Result<T, TransportError> {
    let a = call(socket, method, path, body, deadline).await?;
    if !a.status.is_success() {
        let msg = serde_json::from_slice::<kitty_proto::api::ErrorBody>(&a.body)
            .map(|b| b.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&a.body).into_owned());
        return Err(TransportError::Failed(format!("{}: {msg}", a.status)));
    }
    serde_json::from_slice(&a.body).map_err(|e| TransportError::broken("unreadable answer", e))
}
