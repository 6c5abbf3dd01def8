//! Keys in and out of Transit: BYOK import of key material, and password-encrypted PKCS#8
//! exports (of keys created `exportable`) and imports.

use base64ct::{Base64, Encoding as _};
use keychain_core::{
    Error, ErrorKind, HashAlg, ImportSpec, KeyAlgorithm, KeyInfo, KeyMaterial, KeyName, KeyRef,
    PublicKey, Result, SecretBytes, WrapFormat, WrappedKey, WrappingSpec,
};
use serde_json::json;
use zeroize::Zeroizing;

use crate::api::{self, Call};
use crate::backend::VaultBackend;
use crate::error::{map, unexpected};
use crate::keys::{key_info, transit_type, usages_of};

/// The PKCS#8 DER of a key as Transit exports it: base64 raw bytes for AES, base64 seed ‖
/// public key for Ed25519, PEM (`EC PRIVATE KEY`, `RSA PRIVATE KEY`) for ECDSA and RSA.
fn exported_pkcs8(algorithm: KeyAlgorithm, text: &str) -> Result<SecretBytes> {
    use keychain_crypto::pkcs8;
    let raw = || {
        Base64::decode_vec(text.trim())
            .map(Zeroizing::new)
            .map_err(|_| unexpected("Transit exported a key that is not base64"))
    };
    let der = if algorithm.is_symmetric() {
        pkcs8::symmetric_to_pkcs8(algorithm, &raw()?)?
    } else if algorithm == KeyAlgorithm::Ed25519 {
        pkcs8::ed25519_to_pkcs8(&raw()?)?
    } else {
        pkcs8::private_key_pem_to_pkcs8(text.as_bytes())?
    };
    let found = pkcs8::inspect(der.expose())?.algorithm;
    if found != algorithm {
        return Err(unexpected(format!(
            "Transit exported a {found} key for a {algorithm} key"
        )));
    }
    Ok(der)
}

