//! Mapping cryptoki errors to keychain's [`ErrorKind`]s, keeping the `CK_RV` and the function;
//! what a `CK_RV` means for a decryption, a cached handle or a session; the context every error
//! of an operation carries.

use cryptoki::context::Function;
use cryptoki::error::{Error as CkError, Rv, RvError};
use keychain_core::{BackendConfig, Error, ErrorKind, KeyName, Operation, ProviderCode};

use crate::config::Config;

/// The backend's name in errors and capabilities: its configuration's `type`.
pub(crate) const BACKEND: &str = <Config as BackendConfig>::TYPE;

/// Adds what every error of an operation carries: the backend, the operation, the key.
pub(crate) fn in_op(op: Operation, key: Option<&KeyName>) -> impl Fn(Error) -> Error + '_ {
    move |e| {
        let e = e.with_backend(BACKEND).with_operation(op);
        match key {
            Some(k) => e.with_key(k),
            None => e,
        }
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

/// Decryption failures the token reports for a ciphertext that is wrong (tampered, wrong key):
/// `Integrity`, as the contract says. `gcm`: SoftHSM 2.6 reports a GCM tag mismatch as
/// `CKR_GENERAL_ERROR`; after a GCM decryption nothing else can have gone wrong that way.
pub(crate) fn decrypt_failure(e: Error, gcm: bool) -> Error {
    match rv_in(&e) {
        Some(
            RvError::EncryptedDataInvalid
            | RvError::EncryptedDataLenRange
            | RvError::DataInvalid
            | RvError::DataLenRange
            | RvError::FunctionFailed,
        ) => integrity(e),
        Some(RvError::GeneralError) if gcm => integrity(e),
        _ => e,
    }
}

fn integrity(e: Error) -> Error {
    Error::new(
        ErrorKind::Integrity,
        format!("the ciphertext does not decrypt: {}", e.message()),
    )
    .with_code(
        e.provider_code()
            .cloned()
            .unwrap_or(ProviderCode::Pkcs11(0)),
    )
    .with_source(e)
}

/// `CKR_KEY_NOT_WRAPPABLE` as `Unsupported` (SoftHSM 2.6, for one, cannot wrap EdDSA keys),
/// saying what the token could not do (`export`, `wrap`); other errors as they are.
pub(crate) fn not_wrappable(e: Error, what: &str) -> Error {
    match rv_in(&e) {
        Some(RvError::KeyNotWrappable) => Error::unsupported(format!(
            "this token cannot {what} keys of this type (CKR_KEY_NOT_WRAPPABLE)"
        ))
        .with_source(e),
        _ => e,
    }
}

/// Whether an error says a cached object handle no longer exists.
pub(crate) fn stale_handle(e: &Error) -> bool {
    matches!(
        rv_in(e),
        Some(RvError::KeyHandleInvalid | RvError::ObjectHandleInvalid)
    )
}

/// The numeric `CK_RV` and its `CKR_` name.
// `CK_RV` is a C `unsigned long`: `u64` here, `u32` on some targets, hence `u64::from`.
#[allow(
    clippy::useless_conversion,
    reason = "CK_RV is not u64 on every target"
)]
pub(crate) fn rv_code(e: RvError) -> (u64, &'static str) {
    match e {
        RvError::Cancel => (1, "CKR_CANCEL"),
        RvError::HostMemory => (2, "CKR_HOST_MEMORY"),
        RvError::SlotIdInvalid => (3, "CKR_SLOT_ID_INVALID"),
        RvError::GeneralError => (5, "CKR_GENERAL_ERROR"),
        RvError::FunctionFailed => (6, "CKR_FUNCTION_FAILED"),
        RvError::ArgumentsBad => (7, "CKR_ARGUMENTS_BAD"),
        RvError::NoEvent => (8, "CKR_NO_EVENT"),
        RvError::NeedToCreateThreads => (9, "CKR_NEED_TO_CREATE_THREADS"),
        RvError::CantLock => (10, "CKR_CANT_LOCK"),
        RvError::AttributeReadOnly => (16, "CKR_ATTRIBUTE_READ_ONLY"),
        RvError::AttributeSensitive => (17, "CKR_ATTRIBUTE_SENSITIVE"),
        RvError::AttributeTypeInvalid => (18, "CKR_ATTRIBUTE_TYPE_INVALID"),
        RvError::AttributeValueInvalid => (19, "CKR_ATTRIBUTE_VALUE_INVALID"),
        RvError::ActionProhibited => (27, "CKR_ACTION_PROHIBITED"),
        RvError::DataInvalid => (32, "CKR_DATA_INVALID"),
        RvError::DataLenRange => (33, "CKR_DATA_LEN_RANGE"),
        RvError::DeviceError => (48, "CKR_DEVICE_ERROR"),
        RvError::DeviceMemory => (49, "CKR_DEVICE_MEMORY"),
        RvError::DeviceRemoved => (50, "CKR_DEVICE_REMOVED"),
        RvError::EncryptedDataInvalid => (64, "CKR_ENCRYPTED_DATA_INVALID"),
        RvError::EncryptedDataLenRange => (65, "CKR_ENCRYPTED_DATA_LEN_RANGE"),
        RvError::FunctionCanceled => (80, "CKR_FUNCTION_CANCELED"),
        RvError::FunctionNotParallel => (81, "CKR_FUNCTION_NOT_PARALLEL"),
        RvError::FunctionNotSupported => (84, "CKR_FUNCTION_NOT_SUPPORTED"),
        RvError::CurveNotSupported => (320, "CKR_CURVE_NOT_SUPPORTED"),
        RvError::KeyHandleInvalid => (96, "CKR_KEY_HANDLE_INVALID"),
        RvError::KeySizeRange => (98, "CKR_KEY_SIZE_RANGE"),
        RvError::KeyTypeInconsistent => (99, "CKR_KEY_TYPE_INCONSISTENT"),
        RvError::KeyNotNeeded => (100, "CKR_KEY_NOT_NEEDED"),
        RvError::KeyChanged => (101, "CKR_KEY_CHANGED"),
        RvError::KeyNeeded => (102, "CKR_KEY_NEEDED"),
        RvError::KeyIndigestible => (103, "CKR_KEY_INDIGESTIBLE"),
        RvError::KeyFunctionNotPermitted => (104, "CKR_KEY_FUNCTION_NOT_PERMITTED"),
        RvError::KeyNotWrappable => (105, "CKR_KEY_NOT_WRAPPABLE"),
        RvError::KeyUnextractable => (106, "CKR_KEY_UNEXTRACTABLE"),
        RvError::MechanismInvalid => (112, "CKR_MECHANISM_INVALID"),
        RvError::MechanismParamInvalid => (113, "CKR_MECHANISM_PARAM_INVALID"),
        RvError::ObjectHandleInvalid => (130, "CKR_OBJECT_HANDLE_INVALID"),
        RvError::OperationActive => (144, "CKR_OPERATION_ACTIVE"),
        RvError::OperationNotInitialized => (145, "CKR_OPERATION_NOT_INITIALIZED"),
        RvError::PinIncorrect => (160, "CKR_PIN_INCORRECT"),
        RvError::PinInvalid => (161, "CKR_PIN_INVALID"),
        RvError::PinLenRange => (162, "CKR_PIN_LEN_RANGE"),
        RvError::PinExpired => (163, "CKR_PIN_EXPIRED"),
        RvError::PinLocked => (164, "CKR_PIN_LOCKED"),
        RvError::SessionClosed => (176, "CKR_SESSION_CLOSED"),
        RvError::SessionCount => (177, "CKR_SESSION_COUNT"),
        RvError::SessionHandleInvalid => (179, "CKR_SESSION_HANDLE_INVALID"),
        RvError::SessionParallelNotSupported => (180, "CKR_SESSION_PARALLEL_NOT_SUPPORTED"),
        RvError::SessionReadOnly => (181, "CKR_SESSION_READ_ONLY"),
        RvError::SessionExists => (182, "CKR_SESSION_EXISTS"),
        RvError::SessionReadOnlyExists => (183, "CKR_SESSION_READ_ONLY_EXISTS"),
        RvError::SessionReadWriteSoExists => (184, "CKR_SESSION_READ_WRITE_SO_EXISTS"),
        RvError::SignatureInvalid => (192, "CKR_SIGNATURE_INVALID"),
        RvError::SignatureLenRange => (193, "CKR_SIGNATURE_LEN_RANGE"),
        RvError::TemplateIncomplete => (208, "CKR_TEMPLATE_INCOMPLETE"),
        RvError::TemplateInconsistent => (209, "CKR_TEMPLATE_INCONSISTENT"),
        RvError::TokenNotPresent => (224, "CKR_TOKEN_NOT_PRESENT"),
        RvError::TokenNotRecognized => (225, "CKR_TOKEN_NOT_RECOGNIZED"),
        RvError::TokenWriteProtected => (226, "CKR_TOKEN_WRITE_PROTECTED"),
        RvError::UnwrappingKeyHandleInvalid => (240, "CKR_UNWRAPPING_KEY_HANDLE_INVALID"),
        RvError::UnwrappingKeySizeRange => (241, "CKR_UNWRAPPING_KEY_SIZE_RANGE"),
        RvError::UserAlreadyLoggedIn => (256, "CKR_USER_ALREADY_LOGGED_IN"),
        RvError::UserNotLoggedIn => (257, "CKR_USER_NOT_LOGGED_IN"),
        RvError::UserPinNotInitialized => (258, "CKR_USER_PIN_NOT_INITIALIZED"),
        RvError::UserTypeInvalid => (259, "CKR_USER_TYPE_INVALID"),
        RvError::UserAnotherAlreadyLoggedIn => (260, "CKR_USER_ANOTHER_ALREADY_LOGGED_IN"),
        RvError::UserTooManyTypes => (261, "CKR_USER_TOO_MANY_TYPES"),
        RvError::WrappedKeyInvalid => (272, "CKR_WRAPPED_KEY_INVALID"),
        RvError::WrappedKeyLenRange => (274, "CKR_WRAPPED_KEY_LEN_RANGE"),
        RvError::WrappingKeyHandleInvalid => (275, "CKR_WRAPPING_KEY_HANDLE_INVALID"),
        RvError::WrappingKeySizeRange => (276, "CKR_WRAPPING_KEY_SIZE_RANGE"),
        RvError::WrappingKeyTypeInconsistent => (277, "CKR_WRAPPING_KEY_TYPE_INCONSISTENT"),
        RvError::RandomSeedNotSupported => (288, "CKR_RANDOM_SEED_NOT_SUPPORTED"),
        RvError::RandomNoRng => (289, "CKR_RANDOM_NO_RNG"),
        RvError::DomainParamsInvalid => (304, "CKR_DOMAIN_PARAMS_INVALID"),
        RvError::BufferTooSmall => (336, "CKR_BUFFER_TOO_SMALL"),
        RvError::SavedStateInvalid => (352, "CKR_SAVED_STATE_INVALID"),
        RvError::InformationSensitive => (368, "CKR_INFORMATION_SENSITIVE"),
        RvError::StateUnsaveable => (384, "CKR_STATE_UNSAVEABLE"),
        RvError::CryptokiNotInitialized => (400, "CKR_CRYPTOKI_NOT_INITIALIZED"),
        RvError::CryptokiAlreadyInitialized => (401, "CKR_CRYPTOKI_ALREADY_INITIALIZED"),
        RvError::MutexBad => (416, "CKR_MUTEX_BAD"),
        RvError::MutexNotLocked => (417, "CKR_MUTEX_NOT_LOCKED"),
        RvError::NewPinMode => (432, "CKR_NEW_PIN_MODE"),
        RvError::NextOtp => (433, "CKR_NEXT_OTP"),
        RvError::ExceededMaxIterations => (437, "CKR_EXCEEDED_MAX_ITERATIONS"),
        RvError::FipsSelfTestFailed => (438, "CKR_FIPS_SELF_TEST_FAILED"),
        RvError::LibraryLoadFailed => (439, "CKR_LIBRARY_LOAD_FAILED"),
        RvError::PinTooWeak => (440, "CKR_PIN_TOO_WEAK"),
        RvError::PublicKeyInvalid => (441, "CKR_PUBLIC_KEY_INVALID"),
        RvError::FunctionRejected => (512, "CKR_FUNCTION_REJECTED"),
        RvError::UnwrappingKeyTypeInconsistent => (242, "CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT"),
        RvError::VendorDefined(v) => (u64::from(v), "CKR_VENDOR_DEFINED"),
        RvError::UnknownErrorCode(v) => (u64::from(v), "unknown CKR"),
    }
}

