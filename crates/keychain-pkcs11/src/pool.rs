//! A bounded pool of logged-in sessions on one token, and where its calls run.
//!
//! PKCS#11 calls block, some for a long time (RSA key generation, network HSMs). Under the
//! default [`Dispatch::Adaptive`] each kind of call is timed, and a kind whose typical call is
//! short (under [`INLINE_BELOW`]) runs on the calling task's thread: for a software token that
//! saves a thread wake-up per call, which costs as much as the call itself. Everything else runs
//! off the async threads: in place on a multi-threaded runtime (`block_in_place`, which hands
//! the worker's other tasks to another thread), elsewhere on the blocking pool
//! (`spawn_blocking`). A semaphore bounds the sessions in use; idle sessions are kept for reuse.
//! Login state in PKCS#11 belongs to the application and token, not the session, so the first
//! session logs in and later ones inherit it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, TryLockError};
use std::time::{Duration, Instant};

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use keychain_core::support::CloseGuard;
use keychain_core::{
    Error, ErrorKind, KeyAlgorithm, Operation, ProviderCode, Result, SecretString,
};
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::Semaphore;

use crate::config::{Dispatch, INLINE_BELOW};
use crate::error::{BACKEND, SessionFate, map, rv_in, session_fate};

/// What a call does, as far as [`Dispatch::Adaptive`] tells calls apart: their durations differ
/// by orders of magnitude (an RSA-4096 signature against an attribute read), so each class has
/// its own timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Call {
    /// Signing, decrypting or AEAD with a key of this algorithm.
    Key(KeyAlgorithm),
    /// Reading one key's or one chain's objects and attributes.
    Read,
    /// Random bytes from the token.
    Random,
    /// Never inline: a key operation whose key is not cached yet (its algorithm unknown; the
    /// call caches it) or whose input is large, listings (their time grows with the token's
    /// contents), exports and wraps.
    OffThread,
}

impl Call {
    /// Timing slots: one per key algorithm, then `Read` and `Random`.
    const SLOTS: usize = KeyAlgorithm::ALL.len() + 2;

    fn slot(self) -> Option<usize> {
        match self {
            Self::Key(a) => KeyAlgorithm::ALL.iter().position(|x| *x == a),
            Self::Read => Some(KeyAlgorithm::ALL.len()),
            Self::Random => Some(KeyAlgorithm::ALL.len() + 1),
            Self::OffThread => None,
        }
    }
}

/// A running estimate of the median call duration per [`Call`] class, in nanoseconds (0 before
/// the first call, which sets it), and where the class runs now. Each later call moves the
/// estimate an eighth up if it took longer, an eighth down if it took less, so an outlier counts
/// no more than an ordinary call: a thread preempted mid-call (a 4 ms scheduler tick on a busy
/// machine) must not send a fast class off-thread. A class moves inline when its estimate is
/// under [`INLINE_BELOW`] and back off-thread when it is over twice that: the gap keeps a class
/// near the limit from switching back and forth, which costs more than either place. A class
/// that really got slow is off-thread within a few calls (from 60 µs past 200 µs in eleven).
/// Updates from racing threads may overwrite each other; it is an estimate.
struct Timings {
    nanos: [AtomicU64; Call::SLOTS],
    inline: [AtomicBool; Call::SLOTS],
}

impl Timings {
    fn new() -> Self {
        Self {
            nanos: std::array::from_fn(|_| AtomicU64::new(0)),
            inline: std::array::from_fn(|_| AtomicBool::new(false)),
        }
    }

    /// Whether `call` runs inline now (never before its class's first call).
    fn inline(&self, call: Call) -> bool {
        let (Some(i), Some(t)) = (call.slot(), self.estimate(call)) else {
            return false;
        };
        let was = self.inline[i].load(Ordering::Relaxed);
        let now = if was {
            t <= INLINE_BELOW * 2
        } else {
            t < INLINE_BELOW
        };
        if now != was {
            self.inline[i].store(now, Ordering::Relaxed);
        }
        now
    }

    fn estimate(&self, call: Call) -> Option<Duration> {
        let t = self.nanos[call.slot()?].load(Ordering::Relaxed);
        (t != 0).then(|| Duration::from_nanos(t))
    }

    fn record(&self, call: Call, took: Duration) {
        let Some(i) = call.slot() else { return };
        let sample = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX).max(1);
        let old = self.nanos[i].load(Ordering::Relaxed);
        let new = match sample.cmp(&old) {
            _ if old == 0 => sample,
            std::cmp::Ordering::Greater => old.saturating_add(old / 8),
            std::cmp::Ordering::Less => old - old / 8,
            std::cmp::Ordering::Equal => old,
        };
        self.nanos[i].store(new.max(1), Ordering::Relaxed);
    }
}

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

