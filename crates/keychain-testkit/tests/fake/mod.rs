//! A **test fake**, not a backend to use: an in-memory [`Backend`] that exists only to prove the
//! conformance suite itself works (it must pass every check it declares, and the broken
//! wrappers in `conformance.rs` must fail them).
//!
//! [`FakeBackend::new`] declares EC P-256 (ECDSA with SHA-256/384), Ed25519 and AES-256-GCM,
//! message input, AEAD, rotation and random, and keeps keys in a `Mutex<BTreeMap>` (so
//! `list_keys` is sorted). It signs with `p256` / `ed25519-dalek` and seals with `aes-gcm`.
//!
//! [`FakeBackend::full`] adds RSA-2048 (PKCS#1 v1.5 and PSS with SHA-256, OAEP with SHA-256)
//! with the `rsa` crate's private-key operations — acceptable in a test fake, never in a backend
//! (RUSTSEC-2023-0071, DESIGN.md §6) — and password export/import in a fake format (AES-GCM under
//! SHA-256(salt || password); not PKCS#8, not a KDF), so the suite's RSA, OAEP and export checks
//! run too.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::SystemTime;

use aes_gcm::aead::{Aead as _, Payload};
use aes_gcm::{Aes256Gcm, KeyInit as _};
use keychain_core::{
    AttestationFormat, Backend, Capabilities, Error, ErrorKind, HashAlg, ImportSpec, KeyAlgorithm,
    KeyAttestation, KeyInfo, KeyName, KeyRef, KeySpec, KeyUsage, KeyUsages, KeyVersion,
    KeyVersionInfo, Protection, PublicKey, Result, RsaPadding, SecretBytes, SignInput, Signature,
    SignatureScheme, WrapFormat, WrappedKey, WrappingSpec, async_trait,
};
use p256::ecdsa::signature::hazmat::PrehashSigner as _;
use rsa::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use sha2::Digest as _;
use spki::EncodePublicKey as _;

const FORMAT: u8 = 1;
const HEADER: usize = 1 + 4 + 12;
const TAG: usize = 16;

fn err(kind: ErrorKind, message: &'static str) -> Error {
    Error::new(kind, message).with_backend("fake")
}

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|_| err(ErrorKind::Unexpected, "no randomness"))?;
    Ok(buf)
}

enum Material {
    P256(p256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
    Aes256([u8; 32]),
    Rsa(Box<rsa::RsaPrivateKey>),
}

fn rng() -> getrandom::rand_core::UnwrapErr<getrandom::SysRng> {
    getrandom::rand_core::UnwrapErr(getrandom::SysRng)
}

impl Material {
    fn generate(algorithm: KeyAlgorithm) -> Result<Self> {
        match algorithm {
            KeyAlgorithm::EcP256 => loop {
                // A random 32-byte string is a valid scalar with overwhelming probability.
                if let Ok(k) = p256::ecdsa::SigningKey::from_slice(&random_bytes::<32>()?) {
                    return Ok(Self::P256(k));
                }
            },
            KeyAlgorithm::Ed25519 => Ok(Self::Ed25519(ed25519_dalek::SigningKey::from_bytes(
                &random_bytes::<32>()?,
            ))),
            KeyAlgorithm::Aes256Gcm => Ok(Self::Aes256(random_bytes::<32>()?)),
            KeyAlgorithm::Rsa2048 => rsa::RsaPrivateKey::new(&mut rng(), 2048)
                .map(|k| Self::Rsa(Box::new(k)))
                .map_err(|_| err(ErrorKind::Unexpected, "RSA keygen failed")),
            _ => Err(err(
                ErrorKind::Unsupported,
                "algorithm not offered by the fake",
            )),
        }
    }

    /// The secret bytes, for the fake export format.
    fn to_bytes(&self) -> Result<Vec<u8>> {
        Ok(match self {
            Self::P256(k) => k.to_bytes().to_vec(),
            Self::Ed25519(k) => k.to_bytes().to_vec(),
            Self::Aes256(k) => k.to_vec(),
            Self::Rsa(k) => k
                .to_pkcs8_der()
                .map_err(|_| err(ErrorKind::Unexpected, "RSA encoding failed"))?
                .as_bytes()
                .to_vec(),
        })
    }

