#![doc = include_str!("../README.md")]
// Stored and received data is parsed here: no arithmetic on it may wrap or panic.
#![cfg_attr(not(test), warn(clippy::arithmetic_side_effects))]

mod backend;
mod config;

pub use crate::backend::{MAX_RANDOM, Pkcs8Backend};
pub use crate::config::{Config, ProviderKind};
pub use keychain_crypto::pkcs8::{Kdf, KdfLimits};
