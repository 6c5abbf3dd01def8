#![doc = include_str!("../README.md")]

mod aead;
mod backend;
mod config;
mod decrypt;
mod error;
mod keys;
mod naming;
mod random;
mod resolve;
mod sign;

pub use crate::aead::DataKey;
pub use crate::backend::AwsBackend;

/// The name [`AwsBackend`] had before crate, `type`, URI scheme and type names were aligned.
#[deprecated(since = "0.1.0", note = "renamed `AwsBackend`")]
pub type AwsKmsBackend = AwsBackend;
pub use crate::config::{
    Config, DEFAULT_ALIAS_PREFIX, DEFAULT_DELETION_WINDOW_DAYS, DEFAULT_MAX_ATTEMPTS,
};
pub use crate::naming::key_name_from_uri;
