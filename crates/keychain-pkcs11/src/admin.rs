//! Token administration as the Security Officer.

use std::sync::{Arc, Mutex, PoisonError, RwLock};

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use keychain_core::{Error, ErrorKind, Operation, Result, SecretString};

use crate::config::Config;
use crate::error::{BACKEND, map};
use crate::module::{Lease, canonical, token_lock};
use crate::token::find_slot;

/// The token's Security Officer (SO): what PKCS#11 lets only the SO do — give the token a new
/// user PIN (`C_InitPIN`, also the way out of a user PIN locked by wrong tries) and change the SO
/// PIN (`C_SetPIN`). Opened from the same [`Config`] as a backend, with
/// [`Config::so_pin`] set; [`crate::Pkcs11Backend`] never logs in as SO.
///
/// Each call opens a session, logs in as SO, does its one thing, logs out and closes the
/// session, with the token to itself within this process. PKCS#11 keeps one login per
/// application and token, so a call fails with `PermissionDenied`
/// (`CKR_USER_ANOTHER_ALREADY_LOGGED_IN`) while a backend of this process is logged in to the
/// token as the user: close those first.
///
/// ```no_run
/// # async fn admin() -> keychain_core::Result<()> {
/// use keychain_core::{SecretSource, SecretString};
/// use keychain_pkcs11::{Config, TokenAdmin};
///
/// let mut config = Config::new("/usr/lib/softhsm/libsofthsm2.so", "prod", SecretSource::env("HSM_PIN"));
/// config.so_pin = Some(SecretSource::env("HSM_SO_PIN"));
/// let admin = TokenAdmin::open(&config).await?;
/// admin.init_user_pin(&SecretString::from("new user PIN")).await?;
/// admin.close();
/// # Ok(())
/// # }
/// ```
pub struct TokenAdmin {
    inner: Arc<Inner>,
}

struct Inner {
    ctx: Pkcs11,
    slot: Slot,
    token_label: String,
    so_pin: Mutex<SecretString>,
    token_lock: Arc<RwLock<()>>,
    lease: Mutex<Option<Lease>>,
}

impl std::fmt::Debug for TokenAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAdmin")
            .field("token", &self.inner.token_label)
            .field("slot", &self.inner.slot.id())
            .field("so_pin", &"[redacted]")
            .finish()
    }
}

fn in_op(op: Operation) -> impl Fn(Error) -> Error {
    move |e| e.with_backend(BACKEND).with_operation(op)
}

impl TokenAdmin {
    /// Loads the module (or joins the shared one), finds the token and checks the SO PIN by
    /// logging in and out once.
    ///
    /// # Errors
    /// `InvalidInput` without [`Config::so_pin`] or for an invalid configuration; `NotFound` for
    /// a missing module or token; `Unauthenticated` for a wrong SO PIN (one try of the token's
    /// SO retry counter used); `Locked` for a locked SO PIN; `PermissionDenied` while the user
    /// is logged in to the token in this process.
    pub async fn open(config: &Config) -> Result<Self> {
        let fail = in_op(Operation::Open);
        config.validate().map_err(&fail)?;
        let source = config.so_pin.as_ref().ok_or_else(|| {
            fail(Error::invalid_input(
                "so-pin is not set: TokenAdmin logs in as the Security Officer",
            ))
        })?;
        let what = match (&config.token, config.slot_id) {
            (Some(label), _) => format!("SO PIN for PKCS#11 token {label:?}"),
            (None, id) => format!(
                "SO PIN for the PKCS#11 token in slot {}",
                id.unwrap_or_default()
            ),
        };
        let so_pin = source.resolve(&what).map_err(&fail)?;
        let module = config.module_path.clone().unwrap_or_default();
        let (shared, token, slot_id) =
            (config.shared_context, config.token.clone(), config.slot_id);
        let admin = tokio::task::spawn_blocking(move || {
            let module = canonical(&module)?;
            let lease = Lease::acquire(&module, shared)?;
            let ctx = lease.ctx().clone();
            let probe = Config {
                token,
                slot_id,
                ..Config::default()
            };
            let (slot, token_label) = find_slot(&ctx, &probe)?;
            let inner = Inner {
                ctx,
                slot,
                token_label,
                so_pin: Mutex::new(so_pin),
                token_lock: token_lock(&module, slot.id()),
                lease: Mutex::new(Some(lease)),
            };
            inner.as_so(|_| Ok(()))?;
            Ok(Self {
                inner: Arc::new(inner),
            })
        })
        .await
        .map_err(|e| Error::new(ErrorKind::Unexpected, format!("open failed: {e}")))
        .map_err(&fail)?
        .map_err(&fail)?;
        Ok(admin)
    }

