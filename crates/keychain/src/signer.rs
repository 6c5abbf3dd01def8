//! Backend keys as RustCrypto signers (`signature::AsyncSigner`, `signature::Signer`,
//! `signature::Keypair`, `spki::DynSignatureAlgorithmIdentifier`), so x509-cert, rcgen-style
//! builders and anything else written against the `signature` traits can use a key that lives in
//! any backend.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};

use der::asn1::{AnyRef, ObjectIdentifier};
use keychain_core::{
    Backend, Error, ErrorKind, HashAlg, KeyAlgorithm, KeyRef, Operation, PublicKey, Result,
    SignInput, SignatureScheme,
};
use spki::{AlgorithmIdentifierOwned, DynSignatureAlgorithmIdentifier, EncodePublicKey};

/// A signature type a [`KeySigner`] can produce: which schemes it carries, how it is parsed from
/// the backend's standard encoding, and the matching RustCrypto verifying key.
///
/// Implemented for the ECDSA signatures of P-256, P-384 and P-521 (DER and fixed `r‖s`),
/// Ed25519, and RSA PKCS#1 v1.5 and PSS. Sealed: the set follows what backends can produce.
pub trait SignatureType: Sized + sealed::Sealed {
    /// The RustCrypto public key that verifies this signature type.
    type VerifyingKey: Clone + EncodePublicKey;

    /// Whether signatures of this type can come from `scheme` made by a key of `algorithm`.
    fn accepts(algorithm: KeyAlgorithm, scheme: SignatureScheme) -> bool;

    /// The scheme used when the caller names none (SHA-256 for RSA, the curve's hash for ECDSA).
    fn default_scheme(algorithm: KeyAlgorithm) -> Option<SignatureScheme>;

    /// The verifying key for `public`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] when the key is not of this type's algorithm.
    fn verifying_key(public: &PublicKey) -> Result<Self::VerifyingKey>;

    /// Parses the backend's encoding (ECDSA DER, raw Ed25519, raw RSA).
    ///
    /// # Errors
    /// [`ErrorKind::Integrity`] when the bytes do not parse.
    fn from_backend(bytes: &[u8]) -> Result<Self>;
}

mod sealed {
    pub trait Sealed {}
}

fn malformed(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Integrity,
        format!("backend returned a malformed {what} signature: {e}"),
    )
}

macro_rules! ecdsa_type {
    ($curve:ty, $alg:ident, $to_vk:ident, $doc:literal) => {
        impl sealed::Sealed for ecdsa::der::Signature<$curve> {}
        #[doc = concat!("ECDSA over ", $doc, ", DER-encoded.")]
        impl SignatureType for ecdsa::der::Signature<$curve> {
            type VerifyingKey = ecdsa::VerifyingKey<$curve>;
            fn accepts(algorithm: KeyAlgorithm, scheme: SignatureScheme) -> bool {
                algorithm == KeyAlgorithm::$alg && matches!(scheme, SignatureScheme::Ecdsa(_))
            }
            fn default_scheme(algorithm: KeyAlgorithm) -> Option<SignatureScheme> {
                (algorithm == KeyAlgorithm::$alg)
                    .then(|| algorithm.default_scheme())
                    .flatten()
            }
            fn verifying_key(public: &PublicKey) -> Result<Self::VerifyingKey> {
                public.$to_vk().map(Into::into)
            }
            fn from_backend(bytes: &[u8]) -> Result<Self> {
                Self::from_bytes(bytes).map_err(|e| malformed($doc, e))
            }
        }

        impl sealed::Sealed for ecdsa::Signature<$curve> {}
        #[doc = concat!("ECDSA over ", $doc, ", fixed-size `r‖s`.")]
        impl SignatureType for ecdsa::Signature<$curve> {
            type VerifyingKey = ecdsa::VerifyingKey<$curve>;
            fn accepts(algorithm: KeyAlgorithm, scheme: SignatureScheme) -> bool {
                <ecdsa::der::Signature<$curve> as SignatureType>::accepts(algorithm, scheme)
            }
            fn default_scheme(algorithm: KeyAlgorithm) -> Option<SignatureScheme> {
                <ecdsa::der::Signature<$curve> as SignatureType>::default_scheme(algorithm)
            }
            fn verifying_key(public: &PublicKey) -> Result<Self::VerifyingKey> {
                public.$to_vk().map(Into::into)
            }
            fn from_backend(bytes: &[u8]) -> Result<Self> {
                Self::from_der(bytes).map_err(|e| malformed($doc, e))
            }
        }
    };
}

