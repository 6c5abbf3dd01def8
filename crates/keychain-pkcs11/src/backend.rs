//! The PKCS#11 backend: keys as objects on a token, every operation inside it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use cryptoki::context::Pkcs11;
use cryptoki::error::RvError;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use cryptoki::slot::{Limit, Slot};
use keychain_core::{
    Backend, Capabilities, CertCapacity, CertStore, Error, ErrorKind, HashAlg, Health,
    HealthStatus, ImportSpec, KeyAlgorithm, KeyInfo, KeyMaterial, KeyName, KeyRef, KeySpec,
    KeyUsage, KeyVersion, Operation, Protection, Result, RsaPadding, SecretBytes, SignInput,
    Signature, SignatureScheme, WrapFormat, WrappedKey, WrappingSpec, async_trait,
};
use keychain_crypto::pkcs8::Kdf;
use keychain_crypto::{AeadCiphertext, HEADER_LEN, NONCE_LEN, TAG_LEN};

use crate::certs;
use crate::config::Config;
use crate::error::{BACKEND, map};
use crate::module::{Lease, canonical, token_lock};
use crate::objects::{self, KeyEntry, VersionEntry};
use crate::pool::{Call, Pool, rv_in};

/// The most bytes one [`Backend::random`] call returns.
pub const MAX_RANDOM: usize = 64 * 1024;

/// Under [`crate::Dispatch::Adaptive`], key operations on more bytes than this run off-thread
/// whatever their class's typical time.
const INLINE_MAX_INPUT: usize = 64 * 1024;

/// A key store on one PKCS#11 token. See the crate documentation.
pub struct Pkcs11Backend {
    inner: Arc<Inner>,
}

/// Key entries read from the token, valid for one pool generation.
#[derive(Default)]
struct Cache {
    generation: u64,
    keys: HashMap<KeyName, Arc<KeyEntry>>,
}

struct Inner {
    pool: Arc<Pool>,
    lease: Mutex<Option<Lease>>,
    capabilities: Capabilities,
    /// What this backend has read of each key (object handles are stable within a process).
    cache: Mutex<Cache>,
    module: PathBuf,
    token_label: String,
    slot_id: u64,
    max_certificates: Option<usize>,
    export_kdf: Kdf,
}

impl std::fmt::Debug for Pkcs11Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Backend")
            .field("module", &self.inner.module)
            .field("token", &self.inner.token_label)
            .field("slot_id", &self.inner.slot_id)
            .field("pool", &self.inner.pool)
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.pool.close_now();
        if let Some(mut lease) = self
            .lease
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            lease.release();
        }
    }
}

/// Adds what every error of an operation carries.
fn in_op(op: Operation, key: Option<&KeyName>) -> impl Fn(Error) -> Error + '_ {
    move |e| {
        let e = e.with_backend(BACKEND).with_operation(op);
        match key {
            Some(k) => e.with_key(k),
            None => e,
        }
    }
}

fn hash_mechanism(h: HashAlg) -> Result<(MechanismType, PkcsMgfType)> {
    match h {
        HashAlg::Sha256 => Ok((MechanismType::SHA256, PkcsMgfType::MGF1_SHA256)),
        HashAlg::Sha384 => Ok((MechanismType::SHA384, PkcsMgfType::MGF1_SHA384)),
        HashAlg::Sha512 => Ok((MechanismType::SHA512, PkcsMgfType::MGF1_SHA512)),
        other => Err(Error::unsupported(format!("hash {other}"))),
    }
}

/// The DER `DigestInfo` prefix (RFC 8017 §9.2 note 1) for PKCS#1 v1.5 over a digest.
fn digest_info_prefix(h: HashAlg) -> Result<&'static [u8]> {
    match h {
        HashAlg::Sha256 => Ok(&[
            0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x01, 0x05, 0x00, 0x04, 0x20,
        ]),
        HashAlg::Sha384 => Ok(&[
            0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x02, 0x05, 0x00, 0x04, 0x30,
        ]),
        HashAlg::Sha512 => Ok(&[
            0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x03, 0x05, 0x00, 0x04, 0x40,
        ]),
        other => Err(Error::unsupported(format!("hash {other}"))),
    }
}

fn oaep_params(h: HashAlg) -> Result<PkcsOaepParams<'static>> {
    let (hash, mgf) = hash_mechanism(h)?;
    Ok(PkcsOaepParams::new(hash, mgf, PkcsOaepSource::empty()))
}

/// Decryption failures the token reports for a ciphertext that is wrong (tampered, wrong key):
/// `Integrity`, as the contract says. `gcm`: SoftHSM 2.6 reports a GCM tag mismatch as
/// `CKR_GENERAL_ERROR`; after a GCM decryption nothing else can have gone wrong that way.
fn decrypt_failure(e: Error, gcm: bool) -> Error {
    match rv_in(&e) {
        Some(
            RvError::EncryptedDataInvalid
            | RvError::EncryptedDataLenRange
            | RvError::DataInvalid
            | RvError::DataLenRange
            | RvError::FunctionFailed,
        ) => integrity(e),
        Some(RvError::GeneralError) if gcm => integrity(e),
        _ => e,
    }
}

fn integrity(e: Error) -> Error {
    Error::new(
        ErrorKind::Integrity,
        format!("the ciphertext does not decrypt: {}", e.message()),
    )
    .with_code(
        e.provider_code()
            .cloned()
            .unwrap_or(keychain_core::ProviderCode::Pkcs11(0)),
    )
    .with_source(e)
}

/// Whether an error says a cached object handle no longer exists.
fn stale_handle(e: &Error) -> bool {
    matches!(
        rv_in(e),
        Some(RvError::KeyHandleInvalid | RvError::ObjectHandleInvalid)
    )
}

fn require_usage(entry: &KeyEntry, usage: KeyUsage, what: &str) -> Result<()> {
    if entry.usages.contains(usage) {
        Ok(())
    } else {
        Err(Error::invalid_input(format!(
            "key {} was not created with the {what} usage",
            entry.name
        )))
    }
}

/// Which token a configuration means, and its slot.
pub(crate) fn find_slot(ctx: &Pkcs11, config: &Config) -> Result<(Slot, String)> {
    let slots = ctx.get_slots_with_token().map_err(map)?;
    if let Some(label) = &config.token {
        let mut found = Vec::new();
        let mut labels = Vec::new();
        for slot in slots {
            let info = ctx.get_token_info(slot).map_err(map)?;
            if info.label() == label {
                found.push(slot);
            }
            labels.push(format!("{:?}", info.label()));
        }
        return match found.as_slice() {
            [slot] => Ok((*slot, label.clone())),
            [] => Err(Error::not_found(format!(
                "no token labelled {label:?} in this module; tokens present: [{}]",
                labels.join(", ")
            ))),
            many => Err(Error::invalid_input(format!(
                "{} tokens are labelled {label:?}; select one with slot-id",
                many.len()
            ))),
        };
    }
    let id = config.slot_id.unwrap_or_default();
    let slot = slots
        .into_iter()
        .find(|s| s.id() == id)
        .ok_or_else(|| Error::not_found(format!("no token in slot {id} of this module")))?;
    let label = ctx.get_token_info(slot).map_err(map)?.label().to_owned();
    Ok((slot, label))
}