    /// The label of the token.
    pub fn token_label(&self) -> &str {
        &self.inner.token_label
    }

    /// Sets the user PIN to `new_pin` (`C_InitPIN`): a token's first user PIN, or a fresh one
    /// after the user's was lost or locked. Keys and certificates stay.
    ///
    /// # Errors
    /// As [`TokenAdmin::open`]'s login; `InvalidInput` for a PIN the token refuses (length,
    /// characters).
    pub async fn init_user_pin(&self, new_pin: &SecretString) -> Result<()> {
        let pin = AuthPin::from(new_pin.expose().to_owned());
        self.blocking(move |admin| admin.as_so(|s| s.init_pin(&pin).map_err(map)))
            .await
            .map_err(in_op(Operation::Admin))
    }

    /// Changes the SO PIN to `new_pin` (`C_SetPIN` as SO); later calls of this handle use it.
    ///
    /// # Errors
    /// As [`TokenAdmin::init_user_pin`].
    pub async fn change_so_pin(&self, new_pin: &SecretString) -> Result<()> {
        let new_pin = new_pin.duplicate();
        self.blocking(move |admin| {
            let new_auth = AuthPin::from(new_pin.expose().to_owned());
            admin.as_so(|s| {
                let old = AuthPin::from(admin.pin().expose().to_owned());
                s.set_pin(&old, &new_auth).map_err(map)
            })?;
            *admin.so_pin.lock().unwrap_or_else(PoisonError::into_inner) = new_pin;
            Ok(())
        })
        .await
        .map_err(in_op(Operation::Admin))
    }

    /// Gives the module back (finalizing it if nothing else in this process uses it); later
    /// calls are `Unavailable`.
    pub fn close(&self) {
        if let Some(mut lease) = self
            .inner
            .lease
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            lease.release();
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let open = inner
                .lease
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_some();
            if !open {
                return Err(
                    Error::new(ErrorKind::Unavailable, "the token admin is closed")
                        .with_retryable(false),
                );
            }
            f(&inner)
        })
        .await
        .map_err(|e| Error::new(ErrorKind::Unexpected, format!("admin task failed: {e}")))?
    }
}

impl Inner {
    fn pin(&self) -> SecretString {
        self.so_pin
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .duplicate()
    }

    /// Runs `f` in a fresh session logged in as SO, then logs out; the token is this call's
    /// alone within the process.
    fn as_so<T>(&self, f: impl FnOnce(&Session) -> Result<T>) -> Result<T> {
        let _token = self
            .token_lock
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let session = self.ctx.open_rw_session(self.slot).map_err(map)?;
        let pin = AuthPin::from(self.pin().expose().to_owned());
        match session.login(UserType::So, Some(&pin)) {
            Ok(()) => {}
            Err(CkError::Pkcs11(RvError::UserAnotherAlreadyLoggedIn, f)) => {
                return Err(map(CkError::Pkcs11(RvError::UserAnotherAlreadyLoggedIn, f))
                    .with_context(
                        "the user is logged in to this token in this process; close its \
                         backends before SO work",
                    ));
            }
            Err(e) => return Err(map(e).with_retryable(false)),
        }
        let result = f(&session);
        let _ = session.logout();
        result
    }
}

impl Drop for TokenAdmin {
    // The last handle gives the module back.
    fn drop(&mut self) {
        self.close();
    }
}
