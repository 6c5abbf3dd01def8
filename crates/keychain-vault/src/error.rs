//! Mapping vaultrs / HTTP errors to keychain's [`ErrorKind`]s, keeping the HTTP status.
//!
//! Transit answers most mistakes with HTTP 400 and an English message, with no error code; the
//! kind of a 400 is read from the message here, in one place, and nowhere else.

use std::borrow::Cow;

use keychain_core::{BackendConfig, Error, ErrorKind, ProviderCode};
use rustify::errors::ClientError as RestError;
use vaultrs::error::ClientError;

/// The backend's name in errors and capabilities: its configuration `type`.
pub(crate) const BACKEND: &str = <crate::config::Config as BackendConfig>::TYPE;

/// Transit answered something this backend cannot use.
pub(crate) fn unexpected(what: impl Into<Cow<'static, str>>) -> Error {
    Error::new(ErrorKind::Unexpected, what).with_backend(BACKEND)
}

/// The kind of a Transit HTTP 400, from its message.
fn kind_of_bad_request(message: &str) -> ErrorKind {
    let m = message.to_ascii_lowercase();
    if m.contains("not found")
        || m.contains("no existing key")
        || m.contains("higher than the latest key version")
        || m.contains("less than the minimum")
    {
        // A missing key, or a version that does not exist (any more) for this operation.
        ErrorKind::NotFound
    } else if m.contains("message authentication failed")
        || m.contains("invalid ciphertext")
        || m.contains("unable to decode")
        || m.contains("could not decode")
        || m.contains("failed to decrypt")
        || m.contains("decryption error")
    {
        ErrorKind::Integrity
    } else if m.contains("disallowed by policy") {
        // The version is below min_decryption_version: it no longer exists for this caller.
        ErrorKind::NotFound
    } else if m.contains("already exists") {
        ErrorKind::AlreadyExists
    } else if m.contains("permission denied") {
        ErrorKind::PermissionDenied
    } else {
        ErrorKind::InvalidInput
    }
}

/// The kind of an HTTP error status (with its messages).
pub(crate) fn kind_of_status(status: u16, messages: &[String]) -> ErrorKind {
    match status {
        400 => kind_of_bad_request(&messages.join("; ")),
        401 => ErrorKind::Unauthenticated,
        403 => ErrorKind::PermissionDenied,
        // No secrets engine at the path: the configured mount is wrong (a missing key is a 404
        // with no message, or a 400 saying so).
        404 if messages.iter().any(|m| m.contains("no handler for route")) => {
            ErrorKind::InvalidInput
        }
        404 => ErrorKind::NotFound,
        405 => ErrorKind::Unsupported,
        408 => ErrorKind::Timeout,
        // 412: a performance standby has not caught up yet; 429: rate limit quota.
        412 => ErrorKind::Unavailable,
        429 => ErrorKind::RateLimited,
        // Transit reports an RSA ciphertext that does not decrypt as an internal error.
        500 if messages.iter().any(|m| m.contains("failed to RSA decrypt")) => ErrorKind::Integrity,
        500..=599 => ErrorKind::Unavailable,
        _ => ErrorKind::Unexpected,
    }
}

/// Whether a 503's messages say the server is sealed.
fn sealed(messages: &[String]) -> bool {
    messages
        .iter()
        .any(|m| m.to_ascii_lowercase().contains("sealed"))
}

/// The transport failure under a request error, if reqwest reported one.
fn transport<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a reqwest::Error> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<reqwest::Error>() {
            return Some(r);
        }
        cur = err.source();
    }
    None
}

/// Whether a transport failure is a refused TLS certificate (rustls's "invalid peer
/// certificate", anywhere in the chain).
fn certificate_refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        let text = err.to_string().to_ascii_lowercase();
        if text.contains("invalid peer certificate") || text.contains("certificate verify") {
            return true;
        }
        cur = err.source();
    }
    false
}

/// A vaultrs error as a keychain [`Error`]: kind by HTTP status (and Transit's message for 400),
/// message with the server's words, the status in [`ProviderCode::Http`].
///
/// Sources are kept only where they cannot hold a payload: a response that failed to parse may
/// contain a plaintext, so it is described, never attached.
pub(crate) fn map(e: ClientError) -> Error {
    let err = match e {
        ClientError::APIError { code, errors } => {
            let kind = kind_of_status(code, &errors);
            let message = if code == 503 && sealed(&errors) {
                Cow::Borrowed(
                    "the Vault/OpenBao server is sealed: it must be unsealed before any key can \
                     be used",
                )
            } else if errors.is_empty() {
                Cow::Owned(format!("server answered HTTP {code}"))
            } else {
                Cow::Owned(format!("HTTP {code}: {}", errors.join("; ")))
            };
            let err = Error::new(kind, message).with_code(ProviderCode::Http(code));
            if kind == ErrorKind::InvalidInput && code == 404 {
                err.with_context("no Transit engine at this path: check `mount`")
            } else {
                err
            }
        }
        ClientError::RestClientError { source } => return map_rest(source),
        ClientError::ResponseEmptyError | ClientError::ResponseDataEmptyError => Error::new(
            ErrorKind::Unexpected,
            "the server's response had no data where some was expected",
        ),
        ClientError::JsonParseError { .. } => Error::new(
            ErrorKind::Unexpected,
            "the server's response could not be read as JSON",
        ),
        ClientError::RestClientBuildError { source } => Error::new(
            ErrorKind::InvalidInput,
            "the HTTP client could not be built (TLS settings)",
        )
        .with_source(source),
        ClientError::FileReadError { path, source } => {
            Error::new(ErrorKind::NotFound, format!("cannot read {path}: {source}"))
        }
        ClientError::ParseCertificateError { path, .. } => Error::new(
            ErrorKind::InvalidInput,
            format!("{path} holds no PEM certificate"),
        ),
        other => Error::new(ErrorKind::Unexpected, format!("vaultrs: {other}")),
    };
    err.with_backend(BACKEND)
}

