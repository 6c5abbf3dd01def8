#![doc = include_str!("../README.md")]

#[cfg(feature = "backend")]
mod backend;
#[cfg(feature = "backend")]
mod config;
pub mod dkek;

#[cfg(feature = "backend")]
pub use crate::backend::{BackupPath, ScHsmBackend, restore_into};
#[cfg(feature = "backend")]
pub use crate::config::Config;
