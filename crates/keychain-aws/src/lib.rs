#![doc = include_str!("../README.md")]

mod backend;
mod config;
mod error;
mod naming;

pub use crate::backend::{AwsKmsBackend, DataKey, MAX_PLAINTEXT, MAX_RANDOM};
pub use crate::config::{
    Config, DEFAULT_ALIAS_PREFIX, DEFAULT_DELETION_WINDOW_DAYS, DEFAULT_MAX_ATTEMPTS,
};
pub use crate::naming::key_name_from_uri;
