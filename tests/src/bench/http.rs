//! HTTP/1.1 to the daemon over its Unix socket, two ways:
//!
//! - [`RawConn`]: blocking, hand-written HTTP/1.1 on a std `UnixStream`, kept
//!   alive. The least client-side work per request, so a sequential round
//!   trip measures the daemon rather than the client.
//! - [`AsyncConn`]: hyper's HTTP/1.1 client connection on a tokio
//!   `UnixStream`, kept alive; many of them on one runtime make the
//!   concurrent load.
//!
//! Every read and write is bounded by [`IO_TIMEOUT`].

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// The longest one request may take before the bench gives up on it.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// One HTTP answer: status and body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The bytes of one request.
pub fn request_bytes(method: &str, path: &str, body: Option<&[u8]>, close: bool) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: localhost\r\n");
    if close {
        head.push_str("connection: close\r\n");
    }
    if let Some(b) = body {
        head.push_str(&format!(
            "content-type: application/json\r\ncontent-length: {}\r\n",
            b.len()
        ));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    if let Some(b) = body {
        out.extend_from_slice(b);
    }
    out
}

/// A kept-alive blocking HTTP/1.1 connection.
pub struct RawConn {
    stream: UnixStream,
    buf: Vec<u8>,
}

impl RawConn {
    pub fn connect(socket: &Path) -> Result<Self> {
        let stream = UnixStream::connect(socket)
            .with_context(|| format!("connect to {}", socket.display()))?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Self {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Sends prepared request bytes and reads one answer.
    pub fn send(&mut self, request: &[u8]) -> Result<Answer> {
        self.stream
            .write_all(request)
            .context("write the request")?;
        self.read_answer()
    }

    fn fill(&mut self) -> Result<()> {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk).context("read the answer")?;
        if n == 0 {
            bail!("the daemon closed the connection mid-answer");
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    fn read_answer(&mut self) -> Result<Answer> {
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            self.fill()?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).context("answer head")?;
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("bad status line in {head:?}"))?;
        let mut length = None;
        let mut chunked = false;
        for line in lines {
            if let Some((k, v)) = line.split_once(':') {
                let (k, v) = (k.trim(), v.trim());
                if k.eq_ignore_ascii_case("content-length") {
                    length = Some(v.parse::<usize>().context("content-length")?);
                } else if k.eq_ignore_ascii_case("transfer-encoding")
                    && v.eq_ignore_ascii_case("chunked")
                {
                    chunked = true;
                }
            }
        }
        self.buf.drain(..head_end);
        let body = if chunked {
            self.read_chunked()?
        } else if let Some(len) = length {
            while self.buf.len() < len {
                self.fill()?;
            }
            self.buf.drain(..len).collect()
        } else {
            // Neither: the body runs to the end of the connection.
            let mut rest = std::mem::take(&mut self.buf);
            self.stream.read_to_end(&mut rest)?;
            rest
        };
        Ok(Answer { status, body })
    }

    fn read_chunked(&mut self) -> Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = find(&self.buf, b"\r\n") {
                    break i;
                }
                self.fill()?;
            };
            let size_text = std::str::from_utf8(&self.buf[..line_end])?;
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .context("chunk size")?;
            self.buf.drain(..line_end + 2);
            while self.buf.len() < size + 2 {
                self.fill()?;
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
            if size == 0 {
                return Ok(body);
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One request on a fresh connection with `connection: close`.
pub fn one_shot(socket: &Path, request: &[u8]) -> Result<Answer> {
    RawConn::connect(socket)?.send(request)
}

/// A kept-alive hyper HTTP/1.1 client connection on a tokio `UnixStream`.
pub struct AsyncConn {
    sender: SendRequest<Full<Bytes>>,
}

impl AsyncConn {
    /// Connects; the connection's driver runs as a task on the current runtime.
    pub async fn connect(socket: &Path) -> Result<Self> {
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .with_context(|| format!("connect to {}", socket.display()))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP/1.1 handshake")?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self { sender })
    }

    /// `POST path` with a JSON body; the status and the body.
    pub async fn post(&mut self, path: &str, body: Bytes) -> Result<Answer> {
        let req = hyper::Request::post(path)
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(body))?;
        let exchange = async {
            self.sender.ready().await?;
            let res = self.sender.send_request(req).await?;
            let status = res.status().as_u16();
            let body = res.into_body().collect().await?.to_bytes().to_vec();
            Ok::<_, hyper::Error>(Answer { status, body })
        };
        match tokio::time::timeout(IO_TIMEOUT, exchange).await {
            Ok(r) => r.context("request"),
            Err(_) => bail!("no answer within {IO_TIMEOUT:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A one-connection server that answers every request with `answers[i]`.
    fn serve(answers: Vec<&'static [u8]>) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            for a in answers {
                let _ = s.read(&mut buf).unwrap();
                s.write_all(a).unwrap();
            }
        });
        (dir, path)
    }

    #[test]
    fn reads_content_length_and_chunked_answers_on_one_connection() {
        let (_dir, path) = serve(vec![
            b"HTTP/1.1 202 Accepted\r\ncontent-length: 5\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        ]);
        let mut c = RawConn::connect(&path).unwrap();
        let req = request_bytes("POST", "/v1/events", Some(b"{}"), false);
        let a = c.send(&req).unwrap();
        assert_eq!((a.status, a.text().as_str()), (202, "hello"));
        let a = c
            .send(&request_bytes("GET", "/v1/health", None, false))
            .unwrap();
        assert_eq!((a.status, a.text().as_str()), (200, "abcde"));
    }
}
