//! Encryption: AEAD with symmetric keys into keychain's self-describing ciphertext
//! ([`AeadCiphertext`], on the one ciphertext frame), and RSA-OAEP decryption.

use std::borrow::Cow;

use keychain_core::{
    Error, ErrorKind, KeyName, KeyRef, KeyUsage, KeyVersion, Operation, Result, RsaPadding,
    SecretBytes,
};
use keychain_crypto::{AUTHENTICATED_LEN, AeadCiphertext, AeadKey, HEADER_LEN, NONCE_LEN, TAG_LEN};

use crate::backend::Pkcs8Backend;
use crate::cache::Loaded;
use crate::error::in_op;

impl Pkcs8Backend {
    /// `encrypt` on the hot path: the key's current version is decrypted and cached, and its
    /// metadata is unchanged on disk (same stamp); nothing to await. The seal runs under the
    /// cache's read lock (microseconds, shared) rather than paying for an `Arc` clone and drop
    /// per call. `None` when the slow path must answer.
    #[inline]
    pub(crate) fn encrypt_cached(
        &self,
        key: &KeyRef,
        plaintext: &[u8],
        aad: &[u8],
    ) -> Option<Result<Vec<u8>>> {
        self.cache
            .with(key.name(), |entry| {
                if self.is_current(entry)
                    && key.version().is_none_or(|v| v == entry.meta.current())
                    && let Some(Loaded::Aead(k)) = entry.current.get()
                    && entry.meta.usages.contains(KeyUsage::Encrypt)
                    && !self.closed.is_closed()
                {
                    Some(
                        self.seal(k.as_ref(), entry.meta.current(), plaintext, aad)
                            .map_err(|e| in_op(e, Operation::Encrypt, Some(key.name()))),
                    )
                } else {
                    None
                }
            })
            .flatten()
    }

    /// `encrypt` when [`Pkcs8Backend::encrypt_cached`] could not: loads what it needs.
    pub(crate) async fn encrypt_with(
        &self,
        key: &KeyRef,
        plaintext: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>> {
        let entry = self.entry(key.name()).await?;
        entry.meta.algorithm.require_symmetric()?;
        entry.meta.require_usage(KeyUsage::Encrypt)?;
        let version = key.version().unwrap_or_else(|| entry.meta.current());
        let Loaded::Aead(k) = self.loaded(&entry, version).await? else {
            return Err(Error::invalid_input("not a symmetric key"));
        };
        self.seal(k.as_ref(), version, plaintext, aad)
    }

    /// Seals `plaintext` into the self-describing ciphertext format under `version`.
    #[inline]
    fn seal(
        &self,
        k: &dyn AeadKey,
        version: KeyVersion,
        plaintext: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        self.provider.fill_random(&mut nonce)?;
        let header = AeadCiphertext::header_array(version, &nonce);
        let mut out = Vec::with_capacity(plaintext.len().saturating_add(HEADER_LEN + TAG_LEN));
        out.extend_from_slice(&header);
        // The header's first bytes are authenticated as a prefix of the caller's AAD; short
        // AADs (the common case) are assembled on the stack.
        let mut small = [0u8; 64];
        let full_len = aad.len().saturating_add(AUTHENTICATED_LEN);
        let full_aad: Cow<'_, [u8]> = if full_len <= small.len() {
            small[..AUTHENTICATED_LEN].copy_from_slice(&header[..AUTHENTICATED_LEN]);
            small[AUTHENTICATED_LEN..full_len].copy_from_slice(aad);
            Cow::Borrowed(&small[..full_len])
        } else {
            AeadCiphertext::full_aad(&header, aad).into()
        };
        k.seal_append(&nonce, &full_aad, plaintext, &mut out)?;
        Ok(out)
    }

    /// `decrypt_aead`: the version named in the ciphertext.
    pub(crate) async fn open_aead(
        &self,
        name: &KeyName,
        ciphertext: &[u8],
        aad: &[u8],
    ) -> Result<SecretBytes> {
        let entry = self.entry(name).await?;
        entry.meta.algorithm.require_symmetric()?;
        entry.meta.require_usage(KeyUsage::Decrypt)?;
        let ct = AeadCiphertext::parse(ciphertext)?;
        if ct.key_version > entry.meta.current() {
            // A version that never existed: the header was altered.
            return Err(Error::new(
                ErrorKind::Integrity,
                "ciphertext names a key version that never existed",
            ));
        }
        let Loaded::Aead(k) = self.loaded(&entry, ct.key_version).await? else {
            return Err(Error::invalid_input("not a symmetric key"));
        };
        k.open(
            &ct.nonce,
            &AeadCiphertext::full_aad(ct.header_bytes(), aad),
            ct.body,
        )
    }

    /// `decrypt`: RSA-OAEP with an RSA key made for decryption.
    pub(crate) async fn decrypt_oaep(
        &self,
        key: &KeyRef,
        ciphertext: &[u8],
        padding: RsaPadding,
    ) -> Result<SecretBytes> {
        let entry = self.entry(key.name()).await?;
        if !entry.meta.algorithm.is_rsa() {
            return Err(Error::invalid_input(format!(
                "{} keys do not decrypt with RSA-OAEP",
                entry.meta.algorithm
            )));
        }
        entry.meta.require_usage(KeyUsage::Decrypt)?;
        let version = key.version().unwrap_or_else(|| entry.meta.current());
        let Loaded::Private(pk) = self.loaded(&entry, version).await? else {
            return Err(Error::invalid_input("not an RSA key"));
        };
        match padding {
            RsaPadding::Oaep(hash) => pk.decrypt_oaep(ciphertext, hash),
            other => Err(Error::unsupported(format!("padding {other:?}"))),
        }
    }
}
