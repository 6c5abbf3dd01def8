//! A cache of `key_info` answers (metadata and public keys).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use keychain_core::{
    Backend, Capabilities, Health, ImportSpec, KeyAttestation, KeyEntry, KeyInfo, KeyMaterial,
    KeyName, KeyRef, KeySpec, Result, RsaPadding, SecretBytes, SignInput, Signature,
    SignatureScheme, WrappedKey, WrappingSpec, async_trait,
};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// Options of [`cache`].
///
/// ```toml
/// ttl-ms = 300000     # 0: entries live until invalidated
/// max-entries = 1024
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
#[non_exhaustive]
pub struct CacheConfig {
    /// How long an entry is served, in milliseconds; `0` keeps it until this layer sees the key
    /// change. Default 5 minutes: changes made by another process (or another `Arc<dyn Backend>`
    /// over the same keys) are seen at the latest after this long.
    pub ttl_ms: u64,
    /// At most this many entries (one per distinct [`KeyRef`]); when full, expired entries go
    /// first, then the oldest. `0` disables caching.
    pub max_entries: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            ttl_ms: 300_000,
            max_entries: 1024,
        }
    }
}

impl CacheConfig {
    /// Sets [`CacheConfig::ttl_ms`]; `None` keeps entries until invalidated.
    #[must_use]
    pub fn with_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.ttl_ms = ttl.map_or(0, |t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// Sets [`CacheConfig::max_entries`].
    #[must_use]
    pub fn with_max_entries(mut self, max_entries: usize) -> Self {
        self.max_entries = max_entries;
        self
    }
}

/// Wraps `inner` so that [`Backend::key_info`] answers (metadata and public keys) are cached
/// per [`KeyRef`] (`name` and `name@2` are separate entries).
///
/// - Every entry of a name is dropped after this layer forwards a `generate_key`,
///   `delete_key`, `rotate_key`, `import_key` or `import_wrapped` of that name, whether it
///   succeeded or not (a failed call may still have changed the key).
/// - A `key_info` that was in flight while an entry was dropped does not store its (possibly
///   stale) answer.
/// - Errors (`NotFound` included) and `list_keys` are not cached; `close` empties the cache.
/// - Changes made around this layer (another process, another handle on the same store) are
///   seen after [`CacheConfig::ttl_ms`].
///
/// The TTL runs on tokio's clock (`tokio::time::Instant`), which is the system clock unless a
/// test pauses it.
pub fn cache(inner: Arc<dyn Backend>, config: CacheConfig) -> Arc<dyn Backend> {
    Arc::new(Cache {
        inner,
        ttl: (config.ttl_ms > 0).then(|| Duration::from_millis(config.ttl_ms)),
        max_entries: config.max_entries,
        state: Mutex::new(State::default()),
    })
}

#[derive(Debug)]
struct Entry {
    info: KeyInfo,
    stored: Instant,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<KeyRef, Entry>,
    /// Bumped by every invalidation; a lookup that started under another generation does not
    /// store its answer.
    generation: u64,
}

#[derive(Debug)]
struct Cache {
    inner: Arc<dyn Backend>,
    ttl: Option<Duration>,
    max_entries: usize,
    state: Mutex<State>,
}

impl Cache {
    fn state(&self) -> MutexGuard<'_, State> {
        // The state is a plain map; a panic elsewhere cannot leave it half-updated.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn fresh(&self, entry: &Entry, now: Instant) -> bool {
        self.ttl
            .is_none_or(|ttl| now.duration_since(entry.stored) < ttl)
    }

    /// The cached answer, or the generation to store a fetched one under.
    fn lookup(&self, key: &KeyRef) -> std::result::Result<KeyInfo, u64> {
        let mut state = self.state();
        let now = Instant::now();
        match state.entries.get(key) {
            Some(entry) if self.fresh(entry, now) => Ok(entry.info.clone()),
            Some(_) => {
                state.entries.remove(key);
                Err(state.generation)
            }
            None => Err(state.generation),
        }
    }

