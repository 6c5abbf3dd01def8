//! The `Backend` trait: the contract every key store implements.

use async_trait::async_trait;

use crate::algorithm::{RsaPadding, SignatureScheme};
use crate::attest::KeyAttestation;
use crate::capabilities::Capabilities;
use crate::error::{Error, ErrorKind, Operation, Result};
use crate::key::{
    Health, ImportSpec, KeyEntry, KeyInfo, KeyMaterial, KeySpec, WrappedKey, WrappingSpec,
};
use crate::name::{KeyName, KeyRef};
use crate::secret::SecretBytes;
use crate::sign::{SignOptions, SignPayload, Verified};
use crate::signature::{SignInput, Signature};

fn unsupported(op: Operation) -> Error {
    Error::new(
        ErrorKind::Unsupported,
        "this backend does not offer this operation",
    )
    .with_operation(op)
}

/// A place where keys live: a directory of encrypted files, an HSM token, a TPM, a cloud KMS.
///
/// Held as `Arc<dyn Backend>` and shared by many tasks: every method takes `&self` and must be safe
/// to call concurrently. Methods that talk to a device or service run off the async executor's
/// threads (or are truly async) so they never block it.
///
/// **Required** methods are implemented by every backend. **Optional** ones have a default body
/// that returns [`ErrorKind::Unsupported`]; a backend that overrides one declares it in
/// [`Capabilities`], and the conformance suite (`keychain-testkit`) holds it to that.
///
/// Errors common to every method, not repeated below: [`ErrorKind::Unavailable`] /
/// [`ErrorKind::Timeout`] / [`ErrorKind::RateLimited`] (retryable) when the provider cannot be
/// reached; [`ErrorKind::Unauthenticated`] / [`ErrorKind::PermissionDenied`] /
/// [`ErrorKind::Locked`] for credentials; [`ErrorKind::Unexpected`] for anything unmapped;
/// everything after [`Backend::close`] returns [`ErrorKind::Unavailable`].
#[async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug + 'static {
    /// What this backend supports. Pure data: no I/O, cheap, the same on every call.
    fn capabilities(&self) -> &Capabilities;

    /// Creates a key named `name`, version 1.
    ///
    /// # Errors
    /// - [`ErrorKind::AlreadyExists`] when `name` exists; the existing key is left untouched.
    /// - [`ErrorKind::Unsupported`] for an algorithm not in [`Capabilities::algorithms`].
    /// - [`ErrorKind::InvalidInput`] for usages the algorithm cannot have.
    /// - [`ErrorKind::CapacityExceeded`] when the provider is full.
    async fn generate_key(&self, name: &KeyName, spec: &KeySpec) -> Result<KeyInfo>;

    /// Metadata and public key(s) of a key. With a version in `key`, that version must exist.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] when the key or the version does not exist.
    async fn key_info(&self, key: &KeyRef) -> Result<KeyInfo>;

    /// Every key, with exactly the names they were created under, sorted by name. A key whose
    /// stored record is damaged is left out (never failing the whole listing);
    /// [`Backend::list_entries`] reports it.
    async fn list_keys(&self) -> Result<Vec<KeyInfo>>;

    /// **Optional.** Every key as [`Backend::list_keys`] returns it, plus each key whose stored
    /// record cannot be read, with the error that reading it gives — so one damaged key never
    /// hides the others, and an operator sees what to repair or delete. Sorted by name.
    ///
    /// The default lists [`Backend::list_keys`] as healthy entries: right for backends whose
    /// provider keeps the records (an HSM, a KMS), where a key is listed or it is not.
    ///
    /// # Errors
    /// As [`Backend::list_keys`]: only when nothing can be listed at all.
    async fn list_entries(&self) -> Result<Vec<KeyEntry>> {
        Ok(self
            .list_keys()
            .await?
            .into_iter()
            .map(KeyEntry::Healthy)
            .collect())
    }

    /// Removes the key and all its versions. Either all are gone or (on error) none is.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] when the key does not exist.
    async fn delete_key(&self, name: &KeyName) -> Result<()>;

    /// Signs `input` with `scheme` using the given version (newest when `key` has none).
    /// ECDSA signatures are DER; the returned [`Signature`] names the version that made it.
    ///
    /// # Errors
    /// - [`ErrorKind::NotFound`]: no such key or version.
    /// - [`ErrorKind::InvalidInput`]: the scheme does not fit the key, the key lacks the sign
    ///   usage, the digest length does not match its hash, or a digest was given for Ed25519.
    /// - [`ErrorKind::Unsupported`]: the scheme or message input is not in [`Capabilities`].
    async fn sign(
        &self,
        key: &KeyRef,
        input: SignInput<'_>,
        scheme: SignatureScheme,
    ) -> Result<Signature>;

    /// Releases sessions, handles and cached key material. Idempotent.
    async fn close(&self) -> Result<()>;

    /// **Optional.** Decrypts an RSA-OAEP ciphertext with an RSA key that has the decrypt usage.
    ///
    /// # Errors
    /// [`ErrorKind::Integrity`] when the ciphertext does not decrypt (wrong key, tampered);
    /// [`ErrorKind::InvalidInput`] for a non-RSA key or a key without the decrypt usage.
    async fn decrypt(
        &self,
        key: &KeyRef,
        ciphertext: &[u8],
        padding: RsaPadding,
    ) -> Result<SecretBytes> {
        let _ = (key, ciphertext, padding);
        Err(unsupported(Operation::Decrypt))
    }

    /// **Optional.** Encrypts with a symmetric key (AEAD) and associated data `aad` (may be empty).
    /// The ciphertext is self-describing: it carries a format version, the key version and the
    /// nonce, so [`Backend::decrypt_aead`] needs only the key's name. Each call uses a fresh nonce.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a non-symmetric key or one without the encrypt usage.
    async fn encrypt(&self, key: &KeyRef, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        let _ = (key, plaintext, aad);
        Err(unsupported(Operation::Encrypt))
    }

    /// **Optional.** Decrypts a ciphertext made by [`Backend::encrypt`] with any still-existing
    /// version of `name`, given the same `aad`.
    ///
    /// # Errors
    /// [`ErrorKind::Integrity`] when the tag does not verify (tampered ciphertext, wrong AAD, wrong
    /// key) or the ciphertext is malformed; [`ErrorKind::NotFound`] when the version it names is gone.
    async fn decrypt_aead(
        &self,
        name: &KeyName,
        ciphertext: &[u8],
        aad: &[u8],
    ) -> Result<SecretBytes> {
        let _ = (name, ciphertext, aad);
        Err(unsupported(Operation::DecryptAead))
    }

    /// **Optional.** Adds a new version; new signatures and ciphertexts use it, earlier versions
    /// still verify and decrypt.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] when the key does not exist.
    async fn rotate_key(&self, name: &KeyName) -> Result<KeyInfo> {
        let _ = name;
        Err(unsupported(Operation::RotateKey))
    }

    /// **Optional.** Imports existing key material as a new key.
    ///
    /// # Errors
    /// [`ErrorKind::AlreadyExists`]; [`ErrorKind::InvalidInput`] for unparsable material or one
    /// that contradicts `spec.algorithm`; [`ErrorKind::Unauthenticated`] for a wrong password
    /// on encrypted material.
    async fn import_key(
        &self,
        name: &KeyName,
        material: KeyMaterial,
        spec: &ImportSpec,
    ) -> Result<KeyInfo> {
        let _ = (name, material, spec);
        Err(unsupported(Operation::ImportKey))
    }

    /// **Optional.** Exports a key created exportable, wrapped as `with` says.
    ///
    /// # Errors
    /// [`ErrorKind::PermissionDenied`] when the key is not exportable.
    async fn export_wrapped(&self, key: &KeyRef, with: &WrappingSpec) -> Result<WrappedKey> {
        let _ = (key, with);
        Err(unsupported(Operation::ExportWrapped))
    }

    /// **Optional.** Imports a key exported by [`Backend::export_wrapped`].
    ///
    /// # Errors
    /// [`ErrorKind::AlreadyExists`]; [`ErrorKind::Unauthenticated`] for a wrong password;
    /// [`ErrorKind::Integrity`] for a wrapped key that fails to unwrap.
    async fn import_wrapped(
        &self,
        name: &KeyName,
        wrapped: &WrappedKey,
        unwrap_with: &WrappingSpec,
        spec: &ImportSpec,
    ) -> Result<KeyInfo> {
        let _ = (name, wrapped, unwrap_with, spec);
        Err(unsupported(Operation::ImportWrapped))
    }

    /// **Optional.** `len` bytes from the backend's random generator.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] when `len` exceeds the backend's limit (at least 1024).
    async fn random(&self, len: usize) -> Result<Vec<u8>> {
        let _ = len;
        Err(unsupported(Operation::Random))
    }

    /// **Optional.** The device's signed statement that `key` (the given version, newest when
    /// none) lives in it, over `nonce` (freshness, chosen by the verifier).
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] for a missing key or version; [`ErrorKind::InvalidInput`] for a
    /// nonce longer than the device accepts (64 bytes for a TPM) or a key the device cannot
    /// attest (a sealed symmetric key).
    async fn attest_key(&self, key: &KeyRef, nonce: &[u8]) -> Result<KeyAttestation> {
        let _ = (key, nonce);
        Err(unsupported(Operation::AttestKey))
    }

    /// **Optional.** Checks that the backend works and reports details.
    async fn health(&self) -> Result<Health> {
        Err(unsupported(Operation::Health))
    }
}

