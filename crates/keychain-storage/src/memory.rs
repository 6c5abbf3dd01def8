//! An in-process [`BlobStore`] for tests and ephemeral use.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use keychain_core::{Error, ErrorKind, Result, async_trait};

use crate::key::{ancestors, conflict, validate_key, validate_prefix};
use crate::{BlobStore, RecordLock, Stamp};

/// A [`BlobStore`] that keeps blobs in memory; they vanish when it is dropped.
///
/// Same semantics as [`FileStore`](crate::FileStore): the same key rules, the same errors, the same
/// rule that a key cannot also be the parent of another key. Every operation is atomic with respect
/// to every other (one mutex guards the map), so `create` races have exactly one winner. It never
/// blocks on I/O and needs no async runtime beyond whatever polls its futures.
///
/// Record locks ([`BlobStore::lock`]) are async mutexes, one per name, shared by every clone of
/// the `Arc` holding the store; they wait without a timeout. A stamp is the sequence number of
/// the write that stored the blob, so it never repeats.
#[derive(Default)]
pub struct MemoryStore {
    blobs: Mutex<Blobs>,
    /// Bumped after every change, while the change's lock is still held.
    generation: AtomicU64,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// The blobs, each with the sequence number of the write that stored it.
#[derive(Default)]
struct Blobs {
    map: BTreeMap<String, (u64, Vec<u8>)>,
    writes: u64,
}

impl Blobs {
    fn insert(&mut self, key: &str, data: &[u8]) {
        self.writes = self.writes.wrapping_add(1);
        self.map
            .insert(key.to_owned(), (self.writes, data.to_vec()));
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn blobs(&self) -> MutexGuard<'_, Blobs> {
        // The map is never left half-updated (every mutation is a single map call), so a panic in
        // another holder does not make it unusable.
        self.blobs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for MemoryStore {
    /// Prints the number of blobs, never their contents: blobs may hold (wrapped) key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("blobs", &self.blobs().map.len())
            .finish()
    }
}

/// Fails if storing `key` would make it both a blob and a parent of blobs, as a file system
/// cannot hold a file and a directory under one name.
fn check_no_conflict(blobs: &BTreeMap<String, (u64, Vec<u8>)>, key: &str) -> Result<()> {
    if let Some(parent) = ancestors(key).find(|a| blobs.contains_key(*a)) {
        return Err(conflict(key, &format!("key {parent:?} is a blob")));
    }
    let children = format!("{key}/");
    if blobs
        .range(children.clone()..)
        .next()
        .is_some_and(|(k, _)| k.starts_with(&children))
    {
        return Err(conflict(key, "other keys are stored under it"));
    }
    Ok(())
}

#[async_trait]
impl BlobStore for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        validate_key(key)?;
        Ok(self.blobs().map.get(key).map(|(_, data)| data.clone()))
    }

    async fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        validate_key(key)?;
        let mut blobs = self.blobs();
        check_no_conflict(&blobs.map, key)?;
        blobs.insert(key, data);
        self.generation.fetch_add(1, Ordering::Release);
        Ok(())
    }

    async fn create(&self, key: &str, data: &[u8]) -> Result<()> {
        validate_key(key)?;
        let mut blobs = self.blobs();
        if blobs.map.contains_key(key) {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("storage key {key:?} already exists"),
            ));
        }
        check_no_conflict(&blobs.map, key)?;
        blobs.insert(key, data);
        self.generation.fetch_add(1, Ordering::Release);
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        validate_key(key)?;
        let mut blobs = self.blobs();
        let existed = blobs.map.remove(key).is_some();
        if existed {
            self.generation.fetch_add(1, Ordering::Release);
        }
        Ok(existed)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        validate_prefix(prefix)?;
        Ok(self
            .blobs()
            .map
            .range(prefix.to_owned()..)
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }

    async fn lock(&self, name: &str) -> Result<RecordLock> {
        validate_key(name)?;
        let mutex = Arc::clone(
            self.locks
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(name.to_owned())
                .or_default(),
        );
        Ok(RecordLock::new(mutex.lock_owned().await))
    }

    fn stamp(&self, key: &str) -> Result<Option<Stamp>> {
        validate_key(key)?;
        Ok(self
            .blobs()
            .map
            .get(key)
            .map(|(write, _)| Stamp::new([*write, 0, 0, 0])))
    }

    fn generation(&self) -> Option<u64> {
        Some(self.generation.load(Ordering::Acquire))
    }
}
