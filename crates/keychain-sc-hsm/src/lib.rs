#![doc = include_str!("../README.md")]

#[cfg(feature = "backend")]
mod backend;
pub mod dkek;

#[cfg(feature = "backend")]
pub use crate::backend::{BackupPath, ScHsmBackend, restore_into};
