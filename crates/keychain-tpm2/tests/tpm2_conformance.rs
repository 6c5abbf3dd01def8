//! The conformance suite on swtpm (the `tpm2` cell of `cargo xtask test`).
//!
//! swtpm serves one connection at a time, so every check shares one backend (the backend's
//! worker thread does not belong to any test's runtime). Signatures are verified with RustCrypto
//! against the public keys the TPM reports.

mod common;

use std::sync::Arc;

use keychain_core::{Backend, Protection};
use keychain_testkit::NotConfigured;
use tokio::sync::OnceCell;

async fn tpm() -> Arc<dyn Backend> {
    static SHARED: OnceCell<Arc<dyn Backend>> = OnceCell::const_new();
    match common::tcti() {
        Some(tcti) => SHARED
            .get_or_init(|| async move {
                Arc::new(common::open(&tcti, &common::key_dir()).await) as Arc<dyn Backend>
            })
            .await
            .clone(),
        None => Arc::new(NotConfigured::new("tpm2", Protection::Hardware)),
    }
}

keychain_testkit::conformance!(tpm);
