//! `kitty-impostor SOCKET CAPTURE`: binds a Unix socket and answers every
//! HTTP request as kitty-syncd would accept an event (`202 queued`), appending
//! whatever it is sent to CAPTURE. Black-box tests run it as another user at
//! the daemon's socket path to check that clients do not trust it.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::time::Duration;

const BODY: &str = r#"{"status":"queued","events":[{"event_id":"01HX5ZQK3M8N9P0R1S2T3V4W5X","lamport_clock":1,"duplicate":false}],"version":"0.1.0"}"#;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let (Some(socket), Some(capture)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: kitty-impostor SOCKET CAPTURE");
    };
    let listener = UnixListener::bind(&socket)?;
    // Anyone may connect: the victim is another user.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o777))?;
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let mut got = vec![0; 64 * 1024];
        let n = stream.read(&mut got).unwrap_or(0);
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&capture)?
            .write_all(&got[..n])?;
        let _ = write!(
            stream,
            "HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{BODY}",
            BODY.len()
        );
    }
    Ok(())
}
