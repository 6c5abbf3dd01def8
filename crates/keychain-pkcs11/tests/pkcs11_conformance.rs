//! The conformance suite on a SoftHSM token (the `pkcs11` cell of `cargo xtask test`).
//!
//! Every check opens its own backend; they share the process's module context and the one test
//! token, and the testkit's random key-name prefixes keep their keys apart.

mod common;

use std::sync::Arc;

use keychain_core::{Backend, Protection};
use keychain_testkit::NotConfigured;

async fn softhsm() -> Arc<dyn Backend> {
    match common::env() {
        Some(env) => Arc::new(env.open().await),
        None => Arc::new(NotConfigured::new("pkcs11", Protection::Hardware)),
    }
}

keychain_testkit::conformance!(softhsm);