ecdsa_type!(p256::NistP256, EcP256, to_p256, "P-256");
ecdsa_type!(p384::NistP384, EcP384, to_p384, "P-384");
ecdsa_type!(p521::NistP521, EcP521, to_p521, "P-521");

impl sealed::Sealed for ed25519::Signature {}
/// Ed25519 (64 bytes).
impl SignatureType for ed25519::Signature {
    type VerifyingKey = ed25519_dalek::VerifyingKey;
    fn accepts(algorithm: KeyAlgorithm, scheme: SignatureScheme) -> bool {
        algorithm == KeyAlgorithm::Ed25519 && scheme == SignatureScheme::Ed25519
    }
    fn default_scheme(algorithm: KeyAlgorithm) -> Option<SignatureScheme> {
        (algorithm == KeyAlgorithm::Ed25519).then_some(SignatureScheme::Ed25519)
    }
    fn verifying_key(public: &PublicKey) -> Result<Self::VerifyingKey> {
        public.to_ed25519()
    }
    fn from_backend(bytes: &[u8]) -> Result<Self> {
        Self::from_slice(bytes).map_err(|e| malformed("Ed25519", e))
    }
}

impl sealed::Sealed for rsa::pkcs1v15::Signature {}
/// RSASSA-PKCS1-v1_5 with SHA-256, SHA-384 or SHA-512.
impl SignatureType for rsa::pkcs1v15::Signature {
    type VerifyingKey = rsa::RsaPublicKey;
    fn accepts(algorithm: KeyAlgorithm, scheme: SignatureScheme) -> bool {
        algorithm.is_rsa() && matches!(scheme, SignatureScheme::RsaPkcs1v15(_))
    }
    fn default_scheme(algorithm: KeyAlgorithm) -> Option<SignatureScheme> {
        algorithm
            .is_rsa()
            .then_some(SignatureScheme::RsaPkcs1v15(HashAlg::Sha256))
    }
    fn verifying_key(public: &PublicKey) -> Result<Self::VerifyingKey> {
        public.to_rsa()
    }
    fn from_backend(bytes: &[u8]) -> Result<Self> {
        Self::try_from(bytes).map_err(|e| malformed("RSA", e))
    }
}

impl sealed::Sealed for rsa::pss::Signature {}
/// RSASSA-PSS with SHA-256, SHA-384 or SHA-512, MGF1 with the same hash, salt = hash length.
impl SignatureType for rsa::pss::Signature {
    type VerifyingKey = rsa::RsaPublicKey;
    fn accepts(algorithm: KeyAlgorithm, scheme: SignatureScheme) -> bool {
        algorithm.is_rsa() && matches!(scheme, SignatureScheme::RsaPss(_))
    }
    fn default_scheme(algorithm: KeyAlgorithm) -> Option<SignatureScheme> {
        algorithm
            .is_rsa()
            .then_some(SignatureScheme::RsaPss(HashAlg::Sha256))
    }
    fn verifying_key(public: &PublicKey) -> Result<Self::VerifyingKey> {
        public.to_rsa()
    }
    fn from_backend(bytes: &[u8]) -> Result<Self> {
        Self::try_from(bytes).map_err(|e| malformed("RSA-PSS", e))
    }
}

