//! Key names and references.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// A validated, portable key name.
///
/// Allowed: 1 to 63 characters from `A–Z a–z 0–9 - _`, starting with a letter or digit.
///
/// Why this set: it is the intersection (give or take one character that backends escape) of what
/// every provider accepts as an identifier — a file name on every OS, a PKCS#11 `CKA_LABEL`,
/// an AWS KMS alias (`alias/` + letters, digits, `/_-`), a Vault/OpenBao Transit key name (a URL
/// path segment), a GCP CryptoKey id (`[a-zA-Z0-9_-]{1,63}`) and an Azure key name (letters,
/// digits, `-`; backends map `_` reversibly). A name that works in one backend therefore works in
/// all, and `list_keys` can hand back exactly the names that were given. Names are case-sensitive.
///
/// ```
/// use keychain_core::KeyName;
/// assert!(KeyName::new("tls-server_2026").is_ok());
/// assert!(KeyName::new("").is_err());
/// assert!(KeyName::new("../etc/passwd").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyName(Box<str>);

impl KeyName {
    /// The longest name accepted.
    pub const MAX_LEN: usize = 63;

    /// Validates `name`.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] if the name is empty, too long, or has a character
    /// outside the allowed set.
    pub fn new(name: impl AsRef<str>) -> Result<Self> {
        let name = name.as_ref();
        if name.is_empty() {
            return Err(Error::invalid_input("key name is empty"));
        }
        if name.len() > Self::MAX_LEN {
            return Err(Error::invalid_input(format!(
                "key name is {} characters long; the limit is {}",
                name.len(),
                Self::MAX_LEN
            )));
        }
        if !name.as_bytes()[0].is_ascii_alphanumeric() {
            return Err(Error::invalid_input(
                "key name must start with a letter or digit",
            ));
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(Error::invalid_input(format!(
                "key name contains {c:?}; allowed are A-Z a-z 0-9 - _"
            )));
        }
        Ok(Self(name.into()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl AsRef<str> for KeyName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for KeyName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

impl TryFrom<&str> for KeyName {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

impl TryFrom<String> for KeyName {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Self::new(s)
    }
}

impl Serialize for KeyName {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for KeyName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(s).map_err(serde::de::Error::custom)
    }
}

/// A key version. Versions start at 1 and grow by one per [`crate::Backend::rotate_key`].
pub type KeyVersion = u32;

/// A key name plus an optional version; without a version, operations use the newest one.
///
/// Parsed from `name` or `name@version`:
///
/// ```
/// use keychain_core::KeyRef;
/// let r: KeyRef = "signer@3".parse().unwrap();
/// assert_eq!(r.name().as_str(), "signer");
/// assert_eq!(r.version(), Some(3));
/// assert_eq!(r.to_string(), "signer@3");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyRef {
    name: KeyName,
    version: Option<KeyVersion>,
}

impl KeyRef {
    /// The newest version of `name`.
    pub fn latest(name: KeyName) -> Self {
        Self {
            name,
            version: None,
        }
    }

    /// A specific version of `name`.
    pub fn versioned(name: KeyName, version: KeyVersion) -> Self {
        Self {
            name,
            version: Some(version),
        }
    }

    /// The key's name.
    pub fn name(&self) -> &KeyName {
        &self.name
    }

    /// The requested version, `None` for the newest.
    pub fn version(&self) -> Option<KeyVersion> {
        self.version
    }
}

impl From<KeyName> for KeyRef {
    fn from(name: KeyName) -> Self {
        Self::latest(name)
    }
}

impl From<&KeyName> for KeyRef {
    fn from(name: &KeyName) -> Self {
        Self::latest(name.clone())
    }
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.version {
            Some(v) => write!(f, "{}@{v}", self.name),
            None => write!(f, "{}", self.name),
        }
    }
}

impl FromStr for KeyRef {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.split_once('@') {
            None => Ok(Self::latest(KeyName::new(s)?)),
            Some((name, version)) => {
                let version: KeyVersion =
                    version.parse().ok().filter(|v| *v > 0).ok_or_else(|| {
                        Error::invalid_input(format!("key version {version:?} is not a number ≥ 1"))
                    })?;
                Ok(Self::versioned(KeyName::new(name)?, version))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn names_are_validated() {
        for ok in ["a", "A1", "signer-2026_01", &"x".repeat(63)] {
            assert!(KeyName::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "_a",
            "a b",
            "a/b",
            "a.b",
            "ä",
            &"x".repeat(64),
            "a@1",
        ] {
            let e = KeyName::new(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad}");
        }
    }

    #[test]
    fn key_ref_parses() {
        assert_eq!("k".parse::<KeyRef>().unwrap().version(), None);
        assert_eq!("k@12".parse::<KeyRef>().unwrap().version(), Some(12));
        assert!("k@0".parse::<KeyRef>().is_err());
        assert!("k@x".parse::<KeyRef>().is_err());
    }

    #[test]
    fn serde_validates() {
        let n: KeyName = serde_json::from_str("\"ok\"").unwrap();
        assert_eq!(n.as_str(), "ok");
        assert!(serde_json::from_str::<KeyName>("\"no way\"").is_err());
    }
}