/// What the token offers, from its mechanism list (and, for OAEP hashes, a probe).
fn capabilities(ctx: &Pkcs11, slot: Slot, rng: bool) -> Result<Capabilities> {
    let mechs = ctx.get_mechanism_list(slot).map_err(map)?;
    let has = |m: MechanismType| mechs.contains(&m);
    let sizes = |m: MechanismType| {
        ctx.get_mechanism_info(slot, m)
            .map(|i| (i.min_key_size(), i.max_key_size()))
            .ok()
    };
    let mut caps = Capabilities::new(BACKEND, Protection::Hardware);
    let rsa_sign = has(MechanismType::RSA_PKCS) || has(MechanismType::RSA_PKCS_PSS);
    if has(MechanismType::RSA_PKCS_KEY_PAIR_GEN) && rsa_sign {
        let (min, max) = sizes(MechanismType::RSA_PKCS_KEY_PAIR_GEN).unwrap_or((0, usize::MAX));
        for a in [
            KeyAlgorithm::Rsa2048,
            KeyAlgorithm::Rsa3072,
            KeyAlgorithm::Rsa4096,
        ] {
            let bits = a.bits() as usize;
            if (min..=max).contains(&bits) {
                caps.algorithms.push(a);
            }
        }
    }
    if has(MechanismType::ECC_KEY_PAIR_GEN) && has(MechanismType::ECDSA) {
        let (_, max) = sizes(MechanismType::ECC_KEY_PAIR_GEN).unwrap_or((0, usize::MAX));
        for a in [
            KeyAlgorithm::EcP256,
            KeyAlgorithm::EcP384,
            KeyAlgorithm::EcP521,
        ] {
            if a.bits() as usize <= max {
                caps.algorithms.push(a);
            }
        }
    }
    if has(MechanismType::ECC_EDWARDS_KEY_PAIR_GEN) && has(MechanismType::EDDSA) {
        caps.algorithms.push(KeyAlgorithm::Ed25519);
    }
    if has(MechanismType::AES_KEY_GEN) && has(MechanismType::AES_GCM) {
        let (min, max) = sizes(MechanismType::AES_GCM).unwrap_or((0, usize::MAX));
        for a in [
            KeyAlgorithm::Aes128Gcm,
            KeyAlgorithm::Aes192Gcm,
            KeyAlgorithm::Aes256Gcm,
        ] {
            let len = a.symmetric_key_len().unwrap_or(32);
            // PKCS#11 gives AES sizes in bytes; some modules report bits.
            if (min..=max).contains(&len) || (min..=max).contains(&(len * 8)) {
                caps.algorithms.push(a);
            }
        }
        caps.aead = caps.algorithms.iter().any(|a| a.is_symmetric());
    }
    let any = |f: fn(KeyAlgorithm) -> bool| caps.algorithms.iter().any(|a| f(*a));
    let (rsa, ec, ed) = (
        any(KeyAlgorithm::is_rsa),
        any(KeyAlgorithm::is_ecdsa),
        any(|a| a == KeyAlgorithm::Ed25519),
    );
    for h in HashAlg::ALL {
        if rsa && has(MechanismType::RSA_PKCS) {
            caps.signature_schemes.push(SignatureScheme::RsaPkcs1v15(h));
        }
        if rsa && has(MechanismType::RSA_PKCS_PSS) {
            caps.signature_schemes.push(SignatureScheme::RsaPss(h));
        }
        if ec {
            caps.signature_schemes.push(SignatureScheme::Ecdsa(h));
        }
    }
    if ed {
        caps.signature_schemes.push(SignatureScheme::Ed25519);
    }
    caps.sign_message = true;
    caps.rotate = true;
    caps.random = rng;
    // Keys are created from material with C_CreateObject; exports leave wrapped (C_WrapKey with
    // AES key wrap with padding under a session key) and are re-encrypted under the password.
    caps.import = true;
    caps.export_wrapped = has(MechanismType::AES_KEY_WRAP_PAD) && has(MechanismType::AES_KEY_GEN);
    caps.import_wrapped = true;
    caps.health = true;
    Ok(caps)
}

/// A public RSA-2048 modulus for the OAEP probe (any well-formed modulus will do: only
/// `C_EncryptInit`'s parameter check matters).
fn probe_modulus() -> Vec<u8> {
    let mut n = vec![0xc5u8; 256];
    n[255] = 0x01;
    n
}

/// The OAEP hashes the token accepts, found by encrypting to a session public key: the
/// mechanism list cannot say (SoftHSM 2.6 lists CKM_RSA_PKCS_OAEP but takes SHA-1 only).
fn probe_oaep(session: &Session) -> Result<Vec<HashAlg>> {
    let template = [
        Attribute::Class(ObjectClass::PUBLIC_KEY),
        Attribute::KeyType(KeyType::RSA),
        Attribute::Token(false),
        Attribute::Encrypt(true),
        Attribute::Modulus(probe_modulus()),
        Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
    ];
    let key = session.create_object(&template).map_err(map)?;
    let mut ok = Vec::new();
    for h in HashAlg::ALL {
        let params = oaep_params(h)?;
        if session
            .encrypt(&Mechanism::RsaPkcsOaep(params), key, b"keychain probe")
            .is_ok()
        {
            ok.push(h);
        }
    }
    let _ = session.destroy_object(key);
    Ok(ok)
}

