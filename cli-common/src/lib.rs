//! What the command lines of `kitty-sync` and `kitty-syncd` share, so that
//! the daemon does not depend on the client crate: both answer `status`, the
//! daemon's watchdog asks its own socket for health, and `kitty-syncd install
//! --completions --man` writes the docs of both binaries.
//!
//! - [`client_cli`]: `kitty-sync`'s clap definitions (its docs come from them).
//! - [`docs`]: shell completions and man pages from clap definitions, and where they go.
//! - [`skew`]: "daemon needs restart" when the daemon speaks another protocol.
//! - [`staleness`]: what is wrong with delivery, in one line with its fix.
//! - [`status`]: `status` for both binaries, from the daemon or from disk.
//! - [`transport`]: HTTP/JSON to the daemon over its socket, within a deadline.
//! - [`warn_once`]: at most one warning of a kind per hour per home.

pub mod client_cli;
pub mod docs;
pub mod skew;
pub mod staleness;
pub mod status;
pub mod transport;
pub mod warn_once;

pub use transport::TransportError;

/// `e` and its sources, joined by ": " (as anyhow's `{:#}` prints them), for
/// the edge of a binary. A source whose text its error's message already
/// quotes (some libraries' messages do) is not repeated.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(source) = next {
        let text = source.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = source.source();
    }
    out
}

/// Runs `fut` on a small current-thread runtime, for callers without one.
pub fn block_on<F: std::future::Future>(fut: F) -> std::io::Result<F::Output> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(fut))
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("cannot start")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open /x: {0}")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn the_chain_is_whole_and_says_nothing_twice() {
        let e = Outer(Middle(std::io::Error::other("disk full")));
        assert_eq!(
            super::error_chain(&e),
            "cannot start: cannot open /x: disk full"
        );
    }
}
