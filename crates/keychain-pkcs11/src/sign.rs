//! Signing inside the token: the mechanism for each scheme, DigestInfo for PKCS#1 v1.5 over a
//! digest, ECDSA signatures re-encoded as DER.

use std::sync::Arc;

use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::ObjectHandle;
use cryptoki::session::Session;
use keychain_core::{
    Error, HashAlg, KeyAlgorithm, KeyRef, KeyUsage, Operation, Result, SignInput, Signature,
    SignatureScheme,
};

use crate::backend::{Inner, Pkcs11Backend};
use crate::error::map;
use crate::keys::require_usage;

/// The PKCS#11 hash and MGF1 mechanisms for `h` (PSS, OAEP).
pub(crate) fn hash_mechanism(h: HashAlg) -> Result<(MechanismType, PkcsMgfType)> {
    match h {
        HashAlg::Sha256 => Ok((MechanismType::SHA256, PkcsMgfType::MGF1_SHA256)),
        HashAlg::Sha384 => Ok((MechanismType::SHA384, PkcsMgfType::MGF1_SHA384)),
        HashAlg::Sha512 => Ok((MechanismType::SHA512, PkcsMgfType::MGF1_SHA512)),
        other => Err(Error::unsupported(format!("hash {other}"))),
    }
}

/// The DER `DigestInfo` prefix (RFC 8017 §9.2 note 1) for PKCS#1 v1.5 over a digest.
fn digest_info_prefix(h: HashAlg) -> Result<&'static [u8]> {
    match h {
        HashAlg::Sha256 => Ok(&[
            0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x01, 0x05, 0x00, 0x04, 0x20,
        ]),
        HashAlg::Sha384 => Ok(&[
            0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x02, 0x05, 0x00, 0x04, 0x30,
        ]),
        HashAlg::Sha512 => Ok(&[
            0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x03, 0x05, 0x00, 0x04, 0x40,
        ]),
        other => Err(Error::unsupported(format!("hash {other}"))),
    }
}

impl Inner {
    /// Signs `data` (a digest, or the message for Ed25519) with the object `key`.
    pub(crate) fn sign_raw(
        &self,
        session: &Session,
        key: ObjectHandle,
        algorithm: KeyAlgorithm,
        scheme: SignatureScheme,
        data: &[u8],
    ) -> Result<Vec<u8>> {
        match scheme {
            SignatureScheme::RsaPkcs1v15(h) => {
                let mut info = digest_info_prefix(h)?.to_vec();
                info.extend_from_slice(data);
                session.sign(&Mechanism::RsaPkcs, key, &info).map_err(map)
            }
            SignatureScheme::RsaPss(h) => {
                let (hash_alg, mgf) = hash_mechanism(h)?;
                let params = PkcsPssParams {
                    hash_alg,
                    mgf,
                    s_len: u64::try_from(h.output_len()).unwrap_or(32).into(),
                };
                session
                    .sign(&Mechanism::RsaPkcsPss(params), key, data)
                    .map_err(map)
            }
            SignatureScheme::Ecdsa(_) => {
                let fixed = session.sign(&Mechanism::Ecdsa, key, data).map_err(map)?;
                keychain_core::ecdsa_fixed_to_der(&fixed, algorithm)
            }
            SignatureScheme::Ed25519 => session
                .sign(
                    &Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
                    key,
                    data,
                )
                .map_err(map),
            other => Err(Error::unsupported(format!("signature scheme {other}"))),
        }
    }
}

impl Pkcs11Backend {
    /// `sign`.
    pub(crate) async fn sign_with(
        &self,
        key: &KeyRef,
        input: SignInput<'_>,
        scheme: SignatureScheme,
    ) -> Result<Signature> {
        let data = input.prepare(scheme)?.into_owned();
        let inner = Arc::clone(&self.inner);
        let key2 = key.clone();
        self.inner
            .pool
            .run(
                Operation::Sign,
                inner.call(key2.name(), data.len()),
                move |s| {
                    inner.with_key(s, key2.name(), key2.version(), |entry, v| {
                        if entry.algorithm.is_symmetric() {
                            return Err(Error::invalid_input(format!(
                                "{} is a symmetric key; symmetric keys do not sign",
                                entry.name
                            )));
                        }
                        scheme.check_fits(entry.algorithm)?;
                        if !inner.capabilities.signature_schemes.contains(&scheme) {
                            return Err(Error::unsupported(format!(
                                "this token does not offer {scheme}"
                            )));
                        }
                        require_usage(entry, KeyUsage::Sign, "sign")?;
                        let bytes = inner.sign_raw(s, v.key, entry.algorithm, scheme, &data)?;
                        Ok(Signature::new(bytes, scheme, v.version))
                    })
                },
            )
            .await
    }
}
