//! Keys leaving the token: `export_wrapped` under a password (the token wraps the key under a
//! session key first) or under an AES key of the token (`C_WrapKey`), and
//! [`Pkcs11Backend::extract_key`] for re-encoding elsewhere.

use std::sync::Arc;

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use keychain_core::{
    Error, ErrorKind, KeyAlgorithm, KeyMaterial, KeyRef, KeyUsage, Operation, Result, SecretBytes,
    WrapFormat, WrappedKey, WrappingSpec,
};

use crate::backend::{Inner, Pkcs11Backend};
use crate::error::{in_op, map, not_wrappable};
use crate::objects::{self, KeyEntry};
use crate::pool::Call;

/// The message of `Unsupported` on a token that cannot export.
const NO_KEY_WRAP_PAD: &str = "this token has no CKM_AES_KEY_WRAP_PAD to export keys with";

/// Some modules (SoftHSM 2.6) zero-pad what they wrap to a multiple of 8 bytes before the
/// RFC 5649 wrap, so the unwrapped bytes can end in zeros that belong to no key: cut to the
/// AES key length (`key_len`) or the DER length of the PKCS#8 document, and refuse anything but
/// zeros after it.
fn trim_padding(material: SecretBytes, key_len: Option<usize>) -> Result<SecretBytes> {
    let bytes = material.expose();
    let len = match key_len {
        Some(n) => n,
        None => {
            let err =
                |e: der::Error| Error::new(ErrorKind::Integrity, format!("exported key: {e}"));
            let mut reader = der::SliceReader::new(bytes).map_err(err)?;
            let header = <der::Header as der::Decode<'_>>::decode(&mut reader).map_err(err)?;
            let end = (der::Reader::position(&reader) + header.length()).map_err(err)?;
            usize::try_from(end).map_err(err)?
        }
    };
    if len > bytes.len() || bytes[len..].iter().any(|b| *b != 0) {
        return Err(Error::new(
            ErrorKind::Integrity,
            "the token exported a key of an unexpected length",
        ));
    }
    if len == bytes.len() {
        return Ok(material);
    }
    Ok(SecretBytes::from_slice(&bytes[..len]))
}

