#![doc = include_str!("../README.md")]
// Stored and received data is parsed here: no arithmetic on it may wrap or panic.
#![cfg_attr(not(test), warn(clippy::arithmetic_side_effects))]

mod aead;
mod backend;
mod cache;
mod config;
mod error;
mod keys;
mod meta;
mod password;
mod sign;
mod store;
mod wrap;

pub use crate::backend::Pkcs8Backend;
pub use crate::config::{Config, ProviderKind};
pub use keychain_crypto::pkcs8::{Kdf, KdfLimits};
