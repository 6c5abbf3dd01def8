//! AEAD with symmetric Transit keys: Transit `encrypt`/`decrypt` with the AAD as
//! `associated_data`, keychain's ciphertext frame around Transit's ciphertext, and the
//! conversion to and from Transit's own text form.

use base64ct::{Base64, Encoding as _};
use keychain_core::support::CiphertextFrame;
use keychain_core::{Error, KeyName, KeyRef, Result, SecretBytes};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::api::{self, parse_transit};
use crate::backend::VaultBackend;
use crate::error::{BACKEND, unexpected};

/// The format byte of a keychain Transit ciphertext: Transit's ciphertext bytes follow the key
/// version.
const FORMAT_TRANSIT: u8 = 1;

/// `0x01 ‖ key version (u32 big-endian) ‖ Transit's ciphertext bytes`, no magic byte.
const FRAME: CiphertextFrame = CiphertextFrame {
    magic: None,
    formats: &[FORMAT_TRANSIT],
    min_payload: 1,
};

/// Converts a ciphertext made by [`keychain_core::Backend::encrypt`] on this backend into
/// Transit's own text form (`vault:v<N>:<base64>`), which `bao write transit/decrypt/<key>
/// ciphertext=...` and other Transit clients accept.
///
/// ```
/// let ct = [1u8, 0, 0, 0, 3, 0xde, 0xad];
/// assert_eq!(keychain_vault::to_transit_ciphertext(&ct)?, "vault:v3:3q0=");
/// # Ok::<(), keychain_core::Error>(())
/// ```
///
/// # Errors
/// [`keychain_core::ErrorKind::Integrity`] when `ciphertext` is not one of this backend's.
pub fn to_transit_ciphertext(ciphertext: &[u8]) -> Result<String> {
    let framed = FRAME
        .parse(ciphertext)
        .map_err(|e| e.with_backend(BACKEND))?;
    Ok(format!(
        "vault:v{}:{}",
        framed.key_version,
        Base64::encode_string(framed.payload)
    ))
}

/// The inverse of [`to_transit_ciphertext`]: a Transit ciphertext made by any Transit client, as
/// a ciphertext [`keychain_core::Backend::decrypt_aead`] on this backend takes.
///
/// # Errors
/// [`keychain_core::ErrorKind::InvalidInput`] when `text` is not `vault:v<N>:<base64>`.
pub fn from_transit_ciphertext(text: &str) -> Result<Vec<u8>> {
    let (version, blob) = parse_transit(text).ok_or_else(|| {
        Error::invalid_input("not a Transit ciphertext (vault:v<N>:<base64>)").with_backend(BACKEND)
    })?;
    Ok(FRAME.seal(FORMAT_TRANSIT, version, &blob))
}

/// Overwrites the plaintext in a request body once it has been sent.
fn zeroize_json(body: &mut Value) {
    if let Some(Value::String(s)) = body.get_mut("plaintext") {
        zeroize::Zeroize::zeroize(s);
    }
}

impl VaultBackend {
    pub(crate) async fn encrypt_inner(
        &self,
        key: &KeyRef,
        plaintext: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>> {
        // Shared with other encrypts, exclusive of this backend's deletes (see `admin`).
        let _admin = self.admin.read().await;
        let (resolved, version) = self.target(key).await?;
        resolved.algorithm.require_symmetric()?;
        let encoded = Zeroizing::new(Base64::encode_string(plaintext));
        let mut body = json!({ "plaintext": encoded.as_str() });
        if !aad.is_empty() {
            body["associated_data"] = Base64::encode_string(aad).into();
        }
        if let Some(v) = version {
            body["key_version"] = v.into();
        }
        let result: Result<api::Encrypted> =
            self.post(self.path("encrypt", key.name()), &body).await;
        zeroize_json(&mut body);
        let (made_by, blob) = parse_transit(&result?.ciphertext)
            .ok_or_else(|| unexpected("Transit returned a ciphertext not in vault:v<N>: form"))?;
        Ok(FRAME.seal(FORMAT_TRANSIT, made_by, &blob))
    }

    pub(crate) async fn decrypt_aead_inner(
        &self,
        name: &KeyName,
        ciphertext: &[u8],
        aad: &[u8],
    ) -> Result<SecretBytes> {
        let resolved = self.resolve(name).await?;
        resolved.algorithm.require_symmetric()?;
        let text = to_transit_ciphertext(ciphertext)?;
        let mut body = json!({ "ciphertext": text });
        if !aad.is_empty() {
            body["associated_data"] = Base64::encode_string(aad).into();
        }
        self.transit_decrypt(name, &body).await
    }

    /// Transit `decrypt` (AEAD, and RSA-OAEP): the plaintext.
    pub(crate) async fn transit_decrypt(
        &self,
        name: &KeyName,
        body: &Value,
    ) -> Result<SecretBytes> {
        let decrypted: api::Decrypted = self.post(self.path("decrypt", name), body).await?;
        let bytes = Base64::decode_vec(decrypted.plaintext.as_str())
            .map_err(|_| unexpected("Transit returned a plaintext that is not base64"))?;
        Ok(SecretBytes::new(bytes))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test assertions")]

    use keychain_core::ErrorKind;

    use super::*;

    /// Ciphertexts written before the shared frame (`1 ‖ version ‖ Transit bytes`, by hand)
    /// still parse, and sealing the parts gives the same bytes.
    #[test]
    fn ciphertexts_of_the_old_layout_still_parse() {
        let old = [1u8, 0, 0, 0, 7, 1, 2, 3, 4];
        let p = FRAME.parse(&old).unwrap();
        assert_eq!((p.format, p.key_version), (FORMAT_TRANSIT, 7));
        assert_eq!(p.payload, [1, 2, 3, 4]);
        assert_eq!(FRAME.seal(p.format, p.key_version, p.payload), old);
        let big = [1u8, 0x01, 0x00, 0x00, 0x02, 0xff];
        assert_eq!(FRAME.parse(&big).unwrap().key_version, 0x0100_0002);
        assert_eq!(FRAME.seal(1, 0x0100_0002, &[0xff]), big);
    }

    #[test]
    fn transit_text_and_frames() {
        let ct = from_transit_ciphertext("vault:v7:AQIDBA==").unwrap();
        assert_eq!(ct, [1, 0, 0, 0, 7, 1, 2, 3, 4]);
        assert_eq!(to_transit_ciphertext(&ct).unwrap(), "vault:v7:AQIDBA==");
        for bad in [
            &[][..],
            &[1, 0, 0, 0, 7],
            &[2, 0, 0, 0, 7, 1],
            &[1, 0, 0, 0, 0, 1],
        ] {
            let e = to_transit_ciphertext(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Integrity, "{bad:?}");
            assert_eq!(e.backend(), Some(BACKEND));
        }
        assert_eq!(
            from_transit_ciphertext("nope").unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }
}