/// One key version in a backend, seen as a RustCrypto signer producing signatures of type `S`.
///
/// The signer is pinned to the key version that was current when it was made, so the public key
/// it reports ([`signature::Keypair`]) always verifies its signatures, even after the key
/// is rotated. Messages are hashed here and only the digest goes to the backend (except for
/// Ed25519, which signs the message itself).
///
/// It implements [`signature::AsyncSigner`]; [`KeySigner::blocking`] gives the same key as a
/// blocking [`signature::Signer`] (see [`KeySigner#blocking-use`]).
///
/// ```
/// # async fn demo(backend: std::sync::Arc<dyn keychain::Backend>) -> keychain::Result<()> {
/// use keychain::{KeyRef, KeySigner};
/// use signature::AsyncSigner;
///
/// let key: KeyRef = "web-tls".parse()?;
/// let signer = KeySigner::<p256::ecdsa::DerSignature>::new(backend, key).await?;
/// let signature: p256::ecdsa::DerSignature = signer.sign_async(b"hello").await.unwrap();
/// # let _ = signature;
/// # Ok(())
/// # }
/// ```
///
/// # Blocking use
///
/// [`BlockingKeySigner`]'s `try_sign` runs the backend call to completion on the calling thread:
/// inside a multi-threaded Tokio runtime it uses `block_in_place`; outside any runtime it uses a
/// small runtime private to this crate. Inside a current-thread runtime it cannot block safely
/// and returns an error; use [`signature::AsyncSigner`] there.
pub struct KeySigner<S: SignatureType> {
    backend: Arc<dyn Backend>,
    key: KeyRef,
    scheme: SignatureScheme,
    public: PublicKey,
    verifying_key: S::VerifyingKey,
    _signature: PhantomData<fn() -> S>,
}

impl<S: SignatureType> Clone for KeySigner<S> {
    fn clone(&self) -> Self {
        Self {
            backend: Arc::clone(&self.backend),
            key: self.key.clone(),
            scheme: self.scheme,
            public: self.public.clone(),
            verifying_key: self.verifying_key.clone(),
            _signature: PhantomData,
        }
    }
}

impl<S: SignatureType> std::fmt::Debug for KeySigner<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySigner")
            .field("backend", &self.backend.capabilities().backend)
            .field("key", &self.key)
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

impl<S: SignatureType> KeySigner<S> {
    /// A signer for `key` (its current version when `key` names none) with the default scheme of
    /// `S` for the key's algorithm.
    ///
    /// # Errors
    /// As [`Backend::key_info`]; [`ErrorKind::InvalidInput`] when the key's algorithm does not
    /// produce signatures of type `S`.
    pub async fn new(backend: Arc<dyn Backend>, key: KeyRef) -> Result<Self> {
        Self::build(backend, key, None).await
    }

    /// A signer with an explicit scheme, e.g. `SignatureScheme::RsaPss(HashAlg::Sha384)`.
    ///
    /// # Errors
    /// As [`KeySigner::new`]; [`ErrorKind::InvalidInput`] when `scheme` does not fit `S` or the key.
    pub async fn with_scheme(
        backend: Arc<dyn Backend>,
        key: KeyRef,
        scheme: SignatureScheme,
    ) -> Result<Self> {
        Self::build(backend, key, Some(scheme)).await
    }

