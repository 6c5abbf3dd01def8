//! An in-process [`BlobStore`] for tests and ephemeral use.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};

use keychain_core::{Error, ErrorKind, Result, async_trait};

use crate::BlobStore;
use crate::key::{ancestors, conflict, validate_key, validate_prefix};

/// A [`BlobStore`] that keeps blobs in memory; they vanish when it is dropped.
///
/// Same semantics as [`FileStore`](crate::FileStore): the same key rules, the same errors, the same
/// rule that a key cannot also be the parent of another key. Every operation is atomic with respect
/// to every other (one mutex guards the map), so `create` races have exactly one winner. It never
/// blocks on I/O and needs no async runtime beyond whatever polls its futures.
#[derive(Default)]
pub struct MemoryStore {
    blobs: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn blobs(&self) -> MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        // The map is never left half-updated (every mutation is a single map call), so a panic in
        // another holder does not make it unusable.
        self.blobs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for MemoryStore {
    /// Prints the number of blobs, never their contents: blobs may hold (wrapped) key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("blobs", &self.blobs().len())
            .finish()
    }
}

/// Fails if storing `key` would make it both a blob and a parent of blobs, as a file system
/// cannot hold a file and a directory under one name.
fn check_no_conflict(blobs: &BTreeMap<String, Vec<u8>>, key: &str) -> Result<()> {
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
        Ok(self.blobs().get(key).cloned())
    }

    async fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        validate_key(key)?;
        let mut blobs = self.blobs();
        check_no_conflict(&blobs, key)?;
        blobs.insert(key.to_owned(), data.to_vec());
        Ok(())
    }

    async fn create(&self, key: &str, data: &[u8]) -> Result<()> {
        validate_key(key)?;
        let mut blobs = self.blobs();
        if blobs.contains_key(key) {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("storage key {key:?} already exists"),
            ));
        }
        check_no_conflict(&blobs, key)?;
        blobs.insert(key.to_owned(), data.to_vec());
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        validate_key(key)?;
        Ok(self.blobs().remove(key).is_some())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        validate_prefix(prefix)?;
        Ok(self
            .blobs()
            .range(prefix.to_owned()..)
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }
}
