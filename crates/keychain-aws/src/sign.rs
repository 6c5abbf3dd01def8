//! Signing: keychain's signature schemes as KMS signing algorithms, raw messages or digests.

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec};
use keychain_core::{
    Error, HashAlg, KeyAlgorithm, KeyRef, KeyUsage, Result, SignInput, Signature, SignatureScheme,
};

use crate::backend::AwsBackend;
use crate::error::{map, unexpected};

/// The largest message signed as `MessageType=RAW`; longer ones are hashed here and signed as
/// a digest (KMS `Sign`'s limit).
const MAX_RAW_MESSAGE: usize = 4096;

/// The KMS signing algorithm for `scheme` on a key of `algorithm`, and the digest length KMS
/// expects with `MessageType=DIGEST`.
fn signing_algorithm(
    algorithm: KeyAlgorithm,
    scheme: SignatureScheme,
) -> Result<(SigningAlgorithmSpec, HashAlg)> {
    use SigningAlgorithmSpec as S;
    scheme.check_fits(algorithm)?;
    Ok(match scheme {
        SignatureScheme::RsaPkcs1v15(h) => (
            match h {
                HashAlg::Sha256 => S::RsassaPkcs1V15Sha256,
                HashAlg::Sha384 => S::RsassaPkcs1V15Sha384,
                _ => S::RsassaPkcs1V15Sha512,
            },
            h,
        ),
        SignatureScheme::RsaPss(h) => (
            match h {
                HashAlg::Sha256 => S::RsassaPssSha256,
                HashAlg::Sha384 => S::RsassaPssSha384,
                _ => S::RsassaPssSha512,
            },
            h,
        ),
        // KMS pairs each curve with one hash; see `fit_digest` for other hashes.
        SignatureScheme::Ecdsa(_) => match algorithm {
            KeyAlgorithm::EcP384 => (S::EcdsaSha384, HashAlg::Sha384),
            KeyAlgorithm::EcP521 => (S::EcdsaSha512, HashAlg::Sha512),
            _ => (S::EcdsaSha256, HashAlg::Sha256),
        },
        other => return Err(Error::unsupported(format!("signature scheme {other}"))),
    })
}

/// ECDSA uses the leftmost bits of the hash as an integer (FIPS 186-5 §6.4.1), so a digest
/// of another length than the one KMS pairs with the curve gives the same signature when it is
/// cut to that length (longer) or left-padded with zeros (shorter: the integer is unchanged).
fn fit_digest(digest: &[u8], len: usize) -> Vec<u8> {
    if digest.len() >= len {
        digest[..len].to_vec()
    } else {
        let mut out = vec![0u8; len - digest.len()];
        out.extend_from_slice(digest);
        out
    }
}

impl AwsBackend {
    pub(crate) async fn sign_once(
        &self,
        key: &KeyRef,
        input: SignInput<'_>,
        scheme: SignatureScheme,
    ) -> Result<Signature> {
        let (r, id, version) = self.target(key).await?;
        if r.algorithm.is_symmetric() {
            return Err(Error::invalid_input(format!(
                "{} is a symmetric key; symmetric keys do not sign",
                key.name()
            )));
        }
        if !r.usages.contains(KeyUsage::Sign) {
            return Err(Error::invalid_input(
                "the key lacks the sign usage (its KMS KeyUsage is ENCRYPT_DECRYPT)",
            ));
        }
        let (algorithm, kms_hash) = signing_algorithm(r.algorithm, scheme)?;
        let (message, message_type) = match input {
            SignInput::Message(m)
                if scheme.hash() == Some(kms_hash) && m.len() <= MAX_RAW_MESSAGE =>
            {
                (m.to_vec(), MessageType::Raw)
            }
            _ => {
                let digest = input.prepare(scheme)?;
                (
                    fit_digest(&digest, kms_hash.output_len()),
                    MessageType::Digest,
                )
            }
        };
        let out = self
            .client
            .sign()
            .key_id(&id)
            .message(Blob::new(message))
            .message_type(message_type)
            .signing_algorithm(algorithm)
            .send()
            .await
            .map_err(map)?;
        let signature = out
            .signature
            .ok_or_else(|| unexpected("Sign returned no signature"))?;
        Ok(Signature::new(signature.into_inner(), scheme, version))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test assertions")]

    use keychain_core::ErrorKind;

    use super::*;

    #[test]
    fn ecdsa_digests_fit_the_curve() {
        let (alg, h) = signing_algorithm(
            KeyAlgorithm::EcP256,
            SignatureScheme::Ecdsa(HashAlg::Sha384),
        )
        .unwrap();
        assert_eq!(
            (alg, h),
            (SigningAlgorithmSpec::EcdsaSha256, HashAlg::Sha256)
        );
        assert_eq!(fit_digest(&[1; 48], 32), vec![1; 32]);
        let padded = fit_digest(&[7; 32], 48);
        assert_eq!(&padded[..16], &[0; 16]);
        assert_eq!(&padded[16..], &[7; 32]);
        let e = signing_algorithm(
            KeyAlgorithm::EcP256,
            SignatureScheme::RsaPss(HashAlg::Sha256),
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }
}