fn map_rest(e: RestError) -> Error {
    let err = match e {
        RestError::ServerResponseError { code, content } => {
            // A body that is not Transit's `{"errors": [...]}` (a proxy's page, an empty 502):
            // the status is all there is; the body is not repeated.
            let _ = content;
            Error::new(
                kind_of_status(code, &[]),
                format!("server answered HTTP {code} without a Vault error body"),
            )
            .with_code(ProviderCode::Http(code))
        }
        RestError::RequestError { source, url, .. } => {
            let failure = transport(source.as_ref());
            let kind = match failure {
                Some(r) if r.is_timeout() => ErrorKind::Timeout,
                _ => ErrorKind::Unavailable,
            };
            let what = match failure {
                Some(r) if r.is_timeout() => "timed out",
                Some(r) if r.is_connect() => "could not connect",
                _ => "failed",
            };
            // The URL names the mount and the key, never a payload or token.
            let detail = format!("{source:#}");
            let err = Error::new(kind, format!("request to {url} {what}: {detail}"));
            if certificate_refused(source.as_ref()) {
                // Trust is configuration: waiting and retrying will not change it.
                err.with_context("the server's TLS certificate is not trusted (see `ca-bundle`)")
                    .with_retryable(false)
            } else {
                err
            }
        }
        RestError::ResponseParseError { .. } | RestError::ResponseConversionError { .. } => {
            Error::new(
                ErrorKind::Unexpected,
                "the server's response could not be parsed",
            )
        }
        RestError::ResponseError { .. } => Error::new(
            ErrorKind::Unavailable,
            "the server's response could not be received",
        ),
        other => Error::new(ErrorKind::Unexpected, format!("HTTP client: {other}")),
    };
    err.with_backend(BACKEND)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, msg: &str) -> Error {
        map(ClientError::APIError {
            code,
            errors: if msg.is_empty() {
                vec![]
            } else {
                vec![msg.to_owned()]
            },
        })
    }

    #[test]
    fn statuses_and_transit_messages_map_to_kinds() {
        for (code, msg, kind, retryable) in [
            (404, "", ErrorKind::NotFound, false),
            (400, "signing key not found", ErrorKind::NotFound, false),
            (400, "encryption key not found", ErrorKind::NotFound, false),
            (
                400,
                "cipher: message authentication failed",
                ErrorKind::Integrity,
                false,
            ),
            (
                400,
                "invalid ciphertext: no prefix",
                ErrorKind::Integrity,
                false,
            ),
            (
                400,
                "ciphertext or signature version is disallowed by policy (too old)",
                ErrorKind::NotFound,
                false,
            ),
            (
                400,
                "requested version for encryption is higher than the latest key version",
                ErrorKind::NotFound,
                false,
            ),
            (
                400,
                "missing plaintext to encrypt",
                ErrorKind::InvalidInput,
                false,
            ),
            (
                404,
                "no handler for route \"nomount/keys/x\". route entry not found.",
                ErrorKind::InvalidInput,
                false,
            ),
            (
                500,
                "failed to decrypt the storage entry",
                ErrorKind::Unavailable,
                true,
            ),
            (403, "permission denied", ErrorKind::PermissionDenied, false),
            (429, "", ErrorKind::RateLimited, true),
            (500, "internal error", ErrorKind::Unavailable, true),
            (
                500,
                "failed to RSA decrypt the ciphertext: crypto/rsa: decryption error",
                ErrorKind::Integrity,
                false,
            ),
            (503, "Vault is sealed", ErrorKind::Unavailable, true),
            (418, "", ErrorKind::Unexpected, false),
        ] {
            let e = api(code, msg);
            assert_eq!(e.kind(), kind, "{code} {msg}");
            assert_eq!(e.retryable(), retryable, "{code} {msg}");
            assert_eq!(e.provider_code(), Some(&ProviderCode::Http(code)));
            assert_eq!(e.backend(), Some(BACKEND));
        }
        let sealed = api(503, "Vault is sealed");
        assert!(sealed.message().contains("sealed"), "{sealed}");
    }

    #[test]
    fn unparsable_bodies_are_not_repeated() {
        let e = map(ClientError::RestClientError {
            source: RestError::ServerResponseError {
                code: 502,
                content: Some("<html>secret-looking page</html>".to_owned()),
            },
        });
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(!e.to_string().contains("secret-looking"));
        let e = map(ClientError::RestClientError {
            source: RestError::ResponseParseError {
                source: std::io::Error::other("bad json").into(),
                content: Some("{\"plaintext\":\"c2VjcmV0\"".to_owned()),
            },
        });
        assert!(!format!("{e:?}").contains("c2VjcmV0"));
    }
}
