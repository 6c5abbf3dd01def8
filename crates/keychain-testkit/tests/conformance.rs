//! Proves the conformance suite itself: it passes on a correct backend (the in-memory test fake
//! in `fake/`) and fails on deliberately broken ones.

mod fake;

use std::sync::Arc;

use keychain_core::{
    Backend, Capabilities, Error, ErrorKind, ImportSpec, KeyAttestation, KeyInfo, KeyName, KeyRef,
    KeySpec, Result, RsaPadding, SecretBytes, SignInput, Signature, SignatureScheme, WrappedKey,
    WrappingSpec, async_trait,
};
use keychain_testkit::{Check, Outcome};

use crate::fake::FakeBackend;

async fn fake_backend() -> Arc<dyn Backend> {
    Arc::new(FakeBackend::new())
}

keychain_testkit::conformance!(fake_backend);

async fn full_fake_backend() -> Arc<dyn Backend> {
    Arc::new(FakeBackend::full())
}

keychain_testkit::conformance!(conformance_full, full_fake_backend);

/// How a [`Broken`] backend breaks the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flaw {
    /// Flips a bit in every signature.
    FlipSignature,
    /// Declares rotation but does not implement it.
    RotateUndelivered,
    /// `delete_key` says Ok and keeps the key.
    DeleteIsNoop,
    /// Reports a missing key as `Unexpected` instead of `NotFound`.
    WrongNotFoundKind,
    /// Returns zeros from `random`.
    ZeroRandom,
    /// Ignores the caller's AAD (binds an empty one instead).
    IgnoresAad,
    /// Replaces an existing key on a second `generate_key`.
    OverwritesOnGenerate,
    /// Lists keys in reverse order.
    UnsortedList,
    /// Signs with the newest version whatever version was asked for.
    IgnoresVersion,
    /// Reports `Integrity` failures (tampering) as `Unexpected`.
    IntegrityAsUnexpected,
    /// Reports a wrong password as `Integrity`.
    UnauthenticatedAsIntegrity,
    /// Declares nothing optional (and no signature schemes), to prove checks skip.
    DeclaresNothing,
    /// Declares attestation but does not implement it.
    AttestUndelivered,
    /// Attests with a signature that does not verify (one bit flipped).
    AttestBadSignature,
}

/// The test fake with one flaw.
#[derive(Debug)]
struct Broken {
    inner: FakeBackend,
    flaw: Flaw,
    caps: Capabilities,
}

fn broken(flaw: Flaw) -> Arc<dyn Backend> {
    let inner = FakeBackend::full();
    let mut caps = inner.capabilities().clone();
    caps.backend = format!("fake-{flaw:?}").into();
    caps.attest = matches!(flaw, Flaw::AttestUndelivered | Flaw::AttestBadSignature);
    if flaw == Flaw::DeclaresNothing {
        caps.signature_schemes.clear();
        caps.oaep_hashes.clear();
        caps.aead = false;
        caps.rotate = false;
        caps.random = false;
        caps.export_wrapped = false;
        caps.import_wrapped = false;
    }
    Arc::new(Broken { inner, flaw, caps })
}

impl Broken {
    fn map<T>(&self, r: Result<T>) -> Result<T> {
        match r {
            Err(e) if self.flaw == Flaw::WrongNotFoundKind && e.kind() == ErrorKind::NotFound => {
                Err(Error::new(ErrorKind::Unexpected, "something went wrong"))
            }
            Err(e)
                if self.flaw == Flaw::IntegrityAsUnexpected && e.kind() == ErrorKind::Integrity =>
            {
                Err(Error::new(ErrorKind::Unexpected, "something went wrong"))
            }
            Err(e)
                if self.flaw == Flaw::UnauthenticatedAsIntegrity
                    && e.kind() == ErrorKind::Unauthenticated =>
            {
                Err(Error::new(ErrorKind::Integrity, "does not unwrap"))
            }
            other => other,
        }
    }
}

#[async_trait]
impl Backend for Broken {
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    async fn generate_key(&self, name: &KeyName, spec: &KeySpec) -> Result<KeyInfo> {
        if self.flaw == Flaw::OverwritesOnGenerate {
            let _ = self.inner.delete_key(name).await;
        }
        self.map(self.inner.generate_key(name, spec).await)
    }

    async fn key_info(&self, key: &KeyRef) -> Result<KeyInfo> {
        self.map(self.inner.key_info(key).await)
    }

