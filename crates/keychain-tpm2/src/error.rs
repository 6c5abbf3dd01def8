//! TPM and TSS response codes → [`ErrorKind`].

use keychain_core::{Error, ErrorKind, ProviderCode};
use tss_esapi::constants::response_code::{Tss2ResponseCode, Tss2ResponseCodeKind as K};

/// The TSS layer a response code comes from (bits 16..24 of a `TSS2_RC`).
const LAYER_TPM: u32 = 0;
const LAYER_TCTI: u32 = 10;

/// The raw `TSS2_RC` of a response code. tss-esapi keeps it private but prints it in `Display`
/// (`Response code value: 0x...`), which is where we take it from.
pub(crate) fn raw_code(rc: Tss2ResponseCode) -> Option<u32> {
    let text = match rc {
        Tss2ResponseCode::Success => return Some(0),
        Tss2ResponseCode::FormatZero(c) => c.to_string(),
        Tss2ResponseCode::FormatOne(c) => c.to_string(),
    };
    let hex = text.rsplit("0x").next()?;
    u32::from_str_radix(hex.trim(), 16).ok()
}

/// The [`Tss2ResponseCodeKind`] of a tss-esapi error, if it is a TPM response.
pub(crate) fn tpm_kind(e: &tss_esapi::Error) -> Option<K> {
    match e {
        tss_esapi::Error::Tss2Error(rc) => {
            let raw = raw_code(*rc)?;
            if raw >> 16 == LAYER_TPM {
                rc.kind()
            } else {
                None
            }
        }
        tss_esapi::Error::WrapperError(_) => None,
    }
}

/// Maps a tss-esapi error to a keychain error; `what` says what was being done. Messages carry
/// the TSS's description and raw code, never an auth value (the TSS never reports one).
pub(crate) fn map(e: tss_esapi::Error, what: &str) -> Error {
    match e {
        tss_esapi::Error::WrapperError(w) => Error::new(
            ErrorKind::InvalidInput,
            format!("{what}: the TPM library refused the request: {w}"),
        ),
        tss_esapi::Error::Tss2Error(rc) => {
            let raw = raw_code(rc).unwrap_or(0);
            let layer = raw >> 16;
            let (kind, retryable) = if layer == LAYER_TPM {
                tpm_error_kind(rc.kind())
            } else if layer == LAYER_TCTI {
                // Connection refused, I/O errors, timeouts talking to the TPM.
                (ErrorKind::Unavailable, true)
            } else {
                tss_error_kind(raw & 0xffff)
            };
            Error::new(kind, format!("{what}: {rc} ({})", layer_name(layer)))
                .with_retryable(retryable)
                .with_code(ProviderCode::Tpm(raw))
        }
    }
}

fn layer_name(layer: u32) -> &'static str {
    match layer {
        0 => "TPM",
        6 => "SAPI",
        7 => "ESAPI",
        8 => "SYS",
        9 => "MU",
        10 => "TCTI",
        11 => "resource manager",
        _ => "TSS",
    }
}

/// TPM 2.0 response codes (Part 2, §6.6) by what the caller can do about them.
fn tpm_error_kind(kind: Option<K>) -> (ErrorKind, bool) {
    match kind {
        // A wrong auth value. DA-protected objects count it towards lockout (AuthFail); others
        // do not (BadAuth).
        Some(K::AuthFail | K::BadAuth) => (ErrorKind::Unauthenticated, false),
        Some(K::Lockout) => (ErrorKind::Locked, false),
        Some(K::PolicyFail | K::Policy | K::AuthUnavailable | K::Hierarchy | K::Disabled) => {
            (ErrorKind::PermissionDenied, false)
        }
        Some(K::Retry | K::Yielded | K::Testing | K::Canceled | K::NvRate | K::NvUnavailable) => {
            (ErrorKind::Unavailable, true)
        }
        Some(
            K::ObjectMemory | K::SessionMemory | K::Memory | K::ObjectHandles | K::SessionHandles,
        ) => (ErrorKind::CapacityExceeded, true),
        Some(K::NvSpace) => (ErrorKind::CapacityExceeded, false),
        Some(K::Integrity | K::Binding | K::Sensitive) => (ErrorKind::Integrity, false),
        Some(K::Signature | K::Ticket) => (ErrorKind::InvalidSignature, false),
        Some(K::Handle | K::ReferenceH0 | K::ReferenceH1 | K::ReferenceH2) => {
            (ErrorKind::NotFound, false)
        }
        Some(
            K::Asymmetric
            | K::Attributes
            | K::Hash
            | K::Value
            | K::KeySize
            | K::Mgf
            | K::Mode
            | K::Type
            | K::Kdf
            | K::Range
            | K::Scheme
            | K::Size
            | K::Symmetric
            | K::Curve
            | K::EccPoint
            | K::Key
            | K::Selector
            | K::Insufficient
            | K::ReservedBits
            | K::Tag,
        ) => (ErrorKind::InvalidInput, false),
        Some(K::Initialize | K::Failure | K::Reboot) => (ErrorKind::Unavailable, false),
        _ => (ErrorKind::Unexpected, false),
    }
}

