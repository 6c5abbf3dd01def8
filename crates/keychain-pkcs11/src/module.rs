//! Loading and initializing PKCS#11 modules, shared per process.
//!
//! PKCS#11 allows one `C_Initialize` per module and process, and `C_Finalize` ends every session
//! of every user of the module in the process. So backends on the same module share one
//! initialized context through a registry keyed by the module's canonical path, counting leases;
//! the last lease to go finalizes. Every transition happens under the registry lock, so an open
//! racing a close never sees a half-finalized module.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use keychain_core::{Error, ErrorKind, Result};

use crate::error::{BACKEND, map};

struct Entry {
    ctx: Pkcs11,
    leases: usize,
    /// Whether this process's `C_Initialize` was ours (not already done by someone else), so
    /// the last lease finalizes.
    ours: bool,
}

static REGISTRY: Mutex<Option<HashMap<PathBuf, Entry>>> = Mutex::new(None);

/// A use of an initialized module. Dropping it (or [`Lease::release`]) gives the use back; the
/// last one of a shared module, or a private one that initialized the module, finalizes it.
pub(crate) struct Lease {
    ctx: Pkcs11,
    path: PathBuf,
    shared: bool,
    /// Private leases only: whether `C_Finalize` is ours to call.
    ours: bool,
    released: bool,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("module", &self.path)
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

/// The canonical path of a module, or a clear `NotFound`.
pub(crate) fn canonical(path: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(path).map_err(|e| {
        let kind = if e.kind() == std::io::ErrorKind::NotFound {
            ErrorKind::NotFound
        } else {
            Error::from(std::io::Error::from(e.kind())).kind()
        };
        Error::new(kind, format!("PKCS#11 module {}: {e}", path.display())).with_backend(BACKEND)
    })
}

fn load(path: &Path) -> Result<(Pkcs11, bool)> {
    let ctx = Pkcs11::new(path)
        .map_err(|e| map(e).with_context(format_args!("module {}", path.display())))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) => Ok((ctx, true)),
        // Someone else in this process initialized it: use it, never finalize it.
        Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => Ok((ctx, false)),
        Err(e) => Err(map(e).with_context(format_args!("module {}", path.display()))),
    }
}

impl Lease {
    /// Loads and initializes the module at `path` (canonical), or joins the shared one.
    pub(crate) fn acquire(path: &Path, shared: bool) -> Result<Self> {
        if !shared {
            let (ctx, ours) = load(path)?;
            return Ok(Self {
                ctx,
                path: path.to_path_buf(),
                shared,
                ours,
                released: false,
            });
        }
        let mut registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
        let map = registry.get_or_insert_with(HashMap::new);
        if let Some(entry) = map.get_mut(path) {
            entry.leases += 1;
            return Ok(Self {
                ctx: entry.ctx.clone(),
                path: path.to_path_buf(),
                shared,
                ours: false,
                released: false,
            });
        }
        let (ctx, ours) = load(path)?;
        map.insert(
            path.to_path_buf(),
            Entry {
                ctx: ctx.clone(),
                leases: 1,
                ours,
            },
        );
        Ok(Self {
            ctx,
            path: path.to_path_buf(),
            shared,
            ours: false,
            released: false,
        })
    }

    /// The initialized context.
    pub(crate) fn ctx(&self) -> &Pkcs11 {
        &self.ctx
    }

    /// Gives the lease back (finalizing the module if this was the last use). Idempotent.
    pub(crate) fn release(&mut self) {
        if std::mem::replace(&mut self.released, true) {
            return;
        }
        if !self.shared {
            if self.ours {
                // Nothing useful to do with a failed C_Finalize on the way out.
                let _ = self.ctx.clone().finalize();
            }
            return;
        }
        let mut registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(map) = registry.as_mut() else { return };
        let last = match map.get_mut(&self.path) {
            Some(entry) => {
                entry.leases = entry.leases.saturating_sub(1);
                entry.leases == 0
            }
            None => false,
        };
        if last
            && let Some(entry) = map.remove(&self.path)
            && entry.ours
        {
            let _ = entry.ctx.finalize();
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.release();
    }
}

/// How many backends share the module at `path` in this process (0 when none). For tests and
/// diagnostics.
pub fn shared_leases(path: &Path) -> usize {
    let Ok(path) = std::fs::canonicalize(path) else {
        return 0;
    };
    REGISTRY
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .and_then(|m| m.get(&path))
        .map_or(0, |e| e.leases)
}

/// One lock per token, `(module, slot id)` → shared by every backend of this process on it.
static TOKEN_LOCKS: Mutex<Option<TokenLocks>> = Mutex::new(None);

type TokenLocks = HashMap<(PathBuf, u64), Weak<RwLock<()>>>;

/// The lock that orders calls on one token across every backend of the process: creating or
/// destroying objects takes it exclusively, every other call shares it. "Does the name exist?"
/// and "create it" then never interleave with another backend's, and SoftHSM 2.6's file object
/// store, which fails an object creation with `CKR_GENERAL_ERROR` or `CKR_TEMPLATE_INCONSISTENT`
/// when other threads read the store meanwhile, is never written and read at once.
pub(crate) fn token_lock(module: &Path, slot: u64) -> Arc<RwLock<()>> {
    let mut locks = TOKEN_LOCKS.lock().unwrap_or_else(PoisonError::into_inner);
    let map = locks.get_or_insert_with(HashMap::new);
    map.retain(|_, w| w.strong_count() > 0);
    let key = (module.to_path_buf(), slot);
    if let Some(lock) = map.get(&key).and_then(Weak::upgrade) {
        return lock;
    }
    let lock = Arc::new(RwLock::new(()));
    map.insert(key, Arc::downgrade(&lock));
    lock
}
