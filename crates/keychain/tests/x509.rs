//! Backend keys drive x509-cert's builders through the RustCrypto adapters: a self-signed
//! certificate and a CSR per key type, each verified independently (RustCrypto from the
//! certificate's own SPKI, and `openssl`).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers")]

use std::process::Command;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use der::{Decode, Encode, EncodePem};
use keychain::{
    Backend, HashAlg, KeyAlgorithm, KeyName, KeyRef, KeySigner, SignatureScheme, SignatureType,
};
use signature::{AsyncSigner, Signer, Verifier};
use spki::{DecodePublicKey, DynSignatureAlgorithmIdentifier, EncodePublicKey};
use x509_cert::builder::{AsyncBuilder, Builder, CertificateBuilder, RequestBuilder, profile};
use x509_cert::name::Name;
use x509_cert::request::CertReq;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::Validity;
use x509_cert::{Certificate, spki::SubjectPublicKeyInfo};

mod common;

use common::key;

async fn backend() -> Arc<dyn Backend> {
    common::software("x509 test password").await
}

fn root_profile() -> profile::cabf::Root {
    let subject = Name::from_str("CN=keychain test root,O=keychain,C=US").unwrap();
    profile::cabf::Root::new(false, subject).unwrap()
}

async fn self_signed<S>(signer: &KeySigner<S>) -> Certificate
where
    S: SignatureType + x509_cert::spki::SignatureBitStringEncoding,
    KeySigner<S>: AsyncSigner<S>,
{
    let spki = SubjectPublicKeyInfo::from_key(&signature::Keypair::verifying_key(signer)).unwrap();
    let builder = CertificateBuilder::new(
        root_profile(),
        SerialNumber::from(42u32),
        Validity::from_now(Duration::from_secs(3600)).unwrap(),
        spki,
    )
    .unwrap();
    builder.build_async::<_, S>(signer).await.unwrap()
}

async fn csr<S>(signer: &KeySigner<S>) -> CertReq
where
    S: SignatureType + x509_cert::spki::SignatureBitStringEncoding,
    KeySigner<S>: AsyncSigner<S>,
{
    let subject = Name::from_str("CN=service.example,O=keychain,C=US").unwrap();
    RequestBuilder::new(subject)
        .unwrap()
        .build_async::<_, S>(signer)
        .await
        .unwrap()
}

