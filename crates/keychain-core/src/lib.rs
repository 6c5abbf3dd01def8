#![doc = include_str!("../README.md")]

mod algorithm;
mod attest;
mod backend;
mod capabilities;
mod cert;
mod error;
mod key;
mod name;
mod public_key;
pub mod registration;
mod secret;
mod sign;
mod signature;
pub mod support;
mod uri;

pub use crate::algorithm::{
    HashAlg, KeyAlgorithm, KeyUsage, KeyUsages, RsaPadding, SignatureScheme,
};
pub use crate::attest::{AttestationFormat, KeyAttestation};
pub use crate::backend::{Backend, BackendExt};
pub use crate::capabilities::{BackendType, Capabilities};
pub use crate::cert::{CertCapacity, CertStore};
pub use crate::error::{Error, ErrorKind, Operation, ProviderCode, Result};
pub use crate::key::{
    DamagedKey, Health, HealthStatus, ImportSpec, KeyEntry, KeyInfo, KeyMaterial, KeySpec,
    KeyVersionInfo, Protection, WrapFormat, WrappedKey, WrappingSpec,
};
pub use crate::name::{KeyName, KeyRef, KeyVersion};
pub use crate::public_key::{PublicKey, identify_key_algorithm};
pub use crate::registration::BackendConfig;
pub use crate::secret::{PromptHook, SecretBytes, SecretSource, SecretString, set_prompt_hook};
pub use crate::sign::{DEFAULT_MAX_MESSAGE, SignOptions, SignPayload, Verified};
pub use crate::signature::{
    SignInput, Signature, ecdsa_der_to_fixed, ecdsa_fixed_to_der, ecdsa_scalar_len, verify,
};

pub use crate::uri::KeyUri;

pub use async_trait::async_trait;
