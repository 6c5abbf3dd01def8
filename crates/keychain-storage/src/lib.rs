#![doc = include_str!("../README.md")]
// Stored and received data is parsed here: no arithmetic on it may wrap or panic.
#![cfg_attr(not(test), warn(clippy::arithmetic_side_effects))]

mod file;
mod key;
mod memory;

use std::fmt::Debug;

use keychain_core::{Result, async_trait};

pub use crate::file::{FileStore, FileStoreOptions};
pub use crate::key::{MAX_SEGMENT_LEN, validate_key};
pub use crate::memory::MemoryStore;

/// An exclusive lock taken with [`BlobStore::lock`]; dropping it releases the lock.
///
/// A [`FileStore`] lock is an OS advisory lock on an open file, so the kernel also releases it
/// when the holding process dies, however it dies: a crash never leaves a store locked.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct RecordLock {
    _guard: Box<dyn Send + Sync>,
}

impl RecordLock {
    /// Wraps whatever keeps a store's lock held until it is dropped (for [`BlobStore`]
    /// implementations outside this crate).
    pub fn new(guard: impl Send + Sync + 'static) -> Self {
        Self {
            _guard: Box::new(guard),
        }
    }
}

impl Debug for RecordLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordLock")
    }
}

/// An opaque marker of one stored state of a blob, from [`BlobStore::stamp`]: two stamps of the
/// same key are equal only if no write or delete of that key happened between them (as far as
/// the store can tell cheaply; see each store's notes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stamp([u64; 4]);

impl Stamp {
    /// A stamp from a store's own identity fields (for [`BlobStore`] implementations outside
    /// this crate).
    pub const fn new(fields: [u64; 4]) -> Self {
        Self(fields)
    }
}

/// A flat namespace of byte blobs addressed by slash-separated keys: where backends that persist
/// (software keys, certificates, metadata) keep their bytes.
///
/// **Keys.** Every method validates its key with [`validate_key`] first: segments of
/// `[A-Za-z0-9._-]` separated by `/`, none empty, none starting with `.` (so no `.`/`..`, no path
/// traversal, no absolute paths). A key cannot also be the parent of other keys: with `a` stored,
/// `a/b` cannot be, and the reverse; such a write fails with
/// [`ErrorKind::AlreadyExists`](keychain_core::ErrorKind::AlreadyExists).
///
/// **Errors.** Invalid keys and prefixes are
/// [`ErrorKind::InvalidInput`](keychain_core::ErrorKind::InvalidInput); storage failures carry the
/// kind their cause maps to (for I/O, see `From<std::io::Error>` for
/// [`Error`](keychain_core::Error)), with the cause behind `source()`.
///
/// **Atomicity.** Each write is all-or-nothing: readers, and a store reopened after a crash, see a
/// blob's old content or its new content, never a mix, never nothing in place of a blob that
/// existed. Blobs may hold key material; implementations never log or format their contents.
#[async_trait]
pub trait BlobStore: Send + Sync + Debug + 'static {
    /// Returns the blob stored under `key`, or `None` if there is none.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for an invalid key; otherwise only when the store cannot be read
    /// (`PermissionDenied`, `Unexpected`, ...). A missing key is `Ok(None)`, never `NotFound`.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;

    /// Stores `data` under `key`, replacing any existing blob atomically: concurrent readers and
    /// a crash see either the old or the new blob, whole.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for an invalid key; `AlreadyExists` if `key` conflicts with a stored key
    /// (it is the parent of stored keys, or a stored key is its parent); storage failures such as
    /// `PermissionDenied` or `CapacityExceeded`. On error any existing blob is left as it was.
    async fn put(&self, key: &str, data: &[u8]) -> Result<()>;

    /// Stores `data` under `key` only if no blob is stored there; atomic: of any number of
    /// concurrent `create` calls for one key, exactly one succeeds.
    ///
    /// # Errors
    ///
    /// `AlreadyExists` if a blob is stored under `key` (it is left untouched) or `key` conflicts
    /// with stored keys as for [`BlobStore::put`]; `InvalidInput` for an invalid key; storage
    /// failures as for [`BlobStore::put`].
    async fn create(&self, key: &str, data: &[u8]) -> Result<()>;

    /// Removes the blob stored under `key`; returns whether there was one.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for an invalid key; storage failures. A missing key is `Ok(false)`.
    async fn delete(&self, key: &str) -> Result<bool>;

    /// Returns every stored key that starts with `prefix` (a plain string prefix: `ab` matches
    /// `abc` and `ab/c`; `ab/` matches only keys under `ab`), sorted by byte order. An empty prefix
    /// lists every key.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `prefix` could not start any valid key's path, i.e. it has characters
    /// outside `[A-Za-z0-9._-/]` or the part before its last `/` is not a valid key (`/x`, `../`,
    /// `a//`); storage failures.
    async fn list(&self, prefix: &str) -> Result<Vec<String>>;

    /// Takes the exclusive lock called `name` (a valid key; nothing need be stored under it),
    /// waiting while another holder has it. Every handle on the same store honours it: other
    /// tasks, other store values on the same root and, for [`FileStore`], other processes.
    ///
    /// The lock is how callers make a read-modify-write of their records safe: take the lock,
    /// read the record, write the new one, drop the lock. The store's own methods never take
    /// these locks, so calling them while holding one is fine. Locks are not reentrant: taking a
    /// lock the caller already holds waits for itself (until the timeout, for [`FileStore`]).
    ///
    /// # Errors
    ///
    /// `InvalidInput` for an invalid name; `Timeout` (retryable) when the lock stayed taken for
    /// the store's lock timeout; storage failures.
    async fn lock(&self, name: &str) -> Result<RecordLock>;

    /// A cheap marker of the blob's current state, or `None` when no blob is stored under `key`:
    /// a metadata look-up, never a read of the content. A cache of something read from the
    /// store stays valid while the stamp taken before the read is unchanged.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for an invalid key; storage failures.
    fn stamp(&self, key: &str) -> Result<Option<Stamp>>;

    /// A counter that changes with every write or delete anywhere in the store, when the store
    /// can keep one that every user of it sees — [`MemoryStore`] can; [`FileStore`] cannot, as
    /// other processes write to it, and returns `None`. Equal values taken at two moments mean
    /// nothing in the store changed in between, which spares a cache its per-key
    /// [`BlobStore::stamp`] checks. The default is `None`: "cannot tell".
    fn generation(&self) -> Option<u64> {
        None
    }
}

