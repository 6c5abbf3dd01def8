//! Conversions between keychain's types and the TPM's structures: key templates, public areas,
//! signatures, and the TPM2B forms key blobs are stored in.

use keychain_core::{
    Error, HashAlg, KeyAlgorithm, KeyUsage, KeyUsages, PublicKey, Result, SignatureScheme,
};
use tss_esapi::attributes::ObjectAttributesBuilder;
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::structures::{
    Digest, EccPoint, EccScheme, HashScheme, KeyDerivationFunctionScheme, KeyedHashScheme, Public,
    PublicBuilder, PublicEccParametersBuilder, PublicKeyRsa, PublicKeyedHashParameters,
    PublicRsaParametersBuilder, RsaExponent, RsaScheme, Signature, SymmetricDefinitionObject,
};
use tss_esapi::traits::{Marshall, UnMarshall};

/// The TPM hash of a keychain hash (`None`: not one a TPM has).
pub(crate) fn hashing(h: HashAlg) -> Option<HashingAlgorithm> {
    match h {
        HashAlg::Sha256 => Some(HashingAlgorithm::Sha256),
        HashAlg::Sha384 => Some(HashingAlgorithm::Sha384),
        HashAlg::Sha512 => Some(HashingAlgorithm::Sha512),
        _ => None,
    }
}

/// The TPM scheme of a keychain signature scheme (`None`: the TPM has no such scheme).
pub(crate) fn signature_scheme(
    scheme: SignatureScheme,
) -> Option<tss_esapi::structures::SignatureScheme> {
    use tss_esapi::structures::SignatureScheme as S;
    let hash_scheme = HashScheme::new(hashing(scheme.hash()?)?);
    match scheme {
        SignatureScheme::RsaPkcs1v15(_) => Some(S::RsaSsa { hash_scheme }),
        SignatureScheme::RsaPss(_) => Some(S::RsaPss { hash_scheme }),
        SignatureScheme::Ecdsa(_) => Some(S::EcDsa { hash_scheme }),
        _ => None,
    }
}

pub(crate) fn curve(algorithm: KeyAlgorithm) -> Option<EccCurve> {
    match algorithm {
        KeyAlgorithm::EcP256 => Some(EccCurve::NistP256),
        KeyAlgorithm::EcP384 => Some(EccCurve::NistP384),
        KeyAlgorithm::EcP521 => Some(EccCurve::NistP521),
        _ => None,
    }
}

pub(crate) fn rsa_bits(algorithm: KeyAlgorithm) -> Option<RsaKeyBits> {
    match algorithm {
        KeyAlgorithm::Rsa2048 => Some(RsaKeyBits::Rsa2048),
        KeyAlgorithm::Rsa3072 => Some(RsaKeyBits::Rsa3072),
        KeyAlgorithm::Rsa4096 => Some(RsaKeyBits::Rsa4096),
        _ => None,
    }
}

/// Bytes of the AES key sealed for a symmetric algorithm.
pub(crate) fn aes_len(algorithm: KeyAlgorithm) -> Option<usize> {
    match algorithm {
        KeyAlgorithm::Aes128Gcm => Some(16),
        KeyAlgorithm::Aes192Gcm => Some(24),
        KeyAlgorithm::Aes256Gcm => Some(32),
        _ => None,
    }
}

fn tpm(e: tss_esapi::Error) -> Error {
    crate::error::map(e, "building a TPM structure")
}

/// The template of the storage root key: the TCG's ECC P-256 storage key (restricted decrypt,
/// AES-128-CFB for its children, fixed to this TPM, no dictionary-attack lockout, empty auth).
/// Fixed, so that the TPM derives the same key from the same hierarchy seed every time.
pub(crate) fn srk_template() -> Result<Public> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .with_restricted(true)
        .with_decrypt(true)
        .build()
        .map_err(tpm)?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(
            PublicEccParametersBuilder::new_restricted_decryption_key(
                SymmetricDefinitionObject::AES_128_CFB,
                EccCurve::NistP256,
            )
            .build()
            .map_err(tpm)?,
        )
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
        .map_err(tpm)
}

