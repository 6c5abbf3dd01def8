//! A [`BlobStore`] over a private directory: one file per key, replaced atomically.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use keychain_core::{Error, ErrorKind, ProviderCode, Result, async_trait};

use crate::key::MAX_SEGMENT_LEN;
use crate::key::{ancestors, conflict, validate_key, validate_prefix, validate_segment};
use crate::{BlobStore, RecordLock, Stamp};

/// Mode of every blob file the store writes.
const FILE_MODE: u32 = 0o600;
/// Mode of the root and every subdirectory the store creates.
const DIR_MODE: u32 = 0o700;
/// Lock file in the root; mutations hold an exclusive advisory lock on it.
const LOCK_FILE: &str = ".lock";
/// Name prefix of temporary files. Keys cannot start with `.`, so these never collide with keys.
const TEMP_PREFIX: &str = ".tmp-";
/// Directory in the root holding the files behind [`BlobStore::lock`]. They are never removed:
/// removing a lock file while another process waits on it would let two holders in.
const LOCKS_DIR: &str = ".locks";
/// Default of [`FileStoreOptions::lock_timeout`].
const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// Options for [`FileStore::open`].
///
/// ```
/// use keychain_storage::FileStoreOptions;
/// let options = FileStoreOptions::default().with_allow_insecure_permissions(true);
/// assert!(options.allow_insecure_permissions);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FileStoreOptions {
    /// Open the root even if its mode grants group or others any access (`mode & 0o077 != 0`).
    /// Off by default: key material in a world-readable directory is a mistake worth stopping on.
    pub allow_insecure_permissions: bool,
    /// How long [`BlobStore::lock`] waits for a lock another holder keeps before it fails with
    /// `ErrorKind::Timeout`. Default: 30 seconds.
    pub lock_timeout: Duration,
}

impl Default for FileStoreOptions {
    fn default() -> Self {
        Self {
            allow_insecure_permissions: false,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
        }
    }
}

impl FileStoreOptions {
    /// Sets [`FileStoreOptions::allow_insecure_permissions`].
    #[must_use]
    pub const fn with_allow_insecure_permissions(mut self, allow: bool) -> Self {
        self.allow_insecure_permissions = allow;
        self
    }

    /// Sets [`FileStoreOptions::lock_timeout`].
    #[must_use]
    pub const fn with_lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }
}

/// A [`BlobStore`] keeping each blob in a file under a root directory (Unix only).
///
/// The key `a/b` is the file `<root>/a/b`.
///
/// - **Atomic replace.** Writes go to a uniquely named temporary file (`.tmp-…`) in the target's
///   directory, which is written, `fsync`ed, then renamed over the target; the directory is then
///   `fsync`ed. A reader or a crash (even `SIGKILL` mid-write) sees the old blob or the new one,
///   never a torn or missing one.
/// - **Atomic create.** [`BlobStore::create`] links the synced temporary file to the target with
///   `link(2)`, which fails if the target exists, so two creators never both succeed, even across
///   processes that do not share the lock. The file system must support hard links.
/// - **Permissions.** The root (created if missing) and subdirectories are `0700`, files `0600`.
///   [`FileStore::open`] refuses a root that group or others can access, unless
///   [`FileStoreOptions::allow_insecure_permissions`] is set.
/// - **Locking.** Mutations (`put`, `create`, `delete`) hold an exclusive advisory lock
///   (`flock(2)`) on `<root>/.lock`, so writers in several threads, stores or processes on one root
///   are serialised. Reads take no lock: they only ever see complete files.
/// - **Record locks.** [`BlobStore::lock`] takes `flock(2)` on `<root>/.locks/<name>`; other
///   processes honour it, and the kernel releases it when its holder exits or is killed.
/// - **Stamps.** [`BlobStore::stamp`] is one `lstat(2)`: device, inode, size and modification
///   time. Every write renames a new file into place, its modification time set from the
///   nanosecond clock, so a stamp repeats only on a file system that keeps coarser times
///   (ext4 with 128-byte inodes keeps seconds) and reuses an inode for a same-sized blob.
/// - **Crash leftovers.** A crash can leave a `.tmp-…` file behind. Such files are never listed or
///   read, and [`FileStore::open`] removes them.
///
/// File I/O runs on Tokio's blocking pool (`spawn_blocking`), so the async methods must be called
/// from within a Tokio runtime; they panic otherwise. [`FileStore::open`] itself is synchronous.
/// Names in the root starting with `.` and files whose names are not valid key segments are
/// ignored.
#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
    /// The root, open: stamps look keys up relative to it, resolving two path components
    /// instead of the whole absolute path on every use of a cached key.
    root_dir: Arc<OwnedFd>,
    lock_timeout: Duration,
}