    async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        let mut list = self.inner.list_keys().await?;
        if self.flaw == Flaw::UnsortedList {
            list.reverse();
        }
        Ok(list)
    }

    async fn delete_key(&self, name: &KeyName) -> Result<()> {
        if self.flaw == Flaw::DeleteIsNoop {
            return Ok(());
        }
        self.map(self.inner.delete_key(name).await)
    }

    async fn sign(
        &self,
        key: &KeyRef,
        input: SignInput<'_>,
        scheme: SignatureScheme,
    ) -> Result<Signature> {
        let key = if self.flaw == Flaw::IgnoresVersion {
            &KeyRef::latest(key.name().clone())
        } else {
            key
        };
        let sig = self.map(self.inner.sign(key, input, scheme).await)?;
        if self.flaw != Flaw::FlipSignature {
            return Ok(sig);
        }
        let (scheme, version) = (sig.scheme(), sig.key_version());
        let mut bytes = sig.into_bytes();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        Ok(Signature::new(bytes, scheme, version))
    }

    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }

    async fn encrypt(&self, key: &KeyRef, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        let aad = if self.flaw == Flaw::IgnoresAad {
            b""
        } else {
            aad
        };
        self.map(self.inner.encrypt(key, plaintext, aad).await)
    }

    async fn decrypt_aead(
        &self,
        name: &KeyName,
        ciphertext: &[u8],
        aad: &[u8],
    ) -> Result<SecretBytes> {
        let aad = if self.flaw == Flaw::IgnoresAad {
            b""
        } else {
            aad
        };
        self.map(self.inner.decrypt_aead(name, ciphertext, aad).await)
    }

    async fn rotate_key(&self, name: &KeyName) -> Result<KeyInfo> {
        if self.flaw == Flaw::RotateUndelivered {
            return Err(Error::unsupported("not implemented after all"));
        }
        self.map(self.inner.rotate_key(name).await)
    }

    async fn decrypt(
        &self,
        key: &KeyRef,
        ciphertext: &[u8],
        padding: RsaPadding,
    ) -> Result<SecretBytes> {
        self.map(self.inner.decrypt(key, ciphertext, padding).await)
    }

    async fn export_wrapped(&self, key: &KeyRef, with: &WrappingSpec) -> Result<WrappedKey> {
        self.map(self.inner.export_wrapped(key, with).await)
    }

    async fn import_wrapped(
        &self,
        name: &KeyName,
        wrapped: &WrappedKey,
        unwrap_with: &WrappingSpec,
        spec: &ImportSpec,
    ) -> Result<KeyInfo> {
        self.map(
            self.inner
                .import_wrapped(name, wrapped, unwrap_with, spec)
                .await,
        )
    }

    async fn attest_key(&self, key: &KeyRef, nonce: &[u8]) -> Result<KeyAttestation> {
        if self.flaw != Flaw::AttestBadSignature {
            return Err(Error::unsupported("not implemented after all"));
        }
        let mut att = self.inner.attest_key(key, nonce).await?;
        if let Some(last) = att.signature.last_mut() {
            *last ^= 0x01;
        }
        Ok(att)
    }

    async fn random(&self, len: usize) -> Result<Vec<u8>> {
        if self.flaw == Flaw::ZeroRandom {
            return Ok(vec![0; len]);
        }
        self.inner.random(len).await
    }
}

