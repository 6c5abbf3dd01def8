#![doc = include_str!("../README.md")]
// Stored and received data is parsed here: no arithmetic on it may wrap or panic.
#![cfg_attr(not(test), warn(clippy::arithmetic_side_effects))]

mod aead;
#[cfg(feature = "aws-lc-rs")]
mod aws_lc;
pub mod pkcs8;
mod provider;
#[cfg(feature = "rustcrypto")]
mod rust_crypto;
pub mod wrap;

pub use crate::aead::{AUTHENTICATED_LEN, AeadCiphertext, HEADER_LEN, NONCE_LEN, TAG_LEN};
#[cfg(feature = "aws-lc-rs")]
pub use crate::aws_lc::AwsLcProvider;
pub use crate::provider::{AeadKey, CryptoProvider, PrivateKey, default_provider};
#[cfg(feature = "rustcrypto")]
pub use crate::rust_crypto::RustCryptoProvider;
