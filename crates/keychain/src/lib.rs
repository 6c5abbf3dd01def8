#![doc = include_str!("../README.md")]

mod backends;
mod config;
mod registry;
mod router;
mod signer;

pub use crate::config::{BackendSection, Config};
pub use crate::registry::{BackendFactory, Entry, Openers, Registration, Registry};
pub use crate::router::{Keychain, Resolved};
pub use crate::signer::{
    BlockingKeySigner, KeySigner, SignatureType, signature_algorithm_identifier,
};

/// The AWS KMS backend (re-exported `keychain-aws`).
#[cfg(feature = "aws")]
pub use keychain_aws as aws;
/// The contract every backend implements (re-exported from `keychain-core`).
pub use keychain_core::*;
/// Layers that wrap any backend (re-exported `keychain-layers`).
pub use keychain_layers as layers;
/// The software backend (re-exported `keychain-pkcs8`).
#[cfg(feature = "pkcs8")]
pub use keychain_pkcs8 as pkcs8;
/// The PKCS#11 backend (re-exported `keychain-pkcs11`).
#[cfg(feature = "pkcs11")]
pub use keychain_pkcs11 as pkcs11;
/// The SmartCard-HSM backend and DKEK formats (re-exported `keychain-sc-hsm`).
#[cfg(feature = "sc-hsm")]
pub use keychain_sc_hsm as sc_hsm;
/// The SmartCard-HSM's device-free DKEK formats (re-exported `keychain_sc_hsm::dkek`).
#[cfg(feature = "dkek")]
pub use keychain_sc_hsm::dkek;
/// The TPM 2.0 backend (re-exported `keychain-tpm2`).
#[cfg(feature = "tpm2")]
pub use keychain_tpm2 as tpm2;
/// The HashiCorp Vault / OpenBao Transit backend (re-exported `keychain-vault`).
#[cfg(feature = "vault")]
pub use keychain_vault as vault;