/// The template of the attestation key: a restricted ECDSA P-256/SHA-256 signing key in the
/// endorsement hierarchy. Fixed, so the TPM derives the same key every time.
pub(crate) fn ak_template() -> Result<Public> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .with_restricted(true)
        .with_sign_encrypt(true)
        .build()
        .map_err(tpm)?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(
            PublicEccParametersBuilder::new()
                .with_ecc_scheme(EccScheme::EcDsa(HashScheme::new(HashingAlgorithm::Sha256)))
                .with_key_derivation_function_scheme(KeyDerivationFunctionScheme::Null)
                .with_curve(EccCurve::NistP256)
                .with_is_signing_key(true)
                .with_restricted(true)
                .with_symmetric(SymmetricDefinitionObject::Null)
                .build()
                .map_err(tpm)?,
        )
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
        .map_err(tpm)
}

/// The template of a key: a non-duplicable child of the SRK (fixedTPM, fixedParent), authorized
/// by its auth value (userWithAuth), under dictionary-attack protection. Asymmetric keys have
/// the NULL scheme so that `sign`/`decrypt` choose the scheme per call; a symmetric key is a
/// sealed data object holding the AES key.
pub(crate) fn key_template(algorithm: KeyAlgorithm, usages: KeyUsages) -> Result<Public> {
    let mut attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_user_with_auth(true);
    if let Some(bits) = rsa_bits(algorithm) {
        let sign = usages.contains(KeyUsage::Sign);
        let decrypt = usages.contains(KeyUsage::Decrypt);
        attributes = attributes
            .with_sensitive_data_origin(true)
            .with_sign_encrypt(sign)
            .with_decrypt(decrypt);
        PublicBuilder::new()
            .with_public_algorithm(PublicAlgorithm::Rsa)
            .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
            .with_object_attributes(attributes.build().map_err(tpm)?)
            .with_rsa_parameters(
                PublicRsaParametersBuilder::new()
                    .with_scheme(RsaScheme::Null)
                    .with_key_bits(bits)
                    .with_exponent(RsaExponent::default())
                    .with_is_signing_key(sign)
                    .with_is_decryption_key(decrypt)
                    .with_restricted(false)
                    .build()
                    .map_err(tpm)?,
            )
            .with_rsa_unique_identifier(PublicKeyRsa::default())
            .build()
            .map_err(tpm)
    } else if let Some(curve) = curve(algorithm) {
        attributes = attributes
            .with_sensitive_data_origin(true)
            .with_sign_encrypt(true);
        PublicBuilder::new()
            .with_public_algorithm(PublicAlgorithm::Ecc)
            .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
            .with_object_attributes(attributes.build().map_err(tpm)?)
            .with_ecc_parameters(
                PublicEccParametersBuilder::new()
                    .with_ecc_scheme(EccScheme::Null)
                    .with_key_derivation_function_scheme(KeyDerivationFunctionScheme::Null)
                    .with_curve(curve)
                    // The object attributes make it a signing key; tss-esapi's builder refuses
                    // the NULL scheme for one that says so here, though the TPM accepts it
                    // (the scheme then comes with each TPM2_Sign).
                    .with_is_signing_key(false)
                    .with_restricted(false)
                    .with_symmetric(SymmetricDefinitionObject::Null)
                    .build()
                    .map_err(tpm)?,
            )
            .with_ecc_unique_identifier(EccPoint::default())
            .build()
            .map_err(tpm)
    } else if aes_len(algorithm).is_some() {
        PublicBuilder::new()
            .with_public_algorithm(PublicAlgorithm::KeyedHash)
            .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
            .with_object_attributes(attributes.build().map_err(tpm)?)
            .with_keyed_hash_parameters(PublicKeyedHashParameters::new(KeyedHashScheme::Null))
            .with_keyed_hash_unique_identifier(Digest::default())
            .build()
            .map_err(tpm)
    } else {
        Err(Error::unsupported(format!("{algorithm} keys in a TPM")))
    }
}

