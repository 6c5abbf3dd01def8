//! Signing with a key's current (or a named) version.

use keychain_core::{Error, KeyRef, KeyUsage, Result, SignInput, Signature, SignatureScheme};

use crate::backend::Pkcs8Backend;
use crate::cache::Loaded;

impl Pkcs8Backend {
    /// `sign`: the cached key when its metadata is unchanged, no lock taken once it is loaded.
    pub(crate) async fn sign_with(
        &self,
        key: &KeyRef,
        input: SignInput<'_>,
        scheme: SignatureScheme,
    ) -> Result<Signature> {
        let entry = self.entry(key.name()).await?;
        let meta = &entry.meta;
        scheme.check_fits(meta.algorithm)?;
        if !self.capabilities.signature_schemes.contains(&scheme) {
            return Err(Error::unsupported(format!("signature scheme {scheme}")));
        }
        meta.require_usage(KeyUsage::Sign)?;
        let data = input.prepare(scheme)?;
        let version = key.version().unwrap_or_else(|| meta.current());
        let Loaded::Private(pk) = self.loaded(&entry, version).await? else {
            return Err(Error::invalid_input("symmetric keys do not sign"));
        };
        let bytes = pk.sign(&data, scheme)?;
        Ok(Signature::new(bytes, scheme, version))
    }
}
