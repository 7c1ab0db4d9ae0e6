
pub mod harness;
pub mod saas;
pub mod bench;
pub mod uplink_harness;