/// The guard of a lock taken without waiting, if it was free (a poisoned lock is taken: the
/// token's state does not depend on a panicked call).
fn try_lock<G>(r: std::result::Result<G, TryLockError<G>>) -> Option<G> {
    match r {
        Ok(g) => Some(g),
        Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// The sessions of one backend on one token.
pub(crate) struct Pool {
    ctx: Pkcs11,
    slot: Slot,
    pin: Option<SecretString>,
    max: usize,
    /// Where calls run (`Config::dispatch`).
    dispatch: Dispatch,
    timings: Timings,
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
    closed: CloseGuard,
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

impl Pool {
    /// A pool on `slot`; `pin` is `None` for tokens that need no login.
    pub(crate) fn new(
        ctx: Pkcs11,
        slot: Slot,
        pin: Option<SecretString>,
        max: usize,
        token_lock: Arc<RwLock<()>>,
        dispatch: Dispatch,
    ) -> Self {
        Self {
            ctx,
            slot,
            pin,
            max,
            dispatch,
            timings: Timings::new(),
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(max)),
            token_lock,
            login: Mutex::new(None),
            recheck_login: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            closed: CloseGuard::new(),
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

    /// Runs `f` with a logged-in session, beside other calls on the token; `call` says what it
    /// does, for the dispatch. Once the pool is closed: `Unavailable`, naming `op`.
    pub(crate) async fn run<T, F>(self: &Arc<Self>, op: Operation, call: Call, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Session) -> Result<T> + Send + 'static,
    {
        self.spawn(op, call, false, f).await
    }

    /// Runs `f` (which creates or destroys objects) with the token to itself within this
    /// process, off the async threads unless the dispatch is [`Dispatch::Inline`].
    pub(crate) async fn run_exclusive<T, F>(self: &Arc<Self>, op: Operation, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Session) -> Result<T> + Send + 'static,
    {
        self.spawn(op, Call::OffThread, true, f).await
    }

    /// Whether a `call` runs on the calling thread.
    fn inline(&self, call: Call) -> bool {
        match self.dispatch {
            Dispatch::Inline => true,
            Dispatch::OffThread => false,
            Dispatch::Adaptive => self.timings.inline(call),
        }
    }

    /// For `health()`: the dispatch, then each class of call that ran, where it runs now and
    /// its typical duration (a running median), e.g.
    /// `adaptive; ec-p256 inline (57 µs), rsa-2048 off-thread (612 µs), read inline (9 µs)`.
    pub(crate) fn dispatch_summary(&self) -> String {
        let mode = match self.dispatch {
            Dispatch::Adaptive => "adaptive",
            Dispatch::OffThread => "off-thread",
            Dispatch::Inline => "inline",
        };
        let classes = KeyAlgorithm::ALL
            .iter()
            .map(|a| (Call::Key(*a), a.as_str()))
            .chain([(Call::Read, "read"), (Call::Random, "random")]);
        let mut parts = Vec::new();
        for (call, label) in classes {
            if let Some(t) = self.timings.estimate(call) {
                let place = if self.inline(call) {
                    "inline"
                } else {
                    "off-thread"
                };
                parts.push(format!("{label} {place} ({} µs)", t.as_micros()));
            }
        }
        if parts.is_empty() {
            mode.to_owned()
        } else {
            format!("{mode}; {}", parts.join(", "))
        }
    }

    async fn spawn<T, F>(
        self: &Arc<Self>,
        op: Operation,
        call: Call,
        exclusive: bool,
        f: F,
    ) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Session) -> Result<T> + Send + 'static,
    {
        self.closed.check(BACKEND, op)?;
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| CloseGuard::error(BACKEND, op))?;
        if (exclusive && self.dispatch == Dispatch::Inline) || (!exclusive && self.inline(call)) {
            // Only when the token is free now: waiting for the token lock here would block the
            // worker thread behind another call's key generation.
            if exclusive {
                if let Some(_token) = try_lock(self.token_lock.try_write()) {
                    let _permit = permit;
                    return self.timed(call, f);
                }
            } else if let Some(_token) = try_lock(self.token_lock.try_read()) {
                let _permit = permit;
                return self.timed(call, f);
            }
        }
        let pool = Arc::clone(self);
        Self::off_thread(move || {
            let _permit = permit;
            pool.locked(call, exclusive, f)
        })
        .await
    }

    /// Runs `work` off the async threads: in place on a multi-threaded runtime, on the blocking
    /// pool elsewhere (`block_in_place` panics on a current-thread runtime).
    async fn off_thread<T, W>(work: W) -> Result<T>
    where
        T: Send + 'static,
        W: FnOnce() -> Result<T> + Send + 'static,
    {
        if Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread) {
            return tokio::task::block_in_place(work);
        }
        tokio::task::spawn_blocking(work).await.map_err(|e| {
            Error::new(ErrorKind::Unexpected, format!("PKCS#11 worker failed: {e}"))
                .with_backend(BACKEND)
        })?
    }

    /// Waits for the token lock (shared, or to itself when `exclusive`), then runs `f`.
    fn locked<T>(
        &self,
        call: Call,
        exclusive: bool,
        f: impl FnOnce(&Session) -> Result<T>,
    ) -> Result<T> {
        if exclusive {
            let _token = self
                .token_lock
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            self.timed(call, f)
        } else {
            let _token = self
                .token_lock
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            self.timed(call, f)
        }
    }

    /// [`Pool::run_blocking`], timed for the dispatch (the wait for the token lock is not
    /// part of a call's time).
    fn timed<T>(&self, call: Call, f: impl FnOnce(&Session) -> Result<T>) -> Result<T> {
        let start = Instant::now();
        let result = self.run_blocking(f);
        self.timings.record(call, start.elapsed());
        result
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
            SessionFate::Fine if !self.closed.is_closed() => {
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
        if !self.closed.close() {
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
    /// `Ok` while the pool is open; [`CloseGuard::error`] once closed.
    pub(crate) fn check_open(&self, op: Operation) -> Result<()> {
        self.closed.check(BACKEND, op)
    }

    pub(crate) fn close_now(&self) {
        self.closed.close();
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test assertions")]

    use super::*;

    #[test]
    fn every_class_has_its_own_slot_and_off_thread_none() {
        let mut slots: Vec<usize> = KeyAlgorithm::ALL
            .iter()
            .map(|a| Call::Key(*a).slot().unwrap())
            .chain([Call::Read.slot().unwrap(), Call::Random.slot().unwrap()])
            .collect();
        slots.sort_unstable();
        slots.dedup();
        assert_eq!(slots.len(), Call::SLOTS);
        assert!(slots.iter().all(|s| *s < Call::SLOTS));
        assert_eq!(Call::OffThread.slot(), None);
    }

    #[test]
    fn timings_track_the_median_and_ignore_outliers() {
        let t = Timings::new();
        let p256 = Call::Key(KeyAlgorithm::EcP256);
        assert_eq!(t.estimate(p256), None);
        assert!(!t.inline(p256), "off-thread before the first call");
        t.record(p256, Duration::from_micros(64));
        assert_eq!(t.estimate(p256), Some(Duration::from_micros(64)));
        assert!(t.inline(p256));
        // Outliers (preempted calls) move the estimate no more than ordinary slower calls: one
        // in three calls taking 50 times as long leaves a 64 µs class inline.
        for i in 0..300 {
            let took = if i % 3 == 0 { 3200 } else { 60 };
            t.record(p256, Duration::from_micros(took));
            assert!(t.inline(p256), "call {i}");
        }
        // Between the limit and twice the limit a class stays where it is.
        for _ in 0..40 {
            t.record(p256, Duration::from_micros(150));
            assert!(t.inline(p256));
        }
        assert!(t.estimate(p256).unwrap() > INLINE_BELOW);
        // A class that got slow for good goes off-thread within ten calls...
        let mut calls = 0;
        while t.inline(p256) {
            t.record(p256, Duration::from_millis(2));
            calls += 1;
        }
        assert!((1..=10).contains(&calls), "{calls} calls");
        // ...keeps rising towards its real duration...
        for _ in 0..60 {
            t.record(p256, Duration::from_millis(2));
        }
        let slow = t.estimate(p256).unwrap();
        assert!(slow > Duration::from_micros(1700), "{slow:?}");
        assert!(slow < Duration::from_micros(2300), "{slow:?}");
        // ...comes back only once under the limit, not at twice it...
        let mut calls = 0;
        while !t.inline(p256) {
            t.record(p256, Duration::from_micros(40));
            calls += 1;
        }
        assert!(t.estimate(p256).unwrap() < INLINE_BELOW);
        assert!((15..=30).contains(&calls), "{calls} calls");
        // ...and a class that starts between the two stays off-thread.
        let p384 = Call::Key(KeyAlgorithm::EcP384);
        for _ in 0..40 {
            t.record(p384, Duration::from_micros(150));
            assert!(!t.inline(p384));
        }
        // Classes do not mix; OffThread is never recorded.
        assert_eq!(t.estimate(Call::Key(KeyAlgorithm::Rsa2048)), None);
        t.record(Call::OffThread, Duration::from_micros(1));
        assert_eq!(t.estimate(Call::OffThread), None);
        // A zero-length call still counts as a call.
        t.record(Call::Random, Duration::ZERO);
        assert!(t.estimate(Call::Random).is_some());
    }
}