/// `openssl` checks the self-signed certificate against itself and the CSR's signature.
fn openssl_verifies(cert: &Certificate, req: &CertReq) {
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("cert.pem");
    let req_path = dir.path().join("req.pem");
    std::fs::write(&cert_path, cert.to_pem(der::pem::LineEnding::LF).unwrap()).unwrap();
    std::fs::write(&req_path, req.to_pem(der::pem::LineEnding::LF).unwrap()).unwrap();
    let out = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(&cert_path)
        .arg(&cert_path)
        .output()
        .expect("openssl must be installed (cargo xtask setup installs it)");
    assert!(
        out.status.success(),
        "openssl verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("openssl")
        .args(["req", "-verify", "-noout", "-in"])
        .arg(&req_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl req -verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Verifies certificate and CSR with the verifying key parsed from their own SPKI.
fn rustcrypto_verifies<S, V>(cert: &Certificate, req: &CertReq)
where
    S: for<'a> TryFrom<&'a [u8]>,
    V: DecodePublicKey + Verifier<S>,
{
    let check = |spki: &SubjectPublicKeyInfo<_, _>, tbs: Vec<u8>, sig: &[u8]| {
        let key = V::from_public_key_der(&spki.to_der().unwrap()).unwrap();
        let Ok(sig) = S::try_from(sig) else {
            panic!("signature does not parse")
        };
        key.verify(&tbs, &sig).unwrap();
        // And a different message does not verify.
        let mut other = tbs.clone();
        other[10] ^= 1;
        assert!(key.verify(&other, &sig).is_err());
    };
    check(
        &cert.tbs_certificate().subject_public_key_info().clone(),
        cert.tbs_certificate().to_der().unwrap(),
        cert.signature().raw_bytes(),
    );
    check(
        &req.info.public_key,
        req.info.to_der().unwrap(),
        req.signature.raw_bytes(),
    );
}

fn same_algorithm_identifier<S: SignatureType>(signer: &KeySigner<S>, cert: &Certificate) {
    let want = signer.signature_algorithm_identifier().unwrap();
    assert_eq!(cert.signature_algorithm(), &want);
    assert_eq!(cert.tbs_certificate().signature(), &want);
    let reparsed = Certificate::from_der(&cert.to_der().unwrap()).unwrap();
    assert_eq!(&reparsed, cert);
}

#[tokio::test]
async fn ecdsa_p256_certificate_and_csr() {
    let backend = backend().await;
    let key = key(&backend, "p256", KeyAlgorithm::EcP256).await;
    let signer = KeySigner::<p256::ecdsa::DerSignature>::new(backend, key)
        .await
        .unwrap();
    let cert = self_signed(&signer).await;
    let req = csr(&signer).await;
    same_algorithm_identifier(&signer, &cert);
    rustcrypto_verifies::<p256::ecdsa::DerSignature, p256::ecdsa::VerifyingKey>(&cert, &req);
    openssl_verifies(&cert, &req);
}

#[tokio::test]
async fn ecdsa_p384_and_p521_certificates() {
    let backend = backend().await;
    let k384 = key(&backend, "p384", KeyAlgorithm::EcP384).await;
    let signer = KeySigner::<p384::ecdsa::DerSignature>::new(Arc::clone(&backend), k384)
        .await
        .unwrap();
    assert_eq!(signer.scheme(), SignatureScheme::Ecdsa(HashAlg::Sha384));
    let (cert, req) = (self_signed(&signer).await, csr(&signer).await);
    same_algorithm_identifier(&signer, &cert);
    rustcrypto_verifies::<p384::ecdsa::DerSignature, p384::ecdsa::VerifyingKey>(&cert, &req);
    openssl_verifies(&cert, &req);

    let k521 = key(&backend, "p521", KeyAlgorithm::EcP521).await;
    let signer = KeySigner::<p521::ecdsa::DerSignature>::new(backend, k521)
        .await
        .unwrap();
    assert_eq!(signer.scheme(), SignatureScheme::Ecdsa(HashAlg::Sha512));
    let (cert, req) = (self_signed(&signer).await, csr(&signer).await);
    same_algorithm_identifier(&signer, &cert);
    rustcrypto_verifies::<p521::ecdsa::DerSignature, p521::ecdsa::VerifyingKey>(&cert, &req);
    openssl_verifies(&cert, &req);
}

#[tokio::test]
async fn ed25519_certificate_and_csr() {
    let backend = backend().await;
    let key = key(&backend, "ed", KeyAlgorithm::Ed25519).await;
    let signer = KeySigner::<ed25519::Signature>::new(backend, key)
        .await
        .unwrap();
    let (cert, req) = (self_signed(&signer).await, csr(&signer).await);
    same_algorithm_identifier(&signer, &cert);
    rustcrypto_verifies::<ed25519::Signature, ed25519_dalek::VerifyingKey>(&cert, &req);
    openssl_verifies(&cert, &req);
}

#[tokio::test]
async fn rsa_pkcs1v15_and_pss_certificates_and_csrs() {
    let backend = backend().await;
    let key = key(&backend, "rsa", KeyAlgorithm::Rsa2048).await;

    let signer = KeySigner::<rsa::pkcs1v15::Signature>::new(Arc::clone(&backend), key.clone())
        .await
        .unwrap();
    let (cert, req) = (self_signed(&signer).await, csr(&signer).await);
    same_algorithm_identifier(&signer, &cert);
    rustcrypto_verifies::<rsa::pkcs1v15::Signature, rsa::pkcs1v15::VerifyingKey<sha2::Sha256>>(
        &cert, &req,
    );
    openssl_verifies(&cert, &req);

    for (hash, check) in [
        (
            HashAlg::Sha256,
            rustcrypto_verifies::<rsa::pss::Signature, rsa::pss::VerifyingKey<sha2::Sha256>>
                as fn(&_, &_),
        ),
        (
            HashAlg::Sha384,
            rustcrypto_verifies::<rsa::pss::Signature, rsa::pss::VerifyingKey<sha2::Sha384>>,
        ),
    ] {
        let signer = KeySigner::<rsa::pss::Signature>::with_scheme(
            Arc::clone(&backend),
            key.clone(),
            SignatureScheme::RsaPss(hash),
        )
        .await
        .unwrap();
        let (cert, req) = (self_signed(&signer).await, csr(&signer).await);
        same_algorithm_identifier(&signer, &cert);
        check(&cert, &req);
        openssl_verifies(&cert, &req);
    }
}

#[tokio::test]
async fn wrong_signature_type_or_scheme_is_invalid_input() {
    let backend = backend().await;
    let ec = key(&backend, "ec", KeyAlgorithm::EcP256).await;
    let e = KeySigner::<ed25519::Signature>::new(Arc::clone(&backend), ec.clone())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), keychain::ErrorKind::InvalidInput);
    let e = KeySigner::<p384::ecdsa::DerSignature>::new(Arc::clone(&backend), ec.clone())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), keychain::ErrorKind::InvalidInput);
    let e = KeySigner::<p256::ecdsa::DerSignature>::with_scheme(
        Arc::clone(&backend),
        ec,
        SignatureScheme::RsaPss(HashAlg::Sha256),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), keychain::ErrorKind::InvalidInput);
    let missing = KeyRef::latest(KeyName::new("missing").unwrap());
    let e = KeySigner::<p256::ecdsa::DerSignature>::new(backend, missing)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), keychain::ErrorKind::NotFound);
}