    fn from_bytes(algorithm: KeyAlgorithm, bytes: &[u8]) -> Result<Self> {
        let bad = || err(ErrorKind::Integrity, "wrapped key material does not parse");
        match algorithm {
            KeyAlgorithm::EcP256 => p256::ecdsa::SigningKey::from_slice(bytes)
                .map(Self::P256)
                .map_err(|_| bad()),
            KeyAlgorithm::Ed25519 => <[u8; 32]>::try_from(bytes)
                .map(|b| Self::Ed25519(ed25519_dalek::SigningKey::from_bytes(&b)))
                .map_err(|_| bad()),
            KeyAlgorithm::Aes256Gcm => <[u8; 32]>::try_from(bytes)
                .map(Self::Aes256)
                .map_err(|_| bad()),
            KeyAlgorithm::Rsa2048 => rsa::RsaPrivateKey::from_pkcs8_der(bytes)
                .map(|k| Self::Rsa(Box::new(k)))
                .map_err(|_| bad()),
            _ => Err(err(
                ErrorKind::Unsupported,
                "algorithm not offered by the fake",
            )),
        }
    }

    fn public_key(&self) -> Option<PublicKey> {
        let der = match self {
            Self::P256(k) => k.verifying_key().to_public_key_der().ok()?,
            Self::Ed25519(k) => k.verifying_key().to_public_key_der().ok()?,
            Self::Rsa(k) => k.to_public_key().to_public_key_der().ok()?,
            Self::Aes256(_) => return None,
        };
        PublicKey::from_der(der.as_bytes()).ok()
    }
}

struct Entry {
    algorithm: KeyAlgorithm,
    usages: KeyUsages,
    exportable: bool,
    versions: Vec<(Material, SystemTime)>,
}

impl Entry {
    fn info(&self, name: &KeyName) -> KeyInfo {
        let versions = self
            .versions
            .iter()
            .zip(1..)
            .map(|((m, created), v)| KeyVersionInfo::new(v, Some(*created), m.public_key()))
            .collect();
        KeyInfo::new(
            name.clone(),
            self.algorithm,
            self.usages,
            Protection::Software,
            self.exportable,
            versions,
        )
    }

    /// The material of `version` (newest when `None`) and its number.
    fn material(&self, version: Option<KeyVersion>) -> Result<(&Material, KeyVersion)> {
        let v = version.unwrap_or(self.versions.len() as KeyVersion);
        let index = (v as usize)
            .checked_sub(1)
            .ok_or_else(|| err(ErrorKind::NotFound, "no such key version"))?;
        let (m, _) = self
            .versions
            .get(index)
            .ok_or_else(|| err(ErrorKind::NotFound, "no such key version"))?;
        Ok((m, v))
    }
}

/// The in-memory test fake (see the module docs).
#[derive(Debug)]
pub(crate) struct FakeBackend {
    caps: Capabilities,
    keys: Mutex<BTreeMap<KeyName, Entry>>,
    /// The full fake's attestation key: it "attests" by signing `fake-attest ‖ nonce ‖ SPKI`.
    attestation_key: Option<p256::ecdsa::SigningKey>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("algorithm", &self.algorithm)
            .field("versions", &self.versions.len())
            .finish()
    }
}

impl FakeBackend {
    /// An empty fake with RSA, OAEP and export/import besides (see the module docs).
    pub(crate) fn full() -> Self {
        let mut fake = Self::new();
        let caps = &mut fake.caps;
        caps.backend = "fake-full".into();
        caps.algorithms.push(KeyAlgorithm::Rsa2048);
        caps.signature_schemes.extend([
            SignatureScheme::RsaPkcs1v15(HashAlg::Sha256),
            SignatureScheme::RsaPss(HashAlg::Sha256),
        ]);
        caps.oaep_hashes = vec![HashAlg::Sha256];
        caps.export_wrapped = true;
        caps.import_wrapped = true;
        caps.attest = true;
        fake.attestation_key = match Material::generate(KeyAlgorithm::EcP256) {
            Ok(Material::P256(k)) => Some(k),
            _ => None,
        };
        fake
    }

