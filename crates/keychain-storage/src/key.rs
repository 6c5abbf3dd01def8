//! Key and prefix validation shared by every store, so a key that one store accepts every store
//! accepts.

use keychain_core::{Error, ErrorKind, Result};

/// The longest segment a key may have, in bytes: `NAME_MAX` on common file systems.
pub const MAX_SEGMENT_LEN: usize = 255;

/// Checks that `key` is a valid blob key.
///
/// A key is one or more segments separated by `/`. Each segment is 1 to [`MAX_SEGMENT_LEN`] bytes
/// of `[A-Za-z0-9._-]` and must not start with `.`: that rules out `.` and `..` (so a key can never
/// leave the store's root) and reserves dot-names for the stores' own files (lock and temporary
/// files). Keys are relative: no leading or trailing `/`, no empty segment (`a//b`).
///
/// # Errors
///
/// [`ErrorKind::InvalidInput`](keychain_core::ErrorKind::InvalidInput) naming the offending rule.
///
/// ```
/// use keychain_storage::validate_key;
/// assert!(validate_key("keys/signer.p8").is_ok());
/// assert!(validate_key("../etc/passwd").is_err());
/// ```
pub fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid_input("storage key is empty"));
    }
    for segment in key.split('/') {
        validate_segment(segment)
            .map_err(|why| Error::invalid_input(format!("invalid storage key {key:?}: {why}")))?;
    }
    Ok(())
}

pub(crate) fn validate_segment(segment: &str) -> std::result::Result<(), &'static str> {
    if segment.is_empty() {
        return Err("empty segment (leading, trailing or doubled '/')");
    }
    if segment.len() > MAX_SEGMENT_LEN {
        return Err("segment longer than 255 bytes");
    }
    if segment.starts_with('.') {
        return Err("segment starts with '.' ('.', '..' and dot-names are reserved)");
    }
    if !segment.bytes().all(is_key_byte) {
        return Err("segment contains a character outside [A-Za-z0-9._-]");
    }
    Ok(())
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// Checks a `list` prefix and returns its directory part: the complete segments before the last
/// `/` (empty when the prefix has no `/`).
///
/// A prefix is empty, or a valid key followed by `/`, or a valid key's leading segments followed by
/// a partial last segment of key characters (`keys/sig` matches `keys/signer`).
pub(crate) fn validate_prefix(prefix: &str) -> Result<&str> {
    let invalid =
        |why: &str| Error::invalid_input(format!("invalid storage prefix {prefix:?}: {why}"));
    if !prefix.bytes().all(|b| b == b'/' || is_key_byte(b)) {
        return Err(invalid("contains a character outside [A-Za-z0-9._-/]"));
    }
    match prefix.rfind('/') {
        None => Ok(""),
        Some(slash) => {
            let dir = &prefix[..slash];
            if dir.is_empty() {
                return Err(invalid("starts with '/'"));
            }
            validate_key(dir).map_err(|e| invalid(e.message()))?;
            Ok(dir)
        }
    }
}

/// The error for storing `key` where it would be both a blob and a parent of blobs.
pub(crate) fn conflict(key: &str, why: &str) -> Error {
    Error::new(
        ErrorKind::AlreadyExists,
        format!("storage key {key:?} conflicts with existing keys: {why}"),
    )
}

/// The keys that `key` would sit inside if it were stored: `a` and `a/b` for `a/b/c`.
pub(crate) fn ancestors(key: &str) -> impl Iterator<Item = &str> {
    key.match_indices('/').map(move |(i, _)| &key[..i])
}

#[cfg(test)]
mod tests {
    use super::*;
    use keychain_core::ErrorKind;

    #[test]
    fn accepts_plain_and_nested_keys() {
        for key in [
            "a",
            "a/b",
            "keys/signer.p8",
            "A-Z_0.9/x-y",
            &"k".repeat(255),
        ] {
            assert!(validate_key(key).is_ok(), "{key}");
        }
    }

    #[test]
    fn rejects_traversal_and_malformed_keys() {
        let long = "k".repeat(256);
        for key in [
            "", "../x", "/abs", "a//b", "a/../b", "a/./b", ".", "..", "a/", "/", ".hidden",
            "a/.tmp-1", "a b", "a\\b", "é", "a\0b", &long,
        ] {
            let err = validate_key(key).expect_err(key);
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{key}");
        }
    }

    #[test]
    fn prefix_directory_part() {
        assert_eq!(validate_prefix("").ok(), Some(""));
        assert_eq!(validate_prefix("ke").ok(), Some(""));
        assert_eq!(validate_prefix("keys/").ok(), Some("keys"));
        assert_eq!(validate_prefix("keys/sig").ok(), Some("keys"));
        assert_eq!(validate_prefix("a/b/").ok(), Some("a/b"));
        for bad in ["/", "/abs", "../", "a//", "a/../", "a b", "./x"] {
            let err = validate_prefix(bad).expect_err(bad);
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad}");
        }
    }

    #[test]
    fn ancestors_of_nested_key() {
        assert_eq!(ancestors("a/b/c").collect::<Vec<_>>(), ["a", "a/b"]);
        assert_eq!(ancestors("a").count(), 0);
    }
}
