//! RSA-OAEP decryption with Transit `decrypt`.

use base64ct::{Base64, Encoding as _};
use keychain_core::{
    Error, ErrorKind, HashAlg, KeyName, KeyRef, KeyVersion, Result, RsaPadding, SecretBytes,
};
use serde_json::json;

use crate::backend::VaultBackend;

impl VaultBackend {
    pub(crate) async fn decrypt_rsa(
        &self,
        key: &KeyRef,
        ciphertext: &[u8],
        padding: RsaPadding,
    ) -> Result<SecretBytes> {
        let (resolved, version) = self.target(key).await?;
        if !resolved.algorithm.is_rsa() {
            return Err(Error::invalid_input(format!(
                "{} is a {} key; RSA-OAEP needs an RSA key",
                key.name(),
                resolved.algorithm
            )));
        }
        match padding {
            RsaPadding::Oaep(HashAlg::Sha256) => {}
            other => {
                return Err(Error::unsupported(format!(
                    "Transit decrypts RSA-OAEP with SHA-256 only, not {other:?}"
                )));
            }
        }
        let pinned = version.is_some();
        let version = version.unwrap_or(resolved.latest);
        let result = self.decrypt_oaep(key.name(), version, ciphertext).await;
        match result {
            // Another client may have rotated the key: the ciphertext may be for the newer
            // public key. Read the key again and try its latest version once.
            Err(e) if !pinned && e.kind() == ErrorKind::Integrity => {
                let fresh = self.info_resolved(key.name()).await?.1;
                if fresh.latest == version {
                    return Err(e);
                }
                self.decrypt_oaep(key.name(), fresh.latest, ciphertext)
                    .await
            }
            other => other,
        }
    }

    async fn decrypt_oaep(
        &self,
        name: &KeyName,
        version: KeyVersion,
        ciphertext: &[u8],
    ) -> Result<SecretBytes> {
        let body = json!({
            "ciphertext": format!("vault:v{version}:{}", Base64::encode_string(ciphertext)),
        });
        self.transit_decrypt(name, &body).await
    }
}
