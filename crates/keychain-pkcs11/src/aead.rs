//! Encryption inside the token: AES-GCM into keychain's self-describing ciphertext
//! ([`AeadCiphertext`], on the one ciphertext frame) and RSA-OAEP decryption.

use std::sync::Arc;

use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::rsa::{PkcsOaepParams, PkcsOaepSource};
use keychain_core::{
    Error, HashAlg, KeyName, KeyRef, KeyUsage, Operation, Result, RsaPadding, SecretBytes,
};
use keychain_crypto::{AeadCiphertext, HEADER_LEN, NONCE_LEN, TAG_LEN};

use crate::backend::Pkcs11Backend;
use crate::error::{decrypt_failure, map};
use crate::keys::require_usage;
use crate::sign::hash_mechanism;

/// RSA-OAEP with `h` for the digest and MGF1, and an empty label.
pub(crate) fn oaep_params(h: HashAlg) -> Result<PkcsOaepParams<'static>> {
    let (hash, mgf) = hash_mechanism(h)?;
    Ok(PkcsOaepParams::new(hash, mgf, PkcsOaepSource::empty()))
}

impl Pkcs11Backend {
    /// `decrypt`: RSA-OAEP with a hash the token was found to take.
    pub(crate) async fn decrypt_oaep(
        &self,
        key: &KeyRef,
        ciphertext: &[u8],
        padding: RsaPadding,
    ) -> Result<SecretBytes> {
        let RsaPadding::Oaep(hash) = padding else {
            return Err(Error::unsupported("this padding"));
        };
        if !self.inner.capabilities.supports_oaep(hash) {
            return Err(Error::unsupported(format!(
                "this token does not offer RSA-OAEP with {hash}"
            )));
        }
        let inner = Arc::clone(&self.inner);
        let key2 = key.clone();
        let ct = ciphertext.to_vec();
        self.inner
            .pool
            .run(
                Operation::Decrypt,
                inner.call(key2.name(), ct.len()),
                move |s| {
                    inner.with_key(s, key2.name(), key2.version(), |entry, v| {
                        if !entry.algorithm.is_rsa() {
                            return Err(Error::invalid_input(format!(
                                "RSA-OAEP needs an RSA key; {} is {}",
                                entry.name, entry.algorithm
                            )));
                        }
                        require_usage(entry, KeyUsage::Decrypt, "decrypt")?;
                        let params = oaep_params(hash)?;
                        s.decrypt(&Mechanism::RsaPkcsOaep(params), v.key, &ct)
                            .map(SecretBytes::new)
                            .map_err(|e| decrypt_failure(map(e), false))
                    })
                },
            )
            .await
    }

    /// `encrypt`: a nonce from the token's generator, `C_Encrypt` with `CKM_AES_GCM` over the
    /// header's authenticated part and the caller's AAD.
    pub(crate) async fn encrypt_with(
        &self,
        key: &KeyRef,
        plaintext: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>> {
        let inner = Arc::clone(&self.inner);
        let key2 = key.clone();
        let (plaintext, aad) = (zeroize::Zeroizing::new(plaintext.to_vec()), aad.to_vec());
        self.inner
            .pool
            .run(
                Operation::Encrypt,
                inner.call(key2.name(), plaintext.len()),
                move |s| {
                    inner.with_key(s, key2.name(), key2.version(), |entry, v| {
                        entry.algorithm.require_symmetric()?;
                        require_usage(entry, KeyUsage::Encrypt, "encrypt")?;
                        let random = s.generate_random_vec(NONCE_LEN as u32).map_err(map)?;
                        let mut nonce = [0u8; NONCE_LEN];
                        nonce.copy_from_slice(&random);
                        let header = AeadCiphertext::header_array(v.version, &nonce);
                        let full_aad = AeadCiphertext::full_aad(&header, &aad);
                        let mut iv = nonce;
                        let params =
                            GcmParams::new(&mut iv, &full_aad, (TAG_LEN as u64 * 8).into())
                                .map_err(map)?;
                        let body = s
                            .encrypt(&Mechanism::AesGcm(params), v.key, &plaintext)
                            .map_err(map)?;
                        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
                        out.extend_from_slice(&header);
                        out.extend_from_slice(&body);
                        Ok(out)
                    })
                },
            )
            .await
    }

    /// `decrypt_aead`: the version named in the ciphertext, `C_Decrypt` with `CKM_AES_GCM`.
    pub(crate) async fn open_aead(
        &self,
        name: &KeyName,
        ciphertext: &[u8],
        aad: &[u8],
    ) -> Result<SecretBytes> {
        let parsed = AeadCiphertext::parse(ciphertext)?;
        let version = parsed.key_version;
        let nonce = parsed.nonce;
        let full_aad = AeadCiphertext::full_aad(parsed.header_bytes(), aad);
        let body = parsed.body.to_vec();
        let inner = Arc::clone(&self.inner);
        let name2 = name.clone();
        self.inner
            .pool
            .run(
                Operation::DecryptAead,
                inner.call(&name2, body.len()),
                move |s| {
                    inner.with_key(s, &name2, Some(version), |entry, v| {
                        entry.algorithm.require_symmetric()?;
                        require_usage(entry, KeyUsage::Decrypt, "decrypt")?;
                        let mut iv = nonce;
                        let params =
                            GcmParams::new(&mut iv, &full_aad, (TAG_LEN as u64 * 8).into())
                                .map_err(map)?;
                        s.decrypt(&Mechanism::AesGcm(params), v.key, &body)
                            .map(SecretBytes::new)
                            .map_err(|e| decrypt_failure(map(e), true))
                    })
                },
            )
            .await
    }
}
