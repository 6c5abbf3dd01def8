//! A bounded pool of logged-in sessions on one token, used from blocking threads.
//!
//! PKCS#11 calls block, some for a long time (RSA key generation, network HSMs), so none runs as
//! async code: on a multi-threaded runtime a call runs in place (`block_in_place`, which hands
//! the worker's other tasks to another thread), elsewhere on the blocking pool
//! (`spawn_blocking`). In place avoids two thread hand-offs per call, which cost as much as a
//! software token's signature. A semaphore bounds the sessions in
//! use; idle sessions are kept for reuse. Login state in PKCS#11 belongs to the application and
//! token, not the session, so the first session logs in and later ones inherit it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, Rv, RvError};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use keychain_core::{Error, ErrorKind, ProviderCode, Result, SecretString};
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::Semaphore;

use crate::error::{BACKEND, SessionFate, map, session_fate};

/// A login failure that must not be retried with the same PIN (it would burn the token's retry
/// counter on every call): kept and returned until the backend is reopened.
struct LoginFailure {
    kind: ErrorKind,
    code: u64,
    message: String,
}

impl LoginFailure {
    fn error(&self) -> Error {
        Error::new(self.kind, self.message.clone())
            .with_code(ProviderCode::Pkcs11(self.code))
            .with_backend(BACKEND)
            .with_retryable(false)
    }
}

/// The sessions of one backend on one token.
pub(crate) struct Pool {
    ctx: Pkcs11,
    slot: Slot,
    pin: Option<SecretString>,
    max: usize,
    /// Calls run on the caller's thread as they are (`Config::inline_calls`).
    inline: bool,
    idle: Mutex<Vec<Session>>,
    permits: Arc<Semaphore>,
    /// Shared with every pool of this process on the same token (see `module::token_lock`).
    token_lock: Arc<RwLock<()>>,
    /// Serializes logins and holds a failure to remember.
    login: Mutex<Option<LoginFailure>>,
    /// Set when a call said the user is not logged in: the next session checks its state.
    recheck_login: AtomicBool,
    /// Bumped whenever the token's sessions were found gone: object handles from before may
    /// now name other objects (modules restart their numbering), so caches compare this.
    generation: AtomicU64,
    closed: AtomicBool,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("slot", &self.slot.id())
            .field("max", &self.max)
            .field("idle", &self.idle_count())
            .finish_non_exhaustive()
    }
}

/// The `RvError` behind a mapped error, recovered from its provider code.
pub(crate) fn rv_in(e: &Error) -> Option<RvError> {
    match e.provider_code() {
        Some(ProviderCode::Pkcs11(code)) => {
            match Rv::from(std::os::raw::c_ulong::try_from(*code).ok()?) {
                Rv::Error(rv) => Some(rv),
                Rv::Ok => None,
            }
        }
        _ => None,
    }
}

