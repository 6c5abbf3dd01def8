//! The conformance suite on the OpenBao dev server (the `vault` cell of `cargo xtask test`).
//!
//! Every check opens its own backend; they share the process's key prefix on one server, and the
//! testkit's random key-name prefixes keep their keys apart. Signatures are verified locally
//! (RustCrypto) against the public keys Transit reports.

mod common;

use std::sync::Arc;

use keychain_core::{Backend, Protection};
use keychain_testkit::NotConfigured;

async fn transit() -> Arc<dyn Backend> {
    match common::env() {
        Some(env) => Arc::new(env.open().await),
        None => Arc::new(NotConfigured::new("vault", Protection::Software)),
    }
}

keychain_testkit::conformance!(transit);
