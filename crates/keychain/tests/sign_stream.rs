//! `BackendExt::{sign_reader, sign_digest, verify_reader, verify_digest}` over the software
//! backend: the signing policy the CLI uses, tested where it lives.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers")]

use std::sync::Arc;

use keychain::{
    Backend, BackendExt, ErrorKind, HashAlg, KeyAlgorithm, KeyName, KeyRef, SignOptions,
    SignatureScheme,
};

mod common;

use common::key;

async fn backend() -> Arc<dyn Backend> {
    common::software("sign stream password").await
}

#[tokio::test]
async fn a_stream_signs_with_the_default_scheme_and_verifies_after_rotation() {
    let b = backend().await;
    let ec = key(&b, "ec", KeyAlgorithm::EcP384).await;
    let message = vec![7u8; 200_000];
    let options = SignOptions::new();
    let signature = b
        .sign_reader(&ec, &mut message.as_slice(), &options)
        .await
        .unwrap();
    assert_eq!(signature.scheme(), SignatureScheme::Ecdsa(HashAlg::Sha384));
    // The same bytes as a digest verify; the key's public key agrees independently.
    let digest = HashAlg::Sha384.digest(&message);
    let found = b
        .verify_digest(&ec, &digest, signature.as_bytes(), &options)
        .await
        .unwrap();
    assert_eq!(found.version, 1);

    b.rotate_key(ec.name()).await.unwrap();
    let found = b
        .verify_reader(&ec, &mut message.as_slice(), signature.as_bytes(), &options)
        .await
        .unwrap();
    assert_eq!(found.version, 1, "the old version made it");
    // Pinned to version 2, it does not verify; changed by one byte, no version does.
    let v2 = KeyRef::versioned(ec.name().clone(), 2);
    let e = b
        .verify_reader(&v2, &mut message.as_slice(), signature.as_bytes(), &options)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidSignature);
    let mut other = message.clone();
    other[0] ^= 1;
    let e = b
        .verify_reader(&ec, &mut other.as_slice(), signature.as_bytes(), &options)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidSignature);
    assert!(e.to_string().contains("versions 2, 1"), "{e}");
}

#[tokio::test]
async fn the_hash_option_and_an_asked_scheme_are_honoured() {
    let b = backend().await;
    let rsa = key(&b, "rsa", KeyAlgorithm::Rsa2048).await;
    let sha512 = SignOptions::new().with_hash(HashAlg::Sha512);
    let s = b.sign_reader(&rsa, &mut &b"m"[..], &sha512).await.unwrap();
    assert_eq!(s.scheme(), SignatureScheme::RsaPkcs1v15(HashAlg::Sha512));
    let pss = SignOptions::new().with_scheme(Some(SignatureScheme::RsaPss(HashAlg::Sha256)));
    let s = b.sign_reader(&rsa, &mut &b"m"[..], &pss).await.unwrap();
    assert_eq!(s.scheme(), SignatureScheme::RsaPss(HashAlg::Sha256));
    b.verify_reader(&rsa, &mut &b"m"[..], s.as_bytes(), &pss)
        .await
        .unwrap();
    // With the default options the PSS signature is checked as PKCS#1 v1.5 and fails.
    let e = b
        .verify_reader(&rsa, &mut &b"m"[..], s.as_bytes(), &SignOptions::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidSignature);
}

#[tokio::test]
async fn bad_requests_are_typed_errors() {
    let b = backend().await;
    let ec = key(&b, "ec", KeyAlgorithm::EcP256).await;
    let ed = key(&b, "ed", KeyAlgorithm::Ed25519).await;
    let aes = key(&b, "aes", KeyAlgorithm::Aes256Gcm).await;
    let options = SignOptions::new();
    let kind = |r: keychain::Result<keychain::Signature>| r.unwrap_err().kind();

    // A digest of the wrong length, and a digest for Ed25519.
    assert_eq!(
        kind(b.sign_digest(&ec, &[0u8; 31], &options).await),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        kind(b.sign_digest(&ed, &[0u8; 32], &options).await),
        ErrorKind::InvalidInput
    );
    // A scheme that does not fit, a symmetric key.
    let rsa_scheme = SignOptions::new().with_scheme(Some(SignatureScheme::RsaPss(HashAlg::Sha256)));
    assert_eq!(
        kind(b.sign_reader(&ec, &mut &b"m"[..], &rsa_scheme).await),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        kind(b.sign_reader(&aes, &mut &b"m"[..], &options).await),
        ErrorKind::InvalidInput
    );
    // Ed25519 reads whole messages up to the limit, and says so past it.
    let small = SignOptions::new().with_max_message(4);
    let s = b.sign_reader(&ed, &mut &b"four"[..], &small).await.unwrap();
    assert_eq!(s.scheme(), SignatureScheme::Ed25519);
    let e = b
        .sign_reader(&ed, &mut &b"five!"[..], &small)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("Ed25519"), "{e}");
    // A reader that fails is the reader's error, not a signature.
    struct Broken;
    impl std::io::Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied))
        }
    }
    let e = b.sign_reader(&ec, &mut Broken, &options).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert!(e.to_string().contains("cannot read the message"), "{e}");
    // Missing keys stay NotFound.
    let missing = KeyRef::latest(KeyName::new("missing").unwrap());
    assert_eq!(
        kind(b.sign_reader(&missing, &mut &b"m"[..], &options).await),
        ErrorKind::NotFound
    );
}
