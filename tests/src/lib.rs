//! kitty-tests: what the black-box tests, the benchmarks and a newcomer's first
//! try share.
//!
//! - [`harness`]: runs the real `kitty-syncd` and `kitty-sync` in a temporary home.
//! - [`uplink_harness`]: runs `kitty-saas-dev` as a process, logs in, reads its counters.
//! - [`pycli`]: the real spec-kitty CLI from PyPI, run with a HOME of the test's own.
//! - [`saas`]: `kitty-saas-dev`, the reference SaaS server with fault injection.
//! - [`spec_kitty_cli`]: the real spec-kitty CLI from PyPI with the kitty-sync package installed.
//! - [`bench`]: the pieces of `kitty-bench` and `kitty-bench-uplink`.

pub mod bench;
pub mod harness;
pub mod pycli;
pub mod saas;
pub mod spec_kitty_cli;
pub mod uplink_harness;
