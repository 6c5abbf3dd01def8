#![doc = include_str!("../README.md")]

mod aead;
mod api;
mod backend;
mod config;
mod decrypt;
mod error;
mod health;
mod keys;
mod naming;
mod random;
mod resolve;
mod session;
mod sign;
mod wrap;

pub use crate::aead::{from_transit_ciphertext, to_transit_ciphertext};
pub use crate::backend::VaultBackend;

/// The name [`VaultBackend`] had before crate, `type`, URI scheme and type names were aligned.
#[deprecated(since = "0.1.0", note = "renamed `VaultBackend`")]
pub type TransitBackend = VaultBackend;
pub use crate::config::{
    Auth, Config, DEFAULT_KUBERNETES_JWT, DEFAULT_MOUNT, DEFAULT_TIMEOUT_MS, Kdf,
};
pub use crate::naming::key_ref_from_uri;
