//! Plumbing every backend needs, written once: the closed-backend guard, the key-lookup cache
//! and the ciphertext frame.
//!
//! None of this is part of the [`crate::Backend`] contract; a backend may use it or not. The
//! backends in this workspace all do, so a fix here reaches every one of them.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::error::{Error, ErrorKind, Operation, Result};
use crate::name::{KeyName, KeyVersion};

/// Whether a backend has been closed. Every operation asks [`CloseGuard::check`] first, so
/// everything after [`crate::Backend::close`] fails with [`ErrorKind::Unavailable`] (not
/// retryable), as the contract says.
///
/// ```
/// use keychain_core::support::CloseGuard;
/// use keychain_core::{ErrorKind, Operation};
/// let guard = CloseGuard::default();
/// assert!(guard.check("toy", Operation::Sign).is_ok());
/// assert!(guard.close()); // the first close does the work
/// assert!(!guard.close()); // later ones are no-ops
/// let e = guard.check("toy", Operation::Sign).unwrap_err();
/// assert_eq!(e.kind(), ErrorKind::Unavailable);
/// assert!(!e.retryable());
/// ```
#[derive(Debug, Default)]
pub struct CloseGuard {
    closed: AtomicBool,
}

impl CloseGuard {
    /// An open guard.
    pub const fn new() -> Self {
        Self {
            closed: AtomicBool::new(false),
        }
    }

    /// `Ok` while open.
    ///
    /// # Errors
    /// [`ErrorKind::Unavailable`], not retryable, naming `backend` and `operation`, once closed.
    #[inline]
    pub fn check(&self, backend: &'static str, operation: Operation) -> Result<()> {
        if self.is_closed() {
            Err(Self::error(backend, operation))
        } else {
            Ok(())
        }
    }

    /// The error [`CloseGuard::check`] returns once closed.
    #[cold]
    pub fn error(backend: &'static str, operation: Operation) -> Error {
        Error::new(ErrorKind::Unavailable, "the backend is closed")
            .with_retryable(false)
            .with_backend(backend)
            .with_operation(operation)
    }

    /// Marks the backend closed. Returns `true` for the call that closed it, `false` when it was
    /// closed already, so `close` can release resources exactly once and stay idempotent.
    pub fn close(&self) -> bool {
        !self.closed.swap(true, Ordering::AcqRel)
    }

    /// Whether [`CloseGuard::close`] has been called.
    #[inline]
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// The hasher of [`KeyCache`]: fast, and seeded per process so names chosen by a caller cannot
/// be made to collide.
pub type CacheHasher = foldhash::quality::RandomState;

/// Key name → what a backend resolved for it (a provider id, a parsed record, key material),
/// shared by every task of one backend.
///
/// Reads take a shared lock and clone an `Arc`. A lookup that races a removal must not put a
/// stale value back: take a [`CacheTicket`] before reading the provider and insert with it;
/// [`KeyCache::insert`] drops the value when [`KeyCache::remove`] or [`KeyCache::clear`] ran in
/// between.
///
/// ```
/// use std::sync::Arc;
/// use keychain_core::KeyName;
/// use keychain_core::support::KeyCache;
/// let cache: KeyCache<u32> = KeyCache::new();
/// let name = KeyName::new("k").unwrap();
/// let ticket = cache.ticket();
/// // ... read the provider ...
/// cache.remove(&name); // someone deleted the key meanwhile
/// assert!(!cache.insert(name.clone(), Arc::new(7), ticket));
/// assert!(cache.get(&name).is_none());
/// let ticket = cache.ticket();
/// assert!(cache.insert(name.clone(), Arc::new(8), ticket));
/// assert_eq!(*cache.get(&name).unwrap(), 8);
/// ```
#[derive(Debug)]
pub struct KeyCache<V, K = KeyName> {
    map: RwLock<HashMap<K, Arc<V>, CacheHasher>>,
    removals: AtomicU64,
}

/// When a lookup started, for [`KeyCache::insert`]: see [`KeyCache::ticket`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheTicket(u64);

impl<V, K: Eq + Hash> Default for KeyCache<V, K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V, K: Eq + Hash> KeyCache<V, K> {
    /// An empty cache.
    pub fn new() -> Self {
        Self {
            map: RwLock::new(HashMap::default()),
            removals: AtomicU64::new(0),
        }
    }

    // A panic while holding the lock leaves the map as it was before or after one whole
    // insert/remove; either is a valid cache, so poisoning is ignored.
    fn read(&self) -> RwLockReadGuard<'_, HashMap<K, Arc<V>, CacheHasher>> {
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<K, Arc<V>, CacheHasher>> {
        self.map.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached value for `key`.
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<Arc<V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.read().get(key).cloned()
    }

