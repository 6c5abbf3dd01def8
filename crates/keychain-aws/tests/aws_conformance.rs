//! The conformance suite on the KMS test server (the `aws` cell of `cargo xtask test`).
//!
//! Every check opens its own backend; they share the process's alias namespace on one server,
//! and the testkit's random key-name prefixes keep their keys apart. Signatures are verified
//! locally (RustCrypto) against the public keys GetPublicKey returned.

mod common;

use std::sync::Arc;

use keychain_core::{Backend, Protection};
use keychain_testkit::NotConfigured;

async fn kms() -> Arc<dyn Backend> {
    match common::env() {
        Some(env) => Arc::new(env.open().await),
        None => Arc::new(NotConfigured::new("aws", Protection::CloudHsm)),
    }
}

keychain_testkit::conformance!(kms);
