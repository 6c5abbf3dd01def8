#![doc = include_str!("../README.md")]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use ed25519_dalek::Signer as _;
use keychain::{
    Backend, BackendConfig, Capabilities, Error, ErrorKind, KeyAlgorithm, KeyInfo, KeyName, KeyRef,
    KeySpec, KeyUri, KeyVersionInfo, Protection, PublicKey, Result, SignInput, Signature,
    SignatureScheme, async_trait,
};
use serde::{Deserialize, Serialize};
use spki::EncodePublicKey as _;

/// The backend's name everywhere: crate suffix, `type`, URI scheme, [`Capabilities::backend`].
const TYPE: &str = "toy";

/// The toy backend's configuration: which instance it is (a label, as a token label or a
/// region would be for a real one).
///
/// ```toml
/// [backends.play]
/// type = "toy"
/// label = "demo"
/// ```
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ToyConfig {
    /// The instance's label; a `toy:label=...` URI names it.
    pub label: String,
}

#[async_trait]
impl BackendConfig for ToyConfig {
    const TYPE: &'static str = TYPE;
    const URI_SCHEMES: &'static [&'static str] = &[TYPE];

    fn from_uri(uri: &KeyUri) -> Result<Self> {
        if uri.scheme() != TYPE {
            return Err(Error::invalid_input(format!(
                "expected a toy: URI, got `{}:`",
                uri.scheme()
            )));
        }
        uri.check_attrs(&["label", "name", "version"], &[])?;
        Ok(Self {
            label: uri.text_attr("label").transpose()?.unwrap_or_default(),
        })
    }

    fn matches(&self, uri: &KeyUri) -> bool {
        uri.path_attr("label").is_none_or(|l| l == self.label)
    }

    async fn open(self, _name: &str) -> Result<Arc<dyn Backend>> {
        Ok(Arc::new(ToyBackend::new()))
    }
}

/// Ed25519 keys in memory, one version each.
#[derive(Debug)]
pub struct ToyBackend {
    caps: Capabilities,
    keys: Mutex<BTreeMap<KeyName, ToyKey>>,
}

struct ToyKey {
    key: ed25519_dalek::SigningKey,
    created: SystemTime,
}

impl std::fmt::Debug for ToyKey {
    /// Never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ToyKey([redacted])")
    }
}

impl ToyBackend {
    /// An empty store.
    pub fn new() -> Self {
        let mut caps = Capabilities::new(TYPE, Protection::Software);
        caps.algorithms = vec![KeyAlgorithm::Ed25519];
        caps.signature_schemes = vec![SignatureScheme::Ed25519];
        caps.sign_message = true;
        Self {
            caps,
            keys: Mutex::new(BTreeMap::new()),
        }
    }

    fn keys(&self) -> MutexGuard<'_, BTreeMap<KeyName, ToyKey>> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn info(name: &KeyName, key: &ToyKey) -> Result<KeyInfo> {
        let spki = key
            .key
            .verifying_key()
            .to_public_key_der()
            .map_err(|e| Error::new(ErrorKind::Unexpected, format!("SPKI encoding: {e}")))?;
        let public = PublicKey::from_der(spki.as_bytes())?;
        Ok(KeyInfo::new(
            name.clone(),
            KeyAlgorithm::Ed25519,
            KeySpec::new(KeyAlgorithm::Ed25519).effective_usages(),
            Protection::Software,
            false,
            vec![KeyVersionInfo::new(1, Some(key.created), Some(public))],
        ))
    }
}

impl Default for ToyBackend {
    fn default() -> Self {
        Self::new()
    }
}

fn not_found(name: &KeyName) -> Error {
    Error::not_found(format!("no key named '{name}'")).with_backend(TYPE)
}

/// The only version a toy key has is 1.
fn check_version(key: &KeyRef) -> Result<()> {
    match key.version() {
        None | Some(1) => Ok(()),
        Some(v) => Err(Error::not_found(format!(
            "key '{}' has no version {v}",
            key.name()
        ))),
    }
}

#[async_trait]
impl Backend for ToyBackend {
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    async fn generate_key(&self, name: &KeyName, spec: &KeySpec) -> Result<KeyInfo> {
        if !self.caps.supports_algorithm(spec.algorithm) {
            return Err(Error::unsupported(format!("{} keys", spec.algorithm)).with_backend(TYPE));
        }
        spec.validate()?;
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| Error::new(ErrorKind::Unexpected, format!("random generator: {e}")))?;
        let key = ToyKey {
            key: ed25519_dalek::SigningKey::from_bytes(&seed),
            created: SystemTime::now(),
        };
        let mut keys = self.keys();
        if keys.contains_key(name) {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("a key named '{name}' already exists"),
            ));
        }
        let info = Self::info(name, &key)?;
        keys.insert(name.clone(), key);
        Ok(info)
    }

    async fn key_info(&self, key: &KeyRef) -> Result<KeyInfo> {
        check_version(key)?;
        let keys = self.keys();
        let found = keys.get(key.name()).ok_or_else(|| not_found(key.name()))?;
        Self::info(key.name(), found)
    }

    async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        self.keys().iter().map(|(n, k)| Self::info(n, k)).collect()
    }

    async fn delete_key(&self, name: &KeyName) -> Result<()> {
        self.keys()
            .remove(name)
            .map(drop)
            .ok_or_else(|| not_found(name))
    }

    async fn sign(
        &self,
        key: &KeyRef,
        input: SignInput<'_>,
        scheme: SignatureScheme,
    ) -> Result<Signature> {
        check_version(key)?;
        let keys = self.keys();
        let found = keys.get(key.name()).ok_or_else(|| not_found(key.name()))?;
        scheme.check_fits(KeyAlgorithm::Ed25519)?;
        let message = input.prepare(scheme)?;
        Ok(Signature::new(
            found.key.sign(&message).to_bytes().to_vec(),
            scheme,
            1,
        ))
    }

    async fn close(&self) -> Result<()> {
        self.keys().clear();
        Ok(())
    }
}
