//! The key cache: each key's metadata and the versions decrypted so far, trusted only while the
//! store says nothing changed (its generation) or the key's metadata stamp is the one read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use keychain_core::{Error, ErrorKind, KeyName, KeyVersion, Result};
use keychain_crypto::pkcs8 as format;
use keychain_crypto::{AeadKey, PrivateKey};
use keychain_storage::Stamp;

use crate::backend::{Pkcs8Backend, blocking};
use crate::error;
use crate::meta::{Meta, key_file, meta_key};

/// [`Entry::generation`] of an entry from a store that keeps no generation.
const NO_GENERATION: u64 = u64::MAX;

/// One decrypted version of a key, ready to use.
#[derive(Clone)]
pub(crate) enum Loaded {
    Private(Arc<dyn PrivateKey>),
    Aead(Arc<dyn AeadKey>),
}

/// A key's metadata plus the versions decrypted so far.
pub(crate) struct Entry {
    /// The store's generation when the entry was last known current ([`NO_GENERATION`] for
    /// stores without one): while the store's generation is unchanged, nothing was written and
    /// the stamp need not be looked up.
    generation: AtomicU64,
    /// The stamp of `meta.json` taken before it was read: the entry is current while the stamp
    /// is unchanged.
    stamp: Stamp,
    /// `<name>/meta.json`.
    meta_key: String,
    pub(crate) meta: Meta,
    /// The newest version once decrypted: the hot path of sign/encrypt takes no lock.
    pub(crate) current: OnceLock<Loaded>,
    loaded: Mutex<HashMap<KeyVersion, Loaded>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Entry {
    fn new(
        generation: Option<u64>,
        stamp: Stamp,
        meta: Meta,
        loaded: HashMap<KeyVersion, Loaded>,
    ) -> Self {
        let current = OnceLock::new();
        if let Some(l) = loaded.get(&meta.current()) {
            let _ = current.set(l.clone());
        }
        Self {
            generation: AtomicU64::new(generation.unwrap_or(NO_GENERATION)),
            stamp,
            meta_key: meta_key(&meta.name),
            meta,
            current,
            loaded: Mutex::new(loaded),
        }
    }
}

impl Pkcs8Backend {
    /// The entry for `name`: the cached one while its metadata is unchanged on disk (its
    /// stamp), else read afresh, keeping the decrypted versions whose key files are the same.
    pub(crate) async fn entry(&self, name: &KeyName) -> Result<Arc<Entry>> {
        let cached = self.cache.get(name);
        if let Some(e) = &cached
            && self.is_current(e)
        {
            return Ok(Arc::clone(e));
        }
        // Boxed for the reason `loaded` gives: this path reads the store.
        Box::pin(self.reload(name, cached)).await
    }

    /// [`Pkcs8Backend::entry`] when the cache holds nothing current for `name`: the metadata
    /// read afresh, with what `cached` (the stale entry, if any) decrypted of the same files.
    async fn reload(&self, name: &KeyName, cached: Option<Arc<Entry>>) -> Result<Arc<Entry>> {
        // All taken before the read: a change after them makes the next check reload, and a
        // removal from the cache meanwhile keeps this read out of it.
        let ticket = self.cache.ticket();
        let generation = self.store.generation();
        let Some(stamp) = self.store.stamp(&meta_key(name))? else {
            self.cache.remove(name);
            return Err(error::not_found(name));
        };
        let meta = self
            .read_meta(name)
            .await?
            .ok_or_else(|| error::not_found(name))?;
        let mut loaded = HashMap::new();
        if let Some(old) = cached {
            // A version number is only the same key if it names the same file: the key may
            // have been deleted and re-created under the same name by another process.
            for (version, key) in lock(&old.loaded).iter() {
                if old.meta.version(*version).map(|v| &v.file)
                    == meta.version(*version).map(|v| &v.file)
                {
                    loaded.insert(*version, key.clone());
                }
            }
        }
        let entry = Arc::new(Entry::new(generation, stamp, meta, loaded));
        self.cache.insert(name.clone(), Arc::clone(&entry), ticket);
        Ok(entry)
    }

    /// Whether a cached entry still describes the key on disk: the store's generation is the
    /// one it was last checked at, or else its metadata's stamp is unchanged (another process,
    /// or another backend on the same store, may have rotated, deleted or re-created it).
    #[inline]
    pub(crate) fn is_current(&self, entry: &Entry) -> bool {
        // Taken first: a write after it changes the generation the next check sees.
        let generation = self.store.generation();
        if let Some(g) = generation
            && entry.generation.load(Ordering::Acquire) == g
        {
            return true;
        }
        if self
            .store
            .stamp(&entry.meta_key)
            .is_ok_and(|s| s == Some(entry.stamp))
        {
            if let Some(g) = generation {
                entry.generation.store(g, Ordering::Release);
            }
            return true;
        }
        false
    }

    /// One version of a key, ready to use: from the entry when it was decrypted before, else
    /// decrypted and parsed now and kept in the entry.
    pub(crate) async fn loaded(&self, entry: &Entry, version: KeyVersion) -> Result<Loaded> {
        let is_current = version == entry.meta.current();
        if is_current && let Some(l) = entry.current.get() {
            return Ok(l.clone());
        }
        if let Some(l) = lock(&entry.loaded).get(&version) {
            return Ok(l.clone());
        }
        // Boxed: this path reads a file and runs the KDF, once per version and process. Inline,
        // its state would make every sign/encrypt/decrypt future (which `async_trait` allocates
        // and moves per call) several times larger.
        Box::pin(self.load_version(entry, version, is_current)).await
    }

    /// Decrypts and parses one version of a key (KDF work off the async threads), cached.
    async fn load_version(
        &self,
        entry: &Entry,
        version: KeyVersion,
        is_current: bool,
    ) -> Result<Loaded> {
        let name = &entry.meta.name;
        let vm = entry
            .meta
            .version(version)
            .ok_or_else(|| Error::not_found(format!("key '{name}' has no version {version}")))?;
        let data = self
            .store
            .get(&key_file(name, &vm.file))
            .await?
            .ok_or_else(|| error::missing_key_file(&vm.file, version))?;
        let der = self
            .decrypt_key_file("key loading", name, version, data)
            .await?;
        let provider = self.provider.clone();
        let algorithm = entry.meta.algorithm;
        let name = name.clone();
        let loaded = blocking("key loading", move || -> Result<Loaded> {
            let damaged = |e: Error| error::damaged_key(&name, version, &e);
            let plain = format::inspect(der.expose()).map_err(damaged)?;
            if plain.algorithm != algorithm {
                return Err(Error::new(
                    ErrorKind::Integrity,
                    format!(
                        "key file holds a {} key, metadata says {algorithm}",
                        plain.algorithm
                    ),
                ));
            }
            if algorithm.is_symmetric() {
                Ok(Loaded::Aead(
                    provider
                        .aead_key(algorithm, plain.material.expose())
                        .map_err(damaged)?
                        .into(),
                ))
            } else {
                Ok(Loaded::Private(
                    provider
                        .private_key(algorithm, plain.material.expose())
                        .map_err(damaged)?
                        .into(),
                ))
            }
        })
        .await?;
        if !self.password_verified.load(Ordering::Acquire) {
            self.adopt_password_after_unlock().await;
        }
        lock(&entry.loaded).insert(version, loaded.clone());
        if is_current {
            let _ = entry.current.set(loaded.clone());
        }
        Ok(loaded)
    }
}
