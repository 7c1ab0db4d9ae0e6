//! HTTP/JSON to the daemon over its Unix socket (hyperlocal), always within a
//! deadline: a hung daemon must never hang the caller.

use std::path::Path;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use hyperlocal::UnixConnector;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Nothing listens: no socket file, or a stale one.
    #[error("no daemon listens on {0}")]
    NotRunning(String),
    /// Connected, but no answer in time: the daemon is hung or overloaded.
    #[error("the daemon did not answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot talk to the daemon: {0}")]
    Failed(String),
}

pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

pub async fn call(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
    deadline: Duration,
) -> Result<Answer, TransportError> {
    let client: Client<UnixConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(UnixConnector);
    let uri: hyper::Uri = hyperlocal::Uri::new(socket, path).into();
    let mut req = Request::builder().method(method).uri(uri);
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| TransportError::Failed(e.to_string()))?;
    let exchange = async {
        let res = client.request(req).await.map_err(|e| classify(socket, e))?;
        let status = res.status();
        let body = res
            .into_body()
            .collect()
            .await
            .map_err(|e| TransportError::Failed(format!("reading the answer: {e}")))?
            .to_bytes();
        Ok(Answer { status, body })
    };
    tokio::time::timeout(deadline, exchange)
        .await
        .map_err(|_| TransportError::Timeout(deadline))?
}

fn classify(socket: &Path, e: hyper_util::client::legacy::Error) -> TransportError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            )
        {
            return TransportError::NotRunning(socket.display().to_string());
        }
        source = s.source();
    }
    TransportError::Failed(format!(
        "{e}: {}",
        std::error::Error::source(&e)
            .map(|s| s.to_string())
            .unwrap_or_default()
    ))
}
