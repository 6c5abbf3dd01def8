//! The test that proves the harness's moto correction (xtask/moto_launcher.py) is in place.
//!
//! moto 5.x ignores `MessageType=DIGEST` on Sign and hashes the digest once more, so a
//! signature it makes over a digest does not verify against that digest. The backend sends
//! DIGEST exactly as it would to AWS KMS; the launcher makes moto sign the digest as given.
//! Against plain moto (`moto_launcher.py --no-corrections`, or `moto_server`) these tests
//! fail: the signature only verifies over SHA-256(digest). Against AWS or LocalStack they pass.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: failing loudly is the point"
)]

mod common;

use keychain_core::{Backend, HashAlg, KeyAlgorithm, KeyRef, KeySpec, SignInput, SignatureScheme};
use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
use p256::pkcs8::DecodePublicKey as _;

#[tokio::test]
async fn aws_digest_signatures_verify_against_the_digest() {
    let Some(env) = common::env() else { return };
    let kms = env.open().await;
    let name = env.name("digest");
    let info = kms
        .generate_key(&name, &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap();
    let public = p256::ecdsa::VerifyingKey::from_public_key_der(
        info.public_key().expect("public key").der(),
    )
    .unwrap();

    let digest = HashAlg::Sha256.digest(b"keychain: sign this digest, do not hash it again");
    let sig = kms
        .sign(
            &KeyRef::from(&name),
            SignInput::digest(HashAlg::Sha256, &digest),
            SignatureScheme::Ecdsa(HashAlg::Sha256),
        )
        .await
        .unwrap();
    let sig = p256::ecdsa::Signature::from_der(sig.as_bytes()).unwrap();
    let over_digest = public.verify_prehash(&digest, &sig).is_ok();
    let over_rehash = public
        .verify_prehash(&HashAlg::Sha256.digest(&digest), &sig)
        .is_ok();
    kms.delete_key(&name).await.unwrap();
    assert!(
        !over_rehash,
        "the server hashed the DIGEST again: it runs without the harness's correction \
         (start it with `cargo xtask services start`, which uses xtask/moto_launcher.py)"
    );
    assert!(over_digest, "the signature does not verify over the digest");
}