impl Pkcs11Backend {
    /// Loads the module (or joins the process's shared context), finds the token, reads what
    /// it can do and logs in.
    ///
    /// # Errors
    /// - [`ErrorKind::InvalidInput`]: no module path, not exactly one of token label and slot id,
    ///   a file that is not a PKCS#11 module, several tokens with the label;
    /// - [`ErrorKind::NotFound`]: the module file, or a token with that label or slot id, does
    ///   not exist; the PIN's environment variable or file is missing;
    /// - [`ErrorKind::Unauthenticated`]: the PIN is wrong (tried once); [`ErrorKind::Locked`]:
    ///   the PIN is locked.
    pub async fn open(config: Config) -> Result<Self> {
        let fail = in_op(Operation::Open, None);
        config.validate().map_err(&fail)?;
        let module = config.module_path.clone().unwrap_or_default();
        let what = match (&config.token, config.slot_id) {
            (Some(label), _) => format!("PIN for PKCS#11 token {label:?}"),
            (None, id) => format!(
                "PIN for the PKCS#11 token in slot {}",
                id.unwrap_or_default()
            ),
        };
        let pin = config.pin.resolve(&what).map_err(&fail)?;
        let inner = tokio::task::spawn_blocking(move || Self::open_blocking(&config, &module, pin))
            .await
            .map_err(|e| Error::new(ErrorKind::Unexpected, format!("open failed: {e}")))
            .map_err(&fail)?
            .map_err(&fail)?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    fn open_blocking(
        config: &Config,
        module: &Path,
        pin: keychain_core::SecretString,
    ) -> Result<Inner> {
        let module = canonical(module)?;
        let lease = Lease::acquire(&module, config.shared_context)?;
        let ctx = lease.ctx().clone();
        let (slot, token_label) = find_slot(&ctx, config)?;
        let info = ctx.get_token_info(slot).map_err(map)?;
        let mut max = config.max_sessions;
        if let Limit::Max(n) = info.max_rw_session_count()
            && n > 0
        {
            max = max.min(usize::try_from(n).unwrap_or(usize::MAX));
        }
        let pin = info.login_required().then_some(pin);
        let mut capabilities = capabilities(&ctx, slot, info.rng())?;
        let lock = token_lock(&module, slot.id());
        let pool = Arc::new(Pool::new(ctx, slot, pin, max, lock, config.dispatch));
        pool.login_now()?;
        let rsa = capabilities.algorithms.iter().any(|a| a.is_rsa());
        if rsa
            && pool
                .ctx()
                .get_mechanism_list(slot)
                .map_err(map)?
                .contains(&MechanismType::RSA_PKCS_OAEP)
        {
            capabilities.oaep_hashes = pool.run_here(probe_oaep)?;
        }
        Ok(Inner {
            pool,
            lease: Mutex::new(Some(lease)),
            capabilities,
            cache: Mutex::new(Cache::default()),
            module,
            token_label,
            slot_id: slot.id(),
            max_certificates: config.max_certificates,
            export_kdf: config.export_kdf,
        })
    }

    /// The label of the token this backend uses.
    pub fn token_label(&self) -> &str {
        &self.inner.token_label
    }

    /// The id of the slot the token is in.
    pub fn slot_id(&self) -> u64 {
        self.inner.slot_id
    }

    /// The module's canonical path.
    pub fn module_path(&self) -> &Path {
        &self.inner.module
    }
}

impl Inner {
    /// The cache, emptied first if the token's sessions were lost since it was filled.
    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let generation = self.pool.generation();
        if cache.generation != generation {
            cache.keys.clear();
            cache.generation = generation;
        }
        cache
    }

    fn cached(&self, name: &KeyName) -> Option<Arc<KeyEntry>> {
        self.cache().keys.get(name).cloned()
    }

    /// The dispatch class of an operation on `len` bytes with the key `name`: by the key's
    /// algorithm when it is cached; off-thread for a key not cached yet and for large inputs,
    /// whose time grows with their length (a typical small call says nothing about them).
    fn call(&self, name: &KeyName, len: usize) -> Call {
        if len > INLINE_MAX_INPUT {
            return Call::OffThread;
        }
        self.cache()
            .keys
            .get(name)
            .map_or(Call::OffThread, |e| Call::Key(e.algorithm))
    }

    fn forget(&self, name: &KeyName) {
        self.cache().keys.remove(name);
    }

    /// Reads `name` from the token and caches it.
    fn reload(&self, session: &Session, name: &KeyName) -> Result<Arc<KeyEntry>> {
        match objects::load(session, name)? {
            Some(entry) => {
                let entry = Arc::new(entry);
                self.cache().keys.insert(name.clone(), Arc::clone(&entry));
                Ok(entry)
            }
            None => {
                self.forget(name);
                Err(Error::not_found(format!("no key named {name}")))
            }
        }
    }

    /// Runs `op` on a version of `name`, from the cache when possible. A cached handle that no
    /// longer exists, or a version the cache does not know, is looked up again once.
    fn with_key<T>(
        &self,
        session: &Session,
        name: &KeyName,
        version: Option<KeyVersion>,
        op: impl Fn(&KeyEntry, &VersionEntry) -> Result<T>,
    ) -> Result<T> {
        if let Some(entry) = self.cached(name) {
            let first = entry.version(version).and_then(|v| op(&entry, v));
            match first {
                Err(e) if stale_handle(&e) || e.kind() == ErrorKind::NotFound => {}
                other => return other,
            }
        }
        let entry = self.reload(session, name)?;
        let v = entry.version(version)?;
        op(&entry, v)
    }

    fn sign_raw(
        &self,
        session: &Session,
        key: ObjectHandle,
        algorithm: KeyAlgorithm,
        scheme: SignatureScheme,
        data: &[u8],
    ) -> Result<Vec<u8>> {
        match scheme {
            SignatureScheme::RsaPkcs1v15(h) => {
                let mut info = digest_info_prefix(h)?.to_vec();
                info.extend_from_slice(data);
                session.sign(&Mechanism::RsaPkcs, key, &info).map_err(map)
            }
            SignatureScheme::RsaPss(h) => {
                let (hash_alg, mgf) = hash_mechanism(h)?;
                let params = PkcsPssParams {
                    hash_alg,
                    mgf,
                    s_len: u64::try_from(h.output_len()).unwrap_or(32).into(),
                };
                session
                    .sign(&Mechanism::RsaPkcsPss(params), key, data)
                    .map_err(map)
            }
            SignatureScheme::Ecdsa(_) => {
                let fixed = session.sign(&Mechanism::Ecdsa, key, data).map_err(map)?;
                keychain_core::ecdsa_fixed_to_der(&fixed, algorithm)
            }
            SignatureScheme::Ed25519 => session
                .sign(
                    &Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
                    key,
                    data,
                )
                .map_err(map),
            other => Err(Error::unsupported(format!("signature scheme {other}"))),
        }
    }

    /// Creates version 1 of `name` from imported material (`plain`: PKCS#8 DER or the raw AES
    /// key) and returns the key as now stored. Private and secret key first: on failure, nothing
    /// that makes a key is left.
    fn import(
        &self,
        session: &Session,
        name: &KeyName,
        plain: &keychain_crypto::pkcs8::Plain,
        usages: keychain_core::KeyUsages,
        exportable: bool,
    ) -> Result<Arc<KeyEntry>> {
        let random = session.generate_random_vec(12).map_err(map)?;
        let id = objects::make_id(1, &random);
        let (public, mut key) = objects::import_templates(
            name,
            &id,
            plain.algorithm,
            plain.material.expose(),
            usages,
            exportable,
        )?;
        let created = session.create_object(&key).map_err(map);
        objects::scrub(&mut key);
        let private = created?;
        if let Some(public) = public
            && let Err(e) = session.create_object(&public).map_err(map)
        {
            let _ = session.destroy_object(private);
            return Err(e);
        }
        self.reload(session, name)
    }

