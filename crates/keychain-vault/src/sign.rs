//! Signing with Transit `sign`: digests as `prehashed`, Ed25519 messages as they are.

use base64ct::{Base64, Encoding as _};
use keychain_core::{Error, HashAlg, KeyRef, Result, SignInput, Signature, SignatureScheme};
use serde_json::json;

use crate::api::{self, parse_transit};
use crate::backend::VaultBackend;
use crate::error::unexpected;

/// Transit's `hash_algorithm` for `h`.
fn transit_hash(h: HashAlg) -> &'static str {
    match h {
        HashAlg::Sha256 => "sha2-256",
        HashAlg::Sha384 => "sha2-384",
        _ => "sha2-512",
    }
}

impl VaultBackend {
    pub(crate) async fn sign_inner(
        &self,
        key: &KeyRef,
        input: SignInput<'_>,
        scheme: SignatureScheme,
    ) -> Result<Signature> {
        let (resolved, version) = self.target(key).await?;
        scheme.check_fits(resolved.algorithm)?;
        if !self.caps.signature_schemes.contains(&scheme) {
            return Err(Error::unsupported(format!("signature scheme {scheme}")));
        }
        let mut body = match scheme {
            SignatureScheme::Ed25519 => {
                let SignInput::Message(m) = input else {
                    return Err(Error::invalid_input(
                        "Ed25519 signs whole messages; pass SignInput::Message",
                    ));
                };
                json!({ "input": Base64::encode_string(m) })
            }
            _ => {
                let digest = input.prepare(scheme)?;
                let hash = scheme.hash().unwrap_or(HashAlg::Sha256);
                let mut body = json!({
                    "input": Base64::encode_string(&digest),
                    "prehashed": true,
                    "hash_algorithm": transit_hash(hash),
                });
                match scheme {
                    SignatureScheme::RsaPkcs1v15(_) => {
                        body["signature_algorithm"] = "pkcs1v15".into();
                    }
                    SignatureScheme::RsaPss(_) => {
                        body["signature_algorithm"] = "pss".into();
                        // The salt as long as the hash (RFC 8017's recommendation, what
                        // verifiers assume); Transit's default would be the longest possible.
                        body["salt_length"] = "hash".into();
                    }
                    _ => body["marshaling_algorithm"] = "asn1".into(),
                }
                body
            }
        };
        if let Some(v) = version {
            body["key_version"] = v.into();
        }
        let signed: api::Signed = self.post(self.path("sign", key.name()), &body).await?;
        let (made_by, bytes) = parse_transit(&signed.signature)
            .ok_or_else(|| unexpected("Transit returned a signature not in vault:v<N>: form"))?;
        Ok(Signature::new(bytes, scheme, made_by))
    }
}
