//! Mapping AWS SDK errors to keychain's [`ErrorKind`]s, keeping the AWS error code.

use std::borrow::Cow;

use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use keychain_core::{BackendConfig, Error, ErrorKind, ProviderCode};

/// The backend's name in errors and capabilities: its configuration `type`.
pub(crate) const BACKEND: &str = <crate::config::Config as BackendConfig>::TYPE;

/// KMS answered something this backend cannot use (a field missing, say).
pub(crate) fn unexpected(what: impl Into<Cow<'static, str>>) -> Error {
    Error::new(ErrorKind::Unexpected, what).with_backend(BACKEND)
}

/// A ciphertext failed a check made here, before or after KMS.
pub(crate) fn integrity(what: &'static str) -> Error {
    Error::new(ErrorKind::Integrity, what).with_backend(BACKEND)
}

/// What an AWS error code means to a caller. `None` for codes without a mapping.
pub(crate) fn kind_of_code(code: &str) -> Option<ErrorKind> {
    Some(match code {
        "NotFoundException" => ErrorKind::NotFound,
        "AlreadyExistsException" => ErrorKind::AlreadyExists,
        // The SDK counts LimitExceededException as throttling too (request and resource quotas).
        "ThrottlingException" | "LimitExceededException" | "TooManyRequestsException" => {
            ErrorKind::RateLimited
        }
        "KMSInternalException" | "KeyUnavailableException" | "ServiceUnavailableException" => {
            ErrorKind::Unavailable
        }
        "DependencyTimeoutException" => ErrorKind::Timeout,
        "AccessDeniedException" => ErrorKind::PermissionDenied,
        "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "InvalidSignatureException"
        | "IncompleteSignature"
        | "MissingAuthenticationToken"
        | "ExpiredTokenException"
        | "ExpiredToken" => ErrorKind::Unauthenticated,
        // Disabled, pending deletion, pending import: not usable until someone changes it.
        "KMSInvalidStateException" | "DisabledException" => ErrorKind::Locked,
        "KMSInvalidSignatureException" | "KMSInvalidMacException" => ErrorKind::InvalidSignature,
        "InvalidCiphertextException" | "IncorrectKeyException" => ErrorKind::Integrity,
        "InvalidKeyUsageException"
        | "ValidationException"
        | "InvalidAliasNameException"
        | "InvalidArnException"
        | "InvalidMarkerException"
        | "InvalidGrantTokenException"
        | "MalformedPolicyDocumentException" => ErrorKind::InvalidInput,
        "UnsupportedOperationException" => ErrorKind::Unsupported,
        _ => return None,
    })
}

/// An HTTP status without a known code.
fn kind_of_status(status: u16) -> ErrorKind {
    match status {
        429 => ErrorKind::RateLimited,
        401 => ErrorKind::Unauthenticated,
        403 => ErrorKind::PermissionDenied,
        404 => ErrorKind::NotFound,
        408 => ErrorKind::Timeout,
        500..=599 => ErrorKind::Unavailable,
        _ => ErrorKind::Unexpected,
    }
}

/// The SDK error as a keychain [`Error`]: kind by AWS error code (by HTTP status when there is
/// none, by the transport failure otherwise), message with the code and AWS's message, the code
/// in [`ProviderCode::Named`] (or the status in [`ProviderCode::Http`]), the SDK error as
/// source. AWS's messages name keys and aliases, never credentials or payloads.
pub(crate) fn map<E>(e: SdkError<E, aws_sdk_kms::config::http::HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let err = match &e {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            match service.err().code() {
                Some(code) => {
                    let kind = kind_of_code(code).unwrap_or_else(|| kind_of_status(status));
                    let message = match service.err().message() {
                        Some(m) if !m.is_empty() => format!("{code}: {m}"),
                        _ => code.to_owned(),
                    };
                    Error::new(kind, message)
                        .with_code(ProviderCode::Named(Cow::Owned(code.to_owned())))
                }
                None => Error::new(
                    kind_of_status(status),
                    format!("KMS answered HTTP {status} without an error code"),
                )
                .with_code(ProviderCode::Http(status)),
            }
        }
        SdkError::TimeoutError(_) => Error::new(ErrorKind::Timeout, "the KMS call timed out"),
        SdkError::DispatchFailure(d) if d.is_timeout() => Error::new(
            ErrorKind::Timeout,
            "the KMS request timed out before a response",
        ),
        SdkError::DispatchFailure(d) if d.is_user() => Error::new(
            ErrorKind::InvalidInput,
            format!(
                "the KMS request could not be sent: {}",
                aws_sdk_kms::error::DisplayErrorContext(&e)
            ),
        ),
        SdkError::DispatchFailure(_) => Error::new(
            ErrorKind::Unavailable,
            format!(
                "KMS is unreachable: {}",
                aws_sdk_kms::error::DisplayErrorContext(&e)
            ),
        ),
        SdkError::ResponseError(_) => Error::new(
            ErrorKind::Unavailable,
            "KMS sent a response that could not be read",
        ),
        SdkError::ConstructionFailure(_) => Error::new(
            ErrorKind::Unexpected,
            format!(
                "the KMS request could not be built: {}",
                aws_sdk_kms::error::DisplayErrorContext(&e)
            ),
        ),
        _ => Error::new(
            ErrorKind::Unexpected,
            format!("KMS: {}", aws_sdk_kms::error::DisplayErrorContext(&e)),
        ),
    };
    err.with_backend(BACKEND).with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_kinds() {
        for (code, kind, retryable) in [
            ("NotFoundException", ErrorKind::NotFound, false),
            ("AlreadyExistsException", ErrorKind::AlreadyExists, false),
            ("ThrottlingException", ErrorKind::RateLimited, true),
            ("LimitExceededException", ErrorKind::RateLimited, true),
            ("KMSInternalException", ErrorKind::Unavailable, true),
            ("DependencyTimeoutException", ErrorKind::Timeout, true),
            ("AccessDeniedException", ErrorKind::PermissionDenied, false),
            ("KMSInvalidStateException", ErrorKind::Locked, false),
            ("DisabledException", ErrorKind::Locked, false),
            (
                "KMSInvalidSignatureException",
                ErrorKind::InvalidSignature,
                false,
            ),
            ("InvalidCiphertextException", ErrorKind::Integrity, false),
            ("IncorrectKeyException", ErrorKind::Integrity, false),
            (
                "UnrecognizedClientException",
                ErrorKind::Unauthenticated,
                false,
            ),
            ("ValidationException", ErrorKind::InvalidInput, false),
        ] {
            let k = kind_of_code(code);
            assert_eq!(k, Some(kind), "{code}");
            assert_eq!(kind.default_retryable(), retryable, "{code}");
        }
        assert_eq!(kind_of_code("SomethingNew"), None);
        assert_eq!(kind_of_status(503), ErrorKind::Unavailable);
        assert_eq!(kind_of_status(429), ErrorKind::RateLimited);
        assert_eq!(kind_of_status(418), ErrorKind::Unexpected);
    }
}