#[cfg(test)]
mod tests {
    //! Semantics every store must share, run against each store.

    use std::sync::Arc;

    use keychain_core::ErrorKind;

    use super::*;

    async fn round_trip(store: &dyn BlobStore) {
        assert_eq!(store.get("a").await.ok(), Some(None));
        store.put("a", b"one").await.expect("put");
        assert_eq!(store.get("a").await.ok(), Some(Some(b"one".to_vec())));
        store.put("a", b"two").await.expect("replace");
        assert_eq!(store.get("a").await.ok(), Some(Some(b"two".to_vec())));
        store.put("n/e/s/t", b"").await.expect("put nested, empty");
        assert_eq!(store.get("n/e/s/t").await.ok(), Some(Some(Vec::new())));
        let big: Vec<u8> = (0..1_000_000u32).map(|i| i as u8).collect();
        store.put("big", &big).await.expect("put big");
        assert_eq!(store.get("big").await.ok(), Some(Some(big)));
    }

    async fn create_twice(store: &dyn BlobStore) {
        store.create("k/c", b"first").await.expect("create");
        let err = store
            .create("k/c", b"second")
            .await
            .expect_err("second create");
        assert_eq!(err.kind(), ErrorKind::AlreadyExists);
        assert_eq!(store.get("k/c").await.ok(), Some(Some(b"first".to_vec())));
        store.put("k/c", b"put").await.expect("put over created");
        assert_eq!(store.get("k/c").await.ok(), Some(Some(b"put".to_vec())));
    }

    async fn delete(store: &dyn BlobStore) {
        assert_eq!(store.delete("missing").await.ok(), Some(false));
        assert_eq!(store.delete("no/such/dir").await.ok(), Some(false));
        store.put("d/x", b"x").await.expect("put");
        store.put("d/y/z", b"z").await.expect("put");
        assert_eq!(
            store.delete("d").await.ok(),
            Some(false),
            "a parent is not a blob"
        );
        assert_eq!(store.delete("d/x").await.ok(), Some(true));
        assert_eq!(store.delete("d/x").await.ok(), Some(false));
        assert_eq!(store.get("d/x").await.ok(), Some(None));
        assert_eq!(store.delete("d/y/z").await.ok(), Some(true));
        assert_eq!(store.list("").await.ok(), Some(Vec::new()));
        // Emptied parents do not block reusing their names as keys.
        store.create("d", b"d").await.expect("create former parent");
    }