    /// The key material of an extractable key, read through the token's own export: wrapped
    /// (`CKM_AES_KEY_WRAP_PAD`) under a fresh session AES key that is readable, unwrapped here
    /// and the session key destroyed. PKCS#8 DER for asymmetric keys, the raw key for AES.
    fn extract(session: &Session, key: ObjectHandle) -> Result<SecretBytes> {
        use aes_kw::cipher::KeyInit as _;
        let kek = session
            .generate_key(
                &Mechanism::AesKeyGen,
                &[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::AES),
                    Attribute::ValueLen(32.into()),
                    Attribute::Token(false),
                    Attribute::Private(true),
                    Attribute::Sensitive(false),
                    Attribute::Extractable(true),
                    Attribute::Wrap(true),
                    Attribute::Unwrap(false),
                    Attribute::Encrypt(false),
                    Attribute::Decrypt(false),
                ],
            )
            .map_err(map)?;
        let result = (|| {
            let wrapped = session
                .wrap_key(&Mechanism::AesKeyWrapPad, kek, key)
                .map_err(map)
                .map_err(|e| match rv_in(&e) {
                    // SoftHSM 2.6, for one, cannot wrap EdDSA keys.
                    Some(RvError::KeyNotWrappable) => Error::unsupported(
                        "this token cannot export keys of this type (CKR_KEY_NOT_WRAPPABLE)",
                    )
                    .with_source(e),
                    _ => e,
                })?;
            let mut attrs = session
                .get_attributes(kek, &[AttributeType::Value])
                .map_err(map)?;
            let value = zeroize::Zeroizing::new(
                objects::attr_bytes(&attrs, AttributeType::Value)
                    .unwrap_or_default()
                    .to_vec(),
            );
            objects::scrub(&mut attrs);
            let kwp = aes_kw::KwpAes256::new_from_slice(&value)
                .map_err(|_| Error::new(ErrorKind::Unexpected, "the session key is not AES-256"))?;
            let mut buf = zeroize::Zeroizing::new(vec![0u8; wrapped.len()]);
            let plain = kwp.unwrap_key(&wrapped, &mut buf).map_err(|_| {
                Error::new(
                    ErrorKind::Integrity,
                    "the token's wrapped key does not unwrap",
                )
            })?;
            Ok(SecretBytes::from_slice(plain))
        })();
        if let Err(e) = session.destroy_object(kek) {
            tracing::warn!(error = %e, "destroying the export session key failed");
        }
        result
    }

    /// The key as read from the token, if it was created exportable (`PermissionDenied` if not).
    fn exportable(&self, s: &Session, key: &KeyRef) -> Result<Arc<KeyEntry>> {
        let entry = self.reload(s, key.name())?;
        if !entry.exportable {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                "the key was not created exportable (CKA_EXTRACTABLE is false)",
            ));
        }
        Ok(entry)
    }

    /// The PKCS#8 DER of an extractable key (AES keys in keychain's PKCS#8 envelope), checked
    /// to be the key's algorithm.
    fn extract_pkcs8(&self, s: &Session, key: &KeyRef) -> Result<(KeyAlgorithm, SecretBytes)> {
        let entry = self.exportable(s, key)?;
        let version = entry.version(key.version())?;
        let material = trim_padding(
            Self::extract(s, version.key)?,
            entry.algorithm.symmetric_key_len(),
        )?;
        let der = if entry.algorithm.is_symmetric() {
            keychain_crypto::pkcs8::symmetric_to_pkcs8(entry.algorithm, material.expose())?
        } else {
            material
        };
        let found = keychain_crypto::pkcs8::inspect(der.expose())?.algorithm;
        if found != entry.algorithm {
            return Err(Error::new(
                ErrorKind::Integrity,
                format!(
                    "the token exported a {found} key for a {} key",
                    entry.algorithm
                ),
            ));
        }
        Ok((entry.algorithm, der))
    }

    /// The wrapping key of `WrappingSpec::Key`: an AES key of this token with the wrap usage.
    fn kek(&self, s: &Session, kek: &KeyRef) -> Result<ObjectHandle> {
        let entry = self.reload(s, kek.name())?;
        if !entry.algorithm.is_aes() || !entry.usages.contains(KeyUsage::Wrap) {
            return Err(Error::invalid_input(format!(
                "wrapping key {} must be an AES key with the wrap usage (it is a {} key with {:?})",
                kek.name(),
                entry.algorithm,
                entry.usages
            )));
        }
        Ok(entry.version(kek.version())?.key)
    }

    /// `export_wrapped` under a key of the token: `C_WrapKey` with `CKM_AES_KEY_WRAP_PAD`; the
    /// key never leaves the token in the clear. Asymmetric keys carry their public key.
    fn wrap_under(&self, s: &Session, key: &KeyRef, kek: &KeyRef) -> Result<WrappedKey> {
        let entry = self.exportable(s, key)?;
        let version = entry.version(key.version())?;
        let wrapping = self.kek(s, kek)?;
        let bytes = s
            .wrap_key(&Mechanism::AesKeyWrapPad, wrapping, version.key)
            .map_err(map)
            .map_err(|e| match rv_in(&e) {
                Some(RvError::KeyNotWrappable) => Error::unsupported(
                    "this token cannot wrap keys of this type (CKR_KEY_NOT_WRAPPABLE)",
                )
                .with_source(e),
                _ => e,
            })?;
        let wrapped = WrappedKey::new(WrapFormat::AesKeyWrapPad, entry.algorithm, bytes);
        Ok(match &version.public_key {
            Some(public) => wrapped.with_public_key(public),
            None => wrapped,
        })
    }

    /// `import_wrapped` under a key of the token: `C_UnwrapKey`, then the public key object from
    /// the `WrappedKey`'s public key once it is shown to belong to the unwrapped private key.
    fn unwrap_under(
        &self,
        s: &Session,
        name: &KeyName,
        wrapped: &WrappedKey,
        kek: &KeyRef,
        usages: keychain_core::KeyUsages,
        exportable: bool,
    ) -> Result<Arc<KeyEntry>> {
        let wrapping = self.kek(s, kek)?;
        let random = s.generate_random_vec(12).map_err(map)?;
        let id = objects::make_id(1, &random);
        let (public, template) = objects::unwrap_templates(
            name,
            &id,
            wrapped.algorithm,
            usages,
            exportable,
            wrapped.public_key.as_deref(),
        )?;
        let private = s
            .unwrap_key(
                &Mechanism::AesKeyWrapPad,
                wrapping,
                &wrapped.bytes,
                &template,
            )
            .map_err(map)
            .map_err(|e| match rv_in(&e) {
                // SoftHSM 2.6 reports a failed RFC 5649 integrity check as CKR_GENERAL_ERROR.
                Some(
                    RvError::WrappedKeyInvalid
                    | RvError::WrappedKeyLenRange
                    | RvError::EncryptedDataInvalid
                    | RvError::EncryptedDataLenRange
                    | RvError::GeneralError,
                ) => Error::new(
                    ErrorKind::Integrity,
                    format!("the wrapped key does not unwrap under {}", kek.name()),
                )
                .with_source(e),
                _ => e,
            })?;
        let mut made = vec![private];
        let result = (|| {
            if wrapped.algorithm.is_symmetric() {
                let attrs = s
                    .get_attributes(private, &[AttributeType::ValueLen])
                    .map_err(map)?;
                let len = attrs.iter().find_map(|a| match a {
                    Attribute::ValueLen(l) => Some(u64::from(*l)),
                    _ => None,
                });
                if len.is_none_or(|l| l == 0) {
                    // SoftHSM 2.6: CKA_VALUE_LEN stays unset after C_UnwrapKey (and may not be
                    // given in the template), so the key's size could never be read back.
                    return Err(Error::unsupported(
                        "this token does not record the length of an unwrapped AES key \
                         (CKA_VALUE_LEN); use WrappingSpec::Password for AES keys",
                    ));
                }
            }
            if let Some(public) = &public {
                self.check_pair(s, private, wrapped)?;
                made.push(s.create_object(public).map_err(map)?);
            }
            let entry = self.reload(s, name)?;
            if entry.algorithm != wrapped.algorithm {
                return Err(Error::new(
                    ErrorKind::Integrity,
                    format!(
                        "the token unwrapped a {} key for a {} key",
                        entry.algorithm, wrapped.algorithm
                    ),
                ));
            }
            Ok(entry)
        })();
        if result.is_err() {
            for h in made {
                let _ = s.destroy_object(h);
            }
            self.forget(name);
        }
        result
    }

    /// That the public key a `WrappedKey` carries belongs to the unwrapped private key: the RSA
    /// modulus compared, an EC/Ed25519 key's signature verified.
    fn check_pair(&self, s: &Session, private: ObjectHandle, wrapped: &WrappedKey) -> Result<()> {
        let spki = wrapped.public_key.as_deref().unwrap_or_default();
        let public = keychain_core::PublicKey::from_der(spki)?;
        let mismatch = || {
            Error::new(
                ErrorKind::Integrity,
                "the wrapped key's public key does not belong to the wrapped private key",
            )
        };
        let algorithm = wrapped.algorithm;
        let Some(scheme) = algorithm.default_scheme() else {
            return Ok(());
        };
        if algorithm.is_rsa() {
            let attrs = s
                .get_attributes(private, &[AttributeType::Modulus])
                .map_err(map)?;
            let modulus = objects::attr_bytes(&attrs, AttributeType::Modulus).unwrap_or_default();
            let spki_ref = spki::SubjectPublicKeyInfoRef::try_from(spki)
                .map_err(|e| Error::invalid_input(format!("malformed public key: {e}")))?;
            let rsa = <pkcs1::RsaPublicKey<der::asn1::UintRef<'_>> as der::Decode<'_>>::from_der(
                spki_ref.subject_public_key.raw_bytes(),
            )
            .map_err(|e| Error::invalid_input(format!("malformed RSA public key: {e}")))?;
            let strip = |b: &[u8]| {
                let first = b.iter().position(|x| *x != 0).unwrap_or(b.len());
                b[first..].to_vec()
            };
            return if strip(modulus) == strip(rsa.modulus.as_bytes()) {
                Ok(())
            } else {
                Err(mismatch())
            };
        }
        let probe = b"keychain: does this public key belong to the unwrapped key?";
        let data = match scheme.hash() {
            Some(h) => h.digest(probe),
            None => probe.to_vec(),
        };
        let signature = self.sign_raw(s, private, algorithm, scheme, &data)?;
        keychain_core::verify(&public, SignInput::message(probe), scheme, &signature)
            .map_err(|_| mismatch())
    }

    /// Creates version `version` of `name` and returns the key as now stored.
    fn create(
        &self,
        session: &Session,
        name: &KeyName,
        version: KeyVersion,
        algorithm: KeyAlgorithm,
        usages: keychain_core::KeyUsages,
        exportable: bool,
    ) -> Result<Arc<KeyEntry>> {
        let random = session.generate_random_vec(12).map_err(map)?;
        let id = objects::make_id(version, &random);
        let t = objects::templates(name, &id, algorithm, usages, exportable)?;
        match &t.public {
            Some(public) => {
                session
                    .generate_key_pair(&t.mechanism, public, &t.key)
                    .map_err(map)?;
            }
            None => {
                session.generate_key(&t.mechanism, &t.key).map_err(map)?;
            }
        }
        self.reload(session, name)
    }
}