    /// Runs `f` on the cached value for `key` under the shared lock, without cloning the `Arc`:
    /// for a hot path whose work is short (a microsecond AEAD seal). `f` must not call back into
    /// this cache's [`KeyCache::insert`], [`KeyCache::remove`] or [`KeyCache::clear`]
    /// (they would wait for the lock `f` runs under).
    #[inline]
    pub fn with<Q, R>(&self, key: &Q, f: impl FnOnce(&V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.read().get(key).map(|v| f(v))
    }

    /// Take one before reading the provider; pass it to [`KeyCache::insert`].
    pub fn ticket(&self) -> CacheTicket {
        CacheTicket(self.removals.load(Ordering::Acquire))
    }

    /// Caches `value` for `key` unless an entry was removed since `ticket` was taken (the value
    /// may then describe a key that no longer exists). Returns whether it was cached.
    pub fn insert(&self, key: K, value: Arc<V>, ticket: CacheTicket) -> bool {
        let mut map = self.write();
        // Under the write lock: a removal either finished before (and is seen here) or waits.
        if self.removals.load(Ordering::Acquire) != ticket.0 {
            return false;
        }
        map.insert(key, value);
        true
    }

    /// Forgets `key` (after a change, or when the provider said the cached value is wrong).
    pub fn remove<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut map = self.write();
        self.removals.fetch_add(1, Ordering::AcqRel);
        map.remove(key);
    }

    /// Forgets everything (on close).
    pub fn clear(&self) {
        let mut map = self.write();
        self.removals.fetch_add(1, Ordering::AcqRel);
        map.clear();
    }

    /// How many entries are cached.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }
}

/// The layout of a self-describing ciphertext, shared by every backend that returns one from
/// [`crate::Backend::encrypt`]:
///
/// ```text
/// [magic] ‖ format (1 byte) ‖ key version (u32, big-endian) ‖ payload
/// ```
///
/// The key version lets [`crate::Backend::decrypt_aead`] pick the version from the ciphertext
/// alone; the format byte lets a backend change what the payload is without breaking stored
/// ciphertexts. A backend describes its frame once as a `const`:
///
/// ```
/// use keychain_core::support::CiphertextFrame;
/// const FRAME: CiphertextFrame = CiphertextFrame {
///     magic: None,
///     formats: &[1],
///     min_payload: 1,
/// };
/// let ct = FRAME.seal(1, 3, b"blob");
/// let parsed = FRAME.parse(&ct).unwrap();
/// assert_eq!((parsed.format, parsed.key_version, parsed.payload), (1, 3, &b"blob"[..]));
/// assert!(FRAME.parse(&ct[..4]).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CiphertextFrame {
    /// A leading byte every ciphertext starts with, when the backend has one.
    pub magic: Option<u8>,
    /// The format bytes this backend reads; anything else is [`ErrorKind::Integrity`].
    pub formats: &'static [u8],
    /// The shortest payload that can be valid (a nonce and a tag, say).
    pub min_payload: usize,
}

/// A ciphertext parsed by [`CiphertextFrame::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramedCiphertext<'a> {
    /// The format byte.
    pub format: u8,
    /// The key version that sealed it (never 0).
    pub key_version: KeyVersion,
    /// Everything after the header.
    pub payload: &'a [u8],
    /// The header bytes (magic, format, key version).
    pub header: &'a [u8],
}

/// The longest header a [`CiphertextFrame`] writes.
pub const MAX_FRAME_HEADER: usize = 6;

impl CiphertextFrame {
    /// The header length: magic (when any), format, key version.
    #[inline]
    pub const fn header_len(&self) -> usize {
        if self.magic.is_some() { 6 } else { 5 }
    }

    /// The header for `format` and `key_version`, in the first [`CiphertextFrame::header_len`]
    /// bytes of the array.
    #[inline]
    pub const fn header(&self, format: u8, key_version: KeyVersion) -> [u8; MAX_FRAME_HEADER] {
        let v = key_version.to_be_bytes();
        match self.magic {
            Some(m) => [m, format, v[0], v[1], v[2], v[3]],
            None => [format, v[0], v[1], v[2], v[3], 0],
        }
    }

    /// Appends the header for `format` and `key_version` to `out`.
    #[inline]
    pub fn write_header(&self, out: &mut Vec<u8>, format: u8, key_version: KeyVersion) {
        out.extend_from_slice(&self.header(format, key_version)[..self.header_len()]);
    }

