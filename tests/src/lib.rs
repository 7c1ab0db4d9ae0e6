
pub mod harness;
pub mod saas;