/// Some modules (SoftHSM 2.6) zero-pad what they wrap to a multiple of 8 bytes before the
/// RFC 5649 wrap, so the unwrapped bytes can end in zeros that belong to no key: cut to the
/// AES key length (`key_len`) or the DER length of the PKCS#8 document, and refuse anything but
/// zeros after it.
fn trim_padding(material: SecretBytes, key_len: Option<usize>) -> Result<SecretBytes> {
    let bytes = material.expose();
    let len = match key_len {
        Some(n) => n,
        None => {
            let err =
                |e: der::Error| Error::new(ErrorKind::Integrity, format!("exported key: {e}"));
            let mut reader = der::SliceReader::new(bytes).map_err(err)?;
            let header = <der::Header as der::Decode<'_>>::decode(&mut reader).map_err(err)?;
            let end = (der::Reader::position(&reader) + header.length()).map_err(err)?;
            usize::try_from(end).map_err(err)?
        }
    };
    if len > bytes.len() || bytes[len..].iter().any(|b| *b != 0) {
        return Err(Error::new(
            ErrorKind::Integrity,
            "the token exported a key of an unexpected length",
        ));
    }
    if len == bytes.len() {
        return Ok(material);
    }
    Ok(SecretBytes::from_slice(&bytes[..len]))
}

impl Pkcs11Backend {
    /// The key material of an extractable key, **in the clear, in this process's memory**: PKCS#8
    /// DER for RSA, EC and Ed25519 keys, the raw bytes for AES (zeroized when dropped). For
    /// re-encoding into another protected format — a SmartCard-HSM backup blob under a DKEK —
    /// where [`Backend::export_wrapped`] has no matching `WrappingSpec`. The token wraps the key
    /// under a session key first (`CKM_AES_KEY_WRAP_PAD`), as for a password export.
    ///
    /// # Errors
    /// `PermissionDenied` for a key not created exportable; `Unsupported` for keys the token
    /// cannot wrap (SoftHSM 2.6: Ed25519) or a token without `CKM_AES_KEY_WRAP_PAD`;
    /// `NotFound` for a missing key or version.
    pub async fn extract_key(&self, key: &KeyRef) -> Result<KeyMaterial> {
        let fail = in_op(Operation::ExportWrapped, Some(key.name()));
        if !self.inner.capabilities.export_wrapped {
            return Err(fail(Error::unsupported(
                "this token has no CKM_AES_KEY_WRAP_PAD to export keys with",
            )));
        }
        let inner = Arc::clone(&self.inner);
        let key2 = key.clone();
        let (algorithm, der) = self
            .inner
            .pool
            .run(Call::OffThread, move |s| inner.extract_pkcs8(s, &key2))
            .await
            .map_err(&fail)?;
        if algorithm.is_symmetric() {
            let plain = keychain_crypto::pkcs8::inspect(der.expose()).map_err(&fail)?;
            return Ok(KeyMaterial::Symmetric(plain.material));
        }
        Ok(KeyMaterial::Pkcs8 {
            data: der,
            password: None,
        })
    }