    async fn list(store: &dyn BlobStore) {
        for key in ["b", "a/2", "a/1", "ab", "a/sub/x", "c.d", "A"] {
            store.put(key, key.as_bytes()).await.expect("put");
        }
        let list = |p: &'static str| async move { store.list(p).await.expect(p) };
        assert_eq!(
            list("").await,
            ["A", "a/1", "a/2", "a/sub/x", "ab", "b", "c.d"]
        );
        assert_eq!(list("a").await, ["a/1", "a/2", "a/sub/x", "ab"]);
        assert_eq!(list("a/").await, ["a/1", "a/2", "a/sub/x"]);
        assert_eq!(list("a/s").await, ["a/sub/x"]);
        assert_eq!(list("a/sub/").await, ["a/sub/x"]);
        assert_eq!(list("a/sub/x").await, ["a/sub/x"]);
        assert_eq!(list("c.").await, ["c.d"]);
        assert!(list("z").await.is_empty());
        assert!(list("z/").await.is_empty());
        assert!(list("b/").await.is_empty(), "a blob has no children");
        assert!(list(".").await.is_empty());
    }

    async fn rejects_invalid_keys(store: &dyn BlobStore) {
        for key in [
            "../x", "/abs", "a//b", "a/../b", "", "a/", ".", "..", ".lock", "a/.tmp-1", "a b",
        ] {
            let kinds = [
                store.get(key).await.map(drop),
                store.put(key, b"x").await,
                store.create(key, b"x").await,
                store.delete(key).await.map(drop),
            ]
            .map(|r| r.map_err(|e| e.kind()));
            assert_eq!(kinds, [Err(ErrorKind::InvalidInput); 4], "{key:?}");
        }
        for prefix in ["/", "/abs", "../", "a//", "a/../", "a b"] {
            let err = store.list(prefix).await.expect_err(prefix);
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{prefix:?}");
        }
        assert_eq!(
            store.list("").await.ok(),
            Some(Vec::new()),
            "nothing was written"
        );
    }

    async fn parent_child_conflicts(store: &dyn BlobStore) {
        store.put("p", b"p").await.expect("put");
        for result in [
            store.put("p/c", b"c").await,
            store.create("p/c/d", b"c").await,
        ] {
            assert_eq!(result.map_err(|e| e.kind()), Err(ErrorKind::AlreadyExists));
        }
        store.put("q/c", b"c").await.expect("put");
        for result in [store.put("q", b"q").await, store.create("q", b"q").await] {
            assert_eq!(result.map_err(|e| e.kind()), Err(ErrorKind::AlreadyExists));
        }
        assert_eq!(store.get("q").await.ok(), Some(None));
        assert_eq!(
            store.list("").await.ok(),
            Some(vec!["p".to_owned(), "q/c".to_owned()])
        );
    }

