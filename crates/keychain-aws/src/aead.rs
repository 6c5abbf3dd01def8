//! AEAD with symmetric KMS keys: `Encrypt`/`Decrypt` with the AAD and keychain's header bound
//! through the encryption context, the ciphertext frame, and data keys for envelope
//! encryption.

use std::collections::HashMap;

use aws_sdk_kms::primitives::Blob;
use base64ct::{Base64, Encoding as _};
use keychain_core::support::CiphertextFrame;
use keychain_core::{Error, KeyName, KeyRef, KeyUsage, KeyVersion, Result, SecretBytes};

use crate::backend::AwsBackend;
use crate::error::{integrity, map, unexpected};

/// Format byte of a ciphertext whose KMS blob holds the plaintext as it is.
const FORMAT_PLAIN: u8 = 1;
/// Format byte of a ciphertext of the empty plaintext (KMS refuses to encrypt nothing, so the
/// blob holds one zero byte).
const FORMAT_EMPTY: u8 = 2;

/// `format ‖ key version (u32 big-endian) ‖ KMS CiphertextBlob`, no magic byte.
const FRAME: CiphertextFrame = CiphertextFrame {
    magic: None,
    formats: &[FORMAT_PLAIN, FORMAT_EMPTY],
    min_payload: 1,
};

/// The longest data key `GenerateDataKey` makes (its `NumberOfBytes` limit).
const MAX_DATA_KEY: usize = 1024;

/// Encryption-context entries; see the README's "AAD and the encryption context".
const CTX_FORMAT: &str = "keychain-format";
const CTX_VERSION: &str = "keychain-key-version";
const CTX_AAD: &str = "keychain-aad";

/// A data key from [`AwsBackend::generate_data_key`]: the plaintext to use now, and the
/// same key encrypted under the KMS key in keychain's ciphertext format.
#[derive(Debug)]
#[non_exhaustive]
pub struct DataKey {
    /// The data key itself. Use it, then drop it (it is zeroized).
    pub plaintext: SecretBytes,
    /// The data key encrypted under the KMS key, with the AAD bound; opened by
    /// [`keychain_core::Backend::decrypt_aead`] with the key's name and the same AAD.
    pub ciphertext: Vec<u8>,
}

/// The encryption context of a keychain ciphertext.
fn context(format: u8, version: KeyVersion, aad: &[u8]) -> HashMap<String, String> {
    let mut ctx = HashMap::with_capacity(3);
    ctx.insert(CTX_FORMAT.to_owned(), format.to_string());
    ctx.insert(CTX_VERSION.to_owned(), version.to_string());
    if !aad.is_empty() {
        ctx.insert(CTX_AAD.to_owned(), Base64::encode_string(aad));
    }
    ctx
}

impl AwsBackend {
    /// The body of [`AwsBackend::generate_data_key`].
    pub(crate) async fn data_key(&self, key: &KeyRef, len: usize, aad: &[u8]) -> Result<DataKey> {
        if !(1..=MAX_DATA_KEY).contains(&len) {
            return Err(Error::invalid_input(format!(
                "a data key is 1 to {MAX_DATA_KEY} bytes, not {len}"
            )));
        }
        let (key_id, version) = self.symmetric_target(key).await?;
        let len = i32::try_from(len).map_err(|_| Error::invalid_input("length"))?;
        let out = self
            .client
            .generate_data_key()
            .key_id(&key_id)
            .number_of_bytes(len)
            .set_encryption_context(Some(context(FORMAT_PLAIN, version, aad)))
            .send()
            .await
            .map_err(map)?;
        let plaintext = out
            .plaintext
            .map(|b| SecretBytes::new(b.into_inner()))
            .ok_or_else(|| unexpected("GenerateDataKey returned no plaintext"))?;
        let blob = out
            .ciphertext_blob
            .ok_or_else(|| unexpected("GenerateDataKey returned no ciphertext"))?;
        Ok(DataKey {
            plaintext,
            ciphertext: FRAME.seal(FORMAT_PLAIN, version, blob.as_ref()),
        })
    }

    /// The KMS key and version to encrypt with: `key` must be a symmetric key that encrypts.
    async fn symmetric_target(&self, key: &KeyRef) -> Result<(String, KeyVersion)> {
        let (r, id, version) = self.target(key).await?;
        r.algorithm.require_symmetric()?;
        if !r.usages.contains(KeyUsage::Encrypt) {
            return Err(Error::invalid_input("the key lacks the encrypt usage"));
        }
        Ok((id, version))
    }

