#![doc = include_str!("../README.md")]

mod attest;
mod backend;
mod config;
mod convert;
mod device;
mod error;
mod record;
mod worker;

pub use crate::attest::verify_attestation;
pub use crate::backend::{MAX_AUTH_LEN, MAX_NONCE, RECORD_TTL, TpmBackend};
pub use crate::config::{Config, DEFAULT_SRK_HANDLE, DEFAULT_TCTI};