/// What a `CK_RV` means to a caller. `Session` marks errors after which the session (and, for
/// the device-wide ones, every pooled session) must not be used again.
pub(crate) fn kind_of(e: RvError) -> ErrorKind {
    use RvError as R;
    match e {
        R::PinIncorrect
        | R::PinInvalid
        | R::PinLenRange
        | R::PinExpired
        | R::UserPinNotInitialized => ErrorKind::Unauthenticated,
        R::PinLocked => ErrorKind::Locked,
        R::SessionHandleInvalid
        | R::SessionClosed
        | R::DeviceRemoved
        | R::TokenNotPresent
        | R::TokenNotRecognized
        | R::DeviceError
        | R::UserNotLoggedIn
        | R::SessionCount
        | R::CryptokiNotInitialized
        | R::FunctionCanceled
        | R::CantLock => ErrorKind::Unavailable,
        R::DeviceMemory | R::HostMemory => ErrorKind::CapacityExceeded,
        R::KeyHandleInvalid | R::ObjectHandleInvalid | R::SlotIdInvalid => ErrorKind::NotFound,
        R::MechanismInvalid
        | R::FunctionNotSupported
        | R::CurveNotSupported
        | R::KeySizeRange
        | R::RandomNoRng => ErrorKind::Unsupported,
        R::MechanismParamInvalid
        | R::ArgumentsBad
        | R::DataLenRange
        | R::DataInvalid
        | R::TemplateIncomplete
        | R::TemplateInconsistent
        | R::AttributeValueInvalid
        | R::AttributeTypeInvalid
        | R::KeyTypeInconsistent
        | R::DomainParamsInvalid => ErrorKind::InvalidInput,
        R::KeyFunctionNotPermitted
        | R::ActionProhibited
        | R::AttributeSensitive
        | R::AttributeReadOnly
        | R::KeyUnextractable
        | R::KeyNotWrappable
        | R::TokenWriteProtected
        | R::SessionReadOnly
        | R::UserTypeInvalid
        | R::UserAnotherAlreadyLoggedIn
        | R::InformationSensitive => ErrorKind::PermissionDenied,
        R::EncryptedDataInvalid | R::EncryptedDataLenRange => ErrorKind::Integrity,
        R::SignatureInvalid | R::SignatureLenRange => ErrorKind::InvalidSignature,
        _ => ErrorKind::Unexpected,
    }
}

