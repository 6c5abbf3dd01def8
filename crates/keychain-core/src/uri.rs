//! Key URIs: one `scheme:path-attrs?query-attrs` grammar for every backend, RFC 7512 for PKCS#11.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::str::FromStr;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_encode};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::name::KeyName;
use crate::secret::SecretSource;

/// Bytes to percent-encode in every value: all but RFC 3986 `unreserved` (non-ASCII is always
/// encoded by `percent_encode`).
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// RFC 7512 `pk11-res-avail`: reserved characters that need no escape in either part.
const fn res_avail(set: &AsciiSet) -> AsciiSet {
    set.remove(b':')
        .remove(b'[')
        .remove(b']')
        .remove(b'@')
        .remove(b'!')
        .remove(b'$')
        .remove(b'\'')
        .remove(b'(')
        .remove(b')')
        .remove(b'*')
        .remove(b'+')
        .remove(b',')
        .remove(b'=')
}

/// Path values as RFC 7512 `pk11-pchar` allows them: `unreserved`, `pk11-res-avail` and `&`.
const PKCS11_PATH_ENCODE: &AsciiSet = &res_avail(NOT_UNRESERVED).remove(b'&');

/// Path values of other schemes additionally keep `/`: RFC 3986 allows it in a path, and file
/// paths, ARNs and aliases (`key-id=alias/x`, `dir=/var/lib/keys`) stay readable.
const PATH_ENCODE: &AsciiSet = &PKCS11_PATH_ENCODE.remove(b'/');

/// Query values as RFC 7512 `pk11-qchar` allows them: `unreserved`, `pk11-res-avail`, `/` and
/// `?`. RFC 7512 also allows a bare `|`, which RFC 3986 does not; we encode it.
const QUERY_ENCODE: &AsciiSet = &res_avail(NOT_UNRESERVED).remove(b'/').remove(b'?');

/// Attribute names whose values are secrets.
const SENSITIVE_NAMES: &[&str] = &[
    "pin-value",
    "pin",
    "password",
    "passphrase",
    "secret",
    "secret-id",
    "token",
];

/// Name endings that mark a secret too (`so-pin`, `client-secret`, `session-token`).
const SENSITIVE_SUFFIXES: &[&str] = &[
    "-pin-value",
    "-pin",
    "-password",
    "-passphrase",
    "-secret",
    "-secret-id",
    "-token",
];

const REDACTED: &str = "[redacted]";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Path,
    Query,
}

impl Part {
    fn noun(self) -> &'static str {
        match self {
            Self::Path => "path attribute",
            Self::Query => "query attribute",
        }
    }

    fn separator(self) -> char {
        match self {
            Self::Path => ';',
            Self::Query => '&',
        }
    }
}

/// One `name=value` attribute; the value is zeroized on drop because it may be a PIN.
#[derive(Clone, PartialEq, Eq)]
struct Attr {
    name: Box<str>,
    value: Zeroizing<Vec<u8>>,
}

impl Hash for Attr {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.value.as_slice().hash(state);
    }
}

