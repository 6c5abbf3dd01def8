//! One error type for every backend: a kind to branch on, context to log, the provider's error
//! behind `source()`.

use std::borrow::Cow;
use std::fmt;

use crate::name::KeyName;

/// The result type of every keychain operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, as a caller needs to branch on it.
///
/// Backends map every provider error to one of these kinds; the provider's own error (with its raw
/// code: `CK_RV`, TPM response code, AWS error code, HTTP status) stays reachable through
/// [`Error::provider_code`] and [`std::error::Error::source`]. Match with a wildcard arm: kinds may be
/// added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The key (or key version, or object) does not exist.
    NotFound,
    /// A key with this name already exists; the existing key was left untouched.
    AlreadyExists,
    /// The backend does not offer this operation, algorithm or scheme (see [`crate::Capabilities`]).
    Unsupported,
    /// The request itself is malformed: wrong digest length, scheme that does not fit the key,
    /// invalid name, corrupt input encoding.
    InvalidInput,
    /// A signature did not verify.
    InvalidSignature,
    /// The credential (password, PIN, token) was rejected. Never retried.
    Unauthenticated,
    /// The credential is valid but not allowed to do this.
    PermissionDenied,
    /// The key, token or PIN is locked (too many wrong attempts, disabled key, pending deletion).
    Locked,
    /// The provider throttled the request. Retryable.
    RateLimited,
    /// The provider cannot be reached or is not ready (network, sealed server, device removed).
    /// Retryable.
    Unavailable,
    /// The operation did not finish in time. Retryable.
    Timeout,
    /// Stored or received data failed an integrity check: tampered ciphertext, torn or corrupt
    /// key file, MAC mismatch.
    Integrity,
    /// The provider is out of room (object slots, key quota, token storage).
    CapacityExceeded,
    /// Anything else: a provider error with no better mapping, or a bug.
    Unexpected,
}

impl ErrorKind {
    /// Whether errors of this kind are worth retrying unless a backend says otherwise.
    pub const fn default_retryable(self) -> bool {
        matches!(self, Self::RateLimited | Self::Unavailable | Self::Timeout)
    }

    /// A short lowercase name, stable for logs and metrics labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NotFound => "not found",
            Self::AlreadyExists => "already exists",
            Self::Unsupported => "unsupported",
            Self::InvalidInput => "invalid input",
            Self::InvalidSignature => "invalid signature",
            Self::Unauthenticated => "unauthenticated",
            Self::PermissionDenied => "permission denied",
            Self::Locked => "locked",
            Self::RateLimited => "rate limited",
            Self::Unavailable => "unavailable",
            Self::Timeout => "timeout",
            Self::Integrity => "integrity",
            Self::CapacityExceeded => "capacity exceeded",
            Self::Unexpected => "unexpected",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The operation an error happened in; also the label layers use for audit and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// Opening or configuring a backend.
    Open,
    /// [`crate::Backend::generate_key`].
    GenerateKey,
    /// [`crate::Backend::key_info`].
    KeyInfo,
    /// [`crate::Backend::list_keys`].
    ListKeys,
    /// [`crate::Backend::delete_key`].
    DeleteKey,
    /// [`crate::Backend::sign`].
    Sign,
    /// Verifying a signature.
    Verify,
    /// [`crate::Backend::decrypt`] (asymmetric).
    Decrypt,
    /// [`crate::Backend::encrypt`] (AEAD).
    Encrypt,
    /// [`crate::Backend::decrypt_aead`].
    DecryptAead,
    /// [`crate::Backend::rotate_key`].
    RotateKey,
    /// [`crate::Backend::import_key`].
    ImportKey,
    /// [`crate::Backend::export_wrapped`].
    ExportWrapped,
    /// [`crate::Backend::import_wrapped`].
    ImportWrapped,
    /// [`crate::Backend::random`].
    Random,
    /// [`crate::Backend::health`].
    Health,
    /// [`crate::Backend::attest_key`].
    AttestKey,
    /// [`crate::CertStore::save_chain`] (and `save_certificate`).
    SaveChain,
    /// [`crate::CertStore::chain`] (and `certificate`).
    GetChain,
    /// [`crate::CertStore::delete_chain`].
    DeleteChain,
    /// [`crate::CertStore::list_chains`].
    ListChains,
    /// [`crate::CertStore::capacity`].
    CertCapacity,
    /// Administering a token or device (PINs, as its security officer).
    Admin,
    /// [`crate::Backend::close`].
    Close,
}