    async fn build(
        backend: Arc<dyn Backend>,
        key: KeyRef,
        scheme: Option<SignatureScheme>,
    ) -> Result<Self> {
        let info = backend.key_info(&key).await?;
        let version = key.version().unwrap_or(info.version);
        let name = key.name().clone();
        let wrong = |what: String| {
            Error::invalid_input(what)
                .with_key(&name)
                .with_operation(Operation::Sign)
        };
        let scheme = match scheme {
            Some(s) => s,
            None => S::default_scheme(info.algorithm).ok_or_else(|| {
                wrong(format!(
                    "a {} key does not make {} signatures",
                    info.algorithm,
                    std::any::type_name::<S>()
                ))
            })?,
        };
        if !S::accepts(info.algorithm, scheme) {
            return Err(wrong(format!(
                "scheme {} with a {} key does not make {} signatures",
                scheme.name(),
                info.algorithm,
                std::any::type_name::<S>()
            )));
        }
        let public = info
            .version_info(version)
            .and_then(|v| v.public_key.clone())
            .ok_or_else(|| wrong(format!("version {version} has no public key")))?;
        let verifying_key = S::verifying_key(&public)?;
        Ok(Self {
            backend,
            key: KeyRef::versioned(name, version),
            scheme,
            public,
            verifying_key,
            _signature: PhantomData,
        })
    }

    /// The same signer as a blocking [`signature::Signer`].
    pub fn blocking(&self) -> BlockingKeySigner<S> {
        BlockingKeySigner(self.clone())
    }

    /// The key version this signer uses.
    pub fn key(&self) -> &KeyRef {
        &self.key
    }

    /// The scheme it signs with.
    pub fn scheme(&self) -> SignatureScheme {
        self.scheme
    }

    /// The public key of that version.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Signs `msg` and parses the result as `S`.
    ///
    /// # Errors
    /// As [`Backend::sign`]; [`ErrorKind::Integrity`] if the backend's signature does not parse.
    pub async fn sign_bytes(&self, msg: &[u8]) -> Result<S> {
        let signature = match self.scheme.hash() {
            Some(hash) => {
                let digest = hash.digest(msg);
                self.backend
                    .sign(&self.key, SignInput::digest(hash, &digest), self.scheme)
                    .await?
            }
            None => {
                self.backend
                    .sign(&self.key, SignInput::message(msg), self.scheme)
                    .await?
            }
        };
        S::from_backend(signature.as_bytes())
    }
}

fn to_signature_error(e: Error) -> signature::Error {
    signature::Error::from_source(e)
}

// One impl per signature type rather than one generic impl: `signature` implements
// `AsyncSigner` for every `Signer`, and with a generic `S` a downstream crate could implement
// `Signer<TheirType>` for `KeySigner<TheirType>`, so coherence rejects the generic form.
macro_rules! async_signer {
    ($($ty:ty),+ $(,)?) => {$(
        impl signature::AsyncSigner<$ty> for KeySigner<$ty> {
            async fn sign_async(&self, msg: &[u8]) -> std::result::Result<$ty, signature::Error> {
                self.sign_bytes(msg).await.map_err(to_signature_error)
            }
        }
    )+};
}

async_signer!(
    ecdsa::der::Signature<p256::NistP256>,
    ecdsa::Signature<p256::NistP256>,
    ecdsa::der::Signature<p384::NistP384>,
    ecdsa::Signature<p384::NistP384>,
    ecdsa::der::Signature<p521::NistP521>,
    ecdsa::Signature<p521::NistP521>,
    ed25519::Signature,
    rsa::pkcs1v15::Signature,
    rsa::pss::Signature,
);

/// A [`KeySigner`] for callers without `async`: implements the blocking [`signature::Signer`]
/// (see [`KeySigner#blocking-use`]) plus `Keypair` and `DynSignatureAlgorithmIdentifier`.
///
/// A separate type because `signature` implements `AsyncSigner` for every `Signer`: one type
/// cannot be both a truly asynchronous signer and a blocking one.
pub struct BlockingKeySigner<S: SignatureType>(KeySigner<S>);

impl<S: SignatureType> Clone for BlockingKeySigner<S> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<S: SignatureType> std::fmt::Debug for BlockingKeySigner<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("BlockingKeySigner").field(&self.0).finish()
    }
}

impl<S: SignatureType> BlockingKeySigner<S> {
    /// The asynchronous signer inside.
    pub fn as_async(&self) -> &KeySigner<S> {
        &self.0
    }
}