impl FileStore {
    /// Opens the store rooted at `root`, creating the directory (and missing parents) with mode
    /// `0700` if it does not exist, and removing temporary files a crashed writer left behind.
    ///
    /// Blocks on file I/O.
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::PermissionDenied`] if `root`'s mode grants group or others any access and
    ///   [`FileStoreOptions::allow_insecure_permissions`] is not set, or if the OS denies access.
    /// - [`ErrorKind::InvalidInput`] if `root` exists but is not a directory.
    /// - Other kinds as mapped from the underlying I/O error (see `From<std::io::Error>` for
    ///   [`Error`]).
    pub fn open(root: impl Into<PathBuf>, options: FileStoreOptions) -> Result<Self> {
        let root = root.into();
        let mode = match fs::metadata(&root) {
            Ok(meta) if meta.is_dir() => meta.permissions().mode(),
            Ok(_) => {
                return Err(Error::invalid_input(format!(
                    "store root {} is not a directory",
                    root.display()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                DirBuilder::new()
                    .recursive(true)
                    .mode(DIR_MODE)
                    .create(&root)
                    .map_err(|e| io_error(e, "creating store root", &root))?;
                // The umask may have narrowed the mode; make it exactly 0700.
                fs::set_permissions(&root, fs::Permissions::from_mode(DIR_MODE))
                    .map_err(|e| io_error(e, "setting permissions of", &root))?;
                DIR_MODE
            }
            Err(e) => return Err(io_error(e, "inspecting store root", &root)),
        };
        if mode & 0o077 != 0 && !options.allow_insecure_permissions {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "store root {} has mode {:04o}, which lets group or others access it; \
                     run `chmod 700` on it, or set allow_insecure_permissions",
                    root.display(),
                    mode & 0o7777
                ),
            ));
        }
        remove_leftover_temp_files(&root);
        let root_dir = File::open(&root)
            .map_err(|e| io_error(e, "opening store root", &root))?
            .into();
        Ok(Self {
            root,
            root_dir: Arc::new(root_dir),
            lock_timeout: options.lock_timeout,
        })
    }

    /// The root directory, as given to [`FileStore::open`].
    pub fn root(&self) -> &Path {
        &self.root
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Path) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || f(&root))
            .await
            .map_err(|e| {
                Error::new(ErrorKind::Unexpected, "blocking storage task failed").with_source(e)
            })?
    }
}

#[async_trait]
impl BlobStore for FileStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        validate_key(key)?;
        let key = key.to_owned();
        self.blocking(move |root| {
            let path = root.join(&key);
            match fs::read(&path) {
                Ok(data) => Ok(Some(data)),
                Err(e) if is_absent(&e) => Ok(None),
                Err(e) => Err(io_error(e, "reading", &path)),
            }
        })
        .await
    }

    async fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        validate_key(key)?;
        let (key, data) = (key.to_owned(), data.to_vec());
        self.blocking(move |root| {
            let _lock = lock(root)?;
            let dir = create_parents(root, &key)?;
            let target = root.join(&key);
            if fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
                return Err(conflict(&key, "other keys are stored under it"));
            }
            let temp = TempFile::write(&dir, &data)?;
            fs::rename(&temp.path, &target).map_err(|e| io_error(e, "renaming onto", &target))?;
            temp.disarm();
            sync_dir(&dir)
        })
        .await
    }

    async fn create(&self, key: &str, data: &[u8]) -> Result<()> {
        validate_key(key)?;
        let (key, data) = (key.to_owned(), data.to_vec());
        self.blocking(move |root| {
            let _lock = lock(root)?;
            let dir = create_parents(root, &key)?;
            let target = root.join(&key);
            let already_exists = || {
                Error::new(
                    ErrorKind::AlreadyExists,
                    format!("storage key {key:?} already exists"),
                )
            };
            // Saves writing and syncing the data when the answer is already known; the link
            // below is what makes the check race-free.
            if fs::symlink_metadata(&target).is_ok() {
                return Err(already_exists());
            }
            let temp = TempFile::write(&dir, &data)?;
            match fs::hard_link(&temp.path, &target) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(already_exists()),
                Err(e) => return Err(io_error(e, "linking", &target)),
            }
            // Dropping the guard unlinks the temporary name; the blob keeps its target name.
            drop(temp);
            sync_dir(&dir)
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        validate_key(key)?;
        let key = key.to_owned();
        self.blocking(move |root| {
            let _lock = lock(root)?;
            let path = root.join(&key);
            if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                return Ok(false);
            }
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if is_absent(&e) => return Ok(false),
                Err(e) => return Err(io_error(e, "removing", &path)),
            }
            // Remove directories the deletion left empty, deepest first; stop at the first that
            // still holds something. Safe against concurrent writers: they hold the same lock.
            let mut changed = path.parent().unwrap_or(root).to_path_buf();
            for dir in ancestors(&key).collect::<Vec<_>>().into_iter().rev() {
                let dir = root.join(dir);
                if fs::remove_dir(&dir).is_err() {
                    break;
                }
                changed = dir.parent().unwrap_or(root).to_path_buf();
            }
            sync_dir(&changed)?;
            Ok(true)
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let dir = validate_prefix(prefix)?.to_owned();
        let prefix = prefix.to_owned();
        self.blocking(move |root| {
            let mut keys = Vec::new();
            let start = if dir.is_empty() {
                root.to_path_buf()
            } else {
                root.join(&dir)
            };
            collect_keys(&start, &dir, &prefix, &mut keys)?;
            keys.sort_unstable();
            Ok(keys)
        })
        .await
    }

    async fn lock(&self, name: &str) -> Result<RecordLock> {
        validate_key(name)?;
        let file_name = lock_file_name(name);
        let timeout = self.lock_timeout;
        let name = name.to_owned();
        self.blocking(move |root| {
            let dir = root.join(LOCKS_DIR);
            match DirBuilder::new().mode(DIR_MODE).create(&dir) {
                Ok(()) => fs::set_permissions(&dir, fs::Permissions::from_mode(DIR_MODE))
                    .map_err(|e| io_error(e, "setting permissions of", &dir))?,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_error(e, "creating directory", &dir)),
            }
            let path = dir.join(file_name);
            let file = open_lock_file(&path)?;
            // Polling rather than a blocking flock, so a lock that is never released (a hung
            // holder) ends in a Timeout instead of a thread parked forever.
            let start = Instant::now();
            let mut pause = Duration::from_millis(1);
            loop {
                match file.try_lock() {
                    Ok(()) => return Ok(RecordLock::new(file)),
                    Err(std::fs::TryLockError::WouldBlock) => {}
                    Err(std::fs::TryLockError::Error(e)) => {
                        return Err(io_error(e, "locking", &path));
                    }
                }
                let waited = start.elapsed();
                if waited >= timeout {
                    return Err(Error::new(
                        ErrorKind::Timeout,
                        format!(
                            "lock {name:?} of store {} is still held by another user after \
                             {waited:.1?}",
                            root.display()
                        ),
                    ));
                }
                std::thread::sleep(pause.min(timeout.saturating_sub(waited)));
                pause = pause.saturating_mul(2).min(Duration::from_millis(20));
            }
        })
        .await
    }

    fn stamp(&self, key: &str) -> Result<Option<Stamp>> {
        validate_key(key)?;
        use rustix::fs::{AtFlags, FileType, statat};
        match statat(&*self.root_dir, key, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => {
                // Bit patterns, not quantities: only equality matters. Nanoseconds since the
                // epoch wrap only in 2554.
                let mtime = (st.st_mtime as u64)
                    .wrapping_mul(1_000_000_000)
                    .wrapping_add(st.st_mtime_nsec);
                Ok(Some(Stamp::new([
                    st.st_dev,
                    st.st_ino,
                    st.st_size as u64,
                    mtime,
                ])))
            }
            Ok(_) => Ok(None),
            Err(errno) => {
                let e = io::Error::from(errno);
                if is_absent(&e) {
                    Ok(None)
                } else {
                    Err(io_error(e, "inspecting", &self.root.join(key)))
                }
            }
        }
    }
}

/// The file behind the record lock `name` (a valid key): `/` becomes `%`, which no key holds,
/// so distinct names get distinct files. Names too long for one file name are shortened to a
/// prefix plus a hash of the whole; two names sharing a file only share a lock, which costs
/// concurrency, never safety.
fn lock_file_name(name: &str) -> String {
    let flat = name.replace('/', "%");
    if flat.len() <= MAX_SEGMENT_LEN {
        return flat;
    }
    // FNV-1a: stable across builds and processes, unlike std's hasher.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    // Valid keys are ASCII, so any byte index is a character boundary.
    format!("{}%{hash:016x}", &flat[..200])
}

/// Pushes onto `out` every key under `dir` (whose key form is `rel`) that starts with `prefix`.
fn collect_keys(dir: &Path, rel: &str, prefix: &str, out: &mut Vec<String>) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if is_absent(&e) => return Ok(()),
        Err(e) => return Err(io_error(e, "listing", dir)),
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) if is_absent(&e) => continue,
            Err(e) => return Err(io_error(e, "listing", dir)),
        };
        let name = entry.file_name();
        let Some(name) = name.to_str().filter(|n| validate_segment(n).is_ok()) else {
            // Lock and temporary files, and anything no key could name.
            continue;
        };
        let key = if rel.is_empty() {
            name.to_owned()
        } else {
            format!("{rel}/{name}")
        };
        let file_type = match entry.file_type() {
            Ok(t) => t,
            Err(e) if is_absent(&e) => continue,
            Err(e) => return Err(io_error(e, "inspecting", &entry.path())),
        };
        if file_type.is_dir() {
            let below = format!("{key}/");
            if below.starts_with(prefix) || prefix.starts_with(&below) {
                collect_keys(&entry.path(), &key, prefix, out)?;
            }
        } else if file_type.is_file() && key.starts_with(prefix) {
            out.push(key);
        }
    }
    Ok(())
}

/// Creates the directories `key` sits in (mode `0700`) and returns the innermost one.
fn create_parents(root: &Path, key: &str) -> Result<PathBuf> {
    let mut parent = root.to_path_buf();
    for ancestor in ancestors(key) {
        let dir = root.join(ancestor);
        match DirBuilder::new().mode(DIR_MODE).create(&dir) {
            Ok(()) => {
                fs::set_permissions(&dir, fs::Permissions::from_mode(DIR_MODE))
                    .map_err(|e| io_error(e, "setting permissions of", &dir))?;
                sync_dir(&parent)?;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if !fs::metadata(&dir).is_ok_and(|m| m.is_dir()) {
                    return Err(conflict(key, &format!("key {ancestor:?} is a blob")));
                }
            }
            Err(e) => return Err(io_error(e, "creating directory", &dir)),
        }
        parent = dir;
    }
    Ok(parent)
}

/// Takes the store's exclusive lock; dropping the returned file releases it.
fn lock(root: &Path) -> Result<File> {
    let path = root.join(LOCK_FILE);
    let file = open_lock_file(&path)?;
    file.lock().map_err(|e| io_error(e, "locking", &path))?;
    Ok(file)
}

/// Opens (creating it `0600` if needed, never truncating) a file to `flock`.
fn open_lock_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)
        .map_err(|e| io_error(e, "opening lock file", path))
}

/// Makes a directory's entries (created, renamed, removed names) durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(e, "syncing directory", dir))
}

/// A synced temporary file that is unlinked on drop unless [`TempFile::disarm`]ed, so failed
/// writes do not leave it behind (crashes still can; [`FileStore::open`] cleans those up).
struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl TempFile {
    /// Writes `data` to a fresh `0600` file in `dir` and syncs it.
    fn write(dir: &Path, data: &[u8]) -> Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let pid = std::process::id();
        loop {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!("{TEMP_PREFIX}{pid}-{n}-{nanos:08x}"));
            let mut file = match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(FILE_MODE)
                .open(&path)
            {
                Ok(file) => file,
                // A leftover from an earlier process with the same pid; pick another name.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_error(e, "creating temporary file", &path)),
            };
            let temp = Self { path, armed: true };
            // The umask may have narrowed the mode; make it exactly 0600.
            // The modification time is set from the fine-grained clock rather than left to the
            // file system's coarse one (a tick can be milliseconds), so every write's stamp
            // differs even when an inode is reused.
            file.set_permissions(fs::Permissions::from_mode(FILE_MODE))
                .and_then(|()| file.write_all(data))
                .and_then(|()| file.set_modified(SystemTime::now()))
                .and_then(|()| file.sync_all())
                .map_err(|e| io_error(e, "writing", &temp.path))?;
            return Ok(temp);
        }
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed
            && let Err(e) = fs::remove_file(&self.path)
        {
            tracing::warn!(path = %self.path.display(), error = %e, "could not remove temporary file");
        }
    }
}

/// Removes `.tmp-…` files under `root`, best effort. Holds the lock, so no live writer's temporary
/// file is touched: writers create them only while holding it.
fn remove_leftover_temp_files(root: &Path) {
    let _lock = match lock(root) {
        Ok(lock) => lock,
        Err(e) => {
            // A read-only root can still be read; writes will report the error.
            tracing::debug!(root = %root.display(), error = %e, "skipping temporary file cleanup");
            return;
        }
    };
    remove_temp_files_in(root);
}

fn remove_temp_files_in(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        if file_type.is_file() && name.starts_with(TEMP_PREFIX) {
            let path = entry.path();
            match fs::remove_file(&path) {
                Ok(()) => {
                    tracing::debug!(path = %path.display(), "removed leftover temporary file")
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "could not remove leftover temporary file");
                }
            }
        } else if file_type.is_dir() && validate_segment(name).is_ok() {
            remove_temp_files_in(&entry.path());
        }
    }
}

/// Whether an I/O error means "no blob here": missing, or a directory where a file would be (or
/// the reverse).
fn is_absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory | io::ErrorKind::IsADirectory
    )
}

/// An [`Error`] for a failed I/O call on `path`, keeping the kind mapping of `From<io::Error>` and
/// adding what was being done where.
fn io_error(e: io::Error, doing: &str, path: &Path) -> Error {
    let kind = Error::from(io::Error::from(e.kind())).kind();
    let mut err = Error::new(kind, format!("{doing} {}: {e}", path.display()));
    if let Some(code) = e.raw_os_error() {
        err = err.with_code(ProviderCode::Named(format!("errno {code}").into()));
    }
    err.with_source(e)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("metadata").permissions().mode() & 0o777
    }

    /// A temporary directory with mode 0700 (`tempfile` leaves the mode to the umask).
    pub(crate) fn private_tempdir() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().expect("tempdir");
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(DIR_MODE)).expect("chmod");
        tmp
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn creates_private_root_dirs_and_files() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("deep/store");
        let store = FileStore::open(&root, FileStoreOptions::default()).expect("open");
        assert_eq!(store.root(), root);
        assert_eq!(mode(&root), 0o700);
        store.put("a/b/c", b"secret").await.expect("put");
        store.create("a/d", b"secret").await.expect("create");
        assert_eq!(mode(&root.join("a")), 0o700);
        assert_eq!(mode(&root.join("a/b")), 0o700);
        assert_eq!(mode(&root.join("a/b/c")), 0o600);
        assert_eq!(mode(&root.join("a/d")), 0o600);
        assert_eq!(mode(&root.join(LOCK_FILE)), 0o600);
        store.put("a/b/c", b"replaced").await.expect("replace");
        assert_eq!(mode(&root.join("a/b/c")), 0o600);
        // No temporary files are left after successful writes.
        assert_eq!(names(&root), [LOCK_FILE, "a"]);
        assert_eq!(names(&root.join("a")), ["b", "d"]);
        assert_eq!(names(&root.join("a/b")), ["c"]);
    }

    #[tokio::test]
    async fn refuses_insecure_root_unless_allowed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        for insecure in [0o755, 0o750, 0o701, 0o777] {
            fs::set_permissions(tmp.path(), fs::Permissions::from_mode(insecure)).expect("chmod");
            let err =
                FileStore::open(tmp.path(), FileStoreOptions::default()).expect_err("insecure");
            assert_eq!(err.kind(), ErrorKind::PermissionDenied);
            assert!(err.message().contains(&format!("{insecure:04o}")), "{err}");
            assert!(err.message().contains("chmod 700"), "{err}");

            let options = FileStoreOptions::default().with_allow_insecure_permissions(true);
            let store = FileStore::open(tmp.path(), options).expect("allowed");
            store.put("k", b"v").await.expect("put");
            assert_eq!(store.get("k").await.expect("get"), Some(b"v".to_vec()));
        }
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o700)).expect("chmod");
        FileStore::open(tmp.path(), FileStoreOptions::default()).expect("private again");
    }

    #[test]
    fn refuses_root_that_is_a_file() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("file");
        fs::write(&file, b"").expect("write");
        let err = FileStore::open(&file, FileStoreOptions::default()).expect_err("file root");
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }

    #[tokio::test]
    async fn ignores_and_cleans_leftover_temp_files() {
        let tmp = private_tempdir();
        let store = FileStore::open(tmp.path(), FileStoreOptions::default()).expect("open");
        store.put("dir/key", b"v").await.expect("put");
        fs::write(tmp.path().join(".tmp-1-2-3"), b"torn").expect("write");
        fs::write(tmp.path().join("dir/.tmp-4-5-6"), b"torn").expect("write");
        fs::write(tmp.path().join("not a key"), b"foreign").expect("write");
        assert_eq!(store.list("").await.expect("list"), ["dir/key"]);
        let err = store
            .get(".tmp-1-2-3")
            .await
            .expect_err("temp is not a key");
        assert_eq!(err.kind(), ErrorKind::InvalidInput);

        FileStore::open(tmp.path(), FileStoreOptions::default()).expect("reopen");
        assert_eq!(names(tmp.path()), [LOCK_FILE, "dir", "not a key"]);
        assert_eq!(names(&tmp.path().join("dir")), ["key"]);
    }

    #[tokio::test]
    async fn delete_removes_emptied_directories() {
        let tmp = private_tempdir();
        let store = FileStore::open(tmp.path(), FileStoreOptions::default()).expect("open");
        store.put("a/b/c", b"1").await.expect("put");
        store.put("a/x", b"2").await.expect("put");
        assert!(store.delete("a/b/c").await.expect("delete"));
        assert_eq!(names(tmp.path()), [LOCK_FILE, "a"]);
        assert_eq!(names(&tmp.path().join("a")), ["x"]);
        assert!(store.delete("a/x").await.expect("delete"));
        assert_eq!(names(tmp.path()), [LOCK_FILE]);
    }

    #[tokio::test]
    async fn errors_name_the_path_and_keep_the_io_kind() {
        let tmp = private_tempdir();
        let store = FileStore::open(tmp.path(), FileStoreOptions::default()).expect("open");
        store.put("ro/k", b"v").await.expect("put");
        let ro = tmp.path().join("ro");
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o500)).expect("chmod");
        let result = store.put("ro/k", b"w").await;
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o700)).expect("chmod back");
        // Root ignores directory permissions; the check only means something for other users.
        if let Err(err) = result {
            assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
            assert!(err.message().contains("ro"), "{err}");
            assert!(std::error::Error::source(&err).is_some());
            assert_eq!(store.get("ro/k").await.expect("get"), Some(b"v".to_vec()));
        }
    }
}
