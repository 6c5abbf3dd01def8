//! Key lifecycle on the token (generate, rotate, delete, describe, list) and the key cache
//! every key operation reads first.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use cryptoki::error::RvError;
use cryptoki::object::ObjectClass;
use cryptoki::session::Session;
use keychain_core::{
    Error, ErrorKind, ImportSpec, KeyAlgorithm, KeyInfo, KeyName, KeyRef, KeySpec, KeyUsage,
    KeyUsages, KeyVersion, Operation, Result,
};

use crate::backend::{Inner, Pkcs11Backend};
use crate::error::{map, rv_in, stale_handle};
use crate::naming;
use crate::objects::{self, KeyEntry, VersionEntry};
use crate::pool::Call;

/// Under [`crate::Dispatch::Adaptive`], key operations on more bytes than this run off-thread
/// whatever their class's typical time.
const INLINE_MAX_INPUT: usize = 64 * 1024;

/// `Ok` when `entry` was created for `usage` (`what` names it in the error).
pub(crate) fn require_usage(entry: &KeyEntry, usage: KeyUsage, what: &str) -> Result<()> {
    if entry.usages.contains(usage) {
        Ok(())
    } else {
        Err(Error::invalid_input(format!(
            "key {} was not created with the {what} usage",
            entry.name
        )))
    }
}

impl Inner {
    /// Empties the cache if the token's sessions were lost since it was filled: object handles
    /// from before may now name other objects.
    fn sync_cache(&self) {
        let generation = self.pool.generation();
        if self.cache_generation.load(Ordering::Acquire) != generation {
            // Cleared before the generation is recorded: whoever sees the new generation sees
            // the cache without the old handles (an insert from before the clear is refused).
            self.cache.clear();
            self.cache_generation.store(generation, Ordering::Release);
        }
    }

    fn cached(&self, name: &KeyName) -> Option<Arc<KeyEntry>> {
        self.sync_cache();
        self.cache.get(name)
    }

    /// The dispatch class of an operation on `len` bytes with the key `name`: by the key's
    /// algorithm when it is cached; off-thread for a key not cached yet and for large inputs,
    /// whose time grows with their length (a typical small call says nothing about them).
    pub(crate) fn call(&self, name: &KeyName, len: usize) -> Call {
        if len > INLINE_MAX_INPUT {
            return Call::OffThread;
        }
        self.sync_cache();
        self.cache
            .with(name, |e| Call::Key(e.algorithm))
            .unwrap_or(Call::OffThread)
    }

    /// Drops what the cache holds of `name`.
    pub(crate) fn forget(&self, name: &KeyName) {
        self.sync_cache();
        self.cache.remove(name);
    }

    /// Reads `name` from the token and caches it.
    pub(crate) fn reload(&self, session: &Session, name: &KeyName) -> Result<Arc<KeyEntry>> {
        self.sync_cache();
        let ticket = self.cache.ticket();
        match objects::load(session, name)? {
            Some(entry) => {
                let entry = Arc::new(entry);
                self.cache.insert(name.clone(), Arc::clone(&entry), ticket);
                Ok(entry)
            }
            None => {
                self.cache.remove(name);
                Err(Error::not_found(format!("no key named {name}")))
            }
        }
    }

    /// Runs `op` on a version of `name`, from the cache when possible. A cached handle that no
    /// longer exists, or a version the cache does not know, is looked up again once.
    pub(crate) fn with_key<T>(
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

    /// Creates version `version` of `name` and returns the key as now stored.
    fn create(
        &self,
        session: &Session,
        name: &KeyName,
        version: KeyVersion,
        algorithm: KeyAlgorithm,
        usages: KeyUsages,
        exportable: bool,
    ) -> Result<Arc<KeyEntry>> {
        let random = session.generate_random_vec(12).map_err(map)?;
        let id = naming::make_id(version, &random);
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

/// Refuses `name` when a key has it; removes leftover objects of a half-made key under it
/// (public keys without their private key, left by an interrupted delete).
fn claim_name(s: &Session, name: &KeyName) -> Result<()> {
    if objects::load(s, name)?.is_some() {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!("a key named {name} exists"),
        ));
    }
    for (h, _, _) in objects::objects_of(s, name)? {
        s.destroy_object(h).map_err(map)?;
    }
    Ok(())
}

impl Pkcs11Backend {
    /// `generate_key`.
    pub(crate) async fn generate(&self, name: &KeyName, spec: &KeySpec) -> Result<KeyInfo> {
        spec.validate()?;
        let algorithm = spec.algorithm;
        if !self.inner.capabilities.supports_algorithm(algorithm) {
            return Err(Error::unsupported(format!(
                "this token does not offer {algorithm} keys"
            )));
        }
        let inner = Arc::clone(&self.inner);
        let (name2, usages, exportable) = (name.clone(), spec.effective_usages(), spec.exportable);
        self.inner
            .pool
            .run_exclusive(Operation::GenerateKey, move |s| {
                claim_name(s, &name2)?;
                let entry = inner.create(s, &name2, 1, algorithm, usages, exportable)?;
                Ok(entry.info())
            })
            .await
    }

    /// Makes version 1 of a new key `name` with `make`, which runs with the token to itself
    /// within the process: the algorithm checked against the token, the usages against the
    /// algorithm, the name refused if a key has it (leftover objects of a half-made key under it
    /// are removed first). Shared by `import_key` and `import_wrapped`.
    pub(crate) async fn create_fresh<F>(
        &self,
        op: Operation,
        name: &KeyName,
        algorithm: KeyAlgorithm,
        spec: &ImportSpec,
        make: F,
    ) -> Result<KeyInfo>
    where
        F: FnOnce(&Inner, &Session, &KeyName, KeyUsages, bool) -> Result<Arc<KeyEntry>>
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
            .run_exclusive(op, move |s| {
                claim_name(s, &name2)?;
                Ok(make(&inner, s, &name2, usages, exportable)?.info())
            })
            .await
    }

    /// `key_info`: read from the token, never from the cache.
    pub(crate) async fn info(&self, key: &KeyRef) -> Result<KeyInfo> {
        let inner = Arc::clone(&self.inner);
        let key2 = key.clone();
        self.inner
            .pool
            .run(Operation::KeyInfo, Call::Read, move |s| {
                let entry = inner.reload(s, key2.name())?;
                entry.version(key2.version())?;
                Ok(entry.info())
            })
            .await
    }

    /// `list_keys`.
    pub(crate) async fn list(&self) -> Result<Vec<KeyInfo>> {
        let inner = Arc::clone(&self.inner);
        self.inner
            .pool
            .run(Operation::ListKeys, Call::OffThread, move |s| {
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
    }

    /// `delete_key`.
    pub(crate) async fn delete(&self, name: &KeyName) -> Result<()> {
        let inner = Arc::clone(&self.inner);
        let name2 = name.clone();
        self.inner
            .pool
            .run_exclusive(Operation::DeleteKey, move |s| {
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
    }

    /// `rotate_key`: a new version with the same algorithm, usages and exportability.
    pub(crate) async fn rotate(&self, name: &KeyName) -> Result<KeyInfo> {
        let inner = Arc::clone(&self.inner);
        let name2 = name.clone();
        self.inner
            .pool
            .run_exclusive(Operation::RotateKey, move |s| {
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
    }
}