/// The TSS's own base codes (tss2_common.h `TSS2_BASE_RC_*`).
fn tss_error_kind(base: u32) -> (ErrorKind, bool) {
    match base {
        // NO_CONNECTION, TRY_AGAIN, IO_ERROR
        8..=10 => (ErrorKind::Unavailable, true),
        // BAD_REFERENCE, INSUFFICIENT_BUFFER, BAD_VALUE, BAD_SIZE
        5 | 6 | 11 | 16 => (ErrorKind::InvalidInput, false),
        // RSP_AUTH_FAILED: the response HMAC did not verify (a tampered response).
        27 => (ErrorKind::Integrity, false),
        // MEMORY
        23 => (ErrorKind::CapacityExceeded, true),
        _ => (ErrorKind::Unexpected, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tss(rc: u32) -> tss_esapi::Error {
        tss_esapi::Error::Tss2Error(Tss2ResponseCode::from(rc))
    }

    #[test]
    fn tpm_codes() {
        // TPM_RC_AUTH_FAIL on session 1, TPM_RC_BAD_AUTH, TPM_RC_LOCKOUT, TPM_RC_RETRY,
        // TPM_RC_OBJECT_MEMORY, TPM_RC_VALUE on parameter 1, TPM_RC_HANDLE on handle 1.
        for (rc, kind, retry) in [
            (0x98e, ErrorKind::Unauthenticated, false),
            (0x9a2, ErrorKind::Unauthenticated, false),
            (0x921, ErrorKind::Locked, false),
            (0x922, ErrorKind::Unavailable, true),
            (0x902, ErrorKind::CapacityExceeded, true),
            (0x1c4, ErrorKind::InvalidInput, false),
            (0x18b, ErrorKind::NotFound, false),
        ] {
            let e = map(tss(rc), "op");
            assert_eq!(e.kind(), kind, "0x{rc:x}: {e}");
            assert_eq!(e.retryable(), retry, "0x{rc:x}");
            assert_eq!(e.provider_code(), Some(&ProviderCode::Tpm(rc)));
        }
    }

    #[test]
    fn tss_layers() {
        // TSS2_TCTI_RC_IO_ERROR: the TPM is unreachable.
        let e = map(tss(0x000a_000a), "open");
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.retryable());
        assert!(e.to_string().contains("TCTI"), "{e}");
        // TSS2_ESYS_RC_BAD_VALUE
        assert_eq!(map(tss(0x0007_000b), "x").kind(), ErrorKind::InvalidInput);
        assert_eq!(
            raw_code(Tss2ResponseCode::from(0x0007_000b)),
            Some(0x0007_000b)
        );
        // A TPM code seen through a TSS layer is not taken for the TPM's.
        assert_eq!(tpm_kind(&tss(0x0007_000b)), None);
        assert_eq!(tpm_kind(&tss(0x98e)), Some(K::AuthFail));
    }

    #[test]
    fn wrapper_errors_are_invalid_input() {
        let e = map(
            tss_esapi::Error::WrapperError(tss_esapi::WrapperErrorKind::WrongParamSize),
            "sign",
        );
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }
}
