//! How keys map to PKCS#11 objects, and back: the objects of a key (labelled and identified as
//! `naming.rs` says), their templates, and the key read back from their attributes.
//!
//! A key `name`, version `v`, is a private key (asymmetric) or secret key (AES) object, and for
//! asymmetric keys a public key object, all with `CKA_TOKEN = true`.

use std::collections::BTreeMap;

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use der::asn1::{BitString, ObjectIdentifier, OctetString};
use der::{Any, Decode as _, Encode as _};
use keychain_core::{
    Error, KeyAlgorithm, KeyInfo, KeyName, KeyUsage, KeyUsages, KeyVersion, KeyVersionInfo,
    Protection, PublicKey, Result,
};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};

use crate::error::{map, rv_in};
use crate::naming::version_of;

/// An object's attributes, or `None` when it was destroyed since it was found (by another
/// process, or another session of this one).
pub(crate) fn attributes(
    session: &Session,
    object: ObjectHandle,
    types: &[AttributeType],
) -> Result<Option<Vec<Attribute>>> {
    match session.get_attributes(object, types).map_err(map) {
        Ok(attrs) => Ok(Some(attrs)),
        Err(e)
            if matches!(
                rv_in(&e),
                Some(cryptoki::error::RvError::ObjectHandleInvalid)
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

const OID_EC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_P521: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// One version of a key on the token.
#[derive(Debug, Clone)]
pub(crate) struct VersionEntry {
    pub(crate) version: KeyVersion,
    /// The private or secret key.
    pub(crate) key: ObjectHandle,
    pub(crate) public_key: Option<PublicKey>,
}

/// A key as found on the token: every version, oldest first.
#[derive(Debug, Clone)]
pub(crate) struct KeyEntry {
    pub(crate) name: KeyName,
    pub(crate) algorithm: KeyAlgorithm,
    pub(crate) usages: KeyUsages,
    pub(crate) exportable: bool,
    pub(crate) versions: Vec<VersionEntry>,
}

impl KeyEntry {
    /// The newest version.
    pub(crate) fn current(&self) -> &VersionEntry {
        // Never empty: `load` returns `None` for a key without versions.
        &self.versions[self.versions.len() - 1]
    }

    /// The given version, or the newest.
    pub(crate) fn version(&self, version: Option<KeyVersion>) -> Result<&VersionEntry> {
        match version {
            None => Ok(self.current()),
            Some(v) => self
                .versions
                .iter()
                .find(|e| e.version == v)
                .ok_or_else(|| Error::not_found(format!("key {} has no version {v}", self.name))),
        }
    }

    /// The public `KeyInfo`.
    pub(crate) fn info(&self) -> KeyInfo {
        KeyInfo::new(
            self.name.clone(),
            self.algorithm,
            self.usages,
            Protection::Hardware,
            self.exportable,
            self.versions
                .iter()
                .map(|v| KeyVersionInfo::new(v.version, None, v.public_key.clone()))
                .collect(),
        )
    }
}

pub(crate) fn attr_bytes(attrs: &[Attribute], ty: AttributeType) -> Option<&[u8]> {
    attrs.iter().find_map(|a| match (a, ty) {
        (Attribute::Id(v), AttributeType::Id)
        | (Attribute::Label(v), AttributeType::Label)
        | (Attribute::Modulus(v), AttributeType::Modulus)
        | (Attribute::PublicExponent(v), AttributeType::PublicExponent)
        | (Attribute::EcParams(v), AttributeType::EcParams)
        | (Attribute::EcPoint(v), AttributeType::EcPoint)
        | (Attribute::Value(v), AttributeType::Value) => Some(v.as_slice()),
        _ => None,
    })
}

fn attr_bool(attrs: &[Attribute], ty: AttributeType) -> bool {
    attrs.iter().any(|a| {
        matches!(
            (a, ty),
            (Attribute::Sign(true), AttributeType::Sign)
                | (Attribute::Decrypt(true), AttributeType::Decrypt)
                | (Attribute::Encrypt(true), AttributeType::Encrypt)
                | (Attribute::Wrap(true), AttributeType::Wrap)
                | (Attribute::Unwrap(true), AttributeType::Unwrap)
                | (Attribute::Extractable(true), AttributeType::Extractable)
        )
    })
}

fn class_of(attrs: &[Attribute]) -> Option<ObjectClass> {
    attrs.iter().find_map(|a| match a {
        Attribute::Class(c) => Some(*c),
        _ => None,
    })
}

fn key_type_of(attrs: &[Attribute]) -> Option<KeyType> {
    attrs.iter().find_map(|a| match a {
        Attribute::KeyType(k) => Some(*k),
        _ => None,
    })
}

fn value_len_of(attrs: &[Attribute]) -> Option<u64> {
    attrs.iter().find_map(|a| match a {
        Attribute::ValueLen(l) => Some(u64::from(*l)),
        _ => None,
    })
}

/// The curve OID of a DER `CKA_EC_PARAMS` (a named curve; SoftHSM also accepts the printable
/// string form for Edwards curves, which we never write).
fn curve_of(params: &[u8]) -> Option<ObjectIdentifier> {
    ObjectIdentifier::from_der(params).ok()
}

/// `CKA_EC_PARAMS` for `algorithm`.
pub(crate) fn ec_params(algorithm: KeyAlgorithm) -> Result<Vec<u8>> {
    let oid = match algorithm {
        KeyAlgorithm::EcP256 => OID_P256,
        KeyAlgorithm::EcP384 => OID_P384,
        KeyAlgorithm::EcP521 => OID_P521,
        KeyAlgorithm::Ed25519 => OID_ED25519,
        other => {
            return Err(Error::unsupported(format!(
                "{other} is not an EC algorithm"
            )));
        }
    };
    oid.to_der()
        .map_err(|e| Error::invalid_input(format!("encoding curve OID: {e}")))
}

/// The raw point of a `CKA_EC_POINT`: PKCS#11 says DER OCTET STRING, some modules return the
/// raw point. `raw_len` is the length of the raw form, which tells them apart.
fn ec_point_raw(point: &[u8], raw_len: usize) -> Vec<u8> {
    if point.len() != raw_len
        && let Ok(os) = OctetString::from_der(point)
        && os.as_bytes().len() == raw_len
    {
        return os.as_bytes().to_vec();
    }
    point.to_vec()
}

/// SubjectPublicKeyInfo from the public key object's attributes.
fn public_key(algorithm: KeyAlgorithm, attrs: &[Attribute]) -> Result<PublicKey> {
    let missing = |what: &str| Error::invalid_input(format!("public key object has no {what}"));
    let bad = |e: der::Error| Error::invalid_input(format!("encoding public key: {e}"));
    if algorithm.is_rsa() {
        let n = attr_bytes(attrs, AttributeType::Modulus).ok_or_else(|| missing("CKA_MODULUS"))?;
        let e = attr_bytes(attrs, AttributeType::PublicExponent)
            .ok_or_else(|| missing("CKA_PUBLIC_EXPONENT"))?;
        return PublicKey::from_rsa_components(n, e);
    }
    let (alg, bits) = {
        let params =
            attr_bytes(attrs, AttributeType::EcParams).ok_or_else(|| missing("CKA_EC_PARAMS"))?;
        let point =
            attr_bytes(attrs, AttributeType::EcPoint).ok_or_else(|| missing("CKA_EC_POINT"))?;
        if algorithm == KeyAlgorithm::Ed25519 {
            (
                AlgorithmIdentifierOwned {
                    oid: OID_ED25519,
                    parameters: None,
                },
                ec_point_raw(point, 32),
            )
        } else {
            let scalar = keychain_core::ecdsa_scalar_len(algorithm)?;
            (
                AlgorithmIdentifierOwned {
                    oid: OID_EC,
                    parameters: Some(Any::from_der(params).map_err(bad)?),
                },
                ec_point_raw(point, 1 + 2 * scalar),
            )
        }
    };
    let spki = SubjectPublicKeyInfoOwned {
        algorithm: alg,
        subject_public_key: BitString::from_bytes(&bits).map_err(bad)?,
    };
    PublicKey::from_der(&spki.to_der().map_err(bad)?)
}

/// The algorithm of a key object (`attrs` of the private/secret key) and, for asymmetric keys,
/// its public key object (`public`).
fn algorithm_of(key: &[Attribute], public: Option<&[Attribute]>) -> Option<KeyAlgorithm> {
    match key_type_of(key)? {
        KeyType::AES => match value_len_of(key)? {
            16 => Some(KeyAlgorithm::Aes128Gcm),
            24 => Some(KeyAlgorithm::Aes192Gcm),
            32 => Some(KeyAlgorithm::Aes256Gcm),
            _ => None,
        },
        KeyType::RSA => {
            let n = attr_bytes(public?, AttributeType::Modulus)?;
            let start = n.iter().position(|x| *x != 0)?;
            let bits = (n.len() - start) * 8 - n[start].leading_zeros() as usize;
            match bits {
                2048 => Some(KeyAlgorithm::Rsa2048),
                3072 => Some(KeyAlgorithm::Rsa3072),
                4096 => Some(KeyAlgorithm::Rsa4096),
                _ => None,
            }
        }
        KeyType::EC => match curve_of(attr_bytes(public?, AttributeType::EcParams)?)? {
            c if c == OID_P256 => Some(KeyAlgorithm::EcP256),
            c if c == OID_P384 => Some(KeyAlgorithm::EcP384),
            c if c == OID_P521 => Some(KeyAlgorithm::EcP521),
            _ => None,
        },
        KeyType::EC_EDWARDS => match curve_of(attr_bytes(public?, AttributeType::EcParams)?) {
            Some(c) if c == OID_ED25519 => Some(KeyAlgorithm::Ed25519),
            // The PKCS#11 3.0 printable-string form.
            None => Some(KeyAlgorithm::Ed25519),
            Some(_) => None,
        },
        _ => None,
    }
}

const KEY_ATTRS: &[AttributeType] = &[
    AttributeType::Class,
    AttributeType::KeyType,
    AttributeType::Id,
    AttributeType::Sign,
    AttributeType::Decrypt,
    AttributeType::Encrypt,
    AttributeType::Wrap,
    AttributeType::Unwrap,
    AttributeType::Extractable,
    AttributeType::ValueLen,
];

const PUBLIC_ATTRS: &[AttributeType] = &[
    AttributeType::Class,
    AttributeType::KeyType,
    AttributeType::Id,
    AttributeType::Modulus,
    AttributeType::PublicExponent,
    AttributeType::EcParams,
    AttributeType::EcPoint,
];

/// Every keychain object labelled `name`: (handle, class, version).
pub(crate) fn objects_of(
    session: &Session,
    name: &KeyName,
) -> Result<Vec<(ObjectHandle, ObjectClass, KeyVersion)>> {
    let template = [
        Attribute::Token(true),
        Attribute::Label(name.as_str().as_bytes().to_vec()),
    ];
    let mut out = Vec::new();
    for h in session.find_objects(&template).map_err(map)? {
        let Some(attrs) = attributes(session, h, &[AttributeType::Class, AttributeType::Id])?
        else {
            continue;
        };
        let (Some(class), Some(version)) = (
            class_of(&attrs),
            attr_bytes(&attrs, AttributeType::Id).and_then(version_of),
        ) else {
            continue;
        };
        if [
            ObjectClass::PRIVATE_KEY,
            ObjectClass::PUBLIC_KEY,
            ObjectClass::SECRET_KEY,
        ]
        .contains(&class)
        {
            out.push((h, class, version));
        }
    }
    Ok(out)
}

/// Reads key `name` from the token; `None` when it has no complete version.
pub(crate) fn load(session: &Session, name: &KeyName) -> Result<Option<KeyEntry>> {
    struct Found {
        key: Option<(ObjectHandle, Vec<Attribute>)>,
        public: Option<(ObjectHandle, Vec<Attribute>)>,
    }
    let mut by_version: BTreeMap<KeyVersion, Found> = BTreeMap::new();
    for (h, class, version) in objects_of(session, name)? {
        let found = by_version.entry(version).or_insert(Found {
            key: None,
            public: None,
        });
        if class == ObjectClass::PUBLIC_KEY {
            found.public = attributes(session, h, PUBLIC_ATTRS)?.map(|a| (h, a));
        } else {
            found.key = attributes(session, h, KEY_ATTRS)?.map(|a| (h, a));
        }
    }
    let mut versions = Vec::new();
    let mut meta: Option<(KeyAlgorithm, KeyUsages, bool)> = None;
    for (version, found) in by_version {
        // A version without its private/secret key is not usable (a half-deleted leftover).
        let Some((key, key_attrs)) = found.key else {
            continue;
        };
        let public_attrs = found.public.as_ref().map(|(_, a)| a.as_slice());
        let Some(algorithm) = algorithm_of(&key_attrs, public_attrs) else {
            continue;
        };
        let public_key = match public_attrs {
            Some(attrs) if algorithm.is_asymmetric() => Some(public_key(algorithm, attrs)?),
            _ if algorithm.is_asymmetric() => continue,
            _ => None,
        };
        let mut usages = KeyUsages::NONE;
        if attr_bool(&key_attrs, AttributeType::Sign) && algorithm.is_asymmetric() {
            usages.insert(KeyUsage::Sign);
        }
        if attr_bool(&key_attrs, AttributeType::Decrypt) {
            usages.insert(KeyUsage::Decrypt);
        }
        if attr_bool(&key_attrs, AttributeType::Encrypt) {
            usages.insert(KeyUsage::Encrypt);
        }
        if attr_bool(&key_attrs, AttributeType::Wrap)
            || attr_bool(&key_attrs, AttributeType::Unwrap)
        {
            usages.insert(KeyUsage::Wrap);
        }
        // Only what the algorithm can do (keys made by other tools often say "decrypt" on EC).
        let usages: KeyUsages = usages
            .iter()
            .filter(|u| algorithm.possible_usages().contains(*u))
            .collect();
        let exportable = attr_bool(&key_attrs, AttributeType::Extractable);
        if let Some((first_alg, _, _)) = meta
            && first_alg != algorithm
        {
            // Versions of one key share the algorithm; a stray object is not part of it.
            continue;
        }
        meta = Some((algorithm, usages, exportable));
        versions.push(VersionEntry {
            version,
            key,
            public_key,
        });
    }
    Ok(meta.map(|(algorithm, usages, exportable)| KeyEntry {
        name: name.clone(),
        algorithm,
        usages,
        exportable,
        versions,
    }))
}

/// The names of every keychain key on the token, sorted and unique.
pub(crate) fn names(session: &Session) -> Result<Vec<KeyName>> {
    let mut names = Vec::new();
    for class in [ObjectClass::PRIVATE_KEY, ObjectClass::SECRET_KEY] {
        let template = [Attribute::Token(true), Attribute::Class(class)];
        for h in session.find_objects(&template).map_err(map)? {
            let Some(attrs) = attributes(session, h, &[AttributeType::Label, AttributeType::Id])?
            else {
                continue;
            };
            if attr_bytes(&attrs, AttributeType::Id)
                .and_then(version_of)
                .is_none()
            {
                continue;
            }
            let Some(name) = attr_bytes(&attrs, AttributeType::Label)
                .and_then(|l| std::str::from_utf8(l).ok())
                .and_then(|l| KeyName::new(l).ok())
            else {
                continue;
            };
            names.push(name);
        }
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// The key-generation mechanism and templates for one version of a key.
pub(crate) struct Templates {
    pub(crate) mechanism: Mechanism<'static>,
    /// `None` for symmetric keys (`C_GenerateKey`).
    pub(crate) public: Option<Vec<Attribute>>,
    pub(crate) key: Vec<Attribute>,
}

/// Templates for `algorithm` with `usages`, labelled `name`, with `CKA_ID` `id`.
pub(crate) fn templates(
    name: &KeyName,
    id: &[u8],
    algorithm: KeyAlgorithm,
    usages: KeyUsages,
    exportable: bool,
) -> Result<Templates> {
    let label = name.as_str().as_bytes().to_vec();
    let common = |private: bool| {
        vec![
            Attribute::Token(true),
            Attribute::Private(private),
            Attribute::Label(label.clone()),
            Attribute::Id(id.to_vec()),
        ]
    };
    let sign = usages.contains(KeyUsage::Sign);
    let decrypt = usages.contains(KeyUsage::Decrypt);
    let wrap = usages.contains(KeyUsage::Wrap);
    // Sensitive always: an exportable key may leave the token wrapped, never in the clear.
    let secret_attrs = [
        Attribute::Sensitive(true),
        Attribute::Extractable(exportable),
    ];
    if let Some(len) = algorithm.symmetric_key_len() {
        let mut key = common(true);
        key.extend(secret_attrs);
        key.extend([
            Attribute::ValueLen(u64::try_from(len).unwrap_or(32).into()),
            Attribute::Encrypt(usages.contains(KeyUsage::Encrypt)),
            Attribute::Decrypt(decrypt),
            Attribute::Wrap(wrap),
            Attribute::Unwrap(wrap),
            Attribute::Sign(false),
            Attribute::Verify(false),
            Attribute::Derive(false),
        ]);
        return Ok(Templates {
            mechanism: Mechanism::AesKeyGen,
            public: None,
            key,
        });
    }
    let mut public = common(false);
    let mut key = common(true);
    key.extend(secret_attrs);
    // Every usage attribute explicitly: modules default the unset ones (SoftHSM to true).
    key.extend([
        Attribute::Sign(sign),
        Attribute::Decrypt(decrypt),
        Attribute::Unwrap(wrap),
        Attribute::Derive(false),
    ]);
    public.extend([
        Attribute::Verify(sign),
        Attribute::Encrypt(decrypt),
        Attribute::Wrap(wrap),
        Attribute::Derive(false),
    ]);
    let mechanism = if algorithm.is_rsa() {
        public.extend([
            Attribute::ModulusBits(u64::from(algorithm.bits()).into()),
            Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
        ]);
        Mechanism::RsaPkcsKeyPairGen
    } else {
        public.push(Attribute::EcParams(ec_params(algorithm)?));
        if algorithm == KeyAlgorithm::Ed25519 {
            Mechanism::EccEdwardsKeyPairGen
        } else {
            Mechanism::EccKeyPairGen
        }
    };
    Ok(Templates {
        mechanism,
        public: Some(public),
        key,
    })
}

/// Zeroizes the secret values in a template or attribute list (after the token has them).
pub(crate) fn scrub(attrs: &mut [Attribute]) {
    use zeroize::Zeroize as _;
    for a in attrs {
        if let Attribute::Value(v)
        | Attribute::PrivateExponent(v)
        | Attribute::Prime1(v)
        | Attribute::Prime2(v)
        | Attribute::Exponent1(v)
        | Attribute::Exponent2(v)
        | Attribute::Coefficient(v) = a
        {
            v.zeroize();
        }
    }
}

/// A generation template without what only key generation takes (the key's size, RSA's public
/// exponent): what creating or unwrapping a key with the same attributes needs.
fn generation_only_removed(template: Vec<Attribute>) -> Vec<Attribute> {
    template
        .into_iter()
        .filter(|a| {
            !matches!(
                a,
                Attribute::ValueLen(_) | Attribute::ModulusBits(_) | Attribute::PublicExponent(_)
            )
        })
        .collect()
}

/// Templates (`C_CreateObject`) of an imported key: `material` is the PKCS#8 DER of an
/// asymmetric key or the raw AES key (see `keychain_crypto::pkcs8::Plain`). Returns the public
/// key's template (asymmetric keys) and the private or secret key's.
pub(crate) fn import_templates(
    name: &KeyName,
    id: &[u8],
    algorithm: KeyAlgorithm,
    material: &[u8],
    usages: KeyUsages,
    exportable: bool,
) -> Result<(Option<Vec<Attribute>>, Vec<Attribute>)> {
    let made = templates(name, id, algorithm, usages, exportable)?;
    // The generation templates minus what only generation takes; plus class, type and the key.
    let strip = generation_only_removed;
    fn bad(what: &'static str) -> impl Fn(&dyn std::fmt::Display) -> Error {
        move |e| Error::invalid_input(format!("malformed {what}: {e}"))
    }
    if algorithm.is_symmetric() {
        let mut key = strip(made.key);
        key.extend([
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Value(material.to_vec()),
        ]);
        return Ok((None, key));
    }
    let info = pkcs8::PrivateKeyInfoRef::from_der(material).map_err(|e| bad("PKCS#8 key")(&e))?;
    let mut public = strip(made.public.unwrap_or_default());
    let mut key = strip(made.key);
    public.push(Attribute::Class(ObjectClass::PUBLIC_KEY));
    key.push(Attribute::Class(ObjectClass::PRIVATE_KEY));
    let octets = |v: der::asn1::UintRef<'_>| v.as_bytes().to_vec();
    if algorithm.is_rsa() {
        let rsa =
            pkcs1::RsaPrivateKey::<der::asn1::UintRef<'_>>::from_der(info.private_key.as_bytes())
                .map_err(|e| bad("RSA key")(&e))?;
        public.extend([
            Attribute::KeyType(KeyType::RSA),
            Attribute::Modulus(octets(rsa.modulus)),
            Attribute::PublicExponent(octets(rsa.public_exponent)),
        ]);
        key.extend([
            Attribute::KeyType(KeyType::RSA),
            Attribute::Modulus(octets(rsa.modulus)),
            Attribute::PublicExponent(octets(rsa.public_exponent)),
            Attribute::PrivateExponent(octets(rsa.private_exponent)),
            Attribute::Prime1(octets(rsa.prime1)),
            Attribute::Prime2(octets(rsa.prime2)),
            Attribute::Exponent1(octets(rsa.exponent1)),
            Attribute::Exponent2(octets(rsa.exponent2)),
            Attribute::Coefficient(octets(rsa.coefficient)),
        ]);
        return Ok((Some(public), key));
    }
    // EC and Ed25519: the private value, and the public point computed from it.
    let (key_type, secret, point) = match algorithm {
        KeyAlgorithm::EcP256 => {
            use p256::pkcs8::DecodePrivateKey as _;
            let k = p256::SecretKey::from_pkcs8_der(material).map_err(|e| bad("P-256 key")(&e))?;
            let point =
                p256::elliptic_curve::sec1::ToSec1Point::to_sec1_point(&k.public_key(), false);
            (
                KeyType::EC,
                k.to_bytes().to_vec(),
                point.as_bytes().to_vec(),
            )
        }
        KeyAlgorithm::EcP384 => {
            use p384::pkcs8::DecodePrivateKey as _;
            let k = p384::SecretKey::from_pkcs8_der(material).map_err(|e| bad("P-384 key")(&e))?;
            let point =
                p384::elliptic_curve::sec1::ToSec1Point::to_sec1_point(&k.public_key(), false);
            (
                KeyType::EC,
                k.to_bytes().to_vec(),
                point.as_bytes().to_vec(),
            )
        }
        KeyAlgorithm::EcP521 => {
            use p521::pkcs8::DecodePrivateKey as _;
            let k = p521::SecretKey::from_pkcs8_der(material).map_err(|e| bad("P-521 key")(&e))?;
            let point =
                p521::elliptic_curve::sec1::ToSec1Point::to_sec1_point(&k.public_key(), false);
            (
                KeyType::EC,
                k.to_bytes().to_vec(),
                point.as_bytes().to_vec(),
            )
        }
        KeyAlgorithm::Ed25519 => {
            use ed25519_dalek::pkcs8::DecodePrivateKey as _;
            let k = ed25519_dalek::SigningKey::from_pkcs8_der(material)
                .map_err(|e| bad("Ed25519 key")(&e))?;
            (
                KeyType::EC_EDWARDS,
                k.to_bytes().to_vec(),
                k.verifying_key().to_bytes().to_vec(),
            )
        }
        other => return Err(Error::unsupported(format!("importing {other} keys"))),
    };
    let point = OctetString::new(point)
        .and_then(|o| o.to_der())
        .map_err(|e| bad("EC point")(&e))?;
    public.extend([Attribute::KeyType(key_type), Attribute::EcPoint(point)]);
    key.extend([
        Attribute::KeyType(key_type),
        Attribute::EcParams(ec_params(algorithm)?),
        Attribute::Value(secret),
    ]);
    Ok((Some(public), key))
}

/// Templates of a key unwrapped on the token (`C_UnwrapKey`): the private or secret key's (the
/// key material comes from the wrapped bytes) and, for asymmetric keys, the public key's, built
/// from `public_spki` (SubjectPublicKeyInfo DER) because the token cannot derive it.
pub(crate) fn unwrap_templates(
    name: &KeyName,
    id: &[u8],
    algorithm: KeyAlgorithm,
    usages: KeyUsages,
    exportable: bool,
    public_spki: Option<&[u8]>,
) -> Result<(Option<Vec<Attribute>>, Vec<Attribute>)> {
    let made = templates(name, id, algorithm, usages, exportable)?;
    let strip = generation_only_removed;
    if algorithm.is_symmetric() {
        let mut key = strip(made.key);
        key.extend([
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
        ]);
        return Ok((None, key));
    }
    let spki_der = public_spki.ok_or_else(|| {
        Error::invalid_input(format!(
            "a wrapped {algorithm} key needs its public key (WrappedKey::public_key) to be \
             unwrapped on a PKCS#11 token"
        ))
    })?;
    let public_key = PublicKey::from_der(spki_der)?;
    if public_key.algorithm() != algorithm {
        return Err(Error::invalid_input(format!(
            "the wrapped key's public key is a {} key, the wrapped key a {algorithm} key",
            public_key.algorithm()
        )));
    }
    let spki = spki::SubjectPublicKeyInfoRef::from_der(spki_der)
        .map_err(|e| Error::invalid_input(format!("malformed public key: {e}")))?;
    let bits = spki.subject_public_key.raw_bytes();
    let mut public = strip(made.public.unwrap_or_default());
    let mut key = strip(made.key);
    public.push(Attribute::Class(ObjectClass::PUBLIC_KEY));
    key.push(Attribute::Class(ObjectClass::PRIVATE_KEY));
    if algorithm.is_rsa() {
        let rsa = pkcs1::RsaPublicKey::<der::asn1::UintRef<'_>>::from_der(bits)
            .map_err(|e| Error::invalid_input(format!("malformed RSA public key: {e}")))?;
        public.extend([
            Attribute::KeyType(KeyType::RSA),
            Attribute::Modulus(rsa.modulus.as_bytes().to_vec()),
            Attribute::PublicExponent(rsa.public_exponent.as_bytes().to_vec()),
        ]);
        key.push(Attribute::KeyType(KeyType::RSA));
        return Ok((Some(public), key));
    }
    let key_type = if algorithm == KeyAlgorithm::Ed25519 {
        KeyType::EC_EDWARDS
    } else {
        KeyType::EC
    };
    let point = OctetString::new(bits.to_vec())
        .and_then(|o| o.to_der())
        .map_err(|e| Error::invalid_input(format!("malformed EC point: {e}")))?;
    public.extend([Attribute::KeyType(key_type), Attribute::EcPoint(point)]);
    key.push(Attribute::KeyType(key_type));
    Ok((Some(public), key))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test assertions")]

    use super::*;

    #[test]
    fn ec_points_unwrap_octet_strings() {
        let raw = [7u8; 32];
        let wrapped = OctetString::new(raw.to_vec()).unwrap().to_der().unwrap();
        assert_eq!(ec_point_raw(&wrapped, 32), raw);
        assert_eq!(ec_point_raw(&raw, 32), raw);
    }

    #[test]
    fn curve_params_round_trip() {
        for a in [
            KeyAlgorithm::EcP256,
            KeyAlgorithm::EcP384,
            KeyAlgorithm::EcP521,
            KeyAlgorithm::Ed25519,
        ] {
            let p = ec_params(a).unwrap();
            assert!(curve_of(&p).is_some());
        }
        assert!(ec_params(KeyAlgorithm::Rsa2048).is_err());
    }
}
