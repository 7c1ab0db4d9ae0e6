//! Readers of the daemon's event feed (`GET /v1/feed`): a running
//! `kitty-sync tail` whose output lines a test waits for, and a raw HTTP
//! connection that can be left unread to play a stuck reader.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{HANG_GUARD, TestHome, client_bin, wait_with_guard};

/// A running `kitty-sync tail ...`. Dropping it kills it.
pub struct Tail {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every stdout line read so far, in order.
    pub seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl TestHome {
    /// Starts `kitty-sync tail <args>` with this home's environment.
    pub fn tail(&self, args: &[&str]) -> Tail {
        let mut cmd = self.command(&client_bin());
        cmd.arg("tail")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn kitty-sync tail: {e}"));
        let out = child.stdout.take().expect("stdout pipe");
        let err = child.stderr.take().expect("stderr pipe");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        std::thread::spawn({
            let stderr = stderr.clone();
            move || {
                for line in BufReader::new(err).lines() {
                    let Ok(line) = line else { break };
                    let mut s = stderr.lock().unwrap();
                    s.push_str(&line);
                    s.push('\n');
                }
            }
        });
        Tail {
            child,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }
}

impl Tail {
    /// Its stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Reads lines until one satisfies `pred` (returned), for at most `timeout`.
    pub fn wait_line(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        if let Some(l) = self.seen.iter().find(|l| pred(l)) {
            return l.clone();
        }
        let start = Instant::now();
        loop {
            let left = timeout.saturating_sub(start.elapsed());
            match self
                .lines
                .recv_timeout(left.min(Duration::from_millis(200)))
            {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!(
                    "kitty-sync tail ended before {what}; stdout:\n{}\nstderr:\n{}",
                    self.seen.join("\n"),
                    self.stderr()
                ),
            }
            if start.elapsed() > timeout {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; stdout:\n{}\nstderr:\n{}",
                    self.seen.join("\n"),
                    self.stderr()
                );
            }
        }
    }

    /// [`Tail::wait_line`] for `--json`: the first line whose object satisfies `pred`.
    pub fn wait_json(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let line = self.wait_line(what, timeout, |l| {
            serde_json::from_str::<Value>(l).is_ok_and(|v| pred(&v))
        });
        serde_json::from_str(&line).unwrap()
    }

    /// Every line read so far, parsed (for `--json`).
    pub fn seen_json(&self) -> Vec<Value> {
        self.seen
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }

    /// Waits for it to exit (hang guard); reads what it printed last.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let st = wait_with_guard(&mut self.child, HANG_GUARD)
            .unwrap_or_else(|| panic!("kitty-sync tail did not exit; stderr:\n{}", self.stderr()));
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(line);
        }
        st
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw `GET <path>` on the daemon's socket, read only when asked: left
/// unread, it is a reader that never reads.
pub struct FeedConn {
    stream: UnixStream,
    buf: Vec<u8>,
    head: Option<String>,
}

impl FeedConn {
    /// Connects and sends the request; reads nothing.
    pub fn open(socket: &Path, path: &str) -> Self {
        let mut stream = UnixStream::connect(socket)
            .unwrap_or_else(|e| panic!("connect {}: {e}", socket.display()));
        stream.set_read_timeout(Some(HANG_GUARD)).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        Self {
            stream,
            buf: Vec::new(),
            head: None,
        }
    }

    fn fill(&mut self) {
        let mut chunk = [0u8; 64 * 1024];
        let n = self.stream.read(&mut chunk).expect("read the feed");
        assert!(n > 0, "the daemon closed the feed");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    /// The response head (status line and headers).
    pub fn head(&mut self) -> String {
        while self.head.is_none() {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                self.head = Some(String::from_utf8_lossy(&self.buf[..end]).into_owned());
                self.buf.drain(..end + 4);
            } else {
                self.fill();
            }
        }
        self.head.clone().unwrap()
    }

    /// The next chunk's lines (a chunk holds whole lines), parsed.
    pub fn next_lines(&mut self) -> Vec<Value> {
        self.head();
        loop {
            if let Some(eol) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let size_text = String::from_utf8_lossy(&self.buf[..eol]).into_owned();
                let size = usize::from_str_radix(size_text.trim(), 16)
                    .unwrap_or_else(|_| panic!("bad chunk size {size_text:?}"));
                if self.buf.len() >= eol + 2 + size + 2 {
                    let data = self.buf[eol + 2..eol + 2 + size].to_vec();
                    self.buf.drain(..eol + 2 + size + 2);
                    assert!(size > 0, "the feed ended");
                    return String::from_utf8_lossy(&data)
                        .lines()
                        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
                        .collect();
                }
            }
            self.fill();
        }
    }

    /// Reads lines until one satisfies `pred`; returns it.
    pub fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            if let Some(v) = self.next_lines().into_iter().find(|v| pred(v)) {
                return v;
            }
            assert!(start.elapsed() < HANG_GUARD, "no {what} in the feed");
        }
    }
}
