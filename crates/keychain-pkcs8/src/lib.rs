#![doc = include_str!("../README.md")]

mod backend;
mod config;

pub use crate::backend::{MAX_RANDOM, Pkcs8Backend};
pub use crate::config::{Config, ProviderKind};
pub use keychain_crypto::pkcs8::Kdf;
