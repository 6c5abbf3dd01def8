//! The umbrella over the OpenBao dev server (the `vault` cell): a Transit backend opened from
//! TOML with layers, a key found by its `transit:` URI (with and without a version), and a
//! RustCrypto signer whose signatures verify with the key's public key.
#![cfg(feature = "vault")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers")]

use std::io::Write as _;

use keychain::{Config, KeyAlgorithm, KeySigner, KeySpec, Keychain};
use signature::Verifier;

fn cell() -> Option<String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    match (
        var("KEYCHAIN_TEST_VAULT_ADDR"),
        var("KEYCHAIN_TEST_VAULT_TOKEN"),
    ) {
        (Some(addr), Some(_)) => Some(addr),
        _ => {
            let _ = writeln!(std::io::stderr(), "skipped: vault not configured");
            None
        }
    }
}

#[tokio::test]
async fn transit_key_by_uri_signs_through_the_rustcrypto_adapter() {
    let Some(addr) = cell() else { return };
    let prefix = format!("um{:08x}.", std::process::id());
    let config = Config::from_toml(&format!(
        r#"
        default = "bao"
        [backends.bao]
        type = "vault"
        address = "{addr}"
        key-prefix = "{prefix}"
        auth = {{ method = "token", token = {{ env = "KEYCHAIN_TEST_VAULT_TOKEN" }} }}
        layers = [{{ type = "audit" }}, {{ type = "retry" }}, {{ type = "cache" }}]
        "#
    ))
    .unwrap();
    let keychain = Keychain::open(&config).await.unwrap();
    let entry = keychain.registry().entry("bao").unwrap();
    assert_eq!(entry.uri_scheme(), "vault");
    assert_eq!(
        entry.uri_schemes(),
        ["vault", "transit"],
        "the documented alias kept"
    );

    let target = keychain.resolve("bao:signer").unwrap();
    let _ = target.backend.delete_key(target.key.name()).await;
    target
        .backend
        .generate_key(target.key.name(), &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap();
    target.backend.rotate_key(target.key.name()).await.unwrap();

    let by_uri = keychain
        .resolve("transit:mount=transit;name=signer")
        .unwrap();
    assert_eq!(by_uri.backend_name, "bao");
    let other_mount = keychain.resolve("transit:mount=elsewhere;name=signer");
    assert!(other_mount.is_err(), "a URI naming another mount resolved");

    for uri in ["transit:name=signer", "transit:name=signer;version=1"] {
        let signer: KeySigner<p256::ecdsa::DerSignature> = keychain.signer(uri).await.unwrap();
        let sig = signature::AsyncSigner::sign_async(&signer, b"umbrella")
            .await
            .unwrap();
        signature::Keypair::verifying_key(&signer)
            .verify(b"umbrella", &sig)
            .unwrap();
    }
    target.backend.delete_key(target.key.name()).await.unwrap();
}
