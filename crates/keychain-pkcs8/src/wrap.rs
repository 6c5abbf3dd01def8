//! Export and import wrapped: encrypted PKCS#8 under a password of the caller's, for keys
//! created exportable.

use keychain_core::{
    Error, ErrorKind, ImportSpec, KeyInfo, KeyMaterial, KeyName, KeyRef, Result, WrapFormat,
    WrappedKey, WrappingSpec,
};
use keychain_crypto::pkcs8 as format;

use crate::backend::{Pkcs8Backend, blocking};
use crate::meta::key_file;

impl Pkcs8Backend {
    /// `export_wrapped`: the key file decrypted with the store's password and encrypted again
    /// under the caller's.
    pub(crate) async fn export(&self, key: &KeyRef, with: &WrappingSpec) -> Result<WrappedKey> {
        let WrappingSpec::Password(password) = with else {
            return Err(Error::unsupported(
                "wrapping under another key; use WrappingSpec::Password",
            ));
        };
        if password.expose().is_empty() {
            return Err(Error::invalid_input("the export password is empty"));
        }
        let entry = self.entry(key.name()).await?;
        let meta = &entry.meta;
        if !meta.exportable {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                "the key was not created exportable",
            ));
        }
        let version = key.version().unwrap_or_else(|| meta.current());
        let vm = meta
            .version(version)
            .ok_or_else(|| Error::not_found(format!("key has no version {version}")))?;
        let data = self
            .store
            .get(&key_file(&meta.name, &vm.file))
            .await?
            .ok_or_else(|| Error::new(ErrorKind::Integrity, "key file is missing"))?;
        let der = self
            .decrypt_key_file("export", &meta.name, version, data)
            .await?;
        let theirs = password.duplicate();
        let (kdf, limits) = (self.kdf, self.limits);
        let pem = blocking("export", move || {
            format::encrypt_with_limits(der.expose(), theirs.expose().as_bytes(), kdf, &limits)
        })
        .await?;
        let (_, der) = der::pem::decode_vec(pem.as_bytes())
            .map_err(|e| Error::new(ErrorKind::Unexpected, format!("PEM: {e}")))?;
        Ok(WrappedKey::new(
            WrapFormat::EncryptedPkcs8,
            meta.algorithm,
            der,
        ))
    }

    /// `import_wrapped`: an encrypted PKCS#8 opened with the caller's password, then created as
    /// an imported key.
    pub(crate) async fn import_exported(
        &self,
        name: &KeyName,
        wrapped: &WrappedKey,
        unwrap_with: &WrappingSpec,
        spec: &ImportSpec,
    ) -> Result<KeyInfo> {
        let WrappingSpec::Password(password) = unwrap_with else {
            return Err(Error::unsupported(
                "unwrapping with another key; use WrappingSpec::Password",
            ));
        };
        let (w, pw, want) = (wrapped.clone(), password.duplicate(), spec.algorithm);
        let plain = blocking("import", move || {
            format::open_password_export(&w, pw.expose().as_bytes(), want)
        })
        .await?;
        let material = if plain.algorithm.is_symmetric() {
            KeyMaterial::Symmetric(plain.material)
        } else {
            KeyMaterial::Pkcs8 {
                data: plain.material,
                password: None,
            }
        };
        let mut spec = spec.clone();
        spec.algorithm = Some(spec.algorithm.unwrap_or(wrapped.algorithm));
        self.import(name, &material, &spec).await
    }
}