/// A key URI: `scheme:path-attrs?query-attrs`, one grammar for every backend.
///
/// ```text
/// pkcs11:token=prod;object=signer;id=%01%02?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:HSM_PIN
/// awskms:key-id=alias/x;region=eu-west-1
/// transit:mount=transit;name=x;version=3
/// pkcs8:dir=/var/lib/keys;name=signer
/// ```
///
/// For `pkcs11:` this is RFC 7512; other backends use the same syntax with their own attribute
/// names.
///
/// - The scheme is an ASCII letter followed by letters, digits and `-`. It is case-insensitive
///   (RFC 3986) and kept in lower case.
/// - Path attributes are separated by `;`, query attributes by `&`; each is `name=value`. Names
///   are lower-case letters, digits and `-`. Values are percent-decoded into bytes, so they may
///   be binary (`id=%01%02`); `+` is a plus sign, not a space.
/// - Attributes keep their order, and attributes this crate does not know are kept, so a
///   backend's own attributes survive a round trip.
/// - A path attribute may appear once (RFC 7512); a query attribute may repeat, and every
///   occurrence is kept.
/// - Parsing is lenient about characters that RFC 7512 would have escaped (`/` in a path value,
///   non-ASCII text), but rejects spaces, control characters and `#`, which mean a copy-and-paste
///   went wrong more often than not.
///
/// `Display` writes the canonical form: every byte outside the characters RFC 7512 allows in that
/// part is percent-encoded with upper-case hex (for schemes other than `pkcs11`, `/` is also kept
/// in path values). `parse(u.to_string()) == u` for every URI without sensitive attributes, and
/// the canonical form is stable.
///
/// # Secrets
///
/// Sensitive attributes are kept when parsing, so a backend can read them, but **never
/// formatted**: `Display` (and serialization) leaves them out, `Debug` shows `[redacted]`.
/// Sensitive are `pin-value` (RFC 7512), `pin`, `password`, `passphrase`, `secret`, `secret-id`
/// and `token`, and names ending in `-pin`, `-pin-value`, `-password`, `-passphrase`,
/// `-secret`, `-secret-id` or `-token`; the exception is `token` in a `pkcs11:` URI, which
/// RFC 7512 defines as the token label. Prefer naming where the secret is, which is not secret
/// and is formatted normally: `pin-source=env:HSM_PIN`, `pin-source=file:/run/secrets/pin`,
/// `pin-source=prompt` (see [`KeyUri::secret_source`]).
///
/// ```
/// use keychain_core::KeyUri;
///
/// let uri: KeyUri = "pkcs11:token=prod;object=signer;id=%01%02?pin-source=env:HSM_PIN"
///     .parse()?;
/// assert_eq!(uri.scheme(), "pkcs11");
/// assert_eq!(uri.path_attr("token"), Some("prod"));
/// assert_eq!(uri.path_attr_bytes("id"), Some(&[1u8, 2][..]));
/// assert_eq!(uri.query_attr("pin-source"), Some("env:HSM_PIN"));
/// assert_eq!(uri.key_name().transpose()?.map(|n| n.to_string()), Some("signer".to_owned()));
/// assert_eq!(uri.to_string(), "pkcs11:token=prod;object=signer;id=%01%02?pin-source=env:HSM_PIN");
///
/// // Built in code; values are bytes and are escaped as needed.
/// let uri = KeyUri::new("transit")?
///     .with_path_attr("mount", "transit")?
///     .with_path_attr("name", "my key")?;
/// assert_eq!(uri.to_string(), "transit:mount=transit;name=my%20key");
///
/// // A PIN is read by the backend but never printed.
/// let uri = KeyUri::parse("pkcs11:token=prod?pin-value=1234")?;
/// assert_eq!(uri.query_attr("pin-value"), Some("1234"));
/// assert_eq!(uri.to_string(), "pkcs11:token=prod");
/// assert!(!format!("{uri:?}").contains("1234"));
/// # Ok::<(), keychain_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeyUri {
    scheme: Box<str>,
    path: Vec<Attr>,
    query: Vec<Attr>,
}

