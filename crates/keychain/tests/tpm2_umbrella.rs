//! The umbrella over swtpm (the `tpm2` cell): a TPM backend opened from TOML with layers, a key
//! found by its `tpm2:` URI (with and without a version), and a RustCrypto signer whose
//! signatures verify with the key's public key. One test only: swtpm serves one connection.
#![cfg(feature = "tpm2")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers")]

use std::io::Write as _;

use keychain::{Config, KeyAlgorithm, KeySigner, KeySpec, Keychain};
use signature::Verifier;

#[tokio::test]
async fn tpm_key_by_uri_signs_through_the_rustcrypto_adapter() {
    let Some(tcti) = std::env::var("KEYCHAIN_TEST_TPM2_TCTI")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        let _ = writeln!(std::io::stderr(), "skipped: tpm2 not configured");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let config = Config::from_toml(&format!(
        r#"
        default = "chip"
        [backends.chip]
        type = "tpm2"
        tcti = "{tcti}"
        key-dir = "{}"
        layers = [{{ type = "audit" }}, {{ type = "retry" }}, {{ type = "cache" }}]
        "#,
        keys.display()
    ))
    .unwrap();
    let keychain = Keychain::open(&config).await.unwrap();
    assert_eq!(
        keychain.registry().entry("chip").unwrap().uri_scheme(),
        "tpm2"
    );
    let target = keychain.resolve("chip:signer").unwrap();
    target
        .backend
        .generate_key(target.key.name(), &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap();
    target.backend.rotate_key(target.key.name()).await.unwrap();

    let by_uri = keychain.resolve("tpm2:name=signer").unwrap();
    assert_eq!(by_uri.backend_name, "chip");
    let other_tpm = keychain.resolve("tpm2:name=signer;tcti=device:/dev/tpm7");
    assert!(other_tpm.is_err(), "a URI naming another TPM resolved");

    for uri in ["tpm2:name=signer", "tpm2:name=signer;version=1"] {
        let signer: KeySigner<p256::ecdsa::DerSignature> = keychain.signer(uri).await.unwrap();
        let sig = signature::AsyncSigner::sign_async(&signer, b"umbrella")
            .await
            .unwrap();
        signature::Keypair::verifying_key(&signer)
            .verify(b"umbrella", &sig)
            .unwrap();
    }
    target.backend.close().await.unwrap();
}