impl Pool {
    /// A pool on `slot`; `pin` is `None` for tokens that need no login.
    pub(crate) fn new(
        ctx: Pkcs11,
        slot: Slot,
        pin: Option<SecretString>,
        max: usize,
        token_lock: Arc<RwLock<()>>,
        inline: bool,
    ) -> Self {
        Self {
            ctx,
            slot,
            pin,
            max,
            inline,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(max)),
            token_lock,
            login: Mutex::new(None),
            recheck_login: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        }
    }

    /// Changes when every session (and so every object handle) of the token is suspect.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The session limit.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// Idle sessions now.
    pub(crate) fn idle_count(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether a rejected PIN is remembered (every call fails until the backend is reopened).
    pub(crate) fn login_rejected(&self) -> Option<Error> {
        self.login
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(LoginFailure::error)
    }

    fn closed_error() -> Error {
        Error::new(ErrorKind::Unavailable, "the backend is closed")
            .with_backend(BACKEND)
            .with_retryable(false)
    }

    /// Runs `f` with a logged-in session on a blocking thread, beside other calls on the token.
    pub(crate) async fn run<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Session) -> Result<T> + Send + 'static,
    {
        self.spawn(false, f).await
    }

    /// Runs `f` (which creates or destroys objects) with the token to itself within this process.
    pub(crate) async fn run_exclusive<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Session) -> Result<T> + Send + 'static,
    {
        self.spawn(true, f).await
    }

    async fn spawn<T, F>(self: &Arc<Self>, exclusive: bool, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Session) -> Result<T> + Send + 'static,
    {
        if self.closed.load(Ordering::Acquire) {
            return Err(Self::closed_error());
        }
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| Self::closed_error())?;
        let pool = Arc::clone(self);
        let work = move || {
            let _permit = permit;
            if exclusive {
                let _token = pool
                    .token_lock
                    .write()
                    .unwrap_or_else(PoisonError::into_inner);
                pool.run_blocking(f)
            } else {
                let _token = pool
                    .token_lock
                    .read()
                    .unwrap_or_else(PoisonError::into_inner);
                pool.run_blocking(f)
            }
        };
        if self.inline {
            return work();
        }
        // block_in_place panics on a current-thread runtime; there the blocking pool it is.
        if Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread) {
            return tokio::task::block_in_place(work);
        }
        tokio::task::spawn_blocking(work).await.map_err(|e| {
            Error::new(ErrorKind::Unexpected, format!("PKCS#11 worker failed: {e}"))
                .with_backend(BACKEND)
        })?
    }

    /// Checks out a session, runs `f`, and keeps the session unless the result says it is dead.
    /// The caller holds the token lock as `f` needs it.
    pub(crate) fn run_blocking<T>(&self, f: impl FnOnce(&Session) -> Result<T>) -> Result<T> {
        let session = self.checkout()?;
        let result = f(&session);
        self.checkin(session, result.as_ref().err());
        result
    }

    fn checkout(&self) -> Result<Session> {
        let reused = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let (session, check) = match reused {
            Some(s) => (s, self.recheck_login.swap(false, Ordering::AcqRel)),
            None => (
                self.ctx.open_rw_session_no_drop(self.slot).map_err(map)?,
                true,
            ),
        };
        if check && let Err(e) = self.ensure_login(&session) {
            let _ = session.close();
            return Err(e);
        }
        Ok(session)
    }

    fn checkin(&self, session: Session, error: Option<&Error>) {
        let fate = error
            .and_then(rv_in)
            .map_or(SessionFate::Fine, session_fate);
        match fate {
            SessionFate::Fine if !self.closed.load(Ordering::Acquire) => {
                self.idle
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(session);
            }
            SessionFate::Fine => {
                let _ = session.close();
            }
            SessionFate::LoginLost => {
                self.recheck_login.store(true, Ordering::Release);
                self.idle
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(session);
            }
            SessionFate::AllDead => {
                // The handles are invalid; closing them could close a session that reuses the
                // number. Opened "no drop", so dropping them calls nothing.
                drop(session);
                self.idle
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clear();
                self.generation.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    /// Makes sure the application is logged in to the token, through `session`.
    fn ensure_login(&self, session: &Session) -> Result<()> {
        let Some(pin) = &self.pin else { return Ok(()) };
        let state = session.get_session_info().map_err(map)?.session_state();
        if matches!(state, SessionState::RoUser | SessionState::RwUser) {
            return Ok(());
        }
        let mut failure = self.login.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(f) = failure.as_ref() {
            return Err(f.error());
        }
        let auth = AuthPin::from(pin.expose().to_owned());
        match session.login(UserType::User, Some(&auth)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
            Err(e) => {
                let err = map(e);
                if matches!(err.kind(), ErrorKind::Unauthenticated | ErrorKind::Locked) {
                    let code = match err.provider_code() {
                        Some(ProviderCode::Pkcs11(c)) => *c,
                        _ => 0,
                    };
                    *failure = Some(LoginFailure {
                        kind: err.kind(),
                        code,
                        message: format!(
                            "{} (remembered: the backend will not try this PIN again; reopen it \
                             with the right PIN)",
                            err.message()
                        ),
                    });
                }
                Err(err.with_retryable(false))
            }
        }
    }

    /// Logs in through a fresh session now (at open), so a wrong PIN fails the open.
    pub(crate) fn login_now(&self) -> Result<()> {
        let _token = self
            .token_lock
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        self.run_blocking(|_| Ok(()))
    }

    /// Runs `f` on this (blocking) thread, beside other calls on the token.
    pub(crate) fn run_here<T>(&self, f: impl FnOnce(&Session) -> Result<T>) -> Result<T> {
        let _token = self
            .token_lock
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        self.run_blocking(f)
    }

    /// Closes every idle session and refuses new work; waits for work in flight.
    pub(crate) async fn close(self: &Arc<Self>) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let max = u32::try_from(self.max).unwrap_or(u32::MAX);
        // Waits until every in-flight call has returned its session.
        let all = Arc::clone(&self.permits).acquire_many_owned(max).await;
        self.permits.close();
        let pool = Arc::clone(self);
        let _ = tokio::task::spawn_blocking(move || {
            let idle =
                std::mem::take(&mut *pool.idle.lock().unwrap_or_else(PoisonError::into_inner));
            for s in idle {
                let _ = s.close();
            }
            drop(all);
        })
        .await;
    }

    /// Closes idle sessions synchronously (used on drop without `close`).
    pub(crate) fn close_now(&self) {
        self.closed.store(true, Ordering::Release);
        self.permits.close();
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(PoisonError::into_inner));
        for s in idle {
            let _ = s.close();
        }
    }

    /// The slot.
    pub(crate) fn slot(&self) -> Slot {
        self.slot
    }

    /// The context.
    pub(crate) fn ctx(&self) -> &Pkcs11 {
        &self.ctx
    }
}