    fn store(&self, key: &KeyRef, generation: u64, info: &KeyInfo) {
        if self.max_entries == 0 {
            return;
        }
        let mut state = self.state();
        if state.generation != generation {
            return;
        }
        let now = Instant::now();
        if state.entries.len() >= self.max_entries && !state.entries.contains_key(key) {
            state.entries.retain(|_, e| self.fresh(e, now));
            if state.entries.len() >= self.max_entries {
                let oldest = state
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.stored)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    state.entries.remove(&oldest);
                }
            }
        }
        state.entries.insert(
            key.clone(),
            Entry {
                info: info.clone(),
                stored: now,
            },
        );
    }

    fn invalidate(&self, name: &KeyName) {
        let mut state = self.state();
        state.generation += 1;
        state.entries.retain(|k, _| k.name() != name);
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl Backend for Cache {
    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }

    async fn generate_key(&self, name: &KeyName, spec: &KeySpec) -> Result<KeyInfo> {
        let result = self.inner.generate_key(name, spec).await;
        self.invalidate(name);
        result
    }

    async fn key_info(&self, key: &KeyRef) -> Result<KeyInfo> {
        let generation = match self.lookup(key) {
            Ok(info) => return Ok(info),
            Err(generation) => generation,
        };
        let info = self.inner.key_info(key).await?;
        self.store(key, generation, &info);
        Ok(info)
    }

    async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        self.inner.list_keys().await
    }

    async fn list_entries(&self) -> Result<Vec<KeyEntry>> {
        self.inner.list_entries().await
    }

    async fn delete_key(&self, name: &KeyName) -> Result<()> {
        let result = self.inner.delete_key(name).await;
        self.invalidate(name);
        result
    }

    async fn sign(
        &self,
        key: &KeyRef,
        input: SignInput<'_>,
        scheme: SignatureScheme,
    ) -> Result<Signature> {
        self.inner.sign(key, input, scheme).await
    }

    async fn close(&self) -> Result<()> {
        {
            let mut state = self.state();
            state.generation += 1;
            state.entries.clear();
        }
        self.inner.close().await
    }

    async fn decrypt(
        &self,
        key: &KeyRef,
        ciphertext: &[u8],
        padding: RsaPadding,
    ) -> Result<SecretBytes> {
        self.inner.decrypt(key, ciphertext, padding).await
    }

    async fn encrypt(&self, key: &KeyRef, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        self.inner.encrypt(key, plaintext, aad).await
    }

    async fn decrypt_aead(
        &self,
        name: &KeyName,
        ciphertext: &[u8],
        aad: &[u8],
    ) -> Result<SecretBytes> {
        self.inner.decrypt_aead(name, ciphertext, aad).await
    }

    async fn rotate_key(&self, name: &KeyName) -> Result<KeyInfo> {
        let result = self.inner.rotate_key(name).await;
        self.invalidate(name);
        result
    }

    async fn import_key(
        &self,
        name: &KeyName,
        material: KeyMaterial,
        spec: &ImportSpec,
    ) -> Result<KeyInfo> {
        let result = self.inner.import_key(name, material, spec).await;
        self.invalidate(name);
        result
    }

    async fn export_wrapped(&self, key: &KeyRef, with: &WrappingSpec) -> Result<WrappedKey> {
        self.inner.export_wrapped(key, with).await
    }

    async fn import_wrapped(
        &self,
        name: &KeyName,
        wrapped: &WrappedKey,
        unwrap_with: &WrappingSpec,
        spec: &ImportSpec,
    ) -> Result<KeyInfo> {
        let result = self
            .inner
            .import_wrapped(name, wrapped, unwrap_with, spec)
            .await;
        self.invalidate(name);
        result
    }

    async fn random(&self, len: usize) -> Result<Vec<u8>> {
        self.inner.random(len).await
    }

    async fn attest_key(&self, key: &KeyRef, nonce: &[u8]) -> Result<KeyAttestation> {
        self.inner.attest_key(key, nonce).await
    }

    async fn health(&self) -> Result<Health> {
        self.inner.health().await
    }
}