    /// Imports `plain` as the new key `name` (shared by `import_key` and `import_wrapped`).
    /// Makes version 1 of a new key `name` with `make`, which runs with the token to itself
    /// within the process: the algorithm checked against the token, the usages against the
    /// algorithm, the name refused if a key has it (leftover objects of a half-made key under it
    /// are removed first).
    async fn create_fresh<F>(
        &self,
        name: &KeyName,
        algorithm: KeyAlgorithm,
        spec: &ImportSpec,
        make: F,
    ) -> Result<KeyInfo>
    where
        F: FnOnce(
                &Inner,
                &Session,
                &KeyName,
                keychain_core::KeyUsages,
                bool,
            ) -> Result<Arc<KeyEntry>>
            + Send
            + 'static,
    {
        if !self.inner.capabilities.supports_algorithm(algorithm) {
            return Err(Error::unsupported(format!(
                "this token does not offer {algorithm} keys"
            )));
        }
        let key_spec = KeySpec::new(algorithm).with_usages(spec.usages);
        key_spec.validate()?;
        let (usages, exportable) = (key_spec.effective_usages(), spec.exportable);
        let inner = Arc::clone(&self.inner);
        let name2 = name.clone();
        self.inner
            .pool
            .run_exclusive(move |s| {
                if objects::load(s, &name2)?.is_some() {
                    return Err(Error::new(
                        ErrorKind::AlreadyExists,
                        format!("a key named {name2} exists"),
                    ));
                }
                for (h, _, _) in objects::objects_of(s, &name2)? {
                    s.destroy_object(h).map_err(map)?;
                }
                Ok(make(&inner, s, &name2, usages, exportable)?.info())
            })
            .await
    }

    /// `import_wrapped` with `WrappingSpec::Key`.
    async fn import_under(
        &self,
        name: &KeyName,
        wrapped: &WrappedKey,
        kek: &KeyRef,
        spec: &ImportSpec,
    ) -> Result<KeyInfo> {
        if wrapped.format != WrapFormat::AesKeyWrapPad {
            return Err(Error::invalid_input(format!(
                "a key wrapped as {:?} does not unwrap under a token key (AES key wrap with \
                 padding)",
                wrapped.format
            )));
        }
        let algorithm = spec.algorithm.unwrap_or(wrapped.algorithm);
        if algorithm != wrapped.algorithm {
            return Err(Error::invalid_input(format!(
                "the wrapped key is a {} key, expected {algorithm}",
                wrapped.algorithm
            )));
        }
        let (wrapped, kek) = (wrapped.clone(), kek.clone());
        self.create_fresh(
            name,
            algorithm,
            spec,
            move |inner, s, name, usages, exportable| {
                inner.unwrap_under(s, name, &wrapped, &kek, usages, exportable)
            },
        )
        .await
    }

    async fn import_plain(
        &self,
        name: &KeyName,
        plain: keychain_crypto::pkcs8::Plain,
        spec: &ImportSpec,
    ) -> Result<KeyInfo> {
        let algorithm = plain.algorithm;
        self.create_fresh(
            name,
            algorithm,
            spec,
            move |inner, s, name, usages, exportable| {
                inner.import(s, name, &plain, usages, exportable)
            },
        )
        .await
    }
}

#[async_trait]
impl Backend for Pkcs11Backend {
    fn capabilities(&self) -> &Capabilities {
        &self.inner.capabilities
    }

    async fn generate_key(&self, name: &KeyName, spec: &KeySpec) -> Result<KeyInfo> {
        let fail = in_op(Operation::GenerateKey, Some(name));
        spec.validate().map_err(&fail)?;
        let algorithm = spec.algorithm;
        if !self.inner.capabilities.supports_algorithm(algorithm) {
            return Err(fail(Error::unsupported(format!(
                "this token does not offer {algorithm} keys"
            ))));
        }
        let inner = Arc::clone(&self.inner);
        let (name2, usages, exportable) = (name.clone(), spec.effective_usages(), spec.exportable);
        self.inner
            .pool
            .run_exclusive(move |s| {
                if objects::load(s, &name2)?.is_some() {
                    return Err(Error::new(
                        ErrorKind::AlreadyExists,
                        format!("a key named {name2} exists"),
                    ));
                }
                // Leftovers of an interrupted delete (public keys without their private key).
                for (h, _, _) in objects::objects_of(s, &name2)? {
                    s.destroy_object(h).map_err(map)?;
                }
                let entry = inner.create(s, &name2, 1, algorithm, usages, exportable)?;
                Ok(entry.info())
            })
            .await
            .map_err(fail)
    }

    async fn key_info(&self, key: &KeyRef) -> Result<KeyInfo> {
        let inner = Arc::clone(&self.inner);
        let key2 = key.clone();
        self.inner
            .pool
            .run(Call::Read, move |s| {
                let entry = inner.reload(s, key2.name())?;
                entry.version(key2.version())?;
                Ok(entry.info())
            })
            .await
            .map_err(in_op(Operation::KeyInfo, Some(key.name())))
    }

