#![doc = include_str!("../README.md")]

mod admin;
mod backend;
mod certs;
mod config;
mod error;
mod module;
mod objects;
mod pool;

pub use crate::admin::TokenAdmin;
pub use crate::backend::{MAX_RANDOM, Pkcs11Backend};
pub use crate::config::{Config, DEFAULT_MAX_SESSIONS, Dispatch, INLINE_BELOW};
pub use crate::module::shared_leases;