impl<S: SignatureType> signature::Signer<S> for BlockingKeySigner<S> {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<S, signature::Error> {
        block_on(self.0.sign_bytes(msg)).map_err(to_signature_error)
    }
}

impl<S: SignatureType> signature::Keypair for BlockingKeySigner<S> {
    type VerifyingKey = S::VerifyingKey;

    fn verifying_key(&self) -> Self::VerifyingKey {
        self.0.verifying_key.clone()
    }
}

impl<S: SignatureType> DynSignatureAlgorithmIdentifier for BlockingKeySigner<S> {
    fn signature_algorithm_identifier(&self) -> spki::Result<AlgorithmIdentifierOwned> {
        signature_algorithm_identifier(self.0.scheme)
    }
}

impl<S: SignatureType> signature::Keypair for KeySigner<S> {
    type VerifyingKey = S::VerifyingKey;

    fn verifying_key(&self) -> Self::VerifyingKey {
        self.verifying_key.clone()
    }
}

impl<S: SignatureType> DynSignatureAlgorithmIdentifier for KeySigner<S> {
    fn signature_algorithm_identifier(&self) -> spki::Result<AlgorithmIdentifierOwned> {
        signature_algorithm_identifier(self.scheme)
    }
}

/// The X.509 `AlgorithmIdentifier` of signatures made with `scheme` (RFC 5758, RFC 8410,
/// RFC 4055).
///
/// # Errors
/// For a hash this crate does not know (the hash list is non-exhaustive).
pub fn signature_algorithm_identifier(
    scheme: SignatureScheme,
) -> spki::Result<AlgorithmIdentifierOwned> {
    const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
    const ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
    const ECDSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");
    const RSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
    const RSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
    const RSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
    const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
    let unknown = || spki::Error::KeyMalformed;
    let plain = |oid| AlgorithmIdentifierOwned {
        oid,
        parameters: None,
    };
    Ok(match scheme {
        SignatureScheme::Ecdsa(HashAlg::Sha256) => plain(ECDSA_SHA256),
        SignatureScheme::Ecdsa(HashAlg::Sha384) => plain(ECDSA_SHA384),
        SignatureScheme::Ecdsa(HashAlg::Sha512) => plain(ECDSA_SHA512),
        SignatureScheme::Ed25519 => plain(ED25519),
        SignatureScheme::RsaPkcs1v15(h) => {
            let oid = match h {
                HashAlg::Sha256 => RSA_SHA256,
                HashAlg::Sha384 => RSA_SHA384,
                HashAlg::Sha512 => RSA_SHA512,
                _ => return Err(unknown()),
            };
            // RFC 4055 §5: the parameters of these identifiers are NULL.
            AlgorithmIdentifierOwned {
                oid,
                parameters: Some(AnyRef::NULL.into()),
            }
        }
        SignatureScheme::RsaPss(HashAlg::Sha256) => {
            rsa::pss::get_default_pss_signature_algo_id::<sha2::Sha256>()?
        }
        SignatureScheme::RsaPss(HashAlg::Sha384) => {
            rsa::pss::get_default_pss_signature_algo_id::<sha2::Sha384>()?
        }
        SignatureScheme::RsaPss(HashAlg::Sha512) => {
            rsa::pss::get_default_pss_signature_algo_id::<sha2::Sha512>()?
        }
        _ => return Err(unknown()),
    })
}

/// Runs `fut` to completion on this thread (see [`KeySigner#blocking-use`]).
fn block_on<T>(fut: impl Future<Output = Result<T>>) -> Result<T> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| handle.block_on(fut))
        }
        Ok(_) => Err(Error::unsupported(
            "the blocking signer cannot run inside a current-thread Tokio runtime; \
             use signature::AsyncSigner (sign_async) there",
        )),
        Err(_) => private_runtime()?.block_on(fut),
    }
}

fn private_runtime() -> Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> =
        OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("keychain-blocking-signer")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!("cannot start the blocking signer's runtime: {e}"),
            )
        })
}