    async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        let inner = Arc::clone(&self.inner);
        self.inner
            .pool
            .run(Call::OffThread, move |s| {
                let mut out = Vec::new();
                for name in objects::names(s)? {
                    match inner.reload(s, &name) {
                        Ok(entry) => out.push(entry.info()),
                        // Not a complete keychain key (another tool's object with our ID form).
                        Err(e) if e.kind() == ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(out)
            })
            .await
            .map_err(in_op(Operation::ListKeys, None))
    }

    async fn delete_key(&self, name: &KeyName) -> Result<()> {
        let inner = Arc::clone(&self.inner);
        let name2 = name.clone();
        self.inner
            .pool
            .run_exclusive(move |s| {
                let objects = objects::objects_of(s, &name2)?;
                inner.forget(&name2);
                if !objects
                    .iter()
                    .any(|(_, class, _)| *class != ObjectClass::PUBLIC_KEY)
                {
                    return Err(Error::not_found(format!("no key named {name2}")));
                }
                // Private and secret keys first: if this stops half-way, what remains is public
                // keys, which no longer make a key (and the next generate clears them).
                let (publics, keys): (Vec<_>, Vec<_>) = objects
                    .into_iter()
                    .partition(|(_, class, _)| *class == ObjectClass::PUBLIC_KEY);
                for (h, _, _) in keys.into_iter().chain(publics) {
                    match s.destroy_object(h).map_err(map) {
                        // Already gone (another process deleted it meanwhile): what we want.
                        Err(e) if rv_in(&e) == Some(RvError::ObjectHandleInvalid) => {}
                        other => other?,
                    }
                }
                Ok(())
            })
            .await
            .map_err(in_op(Operation::DeleteKey, Some(name)))
    }

    async fn sign(
        &self,
        key: &KeyRef,
        input: SignInput<'_>,
        scheme: SignatureScheme,
    ) -> Result<Signature> {
        let fail = in_op(Operation::Sign, Some(key.name()));
        let data = input.prepare(scheme).map_err(&fail)?.into_owned();
        let inner = Arc::clone(&self.inner);
        let key2 = key.clone();
        self.inner
            .pool
            .run(inner.call(key2.name(), data.len()), move |s| {
                inner.with_key(s, key2.name(), key2.version(), |entry, v| {
                    if entry.algorithm.is_symmetric() {
                        return Err(Error::invalid_input(format!(
                            "{} is a symmetric key; symmetric keys do not sign",
                            entry.name
                        )));
                    }
                    scheme.check_fits(entry.algorithm)?;
                    if !inner.capabilities.signature_schemes.contains(&scheme) {
                        return Err(Error::unsupported(format!(
                            "this token does not offer {scheme}"
                        )));
                    }
                    require_usage(entry, KeyUsage::Sign, "sign")?;
                    let bytes = inner.sign_raw(s, v.key, entry.algorithm, scheme, &data)?;
                    Ok(Signature::new(bytes, scheme, v.version))
                })
            })
            .await
            .map_err(fail)
    }

    async fn close(&self) -> Result<()> {
        self.inner.pool.close().await;
        let lease = self
            .inner
            .lease
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(mut lease) = lease {
            // C_Finalize may block.
            let _ = tokio::task::spawn_blocking(move || lease.release()).await;
        }
        Ok(())
    }

    async fn decrypt(
        &self,
        key: &KeyRef,
        ciphertext: &[u8],
        padding: RsaPadding,
    ) -> Result<SecretBytes> {
        let fail = in_op(Operation::Decrypt, Some(key.name()));
        let RsaPadding::Oaep(hash) = padding else {
            return Err(fail(Error::unsupported("this padding")));
        };
        if !self.inner.capabilities.supports_oaep(hash) {
            return Err(fail(Error::unsupported(format!(
                "this token does not offer RSA-OAEP with {hash}"
            ))));
        }
        let inner = Arc::clone(&self.inner);
        let key2 = key.clone();
        let ct = ciphertext.to_vec();
        self.inner
            .pool
            .run(inner.call(key2.name(), ct.len()), move |s| {
                inner.with_key(s, key2.name(), key2.version(), |entry, v| {
                    if !entry.algorithm.is_rsa() {
                        return Err(Error::invalid_input(format!(
                            "RSA-OAEP needs an RSA key; {} is {}",
                            entry.name, entry.algorithm
                        )));
                    }
                    require_usage(entry, KeyUsage::Decrypt, "decrypt")?;
                    let params = oaep_params(hash)?;
                    s.decrypt(&Mechanism::RsaPkcsOaep(params), v.key, &ct)
                        .map(SecretBytes::new)
                        .map_err(|e| decrypt_failure(map(e), false))
                })
            })
            .await
            .map_err(fail)
    }

    async fn encrypt(&self, key: &KeyRef, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        let fail = in_op(Operation::Encrypt, Some(key.name()));
        let inner = Arc::clone(&self.inner);
        let key2 = key.clone();
        let (plaintext, aad) = (zeroize::Zeroizing::new(plaintext.to_vec()), aad.to_vec());
        self.inner
            .pool
            .run(inner.call(key2.name(), plaintext.len()), move |s| {
                inner.with_key(s, key2.name(), key2.version(), |entry, v| {
                    if !entry.algorithm.is_symmetric() {
                        return Err(Error::invalid_input(format!(
                            "{} is a {} key; AEAD needs a symmetric key",
                            entry.name, entry.algorithm
                        )));
                    }
                    require_usage(entry, KeyUsage::Encrypt, "encrypt")?;
                    let random = s.generate_random_vec(NONCE_LEN as u32).map_err(map)?;
                    let mut nonce = [0u8; NONCE_LEN];
                    nonce.copy_from_slice(&random);
                    let header = AeadCiphertext::header(v.version, &nonce);
                    let full_aad = AeadCiphertext::full_aad(&header, &aad);
                    let mut iv = nonce;
                    let params = GcmParams::new(&mut iv, &full_aad, (TAG_LEN as u64 * 8).into())
                        .map_err(map)?;
                    let body = s
                        .encrypt(&Mechanism::AesGcm(params), v.key, &plaintext)
                        .map_err(map)?;
                    let mut out = header;
                    out.extend_from_slice(&body);
                    Ok(out)
                })
            })
            .await
            .map_err(fail)
    }

    async fn decrypt_aead(
        &self,
        name: &KeyName,
        ciphertext: &[u8],
        aad: &[u8],
    ) -> Result<SecretBytes> {
        let fail = in_op(Operation::DecryptAead, Some(name));
        let parsed = AeadCiphertext::parse(ciphertext).map_err(&fail)?;
        let version = parsed.key_version;
        let nonce = parsed.nonce;
        let full_aad = AeadCiphertext::full_aad(parsed.header_bytes(), aad);
        let body = ciphertext[HEADER_LEN..].to_vec();
        let inner = Arc::clone(&self.inner);
        let name2 = name.clone();
        self.inner
            .pool
            .run(inner.call(&name2, body.len()), move |s| {
                inner.with_key(s, &name2, Some(version), |entry, v| {
                    if !entry.algorithm.is_symmetric() {
                        return Err(Error::invalid_input(format!(
                            "{} is a {} key; AEAD needs a symmetric key",
                            entry.name, entry.algorithm
                        )));
                    }
                    require_usage(entry, KeyUsage::Decrypt, "decrypt")?;
                    let mut iv = nonce;
                    let params = GcmParams::new(&mut iv, &full_aad, (TAG_LEN as u64 * 8).into())
                        .map_err(map)?;
                    s.decrypt(&Mechanism::AesGcm(params), v.key, &body)
                        .map(SecretBytes::new)
                        .map_err(|e| decrypt_failure(map(e), true))
                })
            })
            .await
            .map_err(fail)
    }

    async fn rotate_key(&self, name: &KeyName) -> Result<KeyInfo> {
        let inner = Arc::clone(&self.inner);
        let name2 = name.clone();
        self.inner
            .pool
            .run_exclusive(move |s| {
                let current = inner.reload(s, &name2)?;
                let next = current.current().version + 1;
                let entry = inner.create(
                    s,
                    &name2,
                    next,
                    current.algorithm,
                    current.usages,
                    current.exportable,
                )?;
                Ok(entry.info())
            })
            .await
            .map_err(in_op(Operation::RotateKey, Some(name)))
    }

    async fn import_key(
        &self,
        name: &KeyName,
        material: KeyMaterial,
        spec: &ImportSpec,
    ) -> Result<KeyInfo> {
        let fail = in_op(Operation::ImportKey, Some(name));
        let plain =
            keychain_crypto::pkcs8::from_material(&material, spec.algorithm).map_err(&fail)?;
        drop(material);
        self.import_plain(name, plain, spec).await.map_err(fail)
    }

    async fn export_wrapped(&self, key: &KeyRef, with: &WrappingSpec) -> Result<WrappedKey> {
        let fail = in_op(Operation::ExportWrapped, Some(key.name()));
        let password = match with {
            WrappingSpec::Password(password) => password,
            WrappingSpec::Key(kek) => {
                let inner = Arc::clone(&self.inner);
                let (key2, kek) = (key.clone(), kek.clone());
                return self
                    .inner
                    .pool
                    .run(Call::OffThread, move |s| inner.wrap_under(s, &key2, &kek))
                    .await
                    .map_err(fail);
            }
            _ => return Err(fail(Error::unsupported("this wrapping spec"))),
        };
        if password.expose().is_empty() {
            return Err(fail(Error::invalid_input("the export password is empty")));
        }
        if !self.inner.capabilities.export_wrapped {
            return Err(fail(Error::unsupported(
                "this token has no CKM_AES_KEY_WRAP_PAD to export keys with",
            )));
        }
        let inner = Arc::clone(&self.inner);
        let (key2, password) = (key.clone(), password.duplicate());
        self.inner
            .pool
            .run(Call::OffThread, move |s| {
                let (algorithm, der) = inner.extract_pkcs8(s, &key2)?;
                let bytes = keychain_crypto::pkcs8::encrypt_der(
                    der.expose(),
                    password.expose().as_bytes(),
                    inner.export_kdf,
                )?;
                Ok(WrappedKey::new(
                    WrapFormat::EncryptedPkcs8,
                    algorithm,
                    bytes,
                ))
            })
            .await
            .map_err(fail)
    }

    async fn import_wrapped(
        &self,
        name: &KeyName,
        wrapped: &WrappedKey,
        unwrap_with: &WrappingSpec,
        spec: &ImportSpec,
    ) -> Result<KeyInfo> {
        let fail = in_op(Operation::ImportWrapped, Some(name));
        let password = match unwrap_with {
            WrappingSpec::Password(password) => password,
            WrappingSpec::Key(kek) => {
                return self
                    .import_under(name, wrapped, kek, spec)
                    .await
                    .map_err(fail);
            }
            _ => return Err(fail(Error::unsupported("this wrapping spec"))),
        };
        let (wrapped2, pw, want) = (wrapped.clone(), password.duplicate(), spec.algorithm);
        let plain = tokio::task::spawn_blocking(move || {
            keychain_crypto::pkcs8::open_password_export(&wrapped2, pw.expose().as_bytes(), want)
        })
        .await
        .map_err(|e| Error::new(ErrorKind::Unexpected, format!("import task failed: {e}")))
        .map_err(&fail)?
        .map_err(&fail)?;
        self.import_plain(name, plain, spec).await.map_err(fail)
    }

    async fn random(&self, len: usize) -> Result<Vec<u8>> {
        let fail = in_op(Operation::Random, None);
        if !self.inner.capabilities.random {
            return Err(fail(Error::unsupported(
                "this token has no random generator",
            )));
        }
        if len > MAX_RANDOM {
            return Err(fail(Error::invalid_input(format!(
                "random({len}): at most {MAX_RANDOM} bytes per call"
            ))));
        }
        if len == 0 {
            return Ok(Vec::new());
        }
        let n = u32::try_from(len).unwrap_or(u32::MAX);
        self.inner
            .pool
            .run(Call::Random, move |s| s.generate_random_vec(n).map_err(map))
            .await
            .map_err(fail)
    }

    async fn health(&self) -> Result<Health> {
        let fail = in_op(Operation::Health, None);
        let pool = Arc::clone(&self.inner.pool);
        let (label, slot_id) = (self.inner.token_label.clone(), self.inner.slot_id);
        let (idle, max) = (pool.idle_count(), pool.max());
        if let Some(e) = pool.login_rejected() {
            let mut h = Health::ok()
                .with_detail("token", label)
                .with_detail("login", e.message().to_owned());
            h.status = HealthStatus::Unavailable;
            return Ok(h);
        }
        let info = tokio::task::spawn_blocking(move || {
            pool.ctx().get_token_info(pool.slot()).map_err(map)
        })
        .await
        .map_err(|e| Error::new(ErrorKind::Unexpected, format!("health failed: {e}")))
        .map_err(&fail)?
        .map_err(&fail)?;
        let mut h = Health::ok()
            .with_detail("token", label)
            .with_detail("slot", slot_id.to_string())
            .with_detail("sessions", format!("{idle} idle, at most {max}"))
            .with_detail("dispatch", self.inner.pool.dispatch_summary());
        let pin = if info.user_pin_locked() {
            h.status = HealthStatus::Unavailable;
            Some("locked")
        } else if info.user_pin_final_try() {
            h.status = HealthStatus::Degraded;
            Some("final try")
        } else if info.user_pin_count_low() {
            h.status = HealthStatus::Degraded;
            Some("count low")
        } else if info.user_pin_to_be_changed() {
            h.status = HealthStatus::Degraded;
            Some("to be changed")
        } else {
            None
        };
        if let Some(p) = pin {
            h = h.with_detail("pin", p);
        }
        if let Some(free) = info.free_private_memory() {
            h = h.with_detail("free-private-memory", free.to_string());
        }
        Ok(h)
    }
}

/// Certificates as `CKO_CERTIFICATE` objects (see the crate docs): the store
/// `keychain-certstore`'s hybrid store puts first.
#[async_trait]
impl CertStore for Pkcs11Backend {
    async fn save_chain(&self, name: &KeyName, chain: &[Vec<u8>]) -> Result<()> {
        let (name2, chain, max) = (name.clone(), chain.to_vec(), self.inner.max_certificates);
        self.inner
            .pool
            .run_exclusive(move |s| certs::save(s, &name2, &chain, max))
            .await
            .map_err(in_op(Operation::SaveChain, Some(name)))
    }

