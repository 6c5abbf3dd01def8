#![doc = include_str!("../README.md")]

mod backend;
pub mod dkek;

pub use crate::backend::{BackupPath, ScHsmBackend, restore_into};
