//! The store's password: proven against `store.json`'s verifier before anything is written,
//! recorded as the verifier in stores made before there was one, and asked when a key file does
//! not decrypt (wrong password, or a damaged file?).

use std::sync::atomic::Ordering;

use keychain_core::{Error, ErrorKind, KeyName, KeyVersion, Result, SecretBytes};
use keychain_crypto::pkcs8::{self as format, PasswordVerifier};

use crate::backend::{Pkcs8Backend, blocking};
use crate::error::{self, KeyFileFailure};
use crate::meta::{STORE_FORMAT, STORE_RECORD, StoreRecord, encode_json, key_file};

impl Pkcs8Backend {
    /// Proves the password before anything is written: checks it against the store's
    /// verifier, or, in a store that has none yet, makes it the verifier once it opens an
    /// existing key (or the store has no key). Afterwards it is never checked again.
    ///
    /// # Errors
    /// `Unauthenticated` for a password that is not the store's; `Integrity` for a damaged
    /// verifier.
    pub(crate) async fn ensure_password(&self) -> Result<()> {
        if self.password_verified.load(Ordering::Acquire) {
            return Ok(());
        }
        loop {
            if let Some(verifier) = self.read_verifier().await? {
                if !self.check_verifier(verifier).await? {
                    return Err(error::wrong_password());
                }
                self.password_verified.store(true, Ordering::Release);
                return Ok(());
            }
            self.prove_with_existing_key().await?;
            let record = self.new_store_record().await?;
            match self.store.create(STORE_RECORD, &record).await {
                Ok(()) => {
                    self.password_verified.store(true, Ordering::Release);
                    return Ok(());
                }
                // Another process made the verifier first: check against theirs.
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
    }

    async fn read_verifier(&self) -> Result<Option<PasswordVerifier>> {
        let Some(bytes) = self.store.get(STORE_RECORD).await? else {
            return Ok(None);
        };
        Ok(Some(StoreRecord::parse(&bytes)?.verifier))
    }

    async fn check_verifier(&self, verifier: PasswordVerifier) -> Result<bool> {
        let password = self.password.duplicate();
        let limits = self.limits;
        blocking("password check", move || {
            verifier.verify(password.expose().as_bytes(), &limits)
        })
        .await
        .map_err(error::verifier_failure)
    }

    async fn new_store_record(&self) -> Result<Vec<u8>> {
        let password = self.password.duplicate();
        let (kdf, limits) = (self.kdf, self.limits);
        let verifier = blocking("password verifier", move || {
            PasswordVerifier::new(password.expose().as_bytes(), kdf, &limits)
        })
        .await?;
        encode_json(&StoreRecord {
            format: STORE_FORMAT,
            verifier,
        })
    }

    /// In a store without a verifier (made before there was one): the password must open one
    /// of the existing keys, newest version first. A store with no key proves nothing, and any
    /// password may become its verifier.
    async fn prove_with_existing_key(&self) -> Result<()> {
        let mut tried = false;
        for name in self.key_names().await? {
            let Ok(Some(meta)) = self.read_meta(&name).await else {
                continue;
            };
            let Some(vm) = meta.versions.last() else {
                continue;
            };
            let Some(data) = self.store.get(&key_file(&name, &vm.file)).await? else {
                continue;
            };
            tried = true;
            let password = self.password.duplicate();
            let limits = self.limits;
            let opened = blocking("password check", move || {
                let der =
                    format::decrypt_with_limits(&data, password.expose().as_bytes(), &limits)?;
                format::inspect(der.expose()).map(drop)
            })
            .await;
            if opened.is_ok() {
                return Ok(());
            }
        }
        if tried {
            Err(error::wrong_password())
        } else {
            Ok(())
        }
    }

    /// Decrypts version `version` of `name` from its stored key file `data` with the store's
    /// password (the KDF off the async threads; `what` names the task).
    ///
    /// # Errors
    /// As [`Pkcs8Backend::undecryptable`] when it does not decrypt.
    pub(crate) async fn decrypt_key_file(
        &self,
        what: &'static str,
        name: &KeyName,
        version: KeyVersion,
        data: Vec<u8>,
    ) -> Result<SecretBytes> {
        let password = self.password.duplicate();
        let limits = self.limits;
        let decrypted = blocking(what, move || {
            format::decrypt_with_limits(&data, password.expose().as_bytes(), &limits)
        })
        .await;
        match decrypted {
            Ok(der) => Ok(der),
            Err(e) => Err(self.undecryptable(name, version, e).await),
        }
    }

    /// The error for a stored key file that did not decrypt: `Unauthenticated` when the
    /// password is not the store's (or the store cannot tell), `Integrity` when it is — the
    /// file is then damaged or was written under another password — and `Integrity` for a file
    /// that is no usable encrypted key at all.
    async fn undecryptable(&self, name: &KeyName, version: KeyVersion, error: Error) -> Error {
        let error = match error::key_file_failure(name, version, error) {
            KeyFileFailure::Final(e) => return e,
            KeyFileFailure::AskVerifier(e) => e,
        };
        match self.read_verifier().await {
            Ok(Some(verifier)) => match self.check_verifier(verifier).await {
                Ok(true) => {
                    self.password_verified.store(true, Ordering::Release);
                    error::key_file_damaged(name, version)
                }
                Ok(false) => error::wrong_password(),
                Err(e) => e,
            },
            Ok(None) => error,
            Err(e) => e,
        }
    }

    /// After a key file opened in a store that has no verifier yet (one made before there were
    /// verifiers), makes the password that opened it the verifier. Best effort: a read must not
    /// fail because the store is read-only.
    pub(crate) async fn adopt_password_after_unlock(&self) {
        match self.read_verifier().await {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) => {}
        }
        let created = match self.new_store_record().await {
            Ok(record) => self.store.create(STORE_RECORD, &record).await,
            Err(e) => Err(e),
        };
        match created {
            Ok(()) => {
                self.password_verified.store(true, Ordering::Release);
                tracing::info!("recorded a password verifier for a store that had none");
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => tracing::warn!(error = %e, "could not record a password verifier"),
        }
    }
}