impl Inner {
    /// The key material of an extractable key, read through the token's own export: wrapped
    /// (`CKM_AES_KEY_WRAP_PAD`) under a fresh session AES key that is readable, unwrapped here
    /// and the session key destroyed. PKCS#8 DER for asymmetric keys, the raw key for AES.
    fn extract(session: &Session, key: ObjectHandle) -> Result<SecretBytes> {
        use aes_kw::cipher::KeyInit as _;
        let kek = session
            .generate_key(
                &Mechanism::AesKeyGen,
                &[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::AES),
                    Attribute::ValueLen(32.into()),
                    Attribute::Token(false),
                    Attribute::Private(true),
                    Attribute::Sensitive(false),
                    Attribute::Extractable(true),
                    Attribute::Wrap(true),
                    Attribute::Unwrap(false),
                    Attribute::Encrypt(false),
                    Attribute::Decrypt(false),
                ],
            )
            .map_err(map)?;
        let result = (|| {
            let wrapped = session
                .wrap_key(&Mechanism::AesKeyWrapPad, kek, key)
                .map_err(map)
                .map_err(|e| not_wrappable(e, "export"))?;
            let mut attrs = session
                .get_attributes(kek, &[AttributeType::Value])
                .map_err(map)?;
            let value = zeroize::Zeroizing::new(
                objects::attr_bytes(&attrs, AttributeType::Value)
                    .unwrap_or_default()
                    .to_vec(),
            );
            objects::scrub(&mut attrs);
            let kwp = aes_kw::KwpAes256::new_from_slice(&value)
                .map_err(|_| Error::new(ErrorKind::Unexpected, "the session key is not AES-256"))?;
            let mut buf = zeroize::Zeroizing::new(vec![0u8; wrapped.len()]);
            let plain = kwp.unwrap_key(&wrapped, &mut buf).map_err(|_| {
                Error::new(
                    ErrorKind::Integrity,
                    "the token's wrapped key does not unwrap",
                )
            })?;
            Ok(SecretBytes::from_slice(plain))
        })();
        if let Err(e) = session.destroy_object(kek) {
            tracing::warn!(error = %e, "destroying the export session key failed");
        }
        result
    }

    /// The key as read from the token, if it was created exportable (`PermissionDenied` if not).
    fn exportable(&self, s: &Session, key: &KeyRef) -> Result<Arc<KeyEntry>> {
        let entry = self.reload(s, key.name())?;
        if !entry.exportable {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                "the key was not created exportable (CKA_EXTRACTABLE is false)",
            ));
        }
        Ok(entry)
    }

    /// The PKCS#8 DER of an extractable key (AES keys in keychain's PKCS#8 envelope), checked
    /// to be the key's algorithm.
    fn extract_pkcs8(&self, s: &Session, key: &KeyRef) -> Result<(KeyAlgorithm, SecretBytes)> {
        let entry = self.exportable(s, key)?;
        let version = entry.version(key.version())?;
        let material = trim_padding(
            Self::extract(s, version.key)?,
            entry.algorithm.symmetric_key_len(),
        )?;
        let der = if entry.algorithm.is_symmetric() {
            keychain_crypto::pkcs8::symmetric_to_pkcs8(entry.algorithm, material.expose())?
        } else {
            material
        };
        let found = keychain_crypto::pkcs8::inspect(der.expose())?.algorithm;
        if found != entry.algorithm {
            return Err(Error::new(
                ErrorKind::Integrity,
                format!(
                    "the token exported a {found} key for a {} key",
                    entry.algorithm
                ),
            ));
        }
        Ok((entry.algorithm, der))
    }

    /// The wrapping key of `WrappingSpec::Key`: an AES key of this token with the wrap usage.
    pub(crate) fn kek(&self, s: &Session, kek: &KeyRef) -> Result<ObjectHandle> {
        let entry = self.reload(s, kek.name())?;
        if !entry.algorithm.is_aes() || !entry.usages.contains(KeyUsage::Wrap) {
            return Err(Error::invalid_input(format!(
                "wrapping key {} must be an AES key with the wrap usage (it is a {} key with {:?})",
                kek.name(),
                entry.algorithm,
                entry.usages
            )));
        }
        Ok(entry.version(kek.version())?.key)
    }

    /// `export_wrapped` under a key of the token: `C_WrapKey` with `CKM_AES_KEY_WRAP_PAD`; the
    /// key never leaves the token in the clear. Asymmetric keys carry their public key.
    fn wrap_under(&self, s: &Session, key: &KeyRef, kek: &KeyRef) -> Result<WrappedKey> {
        let entry = self.exportable(s, key)?;
        let version = entry.version(key.version())?;
        let wrapping = self.kek(s, kek)?;
        let bytes = s
            .wrap_key(&Mechanism::AesKeyWrapPad, wrapping, version.key)
            .map_err(map)
            .map_err(|e| not_wrappable(e, "wrap"))?;
        let wrapped = WrappedKey::new(WrapFormat::AesKeyWrapPad, entry.algorithm, bytes);
        Ok(match &version.public_key {
            Some(public) => wrapped.with_public_key(public),
            None => wrapped,
        })
    }
}