impl KeyUri {
    /// An empty URI (`scheme:`) to add attributes to with [`KeyUri::with_path_attr`] and
    /// [`KeyUri::with_query_attr`].
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] if `scheme` is empty or not an ASCII letter followed by
    /// letters, digits and `-`.
    pub fn new(scheme: &str) -> Result<Self> {
        Ok(Self {
            scheme: parse_scheme(scheme)?.into(),
            path: Vec::new(),
            query: Vec::new(),
        })
    }

    /// Parses `scheme:path-attrs?query-attrs`.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`], with a message saying what is wrong, if there is no
    /// `:`, the scheme is empty or invalid, an attribute is empty, has no `=`, has an invalid
    /// name, or its value has a bad percent escape (`%zz`, a truncated `%4`), a space, a control
    /// character or `#`; or if a path attribute appears twice. Messages never quote the value of
    /// a sensitive attribute.
    pub fn parse(s: &str) -> Result<Self> {
        let (scheme, rest) = s.split_once(':').ok_or_else(|| {
            Error::invalid_input(
                "key URI has no ':' after the scheme; expected scheme:name=value;... \
                 such as pkcs11:token=prod;object=signer",
            )
        })?;
        let mut uri = Self::new(scheme)?;
        // The path cannot contain a raw '?', the query can (RFC 7512), so the first one splits.
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, query),
            None => (rest, ""),
        };
        for (index, segment) in segments(path, Part::Path) {
            let attr = parse_attr(&uri.scheme, Part::Path, index, segment)?;
            uri.push_path(attr)?;
        }
        for (index, segment) in segments(query, Part::Query) {
            let attr = parse_attr(&uri.scheme, Part::Query, index, segment)?;
            uri.query.push(attr);
        }
        Ok(uri)
    }

    /// Adds a path attribute after the existing ones.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] if `name` is not lower-case letters, digits and `-`,
    /// or the URI already has a path attribute `name`.
    pub fn with_path_attr(mut self, name: &str, value: impl AsRef<[u8]>) -> Result<Self> {
        check_name(Part::Path, 1, name)?;
        self.push_path(Attr {
            name: name.into(),
            value: Zeroizing::new(value.as_ref().to_vec()),
        })?;
        Ok(self)
    }

    /// Adds a query attribute after the existing ones (a repeated name is kept).
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] if `name` is not lower-case letters, digits and `-`.
    pub fn with_query_attr(mut self, name: &str, value: impl AsRef<[u8]>) -> Result<Self> {
        check_name(Part::Query, 1, name)?;
        self.query.push(Attr {
            name: name.into(),
            value: Zeroizing::new(value.as_ref().to_vec()),
        });
        Ok(self)
    }

    /// The scheme, in lower case (`pkcs11`, `awskms`, `transit`, ...).
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The value of path attribute `name`, if present and UTF-8 (use
    /// [`KeyUri::path_attr_bytes`] for binary values such as a PKCS#11 `id`).
    pub fn path_attr(&self, name: &str) -> Option<&str> {
        self.path_attr_bytes(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The decoded bytes of path attribute `name`, if present.
    pub fn path_attr_bytes(&self, name: &str) -> Option<&[u8]> {
        find(&self.path, name)
    }

    /// The value of the first query attribute `name`, if present and UTF-8.
    pub fn query_attr(&self, name: &str) -> Option<&str> {
        self.query_attr_bytes(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The decoded bytes of the first query attribute `name`, if present.
    pub fn query_attr_bytes(&self, name: &str) -> Option<&[u8]> {
        find(&self.query, name)
    }

    /// The path attributes in order, as `(name, decoded value)`. Sensitive values are included;
    /// check [`KeyUri::is_sensitive_attr`] before showing one.
    pub fn path_attrs(&self) -> impl ExactSizeIterator<Item = (&str, &[u8])> + '_ {
        self.path.iter().map(|a| (&*a.name, a.value.as_slice()))
    }

    /// The query attributes in order, repeats included, as `(name, decoded value)`. Sensitive
    /// values are included; check [`KeyUri::is_sensitive_attr`] before showing one.
    pub fn query_attrs(&self) -> impl ExactSizeIterator<Item = (&str, &[u8])> + '_ {
        self.query.iter().map(|a| (&*a.name, a.value.as_slice()))
    }

    /// Whether attribute `name` of this URI holds a secret, and so is left out of `Display` and
    /// redacted in `Debug` (see [Secrets](KeyUri#secrets)).
    pub fn is_sensitive_attr(&self, name: &str) -> bool {
        is_sensitive(&self.scheme, name)
    }

    /// The key name the URI points at: path attribute `object` for `pkcs11:` (RFC 7512's
    /// `CKA_LABEL`), `name` for every other scheme. `None` if the attribute is absent.
    ///
    /// # Errors
    /// `Some(Err)` with [`crate::ErrorKind::InvalidInput`] if the value is not UTF-8 or not a
    /// valid [`KeyName`].
    pub fn key_name(&self) -> Option<Result<KeyName>> {
        let attr = if &*self.scheme == "pkcs11" {
            "object"
        } else {
            "name"
        };
        let value = self.path_attr_bytes(attr)?;
        Some(
            std::str::from_utf8(value)
                .map_err(|_| Error::invalid_input(format!("path attribute `{attr}` is not UTF-8")))
                .and_then(KeyName::new),
        )
    }

    /// Checks that every attribute is one a backend understands: path attributes in
    /// `known_path`, query attributes in `known_query`, or a vendor extension starting with
    /// `x-` (ignored). Backends call it first in their `Config::from_uri`.
    ///
    /// ```
    /// use keychain_core::KeyUri;
    /// let uri = KeyUri::parse("transit:name=signer;x-team=ops?address=http://127.0.0.1:8200")?;
    /// uri.check_attrs(&["name", "mount"], &["address"])?;
    /// assert!(uri.check_attrs(&["mount"], &["address"]).is_err());
    /// # Ok::<(), keychain_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] naming the first unknown attribute and the supported
    /// ones.
    pub fn check_attrs(&self, known_path: &[&str], known_query: &[&str]) -> Result<()> {
        for (kind, attrs, known) in [
            ("path", &self.path, known_path),
            ("query", &self.query, known_query),
        ] {
            if let Some(attr) = attrs
                .iter()
                .find(|a| !(a.name.starts_with("x-") || known.contains(&&*a.name)))
            {
                return Err(Error::invalid_input(format!(
                    "{}: URI {kind} attribute `{}` is unknown; supported are {}",
                    self.scheme,
                    attr.name,
                    known.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// The text of attribute `name`, from the path or else the query. `None` if absent.
    ///
    /// # Errors
    /// `Some(Err)` with [`crate::ErrorKind::InvalidInput`] if the value is not UTF-8.
    pub fn text_attr(&self, name: &str) -> Option<Result<String>> {
        let value = self
            .path_attr_bytes(name)
            .or_else(|| self.query_attr_bytes(name))?;
        Some(
            String::from_utf8(value.to_vec())
                .map_err(|_| Error::invalid_input(format!("attribute `{name}` is not UTF-8"))),
        )
    }

    /// The secret named by attribute `name`, looked up among the query attributes first (where
    /// RFC 7512 puts `pin-source` and `pin-value`), then the path attributes. `None` if absent.
    ///
    /// A sensitive attribute (`pin-value`, `password`, ...) is the secret itself:
    /// [`SecretSource::Value`]. Any other attribute (`pin-source`, `password-source`, ...) says
    /// where the secret is:
    ///
    /// - `env:VAR`: the environment variable `VAR`;
    /// - `file:/path`, `file:///path`, `file://localhost/path`, `file:relative/path` or a bare
    ///   `/path`: the file's contents (no second percent-decoding is done);
    /// - `prompt`: the prompt hook the application installed.
    ///
    /// ```
    /// use keychain_core::{KeyUri, SecretSource};
    /// let uri = KeyUri::parse("pkcs11:token=prod?pin-source=env:HSM_PIN")?;
    /// let source = uri.secret_source("pin-source").transpose()?;
    /// assert!(matches!(source, Some(SecretSource::Env(var)) if var == "HSM_PIN"));
    /// # Ok::<(), keychain_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// `Some(Err)` with [`crate::ErrorKind::InvalidInput`] if the value is not UTF-8 or not one
    /// of the forms above.
    pub fn secret_source(&self, name: &str) -> Option<Result<SecretSource>> {
        let value = self
            .query_attr_bytes(name)
            .or_else(|| self.path_attr_bytes(name))?;
        let Ok(text) = std::str::from_utf8(value) else {
            return Some(Err(Error::invalid_input(format!(
                "attribute `{name}` is not UTF-8"
            ))));
        };
        if self.is_sensitive_attr(name) {
            return Some(Ok(SecretSource::value(text)));
        }
        Some(parse_source(name, text))
    }

    fn push_path(&mut self, attr: Attr) -> Result<()> {
        if find(&self.path, &attr.name).is_some() {
            return Err(Error::invalid_input(format!(
                "path attribute `{}` appears twice; a path attribute may appear once (RFC 7512)",
                attr.name
            )));
        }
        self.path.push(attr);
        Ok(())
    }

    fn write(&self, f: &mut fmt::Formatter<'_>, redact: bool) -> fmt::Result {
        write!(f, "{}:", self.scheme)?;
        let path_set = if &*self.scheme == "pkcs11" {
            PKCS11_PATH_ENCODE
        } else {
            PATH_ENCODE
        };
        self.write_part(f, &self.path, path_set, ';', None, redact)?;
        self.write_part(f, &self.query, QUERY_ENCODE, '&', Some('?'), redact)
    }

    fn write_part(
        &self,
        f: &mut fmt::Formatter<'_>,
        attrs: &[Attr],
        set: &'static AsciiSet,
        separator: char,
        lead: Option<char>,
        redact: bool,
    ) -> fmt::Result {
        let mut first = true;
        for attr in attrs {
            let sensitive = self.is_sensitive_attr(&attr.name);
            if sensitive && !redact {
                continue;
            }
            match (first, lead) {
                (true, Some(lead)) => write!(f, "{lead}")?,
                (true, None) => {}
                (false, _) => write!(f, "{separator}")?,
            }
            first = false;
            if sensitive {
                write!(f, "{}={REDACTED}", attr.name)?;
            } else {
                write!(f, "{}={}", attr.name, percent_encode(&attr.value, set))?;
            }
        }
        Ok(())
    }
}

fn find<'a>(attrs: &'a [Attr], name: &str) -> Option<&'a [u8]> {
    attrs
        .iter()
        .find(|a| &*a.name == name)
        .map(|a| a.value.as_slice())
}

fn is_sensitive(scheme: &str, name: &str) -> bool {
    if scheme == "pkcs11" && name == "token" {
        return false;
    }
    SENSITIVE_NAMES.contains(&name) || SENSITIVE_SUFFIXES.iter().any(|s| name.ends_with(s))
}

fn parse_scheme(scheme: &str) -> Result<String> {
    if scheme.is_empty() {
        return Err(Error::invalid_input(
            "key URI has an empty scheme (nothing before ':'); expected e.g. pkcs11:...",
        ));
    }
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-');
    if valid {
        return Ok(scheme.to_ascii_lowercase());
    }
    // Without a scheme the text before the first ':' may be attributes, perhaps a PIN: quote it
    // only if it cannot be.
    let quotable = scheme.len() <= 32 && !scheme.contains(['=', ';', '?', '&', '%']);
    Err(Error::invalid_input(if quotable {
        format!(
            "key URI scheme {scheme:?} is invalid: a scheme is an ASCII letter followed by \
             letters, digits and '-'"
        )
    } else {
        "key URI has no valid scheme before its first ':'; a key URI starts with a scheme such as \
         pkcs11: (an ASCII letter followed by letters, digits and '-')"
            .to_owned()
    }))
}

/// The `separator`-separated segments of one part, numbered from 1; an empty part has none.
fn segments(part_text: &str, part: Part) -> impl Iterator<Item = (usize, &str)> + '_ {
    part_text
        .split(part.separator())
        .filter(move |_| !part_text.is_empty())
        .enumerate()
        .map(|(i, s)| (i + 1, s))
}

fn check_name(part: Part, index: usize, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid_input(format!(
            "{} {index} has an empty name (nothing before '=')",
            part.noun()
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(Error::invalid_input(format!(
            "{} name {name:?} is invalid: it contains {c:?}; names are lower-case letters, \
             digits and '-'",
            part.noun()
        )));
    }
    Ok(())
}

fn parse_attr(scheme: &str, part: Part, index: usize, segment: &str) -> Result<Attr> {
    if segment.is_empty() {
        let sep = part.separator();
        return Err(Error::invalid_input(format!(
            "{} {index} is empty (a '{sep}' at the start or end, or two in a row)",
            part.noun()
        )));
    }
    let Some((name, raw)) = segment.split_once('=') else {
        // The segment may be a secret typed without its name; quote it only if it looks like a
        // name.
        let looks_like_name = segment.len() <= 32
            && segment.bytes().any(|b| b.is_ascii_lowercase())
            && segment
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        return Err(Error::invalid_input(if looks_like_name {
            format!(
                "{} {segment:?} has no '=' (expected name=value)",
                part.noun()
            )
        } else {
            format!("{} {index} has no '=' (expected name=value)", part.noun())
        }));
    };
    check_name(part, index, name)?;
    let value = decode(raw, part, name, is_sensitive(scheme, name))?;
    Ok(Attr {
        name: name.into(),
        value,
    })
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Strict percent-decoding: every `%` must start a two-hex-digit escape.
fn decode(raw: &str, part: Part, name: &str, sensitive: bool) -> Result<Zeroizing<Vec<u8>>> {
    let bytes = raw.as_bytes();
    // Decoding never grows the value, so the buffer never reallocates and leaves no copy behind.
    let mut out = Zeroizing::new(Vec::with_capacity(bytes.len()));
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let escape = bytes
                .get(i + 1..i + 3)
                .and_then(|h| Some((hex(h[0])? << 4) | hex(h[1])?));
            if let Some(decoded) = escape {
                out.push(decoded);
                i += 3;
                continue;
            }
            let problem = if bytes.len() - i < 3 {
                "truncated percent escape"
            } else {
                "bad percent escape"
            };
            let shown = if sensitive {
                String::new()
            } else {
                format!(" {:?}", raw[i..].chars().take(3).collect::<String>())
            };
            return Err(Error::invalid_input(format!(
                "{problem}{shown} in the value of {} `{name}`: '%' must be followed by two hex \
                 digits (write a literal '%' as %25)",
                part.noun()
            )));
        }
        if b == b' ' || b == b'#' || b.is_ascii_control() {
            let shown = if sensitive {
                "a space, '#' or a control character".to_owned()
            } else {
                format!("{:?}", char::from(b))
            };
            return Err(Error::invalid_input(format!(
                "the value of {} `{name}` contains {shown}; percent-encode it (%{b:02X})",
                part.noun()
            )));
        }
        out.push(b);
        i += 1;
    }
    Ok(out)
}

fn parse_source(name: &str, text: &str) -> Result<SecretSource> {
    let invalid = || {
        Error::invalid_input(format!(
            "attribute `{name}` is {text:?}; expected env:VAR, file:/path or prompt"
        ))
    };
    if text == "prompt" {
        return Ok(SecretSource::Prompt);
    }
    if let Some(var) = text.strip_prefix("env:") {
        if var.is_empty() || var.contains(['=', '\0']) {
            return Err(invalid());
        }
        return Ok(SecretSource::env(var));
    }
    if let Some(rest) = text.strip_prefix("file:") {
        // RFC 8089: `file:/p`, or `file://host/p` where host is empty or localhost.
        let path = match rest.strip_prefix("//") {
            Some(authority_path) => {
                let slash = authority_path.find('/').ok_or_else(invalid)?;
                let (authority, path) = authority_path.split_at(slash);
                if !(authority.is_empty() || authority.eq_ignore_ascii_case("localhost")) {
                    return Err(Error::invalid_input(format!(
                        "attribute `{name}` names a file on host {authority:?}; only local files \
                         (file:/path) are supported"
                    )));
                }
                path
            }
            None => rest,
        };
        if path.is_empty() {
            return Err(invalid());
        }
        return Ok(SecretSource::File(PathBuf::from(path)));
    }
    if text.starts_with('/') {
        return Ok(SecretSource::File(PathBuf::from(text)));
    }
    Err(invalid())
}

impl fmt::Display for KeyUri {
    /// The canonical form, without sensitive attributes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, false)
    }
}

impl fmt::Debug for KeyUri {
    /// `KeyUri(<canonical form>)`, with `[redacted]` for sensitive values.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyUri(")?;
        self.write(f, true)?;
        f.write_str(")")
    }
}

impl FromStr for KeyUri {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

/// Serializes as the `Display` string, so sensitive attributes are left out.
impl Serialize for KeyUri {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Deserializes from a string with [`KeyUri::parse`].
impl<'de> Deserialize<'de> for KeyUri {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = Zeroizing::new(String::deserialize(d)?);
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::error::ErrorKind;

    fn p(s: &str) -> KeyUri {
        KeyUri::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> Error {
        match KeyUri::parse(s) {
            Ok(u) => panic!("{s} parsed as {u:?}"),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::InvalidInput, "{s}: {e}");
                e
            }
        }
    }

    fn ok<T>(r: Result<T>) -> T {
        r.unwrap_or_else(|e| panic!("{e}"))
    }

    const PKCS11: &str = "pkcs11:token=prod;object=signer;id=%01%02\
        ?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:HSM_PIN";

    #[test]
    fn pkcs11_example() {
        let u = p(PKCS11);
        assert_eq!(u.scheme(), "pkcs11");
        assert_eq!(u.path_attr("token"), Some("prod"));
        assert_eq!(u.path_attr("object"), Some("signer"));
        assert_eq!(u.path_attr_bytes("id"), Some(&[1u8, 2][..]));
        assert_eq!(
            u.query_attr("module-path"),
            Some("/usr/lib/softhsm/libsofthsm2.so")
        );
        assert_eq!(u.query_attr("pin-source"), Some("env:HSM_PIN"));
        assert_eq!(u.path_attr("missing"), None);
        assert_eq!(ok(u.key_name().expect("object")).as_str(), "signer");
        assert!(matches!(
            u.secret_source("pin-source"),
            Some(Ok(SecretSource::Env(v))) if v == "HSM_PIN"
        ));
        let names: Vec<_> = u.path_attrs().map(|(n, _)| n).collect();
        assert_eq!(names, ["token", "object", "id"]);
        assert_eq!(u.query_attrs().len(), 2);
        assert_eq!(u.to_string(), PKCS11);
        assert_eq!(p(&u.to_string()), u);
    }

    #[test]
    fn other_backend_examples_round_trip() {
        for s in [
            "awskms:key-id=alias/x;region=eu-west-1",
            "transit:mount=transit;name=x;version=3",
            "pkcs8:dir=/var/lib/keys;name=signer",
            "tpm2:handle=0x81010001;name=ak?tcti=swtpm:port=2321",
        ] {
            let u = p(s);
            assert_eq!(u.to_string(), s);
            assert_eq!(p(&u.to_string()), u);
        }
        let u = p("transit:mount=transit;name=x;version=3");
        assert_eq!(u.path_attr("version"), Some("3"));
        assert_eq!(ok(u.key_name().expect("name")).as_str(), "x");
        assert!(p("awskms:key-id=alias/x").key_name().is_none());
    }

    #[test]
    fn slash_is_escaped_in_pkcs11_paths_only() {
        assert_eq!(
            p("pkcs11:object=a/b?module-path=/x").to_string(),
            "pkcs11:object=a%2Fb?module-path=/x"
        );
        assert_eq!(p("awskms:key-id=a/b").to_string(), "awskms:key-id=a/b");
    }

    #[test]
    fn canonical_escaping() {
        let u = p("pkcs11:object=%6d%79%20key;id=%ba%DD;x=:[]@!$'()*+,=&~._-?q=/?:[]@!$'()*+,=;|");
        assert_eq!(u.path_attr("object"), Some("my key"));
        assert_eq!(u.path_attr_bytes("id"), Some(&[0xba, 0xdd][..]));
        assert_eq!(u.path_attr("x"), Some(":[]@!$'()*+,=&~._-"));
        assert_eq!(u.query_attr("q"), Some("/?:[]@!$'()*+,=;|"));
        assert_eq!(
            u.to_string(),
            "pkcs11:object=my%20key;id=%BA%DD;x=:[]@!$'()*+,=&~._-?q=/?:[]@!$'()*+,=%3B%7C"
        );
        let u = p("pkcs8:name=schlüssel;empty=");
        assert_eq!(u.path_attr("name"), Some("schlüssel"));
        assert_eq!(u.path_attr("empty"), Some(""));
        assert_eq!(u.to_string(), "pkcs8:name=schl%C3%BCssel;empty=");
        // '&' and ';' swap roles between the parts.
        let u =
            ok(ok(ok(KeyUri::new("x")).with_path_attr("a", "1&2;3")).with_query_attr("b", "1&2;3"));
        assert_eq!(u.to_string(), "x:a=1&2%3B3?b=1%262%3B3");
        assert_eq!(p(&u.to_string()), u);
    }

    #[test]
    fn binary_values_have_no_str() {
        let u = p("pkcs11:id=%FF%00");
        assert_eq!(u.path_attr("id"), None);
        assert_eq!(u.path_attr_bytes("id"), Some(&[0xff, 0][..]));
        let u = p("pkcs11:object=%FF");
        match u.key_name() {
            Some(Err(e)) => assert_eq!(e.kind(), ErrorKind::InvalidInput),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn order_unknown_and_repeated_query_attributes_are_kept() {
        let s = "pkcs11:x-vendor=1;object=a;token=b?z=1&a=2&z=3";
        let u = p(s);
        assert_eq!(u.to_string(), s);
        assert_eq!(u.query_attr("z"), Some("1"));
        let zs: Vec<_> = u
            .query_attrs()
            .filter(|(n, _)| *n == "z")
            .map(|(_, v)| v)
            .collect();
        assert_eq!(zs, [b"1", b"3"]);
    }

    #[test]
    fn empty_parts() {
        for s in ["pkcs11:", "pkcs11:?"] {
            let u = p(s);
            assert_eq!(u.path_attrs().len() + u.query_attrs().len(), 0);
            assert_eq!(u.to_string(), "pkcs11:");
        }
        assert_eq!(p("pkcs11:?a=b").to_string(), "pkcs11:?a=b");
    }

    #[test]
    fn scheme_is_case_insensitive() {
        assert_eq!(p("PKCS11:token=a").to_string(), "pkcs11:token=a");
        assert_eq!(p("PKCS11:token=a"), p("pkcs11:token=a"));
    }

    #[test]
    fn every_error_is_invalid_input_and_says_what() {
        let cases: &[(&str, &str)] = &[
            ("token=prod", "no ':'"),
            ("", "no ':'"),
            (":token=prod", "empty scheme"),
            ("1pkcs11:a=b", "\"1pkcs11\" is invalid"),
            ("pk_cs11:a=b", "\"pk_cs11\" is invalid"),
            ("token=x;pin-value=12:a", "no valid scheme"),
            ("pkcs11:Object=a", "\"Object\" is invalid"),
            ("pkcs11:obj_ect=a", "contains '_'"),
            ("pkcs11:=a", "empty name"),
            ("pkcs11:a=b?=c", "query attribute 1 has an empty name"),
            ("pkcs11:object", "\"object\" has no '='"),
            ("pkcs11:a=b;1234", "path attribute 2 has no '='"),
            ("pkcs11:a=b?c", "query attribute \"c\" has no '='"),
            ("pkcs11:id=%zz", "bad percent escape \"%zz\""),
            ("pkcs11:id=%4", "truncated percent escape \"%4\""),
            ("pkcs11:id=%", "truncated percent escape \"%\""),
            ("pkcs11:id=%0g1", "bad percent escape \"%0g\""),
            ("pkcs11:a=b;a=c", "`a` appears twice"),
            ("pkcs11:a=b;;c=d", "path attribute 2 is empty"),
            ("pkcs11:a=b;", "path attribute 2 is empty"),
            ("pkcs11:;a=b", "path attribute 1 is empty"),
            ("pkcs11:a=b?c=d&", "query attribute 2 is empty"),
            ("pkcs11:object=my key", "contains ' '"),
            ("pkcs11:object=a#b", "contains '#'"),
            ("pkcs11:object=a\nb", "contains '\\n'"),
        ];
        for (s, want) in cases {
            let e = err(s);
            assert!(e.message().contains(want), "{s:?}: {e}");
        }
    }

    #[test]
    fn builder() {
        let u = ok(ok(
            ok(ok(KeyUri::new("pkcs11")).with_path_attr("object", "signer"))
                .with_path_attr("id", [1u8, 2]),
        )
        .with_query_attr("pin-source", "file:/run/pin"));
        assert_eq!(
            u.to_string(),
            "pkcs11:object=signer;id=%01%02?pin-source=file:/run/pin"
        );
        assert_eq!(p(&u.to_string()), u);
        assert_eq!(ok(KeyUri::new("PKCS11")).scheme(), "pkcs11");
        for bad in ["", "1x", "a b", "x:"] {
            assert_eq!(
                KeyUri::new(bad).map(|_| ()).map_err(|e| e.kind()),
                Err(ErrorKind::InvalidInput),
                "{bad:?}"
            );
        }
        let u = ok(KeyUri::new("x"));
        assert!(u.clone().with_path_attr("Bad", "v").is_err());
        assert!(u.clone().with_path_attr("", "v").is_err());
        assert!(u.clone().with_query_attr("a=b", "v").is_err());
        let u = ok(u.with_path_attr("a", "1"));
        let e = u
            .clone()
            .with_path_attr("a", "2")
            .map(|_| ())
            .map_err(|e| e.kind());
        assert_eq!(e, Err(ErrorKind::InvalidInput));
        let u = ok(ok(u.with_query_attr("q", "1")).with_query_attr("q", "2"));
        assert_eq!(u.to_string(), "x:a=1?q=1&q=2");
    }

    #[test]
    fn pin_value_is_never_formatted() {
        let s = "pkcs11:token=prod;object=signer;password=hunter2\
                 ?pin-value=Pin%2D4711&module-path=/m.so&so-pin=SoPin99";
        let u = p(s);
        // Readable by the backend...
        assert_eq!(u.query_attr("pin-value"), Some("Pin-4711"));
        assert_eq!(u.path_attr("password"), Some("hunter2"));
        assert!(u.is_sensitive_attr("pin-value") && u.is_sensitive_attr("so-pin"));
        assert!(!u.is_sensitive_attr("token") && !u.is_sensitive_attr("pin-source"));
        // ...never printed.
        let display = u.to_string();
        let debug = format!("{u:?} {u:#?}");
        let json = serde_json::to_string(&u).unwrap_or_default();
        for out in [&display, &debug, &json] {
            for secret in ["4711", "hunter2", "SoPin99"] {
                assert!(!out.contains(secret), "{out}");
            }
        }
        assert_eq!(display, "pkcs11:token=prod;object=signer?module-path=/m.so");
        assert_eq!(
            debug.split(' ').next(),
            Some(
                "KeyUri(pkcs11:token=prod;object=signer;password=[redacted]\
                 ?pin-value=[redacted]&module-path=/m.so&so-pin=[redacted])"
            )
        );
        // Leaving out every query attribute leaves out the '?' too.
        assert_eq!(
            p("pkcs11:token=a?pin-value=1").to_string(),
            "pkcs11:token=a"
        );
        // `token` is the token label in pkcs11, a credential elsewhere.
        assert_eq!(
            p("transit:name=x?token=hvs.abc").to_string(),
            "transit:name=x"
        );
        // A PIN with a bad escape is not quoted in the error.
        let e = err("pkcs11:token=a?pin-value=12%zz34");
        assert!(!e.to_string().contains("zz"), "{e}");
        let e = err("pkcs11:token=a?pin-value=12 34");
        assert!(!e.to_string().contains("12"), "{e}");
    }

    #[test]
    fn secret_sources() {
        let src = |s: &str, name: &str| p(s).secret_source(name);
        let v = src("pkcs11:token=a?pin-value=1234", "pin-value");
        match v {
            Some(Ok(s)) => assert_eq!(ok(s.resolve("pin")).expose(), "1234"),
            other => panic!("{other:?}"),
        }
        let file = |s: &str| match src(s, "pin-source") {
            Some(Ok(SecretSource::File(p))) => p,
            other => panic!("{s}: {other:?}"),
        };
        for s in [
            "pkcs11:?pin-source=file:/run/pin",
            "pkcs11:?pin-source=file:///run/pin",
            "pkcs11:?pin-source=file://localhost/run/pin",
            "pkcs11:?pin-source=/run/pin",
        ] {
            assert_eq!(file(s), PathBuf::from("/run/pin"));
        }
        assert_eq!(
            file("pkcs8:?pin-source=file:pin.txt"),
            PathBuf::from("pin.txt")
        );
        assert!(matches!(
            src("pkcs11:?pin-source=prompt", "pin-source"),
            Some(Ok(SecretSource::Prompt))
        ));
        // Found in the path too.
        assert!(matches!(
            src("pkcs8:password-source=env:PW", "password-source"),
            Some(Ok(SecretSource::Env(v))) if v == "PW"
        ));
        assert!(src("pkcs11:token=a", "pin-source").is_none());
        for bad in [
            "env:",
            "env:A=B",
            "file:",
            "file://",
            "file://host/pin",
            "pin.txt",
            "|/usr/bin/pinentry",
            "%FF",
        ] {
            let s = format!("pkcs11:?pin-source={bad}");
            match src(&s, "pin-source") {
                Some(Err(e)) => assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn serde_is_a_string() {
        let u: KeyUri = ok(serde_json::from_str(r#""transit:name=x;version=3""#)
            .map_err(|e| Error::invalid_input(e.to_string())));
        assert_eq!(u, p("transit:name=x;version=3"));
        assert_eq!(
            serde_json::to_string(&u).ok().as_deref(),
            Some(r#""transit:name=x;version=3""#)
        );
        assert!(serde_json::from_str::<KeyUri>(r#""no scheme""#).is_err());
    }

    fn name() -> impl Strategy<Value = String> {
        "[a-z0-9-]{1,12}".prop_filter("sensitive", |n| !is_sensitive("", n))
    }

    fn value() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..16),
            // Mostly the characters that matter to the grammar.
            "[a-z/;?&=%#:@ ~|+]{0,12}".prop_map(String::into_bytes),
        ]
    }

    fn uri() -> impl Strategy<Value = KeyUri> {
        let scheme = prop_oneof![Just("pkcs11".to_owned()), "[a-z][a-z0-9-]{0,8}"];
        let attrs = || proptest::collection::vec((name(), value()), 0..6);
        (scheme, attrs(), attrs()).prop_map(|(scheme, path, query)| {
            let mut u = ok(KeyUri::new(&scheme));
            for (n, v) in path {
                // Repeated path names are an error; drop them.
                u = u.clone().with_path_attr(&n, v).unwrap_or(u);
            }
            for (n, v) in query {
                u = ok(u.with_query_attr(&n, v));
            }
            u
        })
    }

    proptest! {
        #[test]
        fn format_parses_back_and_is_stable(u in uri()) {
            let s = u.to_string();
            let back = KeyUri::parse(&s).map_err(|e| TestCaseError::fail(format!("{s}: {e}")))?;
            prop_assert_eq!(&back, &u);
            prop_assert_eq!(back.to_string(), s);
        }

        #[test]
        fn parse_never_panics_and_formats_stably(s in "[a-zA-Z0-9:;?&=%/#. -]{0,40}") {
            match KeyUri::parse(&s) {
                Ok(u) => {
                    let f = u.to_string();
                    let again = KeyUri::parse(&f)
                        .map_err(|e| TestCaseError::fail(format!("{f}: {e}")))?;
                    prop_assert_eq!(again.to_string(), f);
                }
                Err(e) => prop_assert_eq!(e.kind(), ErrorKind::InvalidInput),
            }
        }
    }
}