    /// Header ‖ `payload`.
    pub fn seal(&self, format: u8, key_version: KeyVersion, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.header_len().saturating_add(payload.len()));
        self.write_header(&mut out, format, key_version);
        out.extend_from_slice(payload);
        out
    }

    /// Splits a ciphertext into its parts.
    ///
    /// # Errors
    /// [`ErrorKind::Integrity`] when it is too short, has the wrong magic or an unknown format,
    /// or names key version 0. The message never includes the ciphertext.
    pub fn parse<'a>(&self, bytes: &'a [u8]) -> Result<FramedCiphertext<'a>> {
        let corrupt = |what: &str| Error::new(ErrorKind::Integrity, format!("ciphertext {what}"));
        let header_len = self.header_len();
        if bytes.len() < header_len.saturating_add(self.min_payload) {
            return Err(corrupt("is too short"));
        }
        let (header, payload) = bytes.split_at(header_len);
        let rest = match self.magic {
            Some(m) if header[0] != m => {
                return Err(corrupt("was not made by this backend (unknown magic byte)"));
            }
            Some(_) => &header[1..],
            None => header,
        };
        let format = rest[0];
        if !self.formats.contains(&format) {
            return Err(corrupt(
                "was not made by this backend (unknown format byte)",
            ));
        }
        let key_version = KeyVersion::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]);
        if key_version == 0 {
            return Err(corrupt("names key version 0"));
        }
        Ok(FramedCiphertext {
            format,
            key_version,
            payload,
            header,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WITH_MAGIC: CiphertextFrame = CiphertextFrame {
        magic: Some(0x4b),
        formats: &[1, 2],
        min_payload: 28,
    };
    const PLAIN: CiphertextFrame = CiphertextFrame {
        magic: None,
        formats: &[1, 2],
        min_payload: 1,
    };

    #[test]
    fn frames_round_trip_and_reject_what_they_did_not_write() {
        let payload = [7u8; 28];
        let ct = WITH_MAGIC.seal(2, 0x0102_0304, &payload);
        assert_eq!(&ct[..6], &[0x4b, 2, 1, 2, 3, 4]);
        let p = WITH_MAGIC.parse(&ct).unwrap();
        assert_eq!((p.format, p.key_version), (2, 0x0102_0304));
        assert_eq!(p.payload, &payload[..]);
        assert_eq!(p.header, &ct[..6]);

        let kind = |f: &CiphertextFrame, b: &[u8]| f.parse(b).unwrap_err().kind();
        assert_eq!(kind(&WITH_MAGIC, &ct[..ct.len() - 1]), ErrorKind::Integrity);
        let mut bad = ct.clone();
        bad[0] = 0x4c;
        assert_eq!(kind(&WITH_MAGIC, &bad), ErrorKind::Integrity);
        let mut bad = ct.clone();
        bad[1] = 3;
        assert_eq!(kind(&WITH_MAGIC, &bad), ErrorKind::Integrity);
        let zero = WITH_MAGIC.seal(1, 0, &payload);
        assert_eq!(kind(&WITH_MAGIC, &zero), ErrorKind::Integrity);

        let ct = PLAIN.seal(1, 9, b"x");
        assert_eq!(ct, [1, 0, 0, 0, 9, b'x']);
        assert_eq!(PLAIN.parse(&ct).unwrap().payload, b"x");
        assert_eq!(kind(&PLAIN, &ct[..5]), ErrorKind::Integrity);
        assert_eq!(kind(&PLAIN, &[]), ErrorKind::Integrity);
    }

    #[test]
    fn cache_insert_loses_to_a_removal_that_raced_it() {
        let cache: KeyCache<u8> = KeyCache::new();
        let a = KeyName::new("a").unwrap();
        let b = KeyName::new("b").unwrap();
        let t = cache.ticket();
        assert!(cache.insert(a.clone(), Arc::new(1), t));
        cache.remove(&b);
        assert!(!cache.insert(b.clone(), Arc::new(2), t));
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.with(&a, |v| *v + 1), Some(2));
        assert_eq!(cache.with(&b, |v| *v), None);
        cache.clear();
        assert!(cache.is_empty());
        assert!(cache.get(&a).is_none());
    }

    #[test]
    fn close_guard_closes_once() {
        let g = CloseGuard::new();
        assert!(!g.is_closed());
        assert!(g.close());
        assert!(!g.close());
        let e = g.check("x", Operation::KeyInfo).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert_eq!(e.operation(), Some(Operation::KeyInfo));
    }
}
