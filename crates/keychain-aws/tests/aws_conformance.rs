//! The conformance suite on the KMS test server (the `aws` cell of `cargo xtask test`).
//!
//! Every check opens its own backend; they share the process's alias namespace on one server,
//! and the testkit's random key-name prefixes keep their keys apart. Signatures are verified
//! locally (RustCrypto) against the public keys GetPublicKey returned.

mod common;

use std::sync::Arc;

use keychain_core::{
    Backend, Capabilities, Error, KeyInfo, KeyName, KeyRef, KeySpec, Protection, Result, SignInput,
    Signature, SignatureScheme, async_trait,
};

async fn kms() -> Arc<dyn Backend> {
    match common::env() {
        Some(env) => Arc::new(env.open().await),
        None => Arc::new(NotConfigured(Capabilities::new(
            "awskms (not configured)",
            Protection::CloudHsm,
        ))),
    }
}

/// Stands in when the cell is not configured: it declares nothing, so every check has nothing
/// to test (the skip note has been written by `common::env`).
#[derive(Debug)]
struct NotConfigured(Capabilities);

#[async_trait]
impl Backend for NotConfigured {
    fn capabilities(&self) -> &Capabilities {
        &self.0
    }
    async fn generate_key(&self, _: &KeyName, spec: &KeySpec) -> Result<KeyInfo> {
        Err(Error::unsupported(format!(
            "{} (not configured)",
            spec.algorithm
        )))
    }
    async fn key_info(&self, _: &KeyRef) -> Result<KeyInfo> {
        Err(Error::not_found("not configured"))
    }
    async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        Ok(Vec::new())
    }
    async fn delete_key(&self, _: &KeyName) -> Result<()> {
        Err(Error::not_found("not configured"))
    }
    async fn sign(&self, _: &KeyRef, _: SignInput<'_>, _: SignatureScheme) -> Result<Signature> {
        Err(Error::not_found("not configured"))
    }
    async fn close(&self) -> Result<()> {
        Ok(())
    }
}

keychain_testkit::conformance!(kms);