/// The SubjectPublicKeyInfo of an asymmetric key's public area.
pub(crate) fn public_key(algorithm: KeyAlgorithm, public: &Public) -> Result<PublicKey> {
    match public {
        Public::Rsa {
            parameters, unique, ..
        } => {
            // An exponent of 0 in the public area means the default, 65537.
            let e = match parameters.exponent().value() {
                0 => 65537,
                e => e,
            };
            PublicKey::from_rsa_components(unique.value(), &e.to_be_bytes())
        }
        Public::Ecc { unique, .. } => {
            PublicKey::from_ec_coordinates(algorithm, unique.x().value(), unique.y().value())
        }
        _ => Err(Error::invalid_input("the TPM object has no public key")),
    }
}

/// The algorithm a stored public area actually is (guards against a blob whose record names
/// another algorithm).
pub(crate) fn algorithm_of(public: &Public) -> Option<KeyAlgorithm> {
    match public {
        Public::Rsa { parameters, .. } => match parameters.key_bits() {
            RsaKeyBits::Rsa2048 => Some(KeyAlgorithm::Rsa2048),
            RsaKeyBits::Rsa3072 => Some(KeyAlgorithm::Rsa3072),
            RsaKeyBits::Rsa4096 => Some(KeyAlgorithm::Rsa4096),
            _ => None,
        },
        Public::Ecc { parameters, .. } => match parameters.ecc_curve() {
            EccCurve::NistP256 => Some(KeyAlgorithm::EcP256),
            EccCurve::NistP384 => Some(KeyAlgorithm::EcP384),
            EccCurve::NistP521 => Some(KeyAlgorithm::EcP521),
            _ => None,
        },
        Public::KeyedHash { .. } => None,
        Public::SymCipher { .. } => None,
    }
}

/// A TPM signature as keychain encodes it: RSA as the raw signature, ECDSA as DER.
pub(crate) fn signature_bytes(algorithm: KeyAlgorithm, signature: &Signature) -> Result<Vec<u8>> {
    match signature {
        Signature::RsaSsa(s) | Signature::RsaPss(s) => Ok(s.signature().value().to_vec()),
        Signature::EcDsa(s) => {
            let len = keychain_core::ecdsa_scalar_len(algorithm)?;
            let mut fixed = Vec::with_capacity(2 * len);
            for part in [s.signature_r().value(), s.signature_s().value()] {
                let part = &part[part.iter().position(|b| *b != 0).unwrap_or(part.len())..];
                if part.len() > len {
                    return Err(Error::invalid_input("ECDSA signature part too long"));
                }
                fixed.resize(fixed.len() + len - part.len(), 0);
                fixed.extend_from_slice(part);
            }
            keychain_core::ecdsa_fixed_to_der(&fixed, algorithm)
        }
        _ => Err(Error::invalid_input(
            "the TPM returned an unexpected signature type",
        )),
    }
}

/// A `TPM2B_PUBLIC` (size-prefixed `TPMT_PUBLIC`), the form tpm2-tools reads with `-u`.
pub(crate) fn public_to_tpm2b(public: &Public) -> Result<Vec<u8>> {
    let inner = public.marshall().map_err(tpm)?;
    Ok(tpm2b(&inner))
}

/// Parses a `TPM2B_PUBLIC`.
pub(crate) fn public_from_tpm2b(bytes: &[u8]) -> Result<Public> {
    let inner = from_tpm2b(bytes, "TPM2B_PUBLIC")?;
    Public::unmarshall(inner).map_err(|e| {
        Error::new(
            keychain_core::ErrorKind::Integrity,
            format!("key blob: unreadable public area: {e}"),
        )
    })
}

/// Size-prefixes `inner` (big-endian u16), the TPM2B form (`TPM2B_PRIVATE` for a private blob).
pub(crate) fn tpm2b(inner: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + inner.len());
    // Every TPM2B the TPM produces fits a u16 by definition.
    out.extend_from_slice(&u16::try_from(inner.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(inner);
    out
}

/// The contents of a TPM2B; `what` names it in errors.
pub(crate) fn from_tpm2b<'a>(bytes: &'a [u8], what: &str) -> Result<&'a [u8]> {
    let bad = || {
        Error::new(
            keychain_core::ErrorKind::Integrity,
            format!("key blob: malformed {what}"),
        )
    };
    let (len, rest) = bytes.split_first_chunk::<2>().ok_or_else(bad)?;
    if usize::from(u16::from_be_bytes(*len)) != rest.len() {
        return Err(bad());
    }
    Ok(rest)
}

