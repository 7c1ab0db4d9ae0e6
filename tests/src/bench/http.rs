//! HTTP/1.1 to the daemon over its Unix socket, two ways:
//!
//! - [`RawConn`]: blocking, hand-written HTTP/1.1 on a std `UnixStream`, kept
//!   alive. The least client-side work per request, so a sequential round
//!   trip measures the daemon rather than the client.
//! - [`AsyncRawConn`]: the same on a tokio `UnixStream`, one prepared
//!   request over and over; many of them on one runtime make the concurrent
//!   load.
//!
//! Every read and write is bounded by [`IO_TIMEOUT`].

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use hyper::body::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
        let mut at_eof = false;
        loop {
            if let Some(answer) = take_answer(&mut self.buf, at_eof)? {
                return Ok(answer);
            }
            let mut chunk = [0u8; 8192];
            let n = self.stream.read(&mut chunk).context("read the answer")?;
            at_eof = n == 0;
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// A kept-alive HTTP/1.1 connection on a tokio `UnixStream` that writes one
/// prepared request and reads its answer, as [`RawConn`] does: the load's
/// client. hyper's client costs this process about two and a half times the
/// CPU per request (a second task per connection, a request and a header map
/// built per request), and on two cores the bench's CPU is CPU the daemon
/// does not get (BENCHMARKS.md, issue 10, fifth round).
pub struct AsyncRawConn {
    stream: tokio::net::UnixStream,
    request: Bytes,
    buf: Vec<u8>,
}

impl AsyncRawConn {
    /// Connects; every [`Self::send`] then writes `request`.
    pub async fn connect(socket: &Path, request: Bytes) -> Result<Self> {
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .with_context(|| format!("connect to {}", socket.display()))?;
        Ok(Self {
            stream,
            request,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Sends the request and reads one answer.
    pub async fn send(&mut self) -> Result<Answer> {
        let exchange = async {
            self.stream
                .write_all(&self.request)
                .await
                .context("write the request")?;
            let mut at_eof = false;
            loop {
                if let Some(answer) = take_answer(&mut self.buf, at_eof)? {
                    return Ok(answer);
                }
                at_eof = self
                    .stream
                    .read_buf(&mut self.buf)
                    .await
                    .context("read the answer")?
                    == 0;
            }
        };
        match tokio::time::timeout(IO_TIMEOUT, exchange).await {
            Ok(r) => r,
            Err(_) => bail!("no answer within {IO_TIMEOUT:?}"),
        }
    }
}

/// Takes the answer at the front of `buf` once all of it is there; `None`
/// while more bytes are needed, an error if the connection ended first.
fn take_answer(buf: &mut Vec<u8>, at_eof: bool) -> Result<Option<Answer>> {
    match parse_answer(buf, at_eof)? {
        Some((answer, used)) => {
            buf.drain(..used);
            Ok(Some(answer))
        }
        None if at_eof => bail!("the daemon closed the connection mid-answer"),
        None => Ok(None),
    }
}

/// The answer at the front of `buf` once all of it is there, and how many
/// bytes it took; `None` while more are needed. An answer with neither a
/// length nor chunks runs to the end of the connection, which `at_eof` says
/// has come.
fn parse_answer(buf: &[u8], at_eof: bool) -> Result<Option<(Answer, usize)>> {
    let Some(head_end) = find(buf, b"\r\n\r\n").map(|i| i + 4) else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..head_end]).context("answer head")?;
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
    let rest = &buf[head_end..];
    let body = if chunked {
        parse_chunked(rest)?
    } else if let Some(len) = length {
        (rest.len() >= len).then(|| (rest[..len].to_vec(), len))
    } else {
        at_eof.then(|| (rest.to_vec(), rest.len()))
    };
    Ok(body.map(|(body, used)| (Answer { status, body }, head_end + used)))
}

/// A chunked body at the front of `buf` once all of it is there, and how
/// many bytes it took.
fn parse_chunked(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let Some(line_end) = find(&buf[at..], b"\r\n").map(|i| at + i) else {
            return Ok(None);
        };
        let size_text = std::str::from_utf8(&buf[at..line_end])?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .context("chunk size")?;
        let data = line_end + 2;
        let Some(end) = data.checked_add(size).filter(|&e| e + 2 <= buf.len()) else {
            return Ok(None);
        };
        body.extend_from_slice(&buf[data..end]);
        at = end + 2;
        if size == 0 {
            return Ok(Some((body, at)));
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

    #[test]
    fn an_answer_is_read_only_once_all_of_it_is_there() {
        let two: &[u8] = b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n\
            transfer-encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\n\r\n";
        let first = 46;
        for cut in 0..first {
            assert!(
                parse_answer(&two[..cut], false).unwrap().is_none(),
                "cut {cut}"
            );
        }
        let (a, used) = parse_answer(two, false).unwrap().unwrap();
        assert_eq!((a.status, a.text().as_str(), used), (202, "ok", first));
        let rest = &two[used..];
        for cut in 0..rest.len() {
            assert!(
                parse_answer(&rest[..cut], false).unwrap().is_none(),
                "cut {cut}"
            );
        }
        let (a, used) = parse_answer(rest, false).unwrap().unwrap();
        assert_eq!(
            (a.status, a.text().as_str(), used),
            (200, "abc", rest.len())
        );
    }

    #[test]
    fn an_answer_without_a_length_ends_with_the_connection_and_bad_ones_are_errors() {
        let open = b"HTTP/1.1 200 OK\r\n\r\nto the end";
        assert!(parse_answer(open, false).unwrap().is_none());
        let (a, used) = parse_answer(open, true).unwrap().unwrap();
        assert_eq!((a.text().as_str(), used), ("to the end", open.len()));
        for bad in [
            &b"HTTP/1.1 two hundred\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        ] {
            assert!(parse_answer(bad, true).is_err(), "{bad:?}");
        }
        // A chunk size no buffer reaches: more is needed, never an overflow.
        let huge = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nffffffffffffffff\r\nx";
        assert!(parse_answer(huge, true).unwrap().is_none());
    }

    #[tokio::test]
    async fn the_load_connection_sends_its_one_request_and_reads_each_answer() {
        let (_dir, path) = serve(vec![
            b"HTTP/1.1 202 Accepted\r\ncontent-length: 5\r\n\r\nhello",
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
        ]);
        let req = Bytes::from(request_bytes("POST", "/v1/events", Some(b"{}"), false));
        let mut c = AsyncRawConn::connect(&path, req).await.unwrap();
        let a = c.send().await.unwrap();
        assert_eq!((a.status, a.text().as_str()), (202, "hello"));
        let a = c.send().await.unwrap();
        assert_eq!((a.status, a.body.len()), (503, 0));
        // The server is gone: an error, not a hang or an empty answer.
        assert!(c.send().await.is_err());
    }
}
