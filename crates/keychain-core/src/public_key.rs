//! Public keys as SubjectPublicKeyInfo, with PEM, JWK and RustCrypto conversions.

use std::fmt;

use base64ct::{Base64UrlUnpadded, Encoding as _};
use der::asn1::{AnyRef, BitString, ObjectIdentifier};
use der::{Decode as _, Encode as _};
use serde_json::{Map, Value, json};
use spki::{
    AlgorithmIdentifierOwned, DecodePublicKey as _, EncodePublicKey as _, SubjectPublicKeyInfoOwned,
};

use crate::algorithm::KeyAlgorithm;
use crate::error::{Error, Result};

const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_EC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_P521: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");
const OID_SECP256K1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.10");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// Identifies an asymmetric key's algorithm from its `AlgorithmIdentifier` (the same in
/// `SubjectPublicKeyInfo` and PKCS#8 `PrivateKeyInfo`): the OID, its parameters (the named curve
/// for EC) and, for RSA, the modulus (big-endian, as in the DER).
///
/// # Errors
/// [`crate::ErrorKind::InvalidInput`] for an EC key without a named curve or an RSA key without a
/// modulus; [`crate::ErrorKind::Unsupported`] for other algorithms or curves, or an RSA size other
/// than 2048/3072/4096.
pub fn identify_key_algorithm(
    oid: ObjectIdentifier,
    parameters: Option<AnyRef<'_>>,
    rsa_modulus: Option<&[u8]>,
) -> Result<KeyAlgorithm> {
    if oid == OID_RSA {
        let modulus = rsa_modulus.ok_or_else(|| bad("RSA key without a modulus"))?;
        let modulus = &modulus[modulus
            .iter()
            .position(|b| *b != 0)
            .unwrap_or(modulus.len())..];
        // `modulus` starts with a non-zero byte (or is empty: zero bits, refused below).
        let bits = modulus
            .first()
            .map_or(0, |b| modulus.len() * 8 - b.leading_zeros() as usize);
        match bits {
            2048 => Ok(KeyAlgorithm::Rsa2048),
            3072 => Ok(KeyAlgorithm::Rsa3072),
            4096 => Ok(KeyAlgorithm::Rsa4096),
            other => Err(Error::unsupported(format!("RSA keys of {other} bits"))),
        }
    } else if oid == OID_EC {
        let curve: ObjectIdentifier = parameters
            .ok_or_else(|| bad("EC key without a named curve"))?
            .decode_as()
            .map_err(bad)?;
        match curve {
            c if c == OID_P256 => Ok(KeyAlgorithm::EcP256),
            c if c == OID_P384 => Ok(KeyAlgorithm::EcP384),
            c if c == OID_P521 => Ok(KeyAlgorithm::EcP521),
            c if c == OID_SECP256K1 => Ok(KeyAlgorithm::EcSecp256k1),
            c => Err(Error::unsupported(format!("elliptic curve {c}"))),
        }
    } else if oid == OID_ED25519 {
        Ok(KeyAlgorithm::Ed25519)
    } else {
        Err(Error::unsupported(format!("key algorithm {oid}")))
    }
}

/// A public key, held as DER `SubjectPublicKeyInfo` together with its algorithm.
///
/// ```
/// # use keychain_core::{PublicKey, KeyAlgorithm};
/// // An Ed25519 public key (RFC 8410 example).
/// let pem = "-----BEGIN PUBLIC KEY-----\n\
///            MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n\
///            -----END PUBLIC KEY-----\n";
/// let key = PublicKey::from_pem(pem).unwrap();
/// assert_eq!(key.algorithm(), KeyAlgorithm::Ed25519);
/// assert_eq!(PublicKey::from_jwk(&key.to_jwk()).unwrap(), key);
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PublicKey {
    der: Vec<u8>,
    algorithm: KeyAlgorithm,
}

fn bad(what: impl fmt::Display) -> Error {
    Error::invalid_input(format!("invalid public key: {what}"))
}