/// The TPM name of a public area: the name algorithm's ID followed by the hash of the marshalled
/// `TPMT_PUBLIC` (TPM 2.0 Part 1, §16). Only SHA-256 names (the algorithm keychain creates
/// keys with) are computed; others are `Unsupported`.
pub(crate) fn name_of(public: &Public) -> Result<Vec<u8>> {
    use sha2::Digest as _;
    if public.name_hashing_algorithm() != HashingAlgorithm::Sha256 {
        return Err(Error::unsupported(
            "names of TPM objects with a name algorithm other than SHA-256",
        ));
    }
    let marshalled = public.marshall().map_err(tpm)?;
    let mut name = vec![0x00, 0x0b];
    name.extend_from_slice(&sha2::Sha256::digest(&marshalled));
    Ok(name)
}

#[cfg(test)]
mod tests {
    use keychain_core::ErrorKind;

    use super::*;

    #[test]
    fn templates_follow_the_usages() {
        let p = key_template(KeyAlgorithm::Rsa2048, KeyUsage::Decrypt.into()).unwrap();
        let a = p.object_attributes();
        assert!(a.decrypt() && !a.sign_encrypt() && a.fixed_tpm() && a.fixed_parent());
        assert!(!a.restricted() && !a.no_da() && a.user_with_auth());
        let p = key_template(KeyAlgorithm::EcP384, KeyUsage::Sign.into()).unwrap();
        assert!(p.object_attributes().sign_encrypt());
        assert_eq!(algorithm_of(&p), Some(KeyAlgorithm::EcP384));
        let p = key_template(KeyAlgorithm::Aes256Gcm, KeyUsages::NONE).unwrap();
        let a = p.object_attributes();
        assert!(!a.sign_encrypt() && !a.decrypt() && !a.sensitive_data_origin());
        assert_eq!(
            key_template(KeyAlgorithm::Ed25519, KeyUsage::Sign.into())
                .unwrap_err()
                .kind(),
            ErrorKind::Unsupported
        );
        let srk = srk_template().unwrap();
        assert!(srk.object_attributes().restricted() && srk.object_attributes().decrypt());
    }

    #[test]
    fn tpm2b_round_trip_and_damage() {
        let p = key_template(KeyAlgorithm::EcP256, KeyUsage::Sign.into()).unwrap();
        let b = public_to_tpm2b(&p).unwrap();
        assert_eq!(public_from_tpm2b(&b).unwrap(), p);
        assert_eq!(
            public_from_tpm2b(&b[..b.len() - 1]).unwrap_err().kind(),
            ErrorKind::Integrity
        );
        assert_eq!(
            from_tpm2b(&[0], "x").unwrap_err().kind(),
            ErrorKind::Integrity
        );
        assert_eq!(from_tpm2b(&tpm2b(b"abc"), "x").unwrap(), b"abc");
        // The name is nameAlg ‖ SHA-256(TPMT_PUBLIC).
        let name = name_of(&p).unwrap();
        assert_eq!(name.len(), 34);
        assert_eq!(&name[..2], &[0, 0x0b]);
    }

    #[test]
    fn ecdsa_signature_to_der() {
        use tss_esapi::structures::{EccParameter, EccSignature};
        let r = EccParameter::try_from(vec![0u8, 1, 2]).unwrap();
        let s = EccParameter::try_from(vec![3u8; 32]).unwrap();
        let sig = Signature::EcDsa(EccSignature::create(HashingAlgorithm::Sha256, r, s).unwrap());
        let der = signature_bytes(KeyAlgorithm::EcP256, &sig).unwrap();
        let fixed = keychain_core::ecdsa_der_to_fixed(&der, KeyAlgorithm::EcP256).unwrap();
        assert_eq!(&fixed[30..32], &[1, 2]);
        assert_eq!(&fixed[32..], &[3u8; 32]);
        let long = EccParameter::try_from(vec![1u8; 48]).unwrap();
        let sig = Signature::EcDsa(
            EccSignature::create(HashingAlgorithm::Sha256, long.clone(), long).unwrap(),
        );
        assert!(signature_bytes(KeyAlgorithm::EcP256, &sig).is_err());
    }
}