impl Pkcs11Backend {
    /// The key material of an extractable key, **in the clear, in this process's memory**: PKCS#8
    /// DER for RSA, EC and Ed25519 keys, the raw bytes for AES (zeroized when dropped). For
    /// re-encoding into another protected format — a SmartCard-HSM backup blob under a DKEK —
    /// where [`keychain_core::Backend::export_wrapped`] has no matching `WrappingSpec`. The
    /// token wraps the key under a session key first (`CKM_AES_KEY_WRAP_PAD`), as for a
    /// password export.
    ///
    /// # Errors
    /// `PermissionDenied` for a key not created exportable; `Unsupported` for keys the token
    /// cannot wrap (SoftHSM 2.6: Ed25519) or a token without `CKM_AES_KEY_WRAP_PAD`;
    /// `NotFound` for a missing key or version.
    pub async fn extract_key(&self, key: &KeyRef) -> Result<KeyMaterial> {
        let op = Operation::ExportWrapped;
        let fail = in_op(op, Some(key.name()));
        if !self.inner.capabilities.export_wrapped {
            return Err(fail(Error::unsupported(NO_KEY_WRAP_PAD)));
        }
        let inner = Arc::clone(&self.inner);
        let key2 = key.clone();
        let (algorithm, der) = self
            .inner
            .pool
            .run(op, Call::OffThread, move |s| inner.extract_pkcs8(s, &key2))
            .await
            .map_err(&fail)?;
        if algorithm.is_symmetric() {
            let plain = keychain_crypto::pkcs8::inspect(der.expose()).map_err(&fail)?;
            return Ok(KeyMaterial::Symmetric(plain.material));
        }
        Ok(KeyMaterial::Pkcs8 {
            data: der,
            password: None,
        })
    }

    /// `export_wrapped`: under a password (encrypted PKCS#8 with the configured export KDF) or
    /// under an AES key of the token.
    pub(crate) async fn export(&self, key: &KeyRef, with: &WrappingSpec) -> Result<WrappedKey> {
        let op = Operation::ExportWrapped;
        let password = match with {
            WrappingSpec::Password(password) => password,
            WrappingSpec::Key(kek) => {
                let inner = Arc::clone(&self.inner);
                let (key2, kek) = (key.clone(), kek.clone());
                return self
                    .inner
                    .pool
                    .run(op, Call::OffThread, move |s| {
                        inner.wrap_under(s, &key2, &kek)
                    })
                    .await;
            }
            _ => return Err(Error::unsupported("this wrapping spec")),
        };
        if password.expose().is_empty() {
            return Err(Error::invalid_input("the export password is empty"));
        }
        if !self.inner.capabilities.export_wrapped {
            return Err(Error::unsupported(NO_KEY_WRAP_PAD));
        }
        let inner = Arc::clone(&self.inner);
        let (key2, password) = (key.clone(), password.duplicate());
        self.inner
            .pool
            .run(op, Call::OffThread, move |s| {
                let (algorithm, der) = inner.extract_pkcs8(s, &key2)?;
                let bytes = keychain_crypto::pkcs8::encrypt_der(
                    der.expose(),
                    password.expose().as_bytes(),
                    inner.export_kdf,
                )?;
                Ok(WrappedKey::new(
                    WrapFormat::EncryptedPkcs8,
                    algorithm,
                    bytes,
                ))
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test assertions")]

    use super::*;

    #[test]
    fn padding_after_the_key_is_cut_and_anything_else_refused() {
        let aes = |b: &[u8], len| trim_padding(SecretBytes::from_slice(b), Some(len));
        assert_eq!(aes(&[1; 16], 16).unwrap().expose(), &[1; 16]);
        assert_eq!(
            aes(&[&[1u8; 24][..], &[0; 8]].concat(), 24)
                .unwrap()
                .expose(),
            &[1; 24]
        );
        let kind = |r: Result<SecretBytes>| r.err().map(|e| e.kind());
        assert_eq!(kind(aes(&[1; 16], 24)), Some(ErrorKind::Integrity));
        assert_eq!(
            kind(aes(&[&[1u8; 16][..], &[0, 0, 0, 9]].concat(), 16)),
            Some(ErrorKind::Integrity)
        );
        // PKCS#8 is cut at its DER length: a SEQUENCE of 3 content bytes, then zeros.
        let der = [0x30, 0x03, 0x02, 0x01, 0x05];
        let padded = [&der[..], &[0, 0, 0]].concat();
        let trimmed = trim_padding(SecretBytes::from_slice(&padded), None).unwrap();
        assert_eq!(trimmed.expose(), &der);
        assert_eq!(
            kind(trim_padding(
                SecretBytes::from_slice(&[0x30, 0x09, 1]),
                None
            )),
            Some(ErrorKind::Integrity)
        );
    }
}