impl VaultBackend {
    /// `export_wrapped` with a password: Transit's export of one version, converted to PKCS#8
    /// and encrypted with PBES2 here.
    pub(crate) async fn export_inner(
        &self,
        key: &KeyRef,
        with: &WrappingSpec,
    ) -> Result<WrappedKey> {
        let WrappingSpec::Password(password) = with else {
            return Err(Error::unsupported(
                "wrapping under another key; Transit exports with WrappingSpec::Password \
                 (its BYOK export to another Transit mount is not offered)",
            ));
        };
        if password.expose().is_empty() {
            return Err(Error::invalid_input("the export password is empty"));
        }
        let data = self.read(key.name()).await?.ok_or_else(|| {
            Error::not_found(format!("no Transit key {}", self.transit_name(key.name())))
        })?;
        let info = key_info(key.name(), &data)?;
        if !data.exportable {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "Transit key {} was not created exportable (Transit sets that once, at \
                     creation or import)",
                    self.transit_name(key.name())
                ),
            ));
        }
        let version = key.version().unwrap_or(info.version);
        if info.version_info(version).is_none() {
            return Err(Error::not_found(format!(
                "key {} has no usable version {version}",
                key.name()
            )));
        }
        let kind = if info.algorithm.is_symmetric() {
            "encryption-key"
        } else {
            "signing-key"
        };
        let path = format!(
            "{}/export/{kind}/{}/{version}",
            self.mount,
            self.transit_name(key.name())
        );
        let current = self.session.client().await?;
        let exported: api::Exported = api::data(&current.client, Call::get(path))
            .await
            .map_err(map)?;
        let text = exported
            .keys
            .get(&version.to_string())
            .ok_or_else(|| unexpected(format!("Transit exported no version {version}")))?;
        let der = exported_pkcs8(info.algorithm, text.0.as_str())?;
        let (password, kdf) = (password.duplicate(), self.export_kdf);
        let bytes = tokio::task::spawn_blocking(move || {
            keychain_crypto::pkcs8::encrypt_der(der.expose(), password.expose().as_bytes(), kdf)
        })
        .await
        .map_err(|e| unexpected(format!("export task failed: {e}")))??;
        Ok(WrappedKey::new(
            WrapFormat::EncryptedPkcs8,
            info.algorithm,
            bytes,
        ))
    }

    /// Imports key material through Transit's BYOK import: the key is wrapped with a one-time
    /// AES key (KWP), which is wrapped with the mount's RSA-4096 wrapping key (OAEP SHA-256).
    async fn import_inner(
        &self,
        name: &KeyName,
        plain: keychain_crypto::pkcs8::Plain,
        spec: &ImportSpec,
    ) -> Result<KeyInfo> {
        let algorithm = plain.algorithm;
        let key_type = transit_type(algorithm)
            .filter(|_| self.caps.supports_algorithm(algorithm))
            .ok_or_else(|| Error::unsupported(format!("Transit has no {algorithm} keys")))?;
        let possible = usages_of(algorithm);
        if !possible.contains_all(spec.usages) {
            return Err(Error::invalid_input(format!(
                "a Transit {key_type} key can have the usages {possible:?}, not {:?}",
                spec.usages
            )));
        }
        let _admin = self.admin.write().await;
        if self.read(name).await?.is_some() {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("Transit key {} exists", self.transit_name(name)),
            ));
        }
        let current = self.session.client().await?;
        let wrapping: api::WrappingKey = api::data(
            &current.client,
            Call::get(format!("{}/wrapping_key", self.mount)),
        )
        .await
        .map_err(map)?;
        let wrapping = PublicKey::from_pem(&wrapping.public_key)
            .map_err(|e| unexpected(format!("Transit's wrapping key: {e}")))?;
        let blob = keychain_crypto::wrap::rsa_aes_key_wrap(
            &wrapping,
            HashAlg::Sha256,
            plain.material.expose(),
        )?;
        drop(plain);
        let body = json!({
            "ciphertext": Base64::encode_string(&blob),
            "type": key_type,
            "hash_function": "SHA256",
            "exportable": spec.exportable,
        });
        api::empty(
            &current.client,
            Call::post(format!("{}/import", self.path("keys", name)), &body),
        )
        .await
        .map_err(map)?;
        let info = self.info(name).await?;
        if info.algorithm != algorithm || info.version != 1 || info.exportable != spec.exportable {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!(
                    "Transit key {} was created concurrently by another client",
                    self.transit_name(name)
                ),
            ));
        }
        Ok(info)
    }

    /// `import_key`: the material read as PKCS#8 (or raw AES), then imported.
    pub(crate) async fn import_material(
        &self,
        name: &KeyName,
        material: KeyMaterial,
        spec: &ImportSpec,
    ) -> Result<KeyInfo> {
        let plain = keychain_crypto::pkcs8::from_material(&material, spec.algorithm)?;
        drop(material);
        self.import_inner(name, plain, spec).await
    }

    /// `import_wrapped` with a password: the PKCS#8 decrypted here, then imported.
    pub(crate) async fn import_password_export(
        &self,
        name: &KeyName,
        wrapped: &WrappedKey,
        unwrap_with: &WrappingSpec,
        spec: &ImportSpec,
    ) -> Result<KeyInfo> {
        let WrappingSpec::Password(password) = unwrap_with else {
            return Err(Error::unsupported(
                "unwrapping with another key; Transit imports with WrappingSpec::Password",
            ));
        };
        let (wrapped, pw, want) = (wrapped.clone(), password.duplicate(), spec.algorithm);
        let plain = tokio::task::spawn_blocking(move || {
            keychain_crypto::pkcs8::open_password_export(&wrapped, pw.expose().as_bytes(), want)
        })
        .await
        .map_err(|e| unexpected(format!("import task failed: {e}")))??;
        self.import_inner(name, plain, spec).await
    }
}