impl PublicKey {
    /// Parses DER `SubjectPublicKeyInfo` and detects the algorithm.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] for malformed DER; [`crate::ErrorKind::Unsupported`] for
    /// an algorithm or curve keychain does not know, or an RSA size other than 2048/3072/4096.
    pub fn from_der(der: &[u8]) -> Result<Self> {
        let spki = SubjectPublicKeyInfoOwned::from_der(der).map_err(bad)?;
        let oid = spki.algorithm.oid;
        let modulus = if oid == OID_RSA {
            let key = pkcs1::RsaPublicKey::<der::asn1::UintRef<'_>>::from_der(
                spki.subject_public_key.raw_bytes(),
            )
            .map_err(bad)?;
            Some(key.modulus.as_bytes().to_vec())
        } else {
            None
        };
        let algorithm = identify_key_algorithm(
            oid,
            spki.algorithm.parameters.as_ref().map(AnyRef::from),
            modulus.as_deref(),
        )?;
        let key = Self {
            der: der.to_vec(),
            algorithm,
        };
        key.check_point()?;
        Ok(key)
    }

    /// Rejects EC points that are not on the curve and Ed25519 keys of the wrong size, so a
    /// `PublicKey` that exists can always be verified against.
    fn check_point(&self) -> Result<()> {
        match self.algorithm {
            KeyAlgorithm::EcP256 => p256::PublicKey::from_public_key_der(&self.der)
                .map(drop)
                .map_err(bad),
            KeyAlgorithm::EcP384 => p384::PublicKey::from_public_key_der(&self.der)
                .map(drop)
                .map_err(bad),
            KeyAlgorithm::EcP521 => p521::PublicKey::from_public_key_der(&self.der)
                .map(drop)
                .map_err(bad),
            KeyAlgorithm::Ed25519 => ed25519_dalek::VerifyingKey::from_public_key_der(&self.der)
                .map(drop)
                .map_err(bad),
            _ => Ok(()),
        }
    }

    /// An RSA public key from its modulus and public exponent (big-endian, leading zeros
    /// allowed), as HSMs and TPMs report them.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] for an empty modulus or exponent;
    /// [`crate::ErrorKind::Unsupported`] for a size other than 2048/3072/4096 bits.
    pub fn from_rsa_components(modulus: &[u8], exponent: &[u8]) -> Result<Self> {
        let strip = |b: &[u8]| -> Vec<u8> {
            let start = b.iter().position(|x| *x != 0).unwrap_or(b.len());
            b[start..].to_vec()
        };
        let (n, e) = (strip(modulus), strip(exponent));
        if n.is_empty() || e.is_empty() {
            return Err(bad("RSA modulus and exponent must not be zero"));
        }
        let key = pkcs1::RsaPublicKey {
            modulus: der::asn1::UintRef::new(&n).map_err(bad)?,
            public_exponent: der::asn1::UintRef::new(&e).map_err(bad)?,
        };
        let algorithm = AlgorithmIdentifierOwned {
            oid: OID_RSA,
            parameters: Some(der::asn1::Any::null()),
        };
        Self::from_parts(algorithm, &key.to_der().map_err(bad)?)
    }

    /// An EC public key on `algorithm`'s curve from its affine coordinates (big-endian; shorter
    /// ones are left-padded to the field size), as TPMs report them.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] for a non-ECDSA algorithm, coordinates longer than the
    /// field, or a point not on the curve.
    pub fn from_ec_coordinates(algorithm: KeyAlgorithm, x: &[u8], y: &[u8]) -> Result<Self> {
        let curve = match algorithm {
            KeyAlgorithm::EcP256 => OID_P256,
            KeyAlgorithm::EcP384 => OID_P384,
            KeyAlgorithm::EcP521 => OID_P521,
            KeyAlgorithm::EcSecp256k1 => OID_SECP256K1,
            other => return Err(bad(format!("{other} keys have no EC point"))),
        };
        let len = crate::signature::ecdsa_scalar_len(algorithm)?;
        let mut point = Vec::with_capacity(1 + 2 * len);
        point.push(0x04);
        for c in [x, y] {
            let c = &c[c.iter().position(|b| *b != 0).unwrap_or(c.len())..];
            if c.len() > len {
                return Err(bad(format!("EC coordinate longer than {len} bytes")));
            }
            point.resize(point.len() + len - c.len(), 0);
            point.extend_from_slice(c);
        }
        let algorithm = AlgorithmIdentifierOwned {
            oid: OID_EC,
            parameters: Some(der::asn1::Any::encode_from(&curve).map_err(bad)?),
        };
        Self::from_parts(algorithm, &point)
    }

    fn from_parts(algorithm: AlgorithmIdentifierOwned, key: &[u8]) -> Result<Self> {
        let spki = SubjectPublicKeyInfoOwned {
            algorithm,
            subject_public_key: BitString::from_bytes(key).map_err(bad)?,
        };
        Self::from_der(&spki.to_der().map_err(bad)?)
    }

    /// Parses a PEM `PUBLIC KEY` block.
    ///
    /// # Errors
    /// As [`PublicKey::from_der`]; also `InvalidInput` for a PEM with another label.
    pub fn from_pem(pem: &str) -> Result<Self> {
        let (label, der) = pem_rfc7468_decode(pem)?;
        if label != "PUBLIC KEY" {
            return Err(bad(format!(
                "PEM label is {label:?}, expected \"PUBLIC KEY\""
            )));
        }
        Self::from_der(&der)
    }

    /// The DER `SubjectPublicKeyInfo`.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// PEM (`-----BEGIN PUBLIC KEY-----`), LF line endings.
    pub fn to_pem(&self) -> String {
        der::pem::encode_string("PUBLIC KEY", der::pem::LineEnding::LF, &self.der)
            .unwrap_or_default()
    }

    /// The raw key bits: the SEC1 uncompressed point for EC, 32 bytes for Ed25519, the PKCS#1
    /// `RSAPublicKey` DER for RSA.
    pub fn raw_bytes(&self) -> Vec<u8> {
        SubjectPublicKeyInfoOwned::from_der(&self.der)
            .map(|s| s.subject_public_key.raw_bytes().to_vec())
            .unwrap_or_default()
    }

    /// The key as a JSON Web Key (RFC 7517/7518/8037), public members only.
    pub fn to_jwk(&self) -> Value {
        let b64 = Base64UrlUnpadded::encode_string;
        let raw = self.raw_bytes();
        match self.algorithm {
            a if a.is_rsa() => {
                match pkcs1::RsaPublicKey::<der::asn1::UintRef<'_>>::from_der(&raw) {
                    Ok(k) => {
                        json!({"kty": "RSA", "n": b64(k.modulus.as_bytes()), "e": b64(k.public_exponent.as_bytes())})
                    }
                    Err(_) => Value::Null,
                }
            }
            KeyAlgorithm::Ed25519 => json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&raw)}),
            a => {
                let crv = match a {
                    KeyAlgorithm::EcP256 => "P-256",
                    KeyAlgorithm::EcP384 => "P-384",
                    KeyAlgorithm::EcP521 => "P-521",
                    _ => "secp256k1",
                };
                // SEC1 uncompressed: 0x04 || x || y.
                let coords = raw.get(1..).unwrap_or_default();
                let (x, y) = coords.split_at(coords.len() / 2);
                json!({"kty": "EC", "crv": crv, "x": b64(x), "y": b64(y)})
            }
        }
    }

    /// Parses a JSON Web Key (RSA, EC P-256/P-384/P-521/secp256k1, OKP Ed25519).
    ///
    /// # Errors
    /// `InvalidInput` for missing or malformed members; `Unsupported` for other key types.
    pub fn from_jwk(jwk: &Value) -> Result<Self> {
        let obj = jwk.as_object().ok_or_else(|| bad("JWK is not an object"))?;
        let member = |m: &Map<String, Value>, name: &str| -> Result<Vec<u8>> {
            let s = m
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("JWK has no {name:?}")))?;
            Base64UrlUnpadded::decode_vec(s)
                .map_err(|_| bad(format!("JWK {name:?} is not base64url")))
        };
        let kty = obj.get("kty").and_then(Value::as_str).unwrap_or_default();
        let crv = obj.get("crv").and_then(Value::as_str).unwrap_or_default();
        match (kty, crv) {
            ("RSA", _) => {
                let n = member(obj, "n")?;
                let e = member(obj, "e")?;
                let pk = pkcs1::RsaPublicKey {
                    modulus: der::asn1::UintRef::new(&n).map_err(bad)?,
                    public_exponent: der::asn1::UintRef::new(&e).map_err(bad)?,
                };
                let inner = pk.to_der().map_err(bad)?;
                let spki = SubjectPublicKeyInfoOwned {
                    algorithm: AlgorithmIdentifierOwned {
                        oid: OID_RSA,
                        parameters: Some(AnyRef::NULL.into()),
                    },
                    subject_public_key: BitString::from_bytes(&inner).map_err(bad)?,
                };
                Self::from_der(&spki.to_der().map_err(bad)?)
            }
            ("OKP", "Ed25519") => {
                let x: [u8; 32] = member(obj, "x")?
                    .try_into()
                    .map_err(|_| bad("Ed25519 JWK \"x\" is not 32 bytes"))?;
                let vk = ed25519_dalek::VerifyingKey::from_bytes(&x).map_err(bad)?;
                Self::from_der(vk.to_public_key_der().map_err(bad)?.as_bytes())
            }
            ("EC", crv) => {
                let mut point = vec![0x04];
                point.extend(member(obj, "x")?);
                point.extend(member(obj, "y")?);
                let der = match crv {
                    "P-256" => p256::PublicKey::from_sec1_bytes(&point)
                        .map_err(bad)?
                        .to_public_key_der(),
                    "P-384" => p384::PublicKey::from_sec1_bytes(&point)
                        .map_err(bad)?
                        .to_public_key_der(),
                    "P-521" => p521::PublicKey::from_sec1_bytes(&point)
                        .map_err(bad)?
                        .to_public_key_der(),
                    other => return Err(Error::unsupported(format!("JWK curve {other:?}"))),
                }
                .map_err(bad)?;
                Self::from_der(der.as_bytes())
            }
            (kty, crv) => Err(Error::unsupported(format!("JWK kty {kty:?} crv {crv:?}"))),
        }
    }

    /// As a RustCrypto P-256 verifying key.
    ///
    /// # Errors
    /// `InvalidInput` if this is not a P-256 key.
    pub fn to_p256(&self) -> Result<p256::ecdsa::VerifyingKey> {
        p256::ecdsa::VerifyingKey::from_public_key_der(&self.der).map_err(bad)
    }

    /// As a RustCrypto P-384 verifying key.
    ///
    /// # Errors
    /// `InvalidInput` if this is not a P-384 key.
    pub fn to_p384(&self) -> Result<p384::ecdsa::VerifyingKey> {
        p384::ecdsa::VerifyingKey::from_public_key_der(&self.der).map_err(bad)
    }

    /// As a RustCrypto P-521 verifying key.
    ///
    /// # Errors
    /// `InvalidInput` if this is not a P-521 key.
    pub fn to_p521(&self) -> Result<p521::ecdsa::VerifyingKey> {
        p521::ecdsa::VerifyingKey::from_public_key_der(&self.der).map_err(bad)
    }

    /// As an `ed25519-dalek` verifying key.
    ///
    /// # Errors
    /// `InvalidInput` if this is not an Ed25519 key.
    pub fn to_ed25519(&self) -> Result<ed25519_dalek::VerifyingKey> {
        ed25519_dalek::VerifyingKey::from_public_key_der(&self.der).map_err(bad)
    }

    /// As an `rsa` public key (verification and encryption only).
    ///
    /// # Errors
    /// `InvalidInput` if this is not an RSA key.
    pub fn to_rsa(&self) -> Result<rsa::RsaPublicKey> {
        rsa::RsaPublicKey::from_public_key_der(&self.der).map_err(bad)
    }
}