    pub(crate) async fn encrypt_inner(
        &self,
        key: &KeyRef,
        plaintext: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>> {
        self.caps.check_plaintext(plaintext.len()).map_err(|e| {
            Error::invalid_input(format!(
                "{}; use envelope encryption (generate_data_key) for more",
                e.message()
            ))
        })?;
        let (id, version) = self.symmetric_target(key).await?;
        let (format, body): (u8, &[u8]) = if plaintext.is_empty() {
            (FORMAT_EMPTY, &[0])
        } else {
            (FORMAT_PLAIN, plaintext)
        };
        let out = self
            .client
            .encrypt()
            .key_id(&id)
            .plaintext(Blob::new(body))
            .set_encryption_context(Some(context(format, version, aad)))
            .send()
            .await
            .map_err(map)?;
        let blob = out
            .ciphertext_blob
            .ok_or_else(|| unexpected("Encrypt returned no ciphertext"))?;
        Ok(FRAME.seal(format, version, blob.as_ref()))
    }

    pub(crate) async fn decrypt_aead_inner(
        &self,
        name: &KeyName,
        ciphertext: &[u8],
        aad: &[u8],
    ) -> Result<SecretBytes> {
        let r = self.resolve(name).await?;
        r.algorithm.require_symmetric()?;
        let framed = FRAME.parse(ciphertext)?;
        let format = framed.format;
        // No KeyId: KMS finds the key in the blob, and the answer's KeyId is checked below, so
        // another key's ciphertext is an integrity failure the same way everywhere.
        let out = self
            .client
            .decrypt()
            .ciphertext_blob(Blob::new(framed.payload))
            .set_encryption_context(Some(context(format, framed.key_version, aad)))
            .send()
            .await
            .map_err(map)?;
        let plaintext = out
            .plaintext
            .map(|b| SecretBytes::new(b.into_inner()))
            .ok_or_else(|| unexpected("Decrypt returned no plaintext"))?;
        let used = out.key_id.unwrap_or_default();
        if used != r.arn && used != r.key_id {
            return Err(integrity("the ciphertext was made with another key"));
        }
        if format == FORMAT_EMPTY {
            if plaintext.expose() != [0] {
                return Err(integrity("malformed empty-plaintext ciphertext"));
            }
            return Ok(SecretBytes::new(Vec::new()));
        }
        Ok(plaintext)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test assertions")]

    use keychain_core::ErrorKind;

    use super::*;

    /// Ciphertexts written before the shared frame (format ‖ version ‖ blob, by hand) still
    /// parse, and sealing the parts gives the same bytes.
    #[test]
    fn ciphertexts_of_the_old_layout_still_parse() {
        let plain = [1u8, 0, 0, 0, 3, b'b', b'l', b'o', b'b'];
        let p = FRAME.parse(&plain).unwrap();
        assert_eq!((p.format, p.key_version, p.payload), (1, 3, &b"blob"[..]));
        assert_eq!(FRAME.seal(p.format, p.key_version, p.payload), plain);

        let empty = [2u8, 0x01, 0x02, 0x03, 0x04, 0xa0, 0xa1, 0xa2];
        let p = FRAME.parse(&empty).unwrap();
        assert_eq!(p.format, FORMAT_EMPTY);
        assert_eq!(p.key_version, 0x0102_0304);
        assert_eq!(p.payload, [0xa0, 0xa1, 0xa2]);
        assert_eq!(FRAME.seal(p.format, p.key_version, p.payload), empty);

        for bad in [
            &[][..],
            &[1, 0, 0, 0, 3],
            &[3, 0, 0, 0, 3, 1],
            &[1, 0, 0, 0, 0, 1],
        ] {
            assert_eq!(
                FRAME.parse(bad).unwrap_err().kind(),
                ErrorKind::Integrity,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_context_binds_format_version_and_aad() {
        let ctx = context(FORMAT_PLAIN, 3, b"hi");
        assert_eq!(ctx.get(CTX_FORMAT).map(String::as_str), Some("1"));
        assert_eq!(ctx.get(CTX_VERSION).map(String::as_str), Some("3"));
        assert_eq!(ctx.get(CTX_AAD).map(String::as_str), Some("aGk="));
        assert!(!context(FORMAT_EMPTY, 1, b"").contains_key(CTX_AAD));
    }
}