/// What `e` says about the session that returned it and its idle siblings.
pub(crate) fn session_fate(e: RvError) -> SessionFate {
    use RvError as R;
    match e {
        R::UserNotLoggedIn => SessionFate::LoginLost,
        // A single session does not vanish in a healthy system: its siblings are suspect too.
        R::SessionHandleInvalid
        | R::SessionClosed
        | R::DeviceRemoved
        | R::TokenNotPresent
        | R::TokenNotRecognized
        | R::DeviceError
        | R::CryptokiNotInitialized => SessionFate::AllDead,
        _ => SessionFate::Fine,
    }
}

/// What an error says about the session it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionFate {
    /// The session works.
    Fine,
    /// The session works, but the application is no longer logged in to the token.
    LoginLost,
    /// Every session of this token is probably gone.
    AllDead,
}

/// `C_Sign` for `Function::Sign`.
pub(crate) fn c_name(f: Function) -> String {
    format!("C_{f:?}")
}

/// The cryptoki error as a keychain [`Error`]: kind by `CK_RV`, message naming the function and
/// the `CKR_` name, the raw code in [`ProviderCode::Pkcs11`], the cryptoki error as source.
/// PINs never reach cryptoki's errors, so nothing secret is carried.
pub(crate) fn map(e: CkError) -> Error {
    let err = match &e {
        CkError::Pkcs11(rv, f) => {
            let (code, name) = rv_code(*rv);
            Error::new(kind_of(*rv), format!("{} failed: {name}", c_name(*f)))
                .with_code(ProviderCode::Pkcs11(code))
        }
        CkError::LibraryLoading(le) => Error::new(
            ErrorKind::InvalidInput,
            format!("cannot load the PKCS#11 module: {le}"),
        ),
        CkError::NotSupported | CkError::NullFunctionPointer | CkError::MissingSymbol(_) => {
            Error::new(ErrorKind::Unsupported, format!("the PKCS#11 module: {e}"))
        }
        other => Error::new(ErrorKind::Unexpected, format!("cryptoki: {other}")),
    };
    err.with_backend(BACKEND).with_source(e)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test assertions")]

    use super::*;

    #[test]
    fn codes_and_kinds() {
        assert_eq!(rv_code(RvError::PinIncorrect), (0xa0, "CKR_PIN_INCORRECT"));
        assert_eq!(rv_code(RvError::PinLocked), (0xa4, "CKR_PIN_LOCKED"));
        assert_eq!(
            rv_code(RvError::SessionHandleInvalid),
            (0xb3, "CKR_SESSION_HANDLE_INVALID")
        );
        let e = map(CkError::Pkcs11(RvError::PinIncorrect, Function::Login));
        assert_eq!(e.kind(), ErrorKind::Unauthenticated);
        assert!(!e.retryable());
        assert_eq!(e.provider_code(), Some(&ProviderCode::Pkcs11(0xa0)));
        assert!(e.message().contains("C_Login"), "{e}");
        assert!(e.message().contains("CKR_PIN_INCORRECT"), "{e}");
        let e = map(CkError::Pkcs11(RvError::SessionClosed, Function::Sign));
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.retryable());
        assert_eq!(
            map(CkError::Pkcs11(RvError::PinLocked, Function::Login)).kind(),
            ErrorKind::Locked
        );
        assert_eq!(session_fate(RvError::DeviceRemoved), SessionFate::AllDead);
        assert_eq!(session_fate(RvError::SessionClosed), SessionFate::AllDead);
        assert_eq!(
            session_fate(RvError::UserNotLoggedIn),
            SessionFate::LoginLost
        );
        assert_eq!(session_fate(RvError::DataLenRange), SessionFate::Fine);
    }
}
