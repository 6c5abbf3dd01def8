//! The umbrella over a real PKCS#11 token (the `pkcs11` cell: SoftHSM made by
//! `cargo xtask services start`): a backend opened from TOML with layers, a key found by its
//! RFC 7512 URI, and an x509 certificate signed inside the token through the RustCrypto adapter.
#![cfg(feature = "pkcs11")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers")]

use std::io::Write as _;
use std::str::FromStr;
use std::time::Duration;

use der::Encode;
use keychain::{Config, KeyAlgorithm, KeySigner, KeySpec, Keychain, Protection};
use signature::Verifier;
use spki::DecodePublicKey;
use x509_cert::builder::{AsyncBuilder, CertificateBuilder, profile};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfo;
use x509_cert::time::Validity;

fn cell() -> Option<(String, String)> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    match (
        var("KEYCHAIN_TEST_PKCS11_MODULE"),
        var("KEYCHAIN_TEST_PKCS11_TOKEN"),
        var("KEYCHAIN_TEST_PKCS11_PIN"),
    ) {
        (Some(module), Some(token), Some(_)) => Some((module, token)),
        _ => {
            let _ = writeln!(std::io::stderr(), "skipped: pkcs11 not configured");
            None
        }
    }
}

#[tokio::test]
async fn certificate_signed_inside_the_token_from_a_toml_config() {
    let Some((module, token)) = cell() else {
        return;
    };
    let config = Config::from_toml(&format!(
        r#"
        default = "hsm"
        [backends.hsm]
        type = "pkcs11"
        module-path = "{module}"
        token = "{token}"
        pin = {{ env = "KEYCHAIN_TEST_PKCS11_PIN" }}
        layers = [{{ type = "audit" }}, {{ type = "metrics" }}, {{ type = "retry" }}]
        "#
    ))
    .unwrap();
    let keychain = Keychain::open(&config).await.unwrap();
    let entry = keychain.registry().entry("hsm").unwrap();
    assert_eq!(entry.uri_scheme(), "pkcs11");
    assert_eq!(
        entry.backend().capabilities().protection,
        Protection::Hardware
    );

    let name = format!("umbrella-{:08x}", std::process::id());
    let target = keychain.resolve(&format!("hsm:{name}")).unwrap();
    target
        .backend
        .generate_key(target.key.name(), &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap();

    // The same key by RFC 7512 URI: token label and object label.
    let uri = format!("pkcs11:token={token};object={name}");
    let by_uri = keychain.resolve(&uri).unwrap();
    assert_eq!(by_uri.backend_name, "hsm");
    let other_token = keychain
        .resolve(&format!("pkcs11:token=not-{token};object={name}"))
        .unwrap_err();
    assert_eq!(other_token.kind(), keychain::ErrorKind::NotFound);

    let signer: KeySigner<p256::ecdsa::DerSignature> = keychain.signer(&uri).await.unwrap();
    let spki = SubjectPublicKeyInfo::from_key(&signature::Keypair::verifying_key(&signer)).unwrap();
    let subject = Name::from_str("CN=keychain pkcs11 test,O=keychain,C=US").unwrap();
    let cert = CertificateBuilder::new(
        profile::cabf::Root::new(false, subject).unwrap(),
        SerialNumber::from(1u32),
        Validity::from_now(Duration::from_secs(600)).unwrap(),
        spki,
    )
    .unwrap()
    .build_async::<_, p256::ecdsa::DerSignature>(&signer)
    .await
    .unwrap();

    // Verified with the key from the certificate itself.
    let key = p256::ecdsa::VerifyingKey::from_public_key_der(
        &cert
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .unwrap(),
    )
    .unwrap();
    let sig = p256::ecdsa::DerSignature::try_from(cert.signature().raw_bytes()).unwrap();
    key.verify(&cert.tbs_certificate().to_der().unwrap(), &sig)
        .unwrap();

    let metrics = entry.metrics().unwrap().snapshot();
    assert!(metrics.total_count() >= 3, "{metrics:?}");
    target.backend.delete_key(target.key.name()).await.unwrap();
    keychain.close().await.unwrap();
}