#[tokio::test]
async fn signer_stays_on_its_version_after_rotation() {
    let backend = backend().await;
    let key = key(&backend, "rotating", KeyAlgorithm::EcP256).await;
    let signer = KeySigner::<p256::ecdsa::Signature>::new(Arc::clone(&backend), key.clone())
        .await
        .unwrap();
    backend.rotate_key(key.name()).await.unwrap();
    assert_eq!(signer.key().version(), Some(1));
    let sig = signer.sign_async(b"after rotation").await.unwrap();
    signature::Keypair::verifying_key(&signer)
        .verify(b"after rotation", &sig)
        .unwrap();
    let fresh = KeySigner::<p256::ecdsa::Signature>::new(backend, key)
        .await
        .unwrap();
    assert_eq!(fresh.key().version(), Some(2));
    assert_ne!(
        signature::Keypair::verifying_key(&fresh)
            .to_public_key_der()
            .unwrap(),
        signature::Keypair::verifying_key(&signer)
            .to_public_key_der()
            .unwrap()
    );
}

/// The blocking `Signer` works without a runtime and inside a multi-threaded one, and refuses
/// (rather than deadlocks) inside a current-thread runtime.
#[test]
fn blocking_signer_outside_and_inside_runtimes() {
    let setup = tokio::runtime::Runtime::new().unwrap();
    let async_signer = setup.block_on(async {
        let backend = backend().await;
        let key = key(&backend, "blocking", KeyAlgorithm::EcP256).await;
        KeySigner::<p256::ecdsa::DerSignature>::new(backend, key)
            .await
            .unwrap()
    });
    let signer = async_signer.blocking();

    // No runtime on this thread: the adapter's private runtime drives the call.
    let sig: p256::ecdsa::DerSignature = signer.try_sign(b"no runtime").unwrap();
    let vk = signature::Keypair::verifying_key(&signer);
    vk.verify(b"no runtime", &sig).unwrap();
    // x509-cert's blocking builder.
    let spki = SubjectPublicKeyInfo::from_key(&vk).unwrap();
    let cert = CertificateBuilder::new(
        root_profile(),
        SerialNumber::from(7u32),
        Validity::from_now(Duration::from_secs(60)).unwrap(),
        spki,
    )
    .unwrap()
    .build::<_, p256::ecdsa::DerSignature>(&signer)
    .unwrap();
    let req = RequestBuilder::new(Name::from_str("CN=blocking").unwrap())
        .unwrap()
        .build::<_, p256::ecdsa::DerSignature>(&signer)
        .unwrap();
    rustcrypto_verifies::<p256::ecdsa::DerSignature, p256::ecdsa::VerifyingKey>(&cert, &req);

    // Inside a multi-threaded runtime.
    let sig = setup.block_on(async {
        tokio::spawn({
            let signer = signer.clone();
            async move { signer.try_sign(b"multi").unwrap() }
        })
        .await
        .unwrap()
    });
    vk.verify(b"multi", &sig).unwrap();

    // Inside a current-thread runtime: an error, not a hang.
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = current.block_on(async { signer.try_sign(b"current").unwrap_err() });
    let source = std::error::Error::source(&err).unwrap();
    assert!(source.to_string().contains("current-thread"), "{source}");
}
