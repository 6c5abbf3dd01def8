//! RSA-OAEP decryption with an `ENCRYPT_DECRYPT` RSA key.

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::EncryptionAlgorithmSpec;
use keychain_core::{Error, HashAlg, KeyRef, KeyUsage, Result, RsaPadding, SecretBytes};

use crate::backend::AwsBackend;
use crate::error::{map, unexpected};

impl AwsBackend {
    pub(crate) async fn decrypt_inner(
        &self,
        key: &KeyRef,
        ciphertext: &[u8],
        padding: RsaPadding,
    ) -> Result<SecretBytes> {
        let (r, id, _) = self.target(key).await?;
        if !r.algorithm.is_rsa() {
            return Err(Error::invalid_input(format!(
                "{} is a {} key; RSA-OAEP needs an RSA key",
                key.name(),
                r.algorithm
            )));
        }
        if !r.usages.contains(KeyUsage::Decrypt) {
            return Err(Error::invalid_input(
                "the key lacks the decrypt usage (its KMS KeyUsage is SIGN_VERIFY)",
            ));
        }
        let algorithm = match padding {
            RsaPadding::Oaep(HashAlg::Sha256) => EncryptionAlgorithmSpec::RsaesOaepSha256,
            RsaPadding::Oaep(h) => {
                return Err(Error::unsupported(format!(
                    "RSA-OAEP with {h} (KMS offers SHA-256, and SHA-1 which keychain does not)"
                )));
            }
            other => return Err(Error::unsupported(format!("RSA padding {other:?}"))),
        };
        let out = self
            .client
            .decrypt()
            .key_id(&id)
            .ciphertext_blob(Blob::new(ciphertext))
            .encryption_algorithm(algorithm)
            .send()
            .await
            .map_err(map)?;
        out.plaintext
            .map(|b| SecretBytes::new(b.into_inner()))
            .ok_or_else(|| unexpected("Decrypt returned no plaintext"))
    }
}