/// Conveniences built from [`Backend`]'s methods; implemented for every backend, never by one.
#[async_trait]
pub trait BackendExt: Backend {
    /// Verifies `signature` against the public key [`Backend::key_info`] reports for the version
    /// that made it, with RustCrypto (see [`crate::verify`]).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidSignature`] when it does not verify; [`ErrorKind::InvalidInput`] for a
    /// symmetric key.
    async fn verify(
        &self,
        name: &KeyName,
        input: SignInput<'_>,
        signature: &Signature,
    ) -> Result<()> {
        let info = self
            .key_info(&KeyRef::versioned(name.clone(), signature.key_version()))
            .await?;
        let public = info
            .version_info(signature.key_version())
            .and_then(|v| v.public_key.as_ref())
            .ok_or_else(|| Error::invalid_input("key has no public key").with_key(name))?;
        crate::signature::verify(public, input, signature.scheme(), signature.as_bytes())
            .map_err(|e| e.with_key(name).with_operation(Operation::Verify))
    }

    /// Signs `message` with the key's default scheme for its algorithm.
    ///
    /// # Errors
    /// As [`Backend::sign`]; [`ErrorKind::InvalidInput`] for a symmetric key.
    async fn sign_message(&self, key: &KeyRef, message: &[u8]) -> Result<Signature> {
        let info = self.key_info(key).await?;
        let scheme = info.algorithm.default_scheme().ok_or_else(|| {
            Error::invalid_input("symmetric keys do not sign").with_key(key.name())
        })?;
        let input = match scheme.hash() {
            Some(h) if !self.capabilities().sign_message => {
                let digest = h.digest(message);
                return self.sign(key, SignInput::digest(h, &digest), scheme).await;
            }
            _ => SignInput::message(message),
        };
        self.sign(key, input, scheme).await
    }