    /// An empty fake.
    pub(crate) fn new() -> Self {
        let mut caps = Capabilities::new("fake", Protection::Software);
        caps.algorithms = vec![
            KeyAlgorithm::EcP256,
            KeyAlgorithm::Ed25519,
            KeyAlgorithm::Aes256Gcm,
        ];
        caps.signature_schemes = vec![
            SignatureScheme::Ecdsa(HashAlg::Sha256),
            SignatureScheme::Ecdsa(HashAlg::Sha384),
            SignatureScheme::Ed25519,
        ];
        caps.sign_message = true;
        caps.aead = true;
        caps.rotate = true;
        caps.random = true;
        Self {
            caps,
            keys: Mutex::new(BTreeMap::new()),
            attestation_key: None,
        }
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, BTreeMap<KeyName, Entry>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn not_found() -> Error {
    err(ErrorKind::NotFound, "no such key")
}

fn integrity() -> Error {
    err(ErrorKind::Integrity, "ciphertext does not decrypt")
}

/// The fake's password-to-key step: one SHA-256, because this is a test fake.
fn password_key(salt: &[u8], password: &str) -> [u8; 32] {
    sha2::Sha256::new()
        .chain_update(salt)
        .chain_update(password.as_bytes())
        .finalize()
        .into()
}

fn cipher(key: &[u8; 32]) -> Result<Aes256Gcm> {
    Aes256Gcm::new_from_slice(key).map_err(|_| err(ErrorKind::Unexpected, "bad AES key length"))
}

#[async_trait]
impl Backend for FakeBackend {
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    async fn generate_key(&self, name: &KeyName, spec: &KeySpec) -> Result<KeyInfo> {
        if !self.caps.supports_algorithm(spec.algorithm) {
            return Err(err(
                ErrorKind::Unsupported,
                "algorithm not offered by the fake",
            ));
        }
        spec.validate()?;
        let material = Material::generate(spec.algorithm)?;
        let mut keys = self.keys();
        if keys.contains_key(name) {
            return Err(err(ErrorKind::AlreadyExists, "key exists"));
        }
        let entry = Entry {
            algorithm: spec.algorithm,
            usages: spec.effective_usages(),
            exportable: spec.exportable,
            versions: vec![(material, SystemTime::now())],
        };
        let info = entry.info(name);
        keys.insert(name.clone(), entry);
        Ok(info)
    }

    async fn key_info(&self, key: &KeyRef) -> Result<KeyInfo> {
        let keys = self.keys();
        let entry = keys.get(key.name()).ok_or_else(not_found)?;
        entry.material(key.version())?;
        Ok(entry.info(key.name()))
    }

    async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        Ok(self.keys().iter().map(|(n, e)| e.info(n)).collect())
    }

    async fn delete_key(&self, name: &KeyName) -> Result<()> {
        self.keys().remove(name).map(drop).ok_or_else(not_found)
    }

    async fn sign(
        &self,
        key: &KeyRef,
        input: SignInput<'_>,
        scheme: SignatureScheme,
    ) -> Result<Signature> {
        let keys = self.keys();
        let entry = keys.get(key.name()).ok_or_else(not_found)?;
        let (material, version) = entry.material(key.version())?;
        scheme.check_fits(entry.algorithm)?;
        if !entry.usages.contains(KeyUsage::Sign) {
            return Err(err(ErrorKind::InvalidInput, "key lacks the sign usage"));
        }
        if !self.caps.signature_schemes.contains(&scheme) {
            return Err(err(
                ErrorKind::Unsupported,
                "scheme not offered by the fake",
            ));
        }
        let data = input.prepare(scheme)?;
        let bytes = match material {
            Material::P256(k) => {
                let sig: p256::ecdsa::Signature = k
                    .sign_prehash(&data)
                    .map_err(|_| err(ErrorKind::Unexpected, "ECDSA signing failed"))?;
                sig.to_der().as_bytes().to_vec()
            }
            Material::Ed25519(k) => {
                use ed25519_dalek::Signer as _;
                k.sign(&data).to_bytes().to_vec()
            }
            Material::Rsa(k) => match scheme {
                SignatureScheme::RsaPkcs1v15(HashAlg::Sha256) => {
                    k.sign(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &data)
                }
                SignatureScheme::RsaPss(HashAlg::Sha256) => {
                    k.sign_with_rng(&mut rng(), rsa::Pss::<sha2::Sha256>::new(), &data)
                }
                _ => {
                    return Err(err(
                        ErrorKind::Unsupported,
                        "scheme not offered by the fake",
                    ));
                }
            }
            .map_err(|_| err(ErrorKind::Unexpected, "RSA signing failed"))?,
            Material::Aes256(_) => {
                return Err(err(ErrorKind::InvalidInput, "AES keys do not sign"));
            }
        };
        Ok(Signature::new(bytes, scheme, version))
    }

    async fn close(&self) -> Result<()> {
        Ok(())
    }

    async fn decrypt(
        &self,
        key: &KeyRef,
        ciphertext: &[u8],
        padding: RsaPadding,
    ) -> Result<SecretBytes> {
        if !self
            .caps
            .oaep_hashes
            .iter()
            .any(|h| padding == RsaPadding::Oaep(*h))
        {
            return Err(err(
                ErrorKind::Unsupported,
                "padding not offered by the fake",
            ));
        }
        let keys = self.keys();
        let entry = keys.get(key.name()).ok_or_else(not_found)?;
        let (material, _) = entry.material(key.version())?;
        let Material::Rsa(k) = material else {
            return Err(err(
                ErrorKind::InvalidInput,
                "only RSA keys decrypt with OAEP",
            ));
        };
        if !entry.usages.contains(KeyUsage::Decrypt) {
            return Err(err(ErrorKind::InvalidInput, "key lacks the decrypt usage"));
        }
        k.decrypt(rsa::Oaep::<sha2::Sha256>::new(), ciphertext)
            .map(SecretBytes::new)
            .map_err(|_| integrity())
    }

    async fn encrypt(&self, key: &KeyRef, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        let keys = self.keys();
        let entry = keys.get(key.name()).ok_or_else(not_found)?;
        let (material, version) = entry.material(key.version())?;
        let Material::Aes256(k) = material else {
            return Err(err(ErrorKind::InvalidInput, "only AES keys encrypt"));
        };
        let mut header = vec![FORMAT];
        header.extend(version.to_be_bytes());
        header.extend(random_bytes::<12>()?);
        let nonce = aes_gcm::aead::Nonce::<Aes256Gcm>::try_from(&header[5..HEADER])
            .map_err(|_| err(ErrorKind::Unexpected, "nonce length"))?;
        let full_aad = [header.as_slice(), aad].concat();
        let sealed = cipher(k)?
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &full_aad,
                },
            )
            .map_err(|_| err(ErrorKind::Unexpected, "AES-GCM seal failed"))?;
        header.extend(sealed);
        Ok(header)
    }

    async fn decrypt_aead(
        &self,
        name: &KeyName,
        ciphertext: &[u8],
        aad: &[u8],
    ) -> Result<SecretBytes> {
        let keys = self.keys();
        let entry = keys.get(name).ok_or_else(not_found)?;
        if ciphertext.len() < HEADER + TAG || ciphertext[0] != FORMAT {
            return Err(integrity());
        }
        let mut v = [0u8; 4];
        v.copy_from_slice(&ciphertext[1..5]);
        // A version that never existed means the header was tampered with.
        let (material, _) = entry
            .material(Some(u32::from_be_bytes(v)))
            .map_err(|_| integrity())?;
        let Material::Aes256(k) = material else {
            return Err(err(ErrorKind::InvalidInput, "only AES keys decrypt"));
        };
        let nonce = aes_gcm::aead::Nonce::<Aes256Gcm>::try_from(&ciphertext[5..HEADER])
            .map_err(|_| integrity())?;
        let full_aad = [&ciphertext[..HEADER], aad].concat();
        cipher(k)?
            .decrypt(
                &nonce,
                Payload {
                    msg: &ciphertext[HEADER..],
                    aad: &full_aad,
                },
            )
            .map(SecretBytes::new)
            .map_err(|_| integrity())
    }

    async fn rotate_key(&self, name: &KeyName) -> Result<KeyInfo> {
        let mut keys = self.keys();
        let entry = keys.get_mut(name).ok_or_else(not_found)?;
        entry
            .versions
            .push((Material::generate(entry.algorithm)?, SystemTime::now()));
        Ok(entry.info(name))
    }

    async fn export_wrapped(&self, key: &KeyRef, with: &WrappingSpec) -> Result<WrappedKey> {
        if !self.caps.export_wrapped {
            return Err(err(ErrorKind::Unsupported, "export not offered"));
        }
        let WrappingSpec::Password(password) = with else {
            return Err(err(
                ErrorKind::Unsupported,
                "the fake wraps with passwords only",
            ));
        };
        let keys = self.keys();
        let entry = keys.get(key.name()).ok_or_else(not_found)?;
        if !entry.exportable {
            return Err(err(ErrorKind::PermissionDenied, "key is not exportable"));
        }
        let (material, _) = entry.material(key.version())?;
        let salt = random_bytes::<16>()?;
        let nonce = random_bytes::<12>()?;
        let sealed = cipher(&password_key(&salt, password.expose()))?
            .encrypt(
                &aes_gcm::aead::Nonce::<Aes256Gcm>::from(nonce),
                Payload {
                    msg: &material.to_bytes()?,
                    aad: entry.algorithm.as_str().as_bytes(),
                },
            )
            .map_err(|_| err(ErrorKind::Unexpected, "AES-GCM seal failed"))?;
        let bytes = [&salt[..], &nonce[..], &sealed].concat();
        Ok(WrappedKey::new(
            WrapFormat::EncryptedPkcs8,
            entry.algorithm,
            bytes,
        ))
    }

    async fn import_wrapped(
        &self,
        name: &KeyName,
        wrapped: &WrappedKey,
        unwrap_with: &WrappingSpec,
        spec: &ImportSpec,
    ) -> Result<KeyInfo> {
        if !self.caps.import_wrapped {
            return Err(err(ErrorKind::Unsupported, "import not offered"));
        }
        let WrappingSpec::Password(password) = unwrap_with else {
            return Err(err(
                ErrorKind::Unsupported,
                "the fake unwraps with passwords only",
            ));
        };
        let algorithm = wrapped.algorithm;
        if spec.algorithm.is_some_and(|a| a != algorithm) {
            return Err(err(
                ErrorKind::InvalidInput,
                "wrapped key has another algorithm",
            ));
        }
        if wrapped.bytes.len() < 28 + TAG {
            return Err(err(ErrorKind::Integrity, "wrapped key too short"));
        }
        let (salt, rest) = wrapped.bytes.split_at(16);
        let (nonce, sealed) = rest.split_at(12);
        let nonce = aes_gcm::aead::Nonce::<Aes256Gcm>::try_from(nonce)
            .map_err(|_| err(ErrorKind::Integrity, "nonce"))?;
        let secret = cipher(&password_key(salt, password.expose()))?
            .decrypt(
                &nonce,
                Payload {
                    msg: sealed,
                    aad: algorithm.as_str().as_bytes(),
                },
            )
            .map_err(|_| err(ErrorKind::Unauthenticated, "wrong password"))?;
        let material = Material::from_bytes(algorithm, &secret)?;
        let usages = if spec.usages.is_empty() {
            algorithm.default_usages()
        } else {
            spec.usages
        };
        let mut keys = self.keys();
        if keys.contains_key(name) {
            return Err(err(ErrorKind::AlreadyExists, "key exists"));
        }
        let entry = Entry {
            algorithm,
            usages,
            exportable: spec.exportable,
            versions: vec![(material, SystemTime::now())],
        };
        let info = entry.info(name);
        keys.insert(name.clone(), entry);
        Ok(info)
    }

    async fn attest_key(&self, key: &KeyRef, nonce: &[u8]) -> Result<KeyAttestation> {
        let Some(ak) = &self.attestation_key else {
            return Err(err(ErrorKind::Unsupported, "this fake does not attest"));
        };
        let keys = self.keys();
        let entry = keys.get(key.name()).ok_or_else(not_found)?;
        let (material, version) = entry.material(key.version())?;
        let public = material
            .public_key()
            .ok_or_else(|| err(ErrorKind::InvalidInput, "symmetric keys are not attested"))?;
        let mut statement = b"fake-attest\0".to_vec();
        statement.extend_from_slice(nonce);
        statement.extend_from_slice(public.der());
        let sig: p256::ecdsa::Signature = ak
            .sign_prehash(&sha2::Sha256::digest(&statement))
            .map_err(|_| err(ErrorKind::Unexpected, "ECDSA signing failed"))?;
        let ak_public = ak
            .verifying_key()
            .to_public_key_der()
            .map_err(|_| err(ErrorKind::Unexpected, "encoding the attestation key"))?;
        Ok(KeyAttestation::new(
            AttestationFormat::Tpm2Certify,
            statement,
            sig.to_der().as_bytes().to_vec(),
            SignatureScheme::Ecdsa(HashAlg::Sha256),
            PublicKey::from_der(ak_public.as_bytes())?,
            public.der().to_vec(),
            version,
        ))
    }

    async fn random(&self, len: usize) -> Result<Vec<u8>> {
        if len > 1 << 20 {
            return Err(err(
                ErrorKind::InvalidInput,
                "at most 1 MiB of random bytes per call",
            ));
        }
        let mut buf = vec![0u8; len];
        getrandom::fill(&mut buf).map_err(|_| err(ErrorKind::Unexpected, "no randomness"))?;
        Ok(buf)
    }
}
