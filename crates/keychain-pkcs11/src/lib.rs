#![doc = include_str!("../README.md")]

mod admin;
mod aead;
mod backend;
mod certs;
mod config;
mod error;
mod import;
mod keys;
mod module;
mod naming;
mod objects;
mod pool;
mod sign;
mod token;
mod wrap;

pub use crate::admin::TokenAdmin;
pub use crate::backend::Pkcs11Backend;
pub use crate::config::{Config, DEFAULT_MAX_SESSIONS, Dispatch, INLINE_BELOW};
pub use crate::module::shared_leases;