    /// Signs what `reader` yields with the scheme `options` selects for the key: hash-based
    /// schemes stream it through their hash (memory stays the same for any length); Ed25519
    /// reads it whole, up to [`SignOptions::max_message`]. Reads on the calling task, so give
    /// it a file or an in-memory reader, not a socket.
    ///
    /// ```
    /// # async fn demo(backend: &dyn keychain_core::Backend, key: &keychain_core::KeyRef)
    /// # -> keychain_core::Result<()> {
    /// use keychain_core::{BackendExt, SignOptions};
    /// let mut file = std::fs::File::open("release.tar")?;
    /// let signature = backend.sign_reader(key, &mut file, &SignOptions::new()).await?;
    /// # let _ = signature; Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Backend::sign`]; [`ErrorKind::InvalidInput`] for a symmetric key, a scheme that
    /// does not fit the key, or an Ed25519 message over the limit; the reader's errors.
    async fn sign_reader(
        &self,
        key: &KeyRef,
        reader: &mut (dyn std::io::Read + Send),
        options: &SignOptions,
    ) -> Result<Signature> {
        let input = Input::Reader(reader);
        let (_, scheme, payload) = prepare(self, key, input, options, Operation::Sign).await?;
        self.sign(key, payload.as_input(), scheme).await
    }

    /// Signs a digest the caller made (with [`SignOptions::hash`], else the selected scheme's
    /// hash).
    ///
    /// # Errors
    /// As [`BackendExt::sign_reader`]; [`ErrorKind::InvalidInput`] for a digest of the wrong
    /// length or an Ed25519 key (it signs messages).
    async fn sign_digest(
        &self,
        key: &KeyRef,
        digest: &[u8],
        options: &SignOptions,
    ) -> Result<Signature> {
        let input = Input::Digest(digest);
        let (_, scheme, payload) = prepare(self, key, input, options, Operation::Sign).await?;
        self.sign(key, payload.as_input(), scheme).await
    }

