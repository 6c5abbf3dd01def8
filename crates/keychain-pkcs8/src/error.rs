//! What the software backend's failures become: the storage and crypto errors it passes on
//! mapped to the [`ErrorKind`] the contract names, and the errors it makes itself. Messages name
//! keys, versions and files, never a password or key byte.

use keychain_core::{BackendConfig, Error, ErrorKind, KeyName, KeyUsage, KeyVersion, Operation};

use crate::config::Config;
use crate::meta::STORE_RECORD;

/// The backend's type in errors and capabilities: its configuration's `type`.
pub(crate) const BACKEND: &str = <Config as BackendConfig>::TYPE;

/// Adds what every error of an operation carries: the backend, the operation, the key.
#[inline]
pub(crate) fn in_op(e: Error, op: Operation, key: Option<&KeyName>) -> Error {
    let e = e.with_backend(BACKEND).with_operation(op);
    match key {
        Some(k) => e.with_key(k),
        None => e,
    }
}

/// `NotFound` for a key that does not exist.
pub(crate) fn not_found(name: &KeyName) -> Error {
    Error::not_found(format!("no key named '{name}'"))
}

/// `AlreadyExists` for a name taken by a key.
pub(crate) fn already_exists(name: &KeyName) -> Error {
    Error::new(
        ErrorKind::AlreadyExists,
        format!("a key named '{name}' already exists"),
    )
}

/// `Unauthenticated`: the password is not the store's.
pub(crate) fn wrong_password() -> Error {
    Error::new(
        ErrorKind::Unauthenticated,
        "wrong password: this key store was created with another password",
    )
}

/// `InvalidInput` for a key used for something it was not created for.
pub(crate) fn missing_usage(name: &KeyName, usage: KeyUsage) -> Error {
    Error::invalid_input(format!("key '{name}' does not have the {usage:?} usage"))
}

/// `Integrity`: a key's metadata does not parse or validate.
pub(crate) fn damaged_meta(name: &KeyName, why: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Integrity,
        format!("the metadata of key '{name}' is damaged: {why}"),
    )
}

/// `Integrity`: `store.json` does not parse.
pub(crate) fn damaged_store_record(why: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Integrity,
        format!(
            "the store record {STORE_RECORD} is damaged ({why}); remove it, and the next key \
             opened with the password records a new one"
        ),
    )
}

/// `Integrity`: `store.json` is of a format this version does not know.
pub(crate) fn unknown_store_format(format: u32) -> Error {
    Error::new(
        ErrorKind::Integrity,
        format!("the store record {STORE_RECORD} has the unknown format {format}"),
    )
}

/// A failed check of the password against `store.json`'s verifier: parameters over the limits
/// in the store's own record are damage (`Integrity`), not the caller's input.
pub(crate) fn verifier_failure(e: Error) -> Error {
    match e.kind() {
        ErrorKind::InvalidInput => Error::new(
            ErrorKind::Integrity,
            format!(
                "the store record {STORE_RECORD} is unusable: {}",
                e.message()
            ),
        ),
        _ => e,
    }
}

/// What the error of a stored key file that did not decrypt says on its own.
pub(crate) enum KeyFileFailure {
    /// The answer: `Integrity`.
    Final(Error),
    /// `Unauthenticated` as the crypto layer said it: only the store's verifier can tell a wrong
    /// password from a file that is damaged or was written under another password.
    AskVerifier(Error),
}

/// Sorts the error of a key file that did not decrypt (see [`KeyFileFailure`]).
pub(crate) fn key_file_failure(name: &KeyName, version: KeyVersion, e: Error) -> KeyFileFailure {
    match e.kind() {
        ErrorKind::Unauthenticated => KeyFileFailure::AskVerifier(e),
        ErrorKind::Integrity => KeyFileFailure::Final(e),
        // A stored file asking for too much work, or naming a scheme nobody writes, was damaged
        // or planted: it is the store's integrity that failed, not the caller's input.
        _ => KeyFileFailure::Final(Error::new(
            ErrorKind::Integrity,
            format!(
                "version {version} of key '{name}' is an unusable key file: {}",
                e.message()
            ),
        )),
    }
}

/// `Integrity`: a key file that does not open although the password is the store's.
pub(crate) fn key_file_damaged(name: &KeyName, version: KeyVersion) -> Error {
    Error::new(
        ErrorKind::Integrity,
        format!(
            "version {version} of key '{name}' does not decrypt although the password is the \
             store's: its key file is damaged or was written under another password"
        ),
    )
}

/// `Integrity`: a key file that decrypted but holds no usable key. The file decrypted, so
/// whatever is wrong with its content is damage, not input.
pub(crate) fn damaged_key(name: &KeyName, version: KeyVersion, e: &Error) -> Error {
    Error::new(
        ErrorKind::Integrity,
        format!(
            "version {version} of key '{name}' holds a damaged key: {}",
            e.message()
        ),
    )
}

/// `Integrity`: the metadata lists a version whose key file is gone.
pub(crate) fn missing_key_file(file: &str, version: KeyVersion) -> Error {
    Error::new(
        ErrorKind::Integrity,
        format!("key file {file} of version {version} is missing"),
    )
}

/// `Unexpected`: a record did not encode.
pub(crate) fn encoding(e: &serde_json::Error) -> Error {
    Error::new(ErrorKind::Unexpected, format!("metadata encoding: {e}"))
}

/// `Unexpected`: a task off the async threads panicked or was cancelled.
pub(crate) fn task_failed(what: &str, e: &tokio::task::JoinError) -> Error {
    Error::new(ErrorKind::Unexpected, format!("{what} task failed: {e}"))
}