fn pem_rfc7468_decode(pem: &str) -> Result<(String, Vec<u8>)> {
    let (label, der) = der::pem::decode_vec(pem.trim().as_bytes()).map_err(bad)?;
    Ok((label.to_owned(), der))
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("algorithm", &self.algorithm)
            .field("der_len", &self.der.len())
            .finish()
    }
}

impl serde::Serialize for PublicKey {
    /// Serializes as PEM.
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_pem())
    }
}

impl<'de> serde::Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let pem = String::deserialize(d)?;
        Self::from_pem(&pem).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    // Test keys generated with OpenSSL; public halves only.
    const P256_PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEVs/o5+uQbTjL3chynL4wXgUg2R9
q9UU8I5mEovUf86QZ7kOBIjJwqnzD1omageEHWwHdBO6B+dFabmdT9POxg==
-----END PUBLIC KEY-----
";

    #[test]
    fn p256_pem_jwk_round_trip() {
        let key = PublicKey::from_pem(P256_PEM).unwrap();
        assert_eq!(key.algorithm(), KeyAlgorithm::EcP256);
        assert_eq!(key.to_pem(), P256_PEM);
        let jwk = key.to_jwk();
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(PublicKey::from_jwk(&jwk).unwrap(), key);
        assert!(key.to_p256().is_ok());
        assert!(key.to_p384().is_err());
    }

    #[test]
    fn from_components_rebuilds_the_same_spki() {
        let key = PublicKey::from_pem(P256_PEM).unwrap();
        let raw = key.raw_bytes();
        let (x, y) = raw[1..].split_at(32);
        // Leading zeros are tolerated, short coordinates padded.
        let mut x0 = vec![0, 0];
        x0.extend_from_slice(x);
        assert_eq!(
            PublicKey::from_ec_coordinates(KeyAlgorithm::EcP256, &x0, y).unwrap(),
            key
        );
        let mut off = y.to_vec();
        off[31] ^= 1;
        assert_eq!(
            PublicKey::from_ec_coordinates(KeyAlgorithm::EcP256, x, &off)
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            PublicKey::from_ec_coordinates(KeyAlgorithm::EcP256, &[1; 33], y)
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidInput
        );
        assert!(PublicKey::from_ec_coordinates(KeyAlgorithm::Ed25519, x, y).is_err());

        let modulus = {
            let mut n = vec![0xc5u8; 256];
            n[255] |= 1;
            n
        };
        let rsa = PublicKey::from_rsa_components(&modulus, &[0, 1, 0, 1]).unwrap();
        assert_eq!(rsa.algorithm(), KeyAlgorithm::Rsa2048);
        let parsed = rsa.to_rsa().unwrap();
        assert_eq!(
            rsa::traits::PublicKeyParts::e(&parsed)
                .to_be_bytes_trimmed_vartime()
                .as_ref(),
            &[1, 0, 1]
        );
        assert_eq!(
            PublicKey::from_rsa_components(&modulus[..200], &[1, 0, 1])
                .unwrap_err()
                .kind(),
            ErrorKind::Unsupported
        );
        assert_eq!(
            PublicKey::from_rsa_components(&[], &[1, 0, 1])
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidInput
        );
    }

    #[test]
    fn garbage_is_invalid_input() {
        assert_eq!(
            PublicKey::from_der(b"\x30\x03abc").unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            PublicKey::from_pem("-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n")
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidInput
        );
        assert!(
            PublicKey::from_jwk(&json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}))
                .is_err()
        );
    }

    #[test]
    fn identifies_algorithms_and_refuses_the_unknown() {
        let p384 = der::asn1::Any::from(OID_P384);
        assert_eq!(
            identify_key_algorithm(OID_EC, Some(AnyRef::from(&p384)), None).unwrap(),
            KeyAlgorithm::EcP384
        );
        let e = identify_key_algorithm(OID_EC, None, None).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let brainpool = der::asn1::Any::from(ObjectIdentifier::new_unwrap("1.3.36.3.3.2.8.1.1.7"));
        let e = identify_key_algorithm(OID_EC, Some(AnyRef::from(&brainpool)), None).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        let mut modulus = vec![0x80u8];
        modulus.extend([0u8; 255]);
        assert_eq!(
            identify_key_algorithm(OID_RSA, None, Some(&modulus)).unwrap(),
            KeyAlgorithm::Rsa2048
        );
        let e = identify_key_algorithm(OID_RSA, None, Some(&modulus[1..])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
    }

    #[test]
    fn unknown_jwk_type_is_unsupported() {
        let e = PublicKey::from_jwk(&json!({"kty": "oct", "k": "AA"})).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
    }
}
