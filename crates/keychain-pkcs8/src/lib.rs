#![doc = include_str!("../README.md")]

mod backend;
mod config;
mod format;

pub use crate::backend::{MAX_RANDOM, Pkcs8Backend};
pub use crate::config::{Config, Kdf, ProviderKind};