impl Operation {
    /// A stable snake_case name for logs and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::GenerateKey => "generate_key",
            Self::KeyInfo => "key_info",
            Self::ListKeys => "list_keys",
            Self::DeleteKey => "delete_key",
            Self::Sign => "sign",
            Self::Verify => "verify",
            Self::Decrypt => "decrypt",
            Self::Encrypt => "encrypt",
            Self::DecryptAead => "decrypt_aead",
            Self::RotateKey => "rotate_key",
            Self::ImportKey => "import_key",
            Self::ExportWrapped => "export_wrapped",
            Self::ImportWrapped => "import_wrapped",
            Self::Random => "random",
            Self::Health => "health",
            Self::AttestKey => "attest_key",
            Self::SaveChain => "save_chain",
            Self::GetChain => "get_chain",
            Self::DeleteChain => "delete_chain",
            Self::ListChains => "list_chains",
            Self::CertCapacity => "cert_capacity",
            Self::Admin => "admin",
            Self::Close => "close",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The provider's raw error code, kept for operators and support tickets.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProviderCode {
    /// A PKCS#11 `CK_RV`.
    Pkcs11(u64),
    /// A TPM 2.0 response code.
    Tpm(u32),
    /// An HTTP status.
    Http(u16),
    /// A named code (AWS `ThrottlingException`, an OS errno name, ...).
    Named(Cow<'static, str>),
}

impl fmt::Display for ProviderCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pkcs11(rv) => write!(f, "CKR 0x{rv:08x}"),
            Self::Tpm(rc) => write!(f, "TPM_RC 0x{rc:03x}"),
            Self::Http(status) => write!(f, "HTTP {status}"),
            Self::Named(name) => f.write_str(name),
        }
    }
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A keychain error: a [`ErrorKind`], a message, and where it happened.
///
/// Messages never contain secrets (passwords, PINs, tokens, key bytes); backends must keep
/// provider messages that might echo a secret out of both the message and the source.
///
/// ```
/// use keychain_core::{Error, ErrorKind, Operation};
/// let err = Error::new(ErrorKind::RateLimited, "too many requests")
///     .with_backend("aws")
///     .with_operation(Operation::Sign);
/// assert!(err.retryable());
/// assert_eq!(err.to_string(), "aws: sign: rate limited: too many requests");
/// ```
pub struct Error {
    kind: ErrorKind,
    message: Cow<'static, str>,
    backend: Option<Cow<'static, str>>,
    operation: Option<Operation>,
    key: Option<KeyName>,
    retryable: bool,
    code: Option<ProviderCode>,
    source: Option<Source>,
}