    /// Verifies a signature given as bytes (without the version that made it) over what
    /// `reader` yields: against the version `key` names, else every version, newest first.
    /// Returns the version that verifies. The scheme is selected as for
    /// [`BackendExt::sign_reader`], so the same `options` verify what they signed.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidSignature`] when no version verifies it; [`ErrorKind::InvalidInput`]
    /// for a symmetric key or a scheme that does not fit; the reader's errors.
    async fn verify_reader(
        &self,
        key: &KeyRef,
        reader: &mut (dyn std::io::Read + Send),
        signature: &[u8],
        options: &SignOptions,
    ) -> Result<Verified> {
        let input = Input::Reader(reader);
        let (info, scheme, payload) = prepare(self, key, input, options, Operation::Verify).await?;
        verify_versions(&info, key, &payload, scheme, signature)
    }

    /// As [`BackendExt::verify_reader`], over a digest the caller made.
    ///
    /// # Errors
    /// As [`BackendExt::verify_reader`]; [`ErrorKind::InvalidInput`] for a digest of the wrong
    /// length or an Ed25519 key.
    async fn verify_digest(
        &self,
        key: &KeyRef,
        digest: &[u8],
        signature: &[u8],
        options: &SignOptions,
    ) -> Result<Verified> {
        let input = Input::Digest(digest);
        let (info, scheme, payload) = prepare(self, key, input, options, Operation::Verify).await?;
        verify_versions(&info, key, &payload, scheme, signature)
    }
}

/// What the `*_reader` and `*_digest` methods of [`BackendExt`] are given.
enum Input<'a> {
    Reader(&'a mut (dyn std::io::Read + Send)),
    Digest(&'a [u8]),
}

/// The key's info, the scheme `options` select for it, and the payload `input` makes for that
/// scheme; errors name the key and `op`.
async fn prepare<B: Backend + ?Sized>(
    backend: &B,
    key: &KeyRef,
    input: Input<'_>,
    options: &SignOptions,
    op: Operation,
) -> Result<(KeyInfo, crate::SignatureScheme, SignPayload)> {
    let info = backend.key_info(key).await?;
    let prepared = options.scheme_for(info.algorithm).and_then(|scheme| {
        let payload = match input {
            Input::Reader(reader) => SignPayload::read(scheme, reader, options.max_message),
            Input::Digest(digest) => SignPayload::digest(scheme, options.hash, digest.to_vec()),
        }?;
        Ok((scheme, payload))
    });
    let (scheme, payload) = prepared.map_err(|e| e.with_key(key.name()).with_operation(op))?;
    Ok((info, scheme, payload))
}

/// Tries the version `key` names, else every version newest first.
fn verify_versions(
    info: &KeyInfo,
    key: &KeyRef,
    payload: &SignPayload,
    scheme: crate::SignatureScheme,
    signature: &[u8],
) -> Result<Verified> {
    let context = |e: Error| e.with_key(key.name()).with_operation(Operation::Verify);
    let mut tried = Vec::new();
    for v in info.versions.iter().rev() {
        if key.version().is_some_and(|want| want != v.version) {
            continue;
        }
        let Some(public) = &v.public_key else {
            continue;
        };
        match crate::signature::verify(public, payload.as_input(), scheme, signature) {
            Ok(()) => {
                return Ok(Verified {
                    version: v.version,
                    scheme,
                });
            }
            Err(e) if e.kind() == ErrorKind::InvalidSignature => tried.push(v.version),
            Err(e) => return Err(context(e)),
        }
    }
    let name = key.name();
    let message = match tried.as_slice() {
        [] => {
            return Err(context(Error::invalid_input(format!(
                "{name} ({}) has no public key to verify with",
                info.algorithm
            ))));
        }
        [_] => format!("the {scheme} signature does not verify with {name}"),
        _ => format!(
            "the {scheme} signature does not verify with {name} (versions {})",
            tried
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Err(context(Error::new(ErrorKind::InvalidSignature, message)))
}

impl<B: Backend + ?Sized> BackendExt for B {}