    async fn chain(&self, name: &KeyName) -> Result<Vec<Vec<u8>>> {
        let name2 = name.clone();
        self.inner
            .pool
            .run(Call::Read, move |s| certs::chain(s, &name2))
            .await
            .map_err(in_op(Operation::GetChain, Some(name)))
    }

    async fn delete_chain(&self, name: &KeyName) -> Result<()> {
        let name2 = name.clone();
        self.inner
            .pool
            .run_exclusive(move |s| certs::delete(s, &name2))
            .await
            .map_err(in_op(Operation::DeleteChain, Some(name)))
    }

    async fn list_chains(&self) -> Result<Vec<KeyName>> {
        self.inner
            .pool
            .run(Call::OffThread, |s| {
                let mut names: Vec<KeyName> =
                    certs::find(s, None)?.into_iter().map(|c| c.name).collect();
                names.dedup();
                Ok(names)
            })
            .await
            .map_err(in_op(Operation::ListChains, None))
    }

    async fn capacity(&self) -> Result<CertCapacity> {
        let inner = Arc::clone(&self.inner);
        self.inner
            .pool
            .run(Call::OffThread, move |s| {
                let stored = certs::find(s, None)?.len();
                let free = inner
                    .pool
                    .ctx()
                    .get_token_info(inner.pool.slot())
                    .map_err(map)?
                    .free_public_memory()
                    .and_then(|b| u64::try_from(b).ok());
                Ok(CertCapacity::new(stored, inner.max_certificates, free))
            })
            .await
            .map_err(in_op(Operation::CertCapacity, None))
    }
}