impl Error {
    /// A new error of `kind`; `retryable` starts at [`ErrorKind::default_retryable`].
    pub fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            message: message.into(),
            backend: None,
            operation: None,
            key: None,
            retryable: kind.default_retryable(),
            code: None,
            source: None,
        }
    }

    /// Shorthand for an [`ErrorKind::Unsupported`] error naming what is unsupported.
    pub fn unsupported(what: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Unsupported, what)
    }

    /// Shorthand for an [`ErrorKind::InvalidInput`] error.
    pub fn invalid_input(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    /// Shorthand for an [`ErrorKind::NotFound`] error.
    pub fn not_found(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// Names the backend (its scheme or configured name).
    #[must_use]
    pub fn with_backend(mut self, backend: impl Into<Cow<'static, str>>) -> Self {
        self.backend = Some(backend.into());
        self
    }

    /// Names the operation. Keeps an operation already set (the innermost one is the most precise).
    #[must_use]
    pub fn with_operation(mut self, operation: Operation) -> Self {
        self.operation.get_or_insert(operation);
        self
    }

    /// Names the key. Keeps a key already set.
    #[must_use]
    pub fn with_key(mut self, key: &KeyName) -> Self {
        if self.key.is_none() {
            self.key = Some(key.clone());
        }
        self
    }

    /// Overrides whether retrying may help.
    #[must_use]
    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// Records the provider's raw error code.
    #[must_use]
    pub fn with_code(mut self, code: ProviderCode) -> Self {
        self.code = Some(code);
        self
    }

    /// Prepends `context` to the message (`"backend `hsm`: " + message`), keeping kind, flags,
    /// code and source.
    #[must_use]
    pub fn with_context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message).into();
        self
    }

    /// Attaches the provider's error as [`std::error::Error::source`].
    #[must_use]
    pub fn with_source(mut self, source: impl Into<Source>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The kind to branch on.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The human-readable message (without context).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The backend that failed, if recorded.
    pub fn backend(&self) -> Option<&str> {
        self.backend.as_deref()
    }

    /// The operation that failed, if recorded.
    pub fn operation(&self) -> Option<Operation> {
        self.operation
    }

    /// The key involved, if any.
    pub fn key(&self) -> Option<&KeyName> {
        self.key.as_ref()
    }

    /// Whether the same call may succeed if repeated. Retry logic keys off this, never off text.
    pub fn retryable(&self) -> bool {
        self.retryable
    }

    /// The provider's raw code, if the backend recorded one.
    pub fn provider_code(&self) -> Option<&ProviderCode> {
        self.code.as_ref()
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(b) = &self.backend {
            d.field("backend", b);
        }
        if let Some(op) = &self.operation {
            d.field("operation", op);
        }
        if let Some(k) = &self.key {
            d.field("key", &k.as_str());
        }
        d.field("retryable", &self.retryable);
        if let Some(c) = &self.code {
            d.field("code", c);
        }
        if let Some(s) = &self.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(b) = &self.backend {
            write!(f, "{b}: ")?;
        }
        if let Some(op) = &self.operation {
            write!(f, "{op}")?;
            if let Some(k) = &self.key {
                write!(f, " key '{k}'")?;
            }
            f.write_str(": ")?;
        } else if let Some(k) = &self.key {
            write!(f, "key '{k}': ")?;
        }
        write!(f, "{}", self.kind)?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        if let Some(c) = &self.code {
            write!(f, " ({c})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|s| s.as_ref() as &(dyn std::error::Error + 'static))
    }
}

impl From<std::io::Error> for Error {
    /// Maps I/O errors by their kind: missing file → `NotFound`, permission → `PermissionDenied`,
    /// timeouts → `Timeout`, everything else → `Unexpected`.
    fn from(e: std::io::Error) -> Self {
        use std::io::ErrorKind as Io;
        let kind = match e.kind() {
            Io::NotFound => ErrorKind::NotFound,
            Io::AlreadyExists => ErrorKind::AlreadyExists,
            Io::PermissionDenied => ErrorKind::PermissionDenied,
            Io::TimedOut => ErrorKind::Timeout,
            Io::InvalidInput | Io::InvalidData => ErrorKind::InvalidInput,
            Io::StorageFull | Io::QuotaExceeded => ErrorKind::CapacityExceeded,
            Io::ConnectionRefused | Io::ConnectionReset | Io::NotConnected => {
                ErrorKind::Unavailable
            }
            _ => ErrorKind::Unexpected,
        };
        let message = format!("I/O error: {e}");
        let mut err = Error::new(kind, message);
        if let Some(code) = e.raw_os_error() {
            err = err.with_code(ProviderCode::Named(Cow::Owned(format!("errno {code}"))));
        }
        err.with_source(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_defaults_follow_kind() {
        assert!(Error::new(ErrorKind::Timeout, "").retryable());
        assert!(!Error::new(ErrorKind::Unauthenticated, "").retryable());
        assert!(
            !Error::new(ErrorKind::Timeout, "")
                .with_retryable(false)
                .retryable()
        );
    }

    #[test]
    fn display_includes_context_and_code() {
        let key = KeyName::new("signer").unwrap();
        let e = Error::new(ErrorKind::Locked, "PIN locked")
            .with_backend("pkcs11")
            .with_operation(Operation::Sign)
            .with_key(&key)
            .with_code(ProviderCode::Pkcs11(0xa4));
        assert_eq!(
            e.to_string(),
            "pkcs11: sign key 'signer': locked: PIN locked (CKR 0x000000a4)"
        );
        assert_eq!(e.key().map(KeyName::as_str), Some("signer"));
    }

    #[test]
    fn io_errors_map_by_kind() {
        let e: Error = std::io::Error::from(std::io::ErrorKind::NotFound).into();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn innermost_operation_wins() {
        let e = Error::new(ErrorKind::Unexpected, "x")
            .with_operation(Operation::Sign)
            .with_operation(Operation::Open);
        assert_eq!(e.operation(), Some(Operation::Sign));
    }
}
