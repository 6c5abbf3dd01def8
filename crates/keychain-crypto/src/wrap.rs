//! Key transport into a KMS or HSM: RSA-OAEP over a one-time AES key, and AES Key Wrap with
//! Padding (RFC 5649) of the key material under it — PKCS#11's `CKM_RSA_AES_KEY_WRAP`, which
//! Vault/OpenBao Transit's import, AWS KMS's `RSA_AES_KEY_WRAP_SHA_256` and Google Cloud KMS's
//! `rsa-oaep-*-aes-256` import methods all take.
//!
//! Only the importer's public key is used, so this runs RustCrypto's `rsa` whichever provider
//! is chosen (RUSTSEC-2023-0071 concerns private-key operations).

use keychain_core::{Error, ErrorKind, HashAlg, PublicKey, Result};
use rsa::pkcs8::DecodePublicKey as _;
use zeroize::Zeroizing;

/// `RSA-OAEP(wrapping, one-time AES-256 key) ‖ AES-KWP(one-time key, material)`, with `hash`
/// for OAEP and MGF1 (empty label). The one-time key is zeroized before returning.
///
/// # Errors
/// `InvalidInput` when `wrapping` is not an RSA key or `hash` is not SHA-256/384/512;
/// `InvalidInput` for material KWP cannot wrap (empty or over 4 GiB); `Unexpected` when the
/// system's random generator fails.
pub fn rsa_aes_key_wrap(wrapping: &PublicKey, hash: HashAlg, material: &[u8]) -> Result<Vec<u8>> {
    use aes_kw::cipher::KeyInit as _;
    let rsa_key = rsa::RsaPublicKey::from_public_key_der(wrapping.der())
        .map_err(|e| Error::invalid_input(format!("the wrapping key is not an RSA key: {e}")))?;
    if material.is_empty() {
        return Err(Error::invalid_input("no key material to wrap"));
    }
    let mut one_time = Zeroizing::new([0u8; 32]);
    getrandom::fill(one_time.as_mut_slice())
        .map_err(|e| Error::new(ErrorKind::Unexpected, format!("random generator: {e}")))?;
    let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
    let encrypted = match hash {
        HashAlg::Sha256 => rsa_key.encrypt(&mut rng, rsa::Oaep::<sha2::Sha256>::new(), &*one_time),
        HashAlg::Sha384 => rsa_key.encrypt(&mut rng, rsa::Oaep::<sha2::Sha384>::new(), &*one_time),
        HashAlg::Sha512 => rsa_key.encrypt(&mut rng, rsa::Oaep::<sha2::Sha512>::new(), &*one_time),
        other => return Err(Error::invalid_input(format!("RSA-OAEP with {other}"))),
    }
    .map_err(|e| Error::invalid_input(format!("RSA-OAEP encryption: {e}")))?;
    let kwp = aes_kw::KwpAes256::new_from_slice(one_time.as_slice())
        .map_err(|_| Error::new(ErrorKind::Unexpected, "AES-256 key length"))?;
    let mut buf = Zeroizing::new(vec![
        0u8;
        material
            .len()
            .div_ceil(8)
            .saturating_mul(8)
            .saturating_add(8)
    ]);
    let wrapped = kwp
        .wrap_key(material, &mut buf)
        .map_err(|e| Error::invalid_input(format!("AES key wrap: {e}")))?;
    let mut out = encrypted;
    out.extend_from_slice(wrapped);
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test assertions")]

    use super::*;
    use rsa::pkcs8::EncodePublicKey as _;

    #[test]
    fn unwraps_with_the_private_key() {
        use aes_kw::cipher::KeyInit as _;
        let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
        let private = rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap();
        let spki = private.to_public_key().to_public_key_der().unwrap();
        let public = PublicKey::from_der(spki.as_bytes()).unwrap();
        for material in [&b"k"[..], &[7u8; 32], &[9u8; 1217]] {
            let blob = rsa_aes_key_wrap(&public, HashAlg::Sha256, material).unwrap();
            let (head, tail) = blob.split_at(256);
            let one_time = private
                .decrypt(rsa::Oaep::<sha2::Sha256>::new(), head)
                .unwrap();
            let kwp = aes_kw::KwpAes256::new_from_slice(&one_time).unwrap();
            let mut buf = vec![0u8; tail.len()];
            assert_eq!(kwp.unwrap_key(tail, &mut buf).unwrap(), material);
        }
        // Two wraps of the same material differ (a fresh one-time key each time).
        let a = rsa_aes_key_wrap(&public, HashAlg::Sha256, b"same").unwrap();
        let b = rsa_aes_key_wrap(&public, HashAlg::Sha256, b"same").unwrap();
        assert_ne!(a, b);
        assert_eq!(
            rsa_aes_key_wrap(&public, HashAlg::Sha256, b"")
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidInput
        );
        let ec = p256::SecretKey::from_slice(&[3; 32]).unwrap().public_key();
        let ec = PublicKey::from_der(ec.to_public_key_der().unwrap().as_bytes()).unwrap();
        assert_eq!(
            rsa_aes_key_wrap(&ec, HashAlg::Sha256, b"k")
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidInput
        );
    }
}