    async fn concurrent_create(stores: [Arc<dyn BlobStore>; 2]) {
        let tasks: Vec<_> = (0..16u8)
            .map(|i| {
                let store = Arc::clone(&stores[usize::from(i % 2)]);
                tokio::spawn(async move { store.create("race/key", &[i; 1024]).await })
            })
            .collect();
        let mut winners = Vec::new();
        for (i, task) in tasks.into_iter().enumerate() {
            match task.await.expect("task") {
                Ok(()) => winners.push(i),
                Err(e) => assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}"),
            }
        }
        assert_eq!(winners.len(), 1, "exactly one creator wins: {winners:?}");
        let stored = stores[0]
            .get("race/key")
            .await
            .expect("get")
            .expect("present");
        assert_eq!(stored, [winners[0] as u8; 1024]);
    }

    async fn stamps(store: &dyn BlobStore) {
        assert_eq!(store.stamp("s").ok(), Some(None));
        let stamp = || store.stamp("s").expect("stamp").expect("stored");
        store.put("s", b"one").await.expect("put");
        let first = stamp();
        assert_eq!(stamp(), first, "unchanged blob, unchanged stamp");
        let mut seen = vec![first];
        // Same size every time: the stamp must not rest on the size alone.
        for _ in 0..5 {
            store.put("s", b"two").await.expect("put");
            let next = stamp();
            assert!(!seen.contains(&next), "a write repeated a stamp");
            seen.push(next);
        }
        assert!(store.delete("s").await.expect("delete"));
        assert_eq!(store.stamp("s").ok(), Some(None));
        store.create("s", b"two").await.expect("create");
        assert!(
            !seen.contains(&stamp()),
            "a re-created blob repeated a stamp"
        );
        store.put("dir/x", b"x").await.expect("put");
        assert_eq!(
            store.stamp("dir").ok(),
            Some(None),
            "a parent is not a blob"
        );
        for key in ["../x", "", "a/"] {
            let err = store.stamp(key).expect_err(key);
            assert_eq!(err.kind(), ErrorKind::InvalidInput);
        }
    }

    /// Eight tasks each increment a counter blob twenty times, reading and writing it under the
    /// record lock with a yield in between: without mutual exclusion updates get lost.
    async fn lock_excludes(store: Arc<dyn BlobStore>) {
        store.put("counter", b"0").await.expect("put");
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    for _ in 0..20 {
                        let _lock = store.lock("counter").await.expect("lock");
                        let n: u32 = String::from_utf8(
                            store.get("counter").await.expect("get").expect("stored"),
                        )
                        .expect("utf-8")
                        .parse()
                        .expect("number");
                        tokio::task::yield_now().await;
                        store
                            .put("counter", (n + 1).to_string().as_bytes())
                            .await
                            .expect("put");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
        assert_eq!(
            store.get("counter").await.expect("get"),
            Some(b"160".to_vec())
        );
        // Holding one lock does not block another name, nor the store's own writes.
        let _held = store.lock("a").await.expect("lock a");
        let _other = store.lock("b/c").await.expect("lock b/c");
        store.put("a", b"x").await.expect("put under a held lock");
        assert!(
            store
                .list("")
                .await
                .expect("list")
                .iter()
                .all(|k| !k.starts_with('.'))
        );
        let err = store.lock("../x").await.expect_err("invalid name");
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }

    async fn all(make: impl Fn() -> Arc<dyn BlobStore>) {
        stamps(make().as_ref()).await;
        lock_excludes(make()).await;
        round_trip(make().as_ref()).await;
        create_twice(make().as_ref()).await;
        delete(make().as_ref()).await;
        list(make().as_ref()).await;
        rejects_invalid_keys(make().as_ref()).await;
        parent_child_conflicts(make().as_ref()).await;
    }

    #[tokio::test]
    async fn generation_counts_changes_where_it_can() {
        let store = MemoryStore::new();
        let g = || store.generation().expect("memory stores count");
        let start = g();
        store.put("a", b"1").await.expect("put");
        let after_put = g();
        assert_ne!(after_put, start);
        store.get("a").await.expect("get");
        store.stamp("a").expect("stamp");
        let _lock = store.lock("a").await.expect("lock");
        assert!(store.create("a", b"2").await.is_err());
        assert!(!store.delete("missing").await.expect("delete"));
        assert_eq!(g(), after_put, "reads and failed writes change nothing");
        store.create("b", b"2").await.expect("create");
        let after_create = g();
        assert_ne!(after_create, after_put);
        assert!(store.delete("a").await.expect("delete"));
        assert_ne!(g(), after_create);

        let dir = crate::file::tests::private_tempdir();
        let file = FileStore::open(dir.path(), FileStoreOptions::default()).expect("open");
        assert_eq!(
            file.generation(),
            None,
            "other processes write without telling"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_store_semantics() {
        all(|| Arc::new(MemoryStore::new())).await;
        let store: Arc<dyn BlobStore> = Arc::new(MemoryStore::new());
        concurrent_create([Arc::clone(&store), store]).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn file_store_semantics() {
        let dirs = std::sync::Mutex::new(Vec::new());
        all(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = FileStore::open(dir.path().join("store"), FileStoreOptions::default());
            dirs.lock().expect("dirs").push(dir);
            Arc::new(store.expect("open"))
        })
        .await;

        // Two stores on one root, as two processes would have.
        let dir = crate::file::tests::private_tempdir();
        let open = || FileStore::open(dir.path(), FileStoreOptions::default()).expect("open");
        concurrent_create([Arc::new(open()), Arc::new(open())]).await;

        // A lock held through one store value times out another on the same root, then frees.
        let quick =
            FileStoreOptions::default().with_lock_timeout(std::time::Duration::from_millis(200));
        let other = FileStore::open(dir.path(), quick).expect("open");
        let held = open().lock("rec").await.expect("lock");
        let err = other.lock("rec").await.expect_err("held elsewhere");
        assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
        assert!(err.retryable());
        drop(held);
        let _lock = other.lock("rec").await.expect("free again");
        // Names too long for one file name still lock.
        let long = ["k".repeat(200), "k".repeat(200)].join("/");
        let _long = other.lock(&long).await.expect("long name");
    }
}