/// Runs `check` on a backend with `flaw` and requires it to fail, mentioning `expected`.
async fn must_fail(flaw: Flaw, check: Check, expected: &str) {
    let backend = broken(flaw);
    match keychain_testkit::run_check(check, &backend).await {
        Ok(outcome) => panic!("{check} passed on a backend with {flaw:?}: {outcome:?}"),
        Err(failure) => {
            assert_eq!(failure.check(), check);
            assert_eq!(failure.backend(), format!("fake-{flaw:?}"));
            assert!(
                failure.message().contains(expected),
                "{check} with {flaw:?}: message {:?} does not mention {expected:?}",
                failure.message()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_signatures_fail_sign_verify_and_rejection() {
    must_fail(
        Flaw::FlipSignature,
        Check::SignVerify,
        "does not verify with RustCrypto",
    )
    .await;
    must_fail(Flaw::FlipSignature, Check::Rejection, "does not verify").await;
    must_fail(Flaw::FlipSignature, Check::Concurrency, "task").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "conformance check sign-verify failed on backend fake-FlipSignature")]
async fn run_panics_on_a_failed_check() {
    keychain_testkit::run(Check::SignVerify, broken(Flaw::FlipSignature)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_but_missing_rotation_fails() {
    must_fail(Flaw::RotateUndelivered, Check::Rotate, "unsupported").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_but_missing_attestation_fails() {
    must_fail(Flaw::AttestUndelivered, Check::Attest, "attest_key").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attestation_signature_is_verified_with_rustcrypto() {
    must_fail(
        Flaw::AttestBadSignature,
        Check::Attest,
        "does not verify with RustCrypto",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_that_keeps_the_key_fails_lifecycle() {
    must_fail(Flaw::DeleteIsNoop, Check::Lifecycle, "after delete_key").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_error_kinds_fail() {
    must_fail(
        Flaw::WrongNotFoundKind,
        Check::Lifecycle,
        "expected error kind `not found`, got `unexpected`",
    )
    .await;
    must_fail(
        Flaw::WrongNotFoundKind,
        Check::BadInput,
        "expected error kind `not found`",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_or_misordering_keys_fails_lifecycle() {
    must_fail(
        Flaw::OverwritesOnGenerate,
        Check::Lifecycle,
        "expected error kind `already exists`",
    )
    .await;
    must_fail(Flaw::UnsortedList, Check::Lifecycle, "not sorted").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_with_the_wrong_version_fails_rotate() {
    must_fail(Flaw::IgnoresVersion, Check::Rotate, "expected 1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tamper_reported_as_unexpected_fails_aead_and_oaep() {
    must_fail(
        Flaw::IntegrityAsUnexpected,
        Check::Aead,
        "expected error kind `integrity`",
    )
    .await;
    must_fail(
        Flaw::IntegrityAsUnexpected,
        Check::RsaOaep,
        "tampered ciphertext",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_kind_fails_export_import() {
    must_fail(
        Flaw::UnauthenticatedAsIntegrity,
        Check::ExportImport,
        "wrong password",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_random_fails() {
    must_fail(Flaw::ZeroRandom, Check::Random, "random").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignored_aad_fails() {
    must_fail(Flaw::IgnoresAad, Check::Aead, "AAD").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeclared_capabilities_are_skipped() {
    let backend = broken(Flaw::DeclaresNothing);
    for check in [
        Check::SignVerify,
        Check::Rejection,
        Check::Aead,
        Check::Rotate,
        Check::Random,
        Check::RsaOaep,
        Check::ExportImport,
    ] {
        let outcome = keychain_testkit::run_check(check, &backend)
            .await
            .expect("a skipped check does not fail");
        assert!(outcome.is_skipped(), "{check}: {outcome:?}");
    }
    // What needs no optional capability still runs.
    let outcome = keychain_testkit::run_check(Check::Lifecycle, &backend)
        .await
        .expect("lifecycle passes");
    assert!(!outcome.is_skipped());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stand_in_for_an_unconfigured_cell_runs_no_check() {
    let backend: Arc<dyn Backend> = Arc::new(keychain_testkit::NotConfigured::new(
        "mykms",
        keychain_core::Protection::CloudHsm,
    ));
    for check in Check::ALL {
        let outcome = keychain_testkit::run(check, Arc::clone(&backend)).await;
        assert_eq!(
            outcome,
            Outcome::Skipped("the cell is not configured".to_owned()),
            "{check}"
        );
    }
    // A backend that declares nothing but is not a stand-in still runs what needs nothing.
    let outcome = keychain_testkit::run(Check::BadInput, broken(Flaw::DeclaresNothing)).await;
    assert!(!outcome.is_skipped(), "{outcome:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_reports_every_check_and_leaves_no_keys() {
    let backend = fake_backend().await;
    let report = keychain_testkit::run_all(Arc::clone(&backend)).await;
    assert!(report.is_success(), "{report}");
    let shown = report.to_string();
    assert!(shown.contains("  ok      sign-verify\n"), "{shown}");
    assert!(
        shown.contains("  skipped rsa-oaep: Capabilities::oaep_hashes is empty\n"),
        "{shown}"
    );
    assert_eq!(report.results.len(), Check::ALL.len());
    let skipped: Vec<Check> = report.skipped().map(|(c, _)| c).collect();
    assert_eq!(
        skipped,
        [Check::RsaOaep, Check::ExportImport, Check::Attest],
        "{report}"
    );
    for (check, result) in &report.results {
        if let Ok(Outcome::Passed { notes }) = result {
            // The fake's algorithms all have verifiers and it leaves algorithms undeclared, so
            // nothing is left untested.
            assert!(notes.is_empty(), "{check}: {notes:?}");
        }
    }
    let left = backend.list_keys().await.expect("list_keys");
    assert!(
        left.is_empty(),
        "checks left keys behind: {:?}",
        left.iter().map(|k| &k.name).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_on_the_full_fake_skips_nothing() {
    let report = keychain_testkit::run_all(full_fake_backend().await).await;
    assert!(report.is_success(), "{report}");
    assert_eq!(report.skipped().count(), 0, "{report}");
}

#[test]
fn run_all_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let fut = keychain_testkit::run_all(Arc::new(FakeBackend::new()));
    assert_send(&fut);
}
