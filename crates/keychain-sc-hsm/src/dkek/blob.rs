//! Wrapped-key blobs: what the card's WRAP KEY returns and UNWRAP KEY accepts.

use aes::Aes256;
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use cmac::{Cmac, KeyInit, Mac};
use der::Decode;
use keychain_core::{Error, ErrorKind, KeyAlgorithm, KeyMaterial, Result, SecretBytes};
use p256::elliptic_curve::sec1::ToSec1Point;
use pkcs8::EncodePrivateKey;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::dkek::key::{Dkek, Kcv};

/// Default algorithm OID content octets the card uses for RSA keys (id-TA-RSA-v1-5-SHA-256).
pub const OID_RSA: &[u8] = &[0x04, 0x00, 0x7F, 0x00, 0x07, 0x02, 0x02, 0x02, 0x01, 0x02];
/// Default algorithm OID content octets the card uses for EC keys (id-TA-ECDSA-SHA-256).
pub const OID_EC: &[u8] = &[0x04, 0x00, 0x7F, 0x00, 0x07, 0x02, 0x02, 0x02, 0x02, 0x03];
/// Default algorithm OID content octets the card uses for AES keys (2.16.840.1.101.3.4.1).
pub const OID_AES: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01];

const MAC_LEN: usize = 16;
const BLOCK: usize = 16;
/// The random prefix of the plaintext.
const NONCE_LEN: usize = 8;

/// The key type byte of a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BlobKeyType {
    /// 5: RSA as d, n, e (what devices export for RSA-4096).
    Rsa,
    /// 6: RSA in CRT form: dP, dQ, p, qInv, q, n, e.
    RsaCrt,
    /// 12: EC: curve parameters A, B, P, N, G, then D and Q.
    Ec,
    /// 15: AES: the raw key.
    Aes,
}

impl BlobKeyType {
    /// The type byte.
    pub const fn code(self) -> u8 {
        match self {
            Self::Rsa => 5,
            Self::RsaCrt => 6,
            Self::Ec => 12,
            Self::Aes => 15,
        }
    }

    /// The type for a type byte, if known.
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            5 => Some(Self::Rsa),
            6 => Some(Self::RsaCrt),
            12 => Some(Self::Ec),
            15 => Some(Self::Aes),
            _ => None,
        }
    }
}

/// The unencrypted part of a blob, readable without the DKEK.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BlobHeader {
    /// KCV of the DKEK the key was wrapped under.
    pub kcv: Kcv,
    /// The key type byte (see [`BlobKeyType::from_code`]).
    pub key_type: u8,
    /// The default algorithm: the OID's DER content octets, without tag or length.
    pub default_algorithm: Vec<u8>,
    /// The allowed algorithms, one byte each (card algorithm identifiers); may be empty.
    pub allowed_algorithms: Vec<u8>,
    /// Access conditions (unused by current devices; normally empty).
    pub access_conditions: Vec<u8>,
    /// Key OID (unused by current devices; normally empty).
    pub key_oid: Vec<u8>,
}

/// A key taken out of a blob, as key material any keychain backend can import.
#[non_exhaustive]
pub struct UnwrappedKey {
    /// The blob's header (KCV, type, algorithms).
    pub header: BlobHeader,
    /// The key size the blob states: bits for RSA and EC (P-521 counts as 528), bytes for AES.
    pub key_size: u16,
    /// The keychain algorithm the material has, if keychain has one (RSA 2048/3072/4096, NIST
    /// curves, AES as AES-GCM; the card's own AES algorithms are CBC and CMAC).
    pub algorithm: Option<KeyAlgorithm>,
    /// PKCS#8 DER (unencrypted) for RSA and EC keys; the raw key for AES.
    pub material: KeyMaterial,
}

impl std::fmt::Debug for UnwrappedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnwrappedKey")
            .field("header", &self.header)
            .field("key_size", &self.key_size)
            .field("algorithm", &self.algorithm)
            .field("material", &self.material)
            .finish()
    }
}

/// How [`wrap_key`] writes RSA keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RsaForm {
    /// CRT (type 6) below 4096 bits, d/n/e (type 5) from 4096 bits on, as devices export them.
    #[default]
    Auto,
    /// Always type 6.
    Crt,
    /// Always type 5.
    Plain,
}

/// Options for [`wrap_key`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct WrapOptions {
    /// The allowed-algorithms list (card algorithm identifiers); empty by default.
    pub allowed_algorithms: Vec<u8>,
    /// The default algorithm OID's content octets; `None` takes the card's default for the
    /// key type ([`OID_RSA`], [`OID_EC`], [`OID_AES`]).
    pub default_algorithm: Option<Vec<u8>>,
    /// How to write RSA keys.
    pub rsa_form: RsaForm,
}

impl WrapOptions {
    /// The defaults: no allowed-algorithms list, the card's default OID, RSA as devices export it.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the allowed-algorithms list.
    #[must_use]
    pub fn allowed_algorithms(mut self, algorithms: Vec<u8>) -> Self {
        self.allowed_algorithms = algorithms;
        self
    }

    /// Sets how RSA keys are written.
    #[must_use]
    pub fn rsa_form(mut self, form: RsaForm) -> Self {
        self.rsa_form = form;
        self
    }
}

fn damaged(what: &str) -> Error {
    Error::new(
        ErrorKind::Integrity,
        format!("not a valid SmartCard-HSM key blob: {what}"),
    )
}

fn malformed(what: &str) -> Error {
    Error::invalid_input(format!(
        "the key blob is authentic but its content is malformed: {what}"
    ))
}

/// A bounds-checked reader over a byte slice.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    fn field(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }

    fn rest(&self) -> &'a [u8] {
        &self.data[self.pos..]
    }
}

/// Splits a blob into header, encrypted part and MAC, checking every length.
fn split(blob: &[u8]) -> Result<(BlobHeader, &[u8], &[u8])> {
    let mut c = Cursor::new(blob);
    let kcv = c.take(8).ok_or_else(|| damaged("too short"))?;
    let key_type = c.take(1).ok_or_else(|| damaged("too short"))?[0];
    let mut fields = [&[][..]; 4];
    for f in &mut fields {
        *f = c
            .field()
            .ok_or_else(|| damaged("a header length runs past the end"))?;
    }
    let rest = c.rest();
    if rest.len() < BLOCK + MAC_LEN || !(rest.len() - MAC_LEN).is_multiple_of(BLOCK) {
        return Err(damaged(
            "the encrypted key is not a non-empty multiple of 16 bytes followed by a 16-byte MAC",
        ));
    }
    let (encrypted, mac) = rest.split_at(rest.len() - MAC_LEN);
    let mut kcv_bytes = [0u8; 8];
    kcv_bytes.copy_from_slice(kcv);
    let header = BlobHeader {
        kcv: Kcv::from_bytes(kcv_bytes),
        key_type,
        default_algorithm: fields[0].to_vec(),
        allowed_algorithms: fields[1].to_vec(),
        access_conditions: fields[2].to_vec(),
        key_oid: fields[3].to_vec(),
    };
    Ok((header, encrypted, mac))
}

/// Reads a blob's header without the DKEK (to show its KCV and key type, or to pick the DKEK).
///
/// # Errors
/// [`ErrorKind::Integrity`] if the layout is broken (truncated, a length past the end).
pub fn inspect(blob: &[u8]) -> Result<BlobHeader> {
    split(blob).map(|(header, _, _)| header)
}

fn cmac(kmac: &[u8; 32], data: &[u8]) -> Result<[u8; 16]> {
    let mut mac = <Cmac<Aes256> as KeyInit>::new_from_slice(kmac)
        .map_err(|_| Error::new(ErrorKind::Unexpected, "AES-256 CMAC key length"))?;
    mac.update(data);
    let mut out = [0u8; 16];
    out.copy_from_slice(&mac.finalize().into_bytes());
    Ok(out)
}

/// Verifies and decrypts a blob made under `dkek` (by a card's WRAP KEY or by [`wrap_key`]).
///
/// Checks, in order: the layout (every length against the data), the KCV, the CMAC (in constant
/// time) — and only then decrypts. RSA keys come out as PKCS#8 (for type 5 the primes are
/// recovered from d), EC keys on P-256/P-384/P-521 as PKCS#8 (the public point is checked against
/// the private scalar), AES keys as raw bytes.
///
/// # Errors
/// - [`ErrorKind::Integrity`]: broken layout or MAC mismatch (altered or truncated blob);
/// - [`ErrorKind::Unauthenticated`]: the blob was wrapped under another DKEK (the message names
///   both KCVs);
/// - [`ErrorKind::Unsupported`]: an unknown key type or a curve keychain does not handle;
/// - [`ErrorKind::InvalidInput`]: the blob is authentic but its key is malformed.
pub fn unwrap_key(dkek: &Dkek, blob: &[u8]) -> Result<UnwrappedKey> {
    let (header, encrypted, mac) = split(blob)?;
    let ours = dkek.kcv();
    if header.kcv != ours {
        return Err(Error::new(
            ErrorKind::Unauthenticated,
            format!(
                "the key blob was wrapped under the DKEK with KCV {}, but these shares make the DKEK with KCV {ours}",
                header.kcv
            ),
        ));
    }
    let expected = cmac(&dkek.derive(2), &blob[..blob.len() - MAC_LEN])?;
    if !bool::from(expected.ct_eq(mac)) {
        return Err(damaged("the MAC does not verify (the blob was altered)"));
    }
    let kind = BlobKeyType::from_code(header.key_type).ok_or_else(|| {
        Error::unsupported(format!(
            "key blob type {} is not supported",
            header.key_type
        ))
    })?;
    let mut plain = Zeroizing::new(encrypted.to_vec());
    let dec = cbc::Decryptor::<Aes256>::new_from_slices(&dkek.derive(1)[..], &[0u8; 16])
        .map_err(|_| Error::new(ErrorKind::Unexpected, "AES-256-CBC key or IV length"))?;
    dec.decrypt_padded::<NoPadding>(&mut plain[..])
        .map_err(|_| damaged("the encrypted key is not whole blocks"))?;

    let mut c = Cursor::new(&plain[..]);
    c.take(NONCE_LEN).ok_or_else(|| malformed("too short"))?;
    let key_size = c.u16().ok_or_else(|| malformed("too short"))?;
    let (algorithm, material) = match kind {
        BlobKeyType::Aes => {
            let (algorithm, material) = decode_aes(&mut c, key_size)?;
            (Some(algorithm), material)
        }
        BlobKeyType::Rsa => {
            let [d, n, e] = components(&mut c)?;
            decode_rsa_plain(d, n, e)?
        }
        BlobKeyType::RsaCrt => {
            let [_dp, _dq, p, _qinv, q, n, e] = components(&mut c)?;
            decode_rsa_crt(p, q, n, e)?
        }
        BlobKeyType::Ec => {
            let [_a, _b, prime, _order, _g, d, q] = components(&mut c)?;
            let (algorithm, material) = decode_ec(prime, d, q)?;
            (Some(algorithm), material)
        }
    };
    Ok(UnwrappedKey {
        header,
        key_size,
        algorithm,
        material,
    })
}

fn components<'a, const N: usize>(c: &mut Cursor<'a>) -> Result<[&'a [u8]; N]> {
    let mut out = [&[][..]; N];
    for f in &mut out {
        *f = c
            .field()
            .ok_or_else(|| malformed("a key component runs past the end"))?;
    }
    Ok(out)
}

fn decode_aes(c: &mut Cursor<'_>, size: u16) -> Result<(KeyAlgorithm, KeyMaterial)> {
    let algorithm = match size {
        16 => KeyAlgorithm::Aes128Gcm,
        24 => KeyAlgorithm::Aes192Gcm,
        32 => KeyAlgorithm::Aes256Gcm,
        _ => return Err(malformed("an AES key is 16, 24 or 32 bytes")),
    };
    let key = c
        .take(usize::from(size))
        .ok_or_else(|| malformed("the AES key runs past the end"))?;
    Ok((
        algorithm,
        KeyMaterial::Symmetric(SecretBytes::from_slice(key)),
    ))
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

fn uint(bytes: &[u8], bits: u32) -> Result<rsa::BoxedUint> {
    let bytes = trim(bytes);
    rsa::BoxedUint::from_be_slice(bytes, bits)
        .map_err(|_| malformed("an RSA component is too long"))
}

/// The keychain algorithm (if keychain has one for this size) and the modulus width in bits.
fn rsa_algorithm(n: &[u8]) -> Result<(Option<KeyAlgorithm>, u32)> {
    let n = trim(n);
    // 512 to 8192 bits: anything outside is no card key and only costs time to examine.
    if !(64..=1024).contains(&n.len()) {
        return Err(malformed("the RSA modulus is not 512 to 8192 bits long"));
    }
    let algorithm = match n.len() {
        256 => Some(KeyAlgorithm::Rsa2048),
        384 => Some(KeyAlgorithm::Rsa3072),
        512 => Some(KeyAlgorithm::Rsa4096),
        _ => None,
    };
    Ok((algorithm, (n.len() * 8) as u32))
}

fn rsa_pkcs8(key: &rsa::RsaPrivateKey) -> Result<KeyMaterial> {
    let doc = key
        .to_pkcs8_der()
        .map_err(|_| Error::new(ErrorKind::Unexpected, "cannot encode the RSA key as PKCS#8"))?;
    Ok(KeyMaterial::Pkcs8 {
        data: SecretBytes::from_slice(doc.as_bytes()),
        password: None,
    })
}

fn decode_rsa_plain(d: &[u8], n: &[u8], e: &[u8]) -> Result<(Option<KeyAlgorithm>, KeyMaterial)> {
    let (algorithm, bits) = rsa_algorithm(n)?;
    let e_bits = u32::try_from(trim(e).len().max(1) * 8).unwrap_or(u32::MAX);
    let key = rsa::RsaPrivateKey::from_components(
        uint(n, bits)?,
        uint(e, e_bits)?,
        uint(d, bits)?,
        Vec::new(),
    )
    .map_err(|_| malformed("d, n and e do not form an RSA key"))?;
    Ok((algorithm, rsa_pkcs8(&key)?))
}

fn decode_rsa_crt(
    p: &[u8],
    q: &[u8],
    n: &[u8],
    e: &[u8],
) -> Result<(Option<KeyAlgorithm>, KeyMaterial)> {
    use rsa::traits::PublicKeyParts;
    let (algorithm, bits) = rsa_algorithm(n)?;
    let e_bits = u32::try_from(trim(e).len().max(1) * 8).unwrap_or(u32::MAX);
    let key = rsa::RsaPrivateKey::from_p_q(uint(p, bits)?, uint(q, bits)?, uint(e, e_bits)?)
        .map_err(|_| malformed("p, q and e do not form an RSA key"))?;
    if &*key.n().to_be_bytes_trimmed_vartime() != trim(n) {
        return Err(malformed("n is not p·q"));
    }
    Ok((algorithm, rsa_pkcs8(&key)?))
}

/// The curves keychain handles, with their SEC 2 / FIPS 186 domain parameters.
#[derive(Clone, Copy)]
struct Curve {
    algorithm: KeyAlgorithm,
    field_len: usize,
    prime: &'static str,
    b: &'static str,
    order: &'static str,
    gx: &'static str,
    gy: &'static str,
}

const CURVES: [Curve; 3] = [
    Curve {
        algorithm: KeyAlgorithm::EcP256,
        field_len: 32,
        prime: "ffffffff00000001000000000000000000000000ffffffffffffffffffffffff",
        b: "5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b",
        order: "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551",
        gx: "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296",
        gy: "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5",
    },
    Curve {
        algorithm: KeyAlgorithm::EcP384,
        field_len: 48,
        prime: "fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff",
        b: "b3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875ac656398d8a2ed19d2a85c8edd3ec2aef",
        order: "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973",
        gx: "aa87ca22be8b05378eb1c71ef320ad746e1d3b628ba79b9859f741e082542a385502f25dbf55296c3a545e3872760ab7",
        gy: "3617de4a96262c6f5d9e98bf9292dc29f8f41dbd289a147ce9da3113b5f0b8c00a60b1ce1d7e819d7a431d7c90ea0e5f",
    },
    Curve {
        algorithm: KeyAlgorithm::EcP521,
        field_len: 66,
        prime: "01ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        b: "0051953eb9618e1c9a1f929a21a0b68540eea2da725b99b315f3b8b489918ef109e156193951ec7e937b1652c0bd3bb1bf073573df883d2c34f1ef451fd46b503f00",
        order: "01fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffa51868783bf2f966b7fcc0148f709a5d03bb5c9b8899c47aebb6fb71e91386409",
        gx: "00c6858e06b70404e9cd9e3ecb662395b4429c648139053fb521f828af606b4d3dbaa14b5e77efe75928fe1dc127a2ffa8de3348b3c1856a429bf97e7e31c2e5bd66",
        gy: "011839296a789a3bc0045c8a5fb42c7d1bd998f54449579b446817afbd17273e662c97ee72995ef42640c550b9013fad0761353c7086a272c24088be94769fd16650",
    },
];

fn unhex(s: &str) -> Vec<u8> {
    // The constants above are well-formed; a typo would fail every EC test.
    hex::decode(s).unwrap_or_default()
}

impl Curve {
    fn by_prime(prime: &[u8]) -> Option<Self> {
        let prime = trim(prime);
        CURVES.into_iter().find(|c| trim(&unhex(c.prime)) == prime)
    }

    fn by_algorithm(algorithm: KeyAlgorithm) -> Option<Self> {
        CURVES.into_iter().find(|c| c.algorithm == algorithm)
    }

    /// A = P − 3 for the NIST curves.
    fn a(&self) -> Vec<u8> {
        let mut a = unhex(self.prime);
        let mut borrow = 3u16;
        for byte in a.iter_mut().rev() {
            let v = u16::from(*byte);
            if v >= borrow {
                *byte = (v - borrow) as u8;
                break;
            }
            *byte = (v + 256 - borrow) as u8;
            borrow = 1;
        }
        a
    }

    /// The key size the card states: the field length in bits (P-521 counts as 528).
    fn key_bits(&self) -> u16 {
        (self.field_len * 8) as u16
    }
}

/// Left-pads `bytes` (after dropping leading zeros) to `len`.
fn left_pad(bytes: &[u8], len: usize) -> Option<Zeroizing<Vec<u8>>> {
    let bytes = trim(bytes);
    if bytes.len() > len {
        return None;
    }
    let mut out = Zeroizing::new(vec![0u8; len]);
    out[len - bytes.len()..].copy_from_slice(bytes);
    Some(out)
}

/// PKCS#8 and the uncompressed public point for a private scalar on `curve`.
fn ec_key(curve: &Curve, d: &[u8]) -> Result<(SecretBytes, Vec<u8>)> {
    let d =
        left_pad(d, curve.field_len).ok_or_else(|| malformed("the EC private key is too long"))?;
    let bad = || malformed("the EC private key is not a valid scalar");
    let enc = |doc: pkcs8::Result<der::SecretDocument>| {
        doc.map(|d| SecretBytes::from_slice(d.as_bytes()))
            .map_err(|_| Error::new(ErrorKind::Unexpected, "cannot encode the EC key as PKCS#8"))
    };
    match curve.algorithm {
        KeyAlgorithm::EcP256 => {
            let sk = p256::SecretKey::from_slice(&d).map_err(|_| bad())?;
            let q = ToSec1Point::to_sec1_point(&sk.public_key(), false)
                .as_bytes()
                .to_vec();
            Ok((enc(sk.to_pkcs8_der())?, q))
        }
        KeyAlgorithm::EcP384 => {
            let sk = p384::SecretKey::from_slice(&d).map_err(|_| bad())?;
            let q = ToSec1Point::to_sec1_point(&sk.public_key(), false)
                .as_bytes()
                .to_vec();
            Ok((enc(sk.to_pkcs8_der())?, q))
        }
        _ => {
            let sk = p521::SecretKey::from_slice(&d).map_err(|_| bad())?;
            let q = ToSec1Point::to_sec1_point(&sk.public_key(), false)
                .as_bytes()
                .to_vec();
            Ok((enc(sk.to_pkcs8_der())?, q))
        }
    }
}

fn decode_ec(prime: &[u8], d: &[u8], q: &[u8]) -> Result<(KeyAlgorithm, KeyMaterial)> {
    let curve = Curve::by_prime(prime)
        .ok_or_else(|| Error::unsupported("the key blob's curve is not P-256, P-384 or P-521"))?;
    let (pkcs8, public) = ec_key(&curve, d)?;
    // P alone selects the curve (A, B, N and G are the curve's by definition). An uncompressed
    // Q is checked against D; another encoding of Q is not examined, since D determines it.
    if q.first() == Some(&0x04) {
        let coords = &q[1..];
        let half = coords.len() / 2;
        let x = left_pad(&coords[..half], curve.field_len);
        let y = left_pad(&coords[half..], curve.field_len);
        match (x, y) {
            (Some(x), Some(y))
                if coords.len().is_multiple_of(2)
                    && x[..] == public[1..=curve.field_len]
                    && y[..] == public[1 + curve.field_len..] => {}
            _ => return Err(malformed("the public point does not match the private key")),
        }
    }
    Ok((
        curve.algorithm,
        KeyMaterial::Pkcs8 {
            data: pkcs8,
            password: None,
        },
    ))
}

/// Reads PKCS#8 DER or PEM, decrypting it if a password is given.
fn pkcs8_der(
    data: &[u8],
    password: Option<&keychain_core::SecretString>,
) -> Result<Zeroizing<Vec<u8>>> {
    let bad = || Error::invalid_input("the key material is not a PKCS#8 private key");
    let der: Zeroizing<Vec<u8>> = if data.starts_with(b"-----") {
        let text = std::str::from_utf8(data).map_err(|_| bad())?;
        let (_, doc) = der::SecretDocument::from_pem(text).map_err(|_| bad())?;
        Zeroizing::new(doc.as_bytes().to_vec())
    } else {
        Zeroizing::new(data.to_vec())
    };
    match password {
        None => Ok(der),
        Some(pw) => {
            let enc = pkcs8::EncryptedPrivateKeyInfoRef::from_der(&der).map_err(|_| bad())?;
            let doc = enc.decrypt(pw.expose().as_bytes()).map_err(|_| {
                Error::new(
                    ErrorKind::Unauthenticated,
                    "wrong password for the encrypted PKCS#8 key",
                )
            })?;
            Ok(Zeroizing::new(doc.as_bytes().to_vec()))
        }
    }
}

/// Plaintext under construction: nonce ‖ size ‖ components ‖ padding.
struct Plain(Zeroizing<Vec<u8>>);

impl Plain {
    fn new(key_size: u16) -> Result<Self> {
        let mut v = Zeroizing::new(vec![0u8; NONCE_LEN]);
        crate::dkek::fill_random(&mut v[..])?;
        v.extend_from_slice(&key_size.to_be_bytes());
        Ok(Self(v))
    }

    fn component(&mut self, value: &[u8]) -> Result<()> {
        let len = u16::try_from(value.len())
            .map_err(|_| Error::invalid_input("a key component is too long for a blob"))?;
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(value);
        Ok(())
    }

    fn padded(mut self) -> Zeroizing<Vec<u8>> {
        self.0.push(0x80);
        while !self.0.len().is_multiple_of(BLOCK) {
            self.0.push(0);
        }
        self.0
    }
}

/// Wraps key material under `dkek` into a blob the card's UNWRAP KEY accepts (and
/// [`unwrap_key`] reads).
///
/// Takes PKCS#8 RSA (2048–4096 bits) and EC (P-256, P-384, P-521) private keys, DER or PEM,
/// encrypted if a password is given, and raw AES keys of 16, 24 or 32 bytes.
///
/// # Errors
/// - [`ErrorKind::InvalidInput`]: the material is not a readable private key or AES key;
/// - [`ErrorKind::Unauthenticated`]: wrong password for an encrypted PKCS#8;
/// - [`ErrorKind::Unsupported`]: a key type or curve the card format does not carry here
///   (Ed25519, secp256k1, multi-prime RSA).
pub fn wrap_key(dkek: &Dkek, material: &KeyMaterial, options: &WrapOptions) -> Result<Vec<u8>> {
    let (kind, plain) = match material {
        KeyMaterial::Symmetric(key) => {
            if !matches!(key.len(), 16 | 24 | 32) {
                return Err(Error::invalid_input("an AES key is 16, 24 or 32 bytes"));
            }
            let mut p = Plain::new(key.len() as u16)?;
            p.0.extend_from_slice(key.expose());
            (BlobKeyType::Aes, p.padded())
        }
        KeyMaterial::Pkcs8 { data, password } => {
            let der = pkcs8_der(data.expose(), password.as_ref())?;
            encode_private_key(&der, options.rsa_form)?
        }
        _ => return Err(Error::unsupported("this kind of key material")),
    };
    let default_oid: &[u8] = match (&options.default_algorithm, kind) {
        (Some(oid), _) => oid,
        (None, BlobKeyType::Rsa | BlobKeyType::RsaCrt) => OID_RSA,
        (None, BlobKeyType::Ec) => OID_EC,
        (None, BlobKeyType::Aes) => OID_AES,
    };
    let field_len = |v: &[u8]| {
        u16::try_from(v.len()).map_err(|_| Error::invalid_input("a blob header field is too long"))
    };
    let mut blob = Vec::with_capacity(64 + plain.len());
    blob.extend_from_slice(&dkek.kcv().to_bytes());
    blob.push(kind.code());
    for f in [default_oid, &options.allowed_algorithms[..], &[], &[]] {
        blob.extend_from_slice(&field_len(f)?.to_be_bytes());
        blob.extend_from_slice(f);
    }
    let start = blob.len();
    blob.extend_from_slice(&plain);
    let enc = cbc::Encryptor::<Aes256>::new_from_slices(&dkek.derive(1)[..], &[0u8; 16])
        .map_err(|_| Error::new(ErrorKind::Unexpected, "AES-256-CBC key or IV length"))?;
    let len = plain.len();
    enc.encrypt_padded::<NoPadding>(&mut blob[start..], len)
        .map_err(|_| Error::new(ErrorKind::Unexpected, "AES-256-CBC block length"))?;
    let mac = cmac(&dkek.derive(2), &blob)?;
    blob.extend_from_slice(&mac);
    Ok(blob)
}

const OID_RSA_ENCRYPTION: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_EC_PUBLIC_KEY: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_P521: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.3.132.0.35");

fn encode_private_key(der: &[u8], form: RsaForm) -> Result<(BlobKeyType, Zeroizing<Vec<u8>>)> {
    let bad = || Error::invalid_input("the key material is not a PKCS#8 private key");
    let info = pkcs8::PrivateKeyInfoRef::from_der(der).map_err(|_| bad())?;
    let oid = info.algorithm.oid;
    if oid == OID_RSA_ENCRYPTION {
        let key =
            pkcs1::RsaPrivateKeyRef::from_der(info.private_key.as_bytes()).map_err(|_| bad())?;
        if key.other_prime_infos.is_some() {
            return Err(Error::unsupported("multi-prime RSA keys"));
        }
        let n = trim(key.modulus.as_bytes());
        let n_len = n.len();
        let bits =
            u16::try_from(n_len * 8).map_err(|_| Error::unsupported("RSA keys this large"))?;
        let half = n_len.div_ceil(2);
        let pad = |v: &[u8], len: usize| {
            left_pad(v, len).ok_or_else(|| Error::invalid_input("an RSA component is out of range"))
        };
        let crt = match form {
            RsaForm::Crt => true,
            RsaForm::Plain => false,
            RsaForm::Auto => bits < 4096,
        };
        let mut p = Plain::new(bits)?;
        let e = trim(key.public_exponent.as_bytes());
        if crt {
            p.component(&pad(key.exponent1.as_bytes(), half)?)?;
            p.component(&pad(key.exponent2.as_bytes(), half)?)?;
            p.component(&pad(key.prime1.as_bytes(), half)?)?;
            p.component(&pad(key.coefficient.as_bytes(), half)?)?;
            p.component(&pad(key.prime2.as_bytes(), half)?)?;
            p.component(n)?;
            p.component(e)?;
            Ok((BlobKeyType::RsaCrt, p.padded()))
        } else {
            p.component(&pad(key.private_exponent.as_bytes(), n_len)?)?;
            p.component(n)?;
            p.component(e)?;
            Ok((BlobKeyType::Rsa, p.padded()))
        }
    } else if oid == OID_EC_PUBLIC_KEY {
        let curve_oid: der::asn1::ObjectIdentifier = info
            .algorithm
            .parameters
            .and_then(|p| p.decode_as().ok())
            .ok_or_else(bad)?;
        let algorithm = if curve_oid == OID_P256 {
            KeyAlgorithm::EcP256
        } else if curve_oid == OID_P384 {
            KeyAlgorithm::EcP384
        } else if curve_oid == OID_P521 {
            KeyAlgorithm::EcP521
        } else {
            return Err(Error::unsupported(format!(
                "EC keys on curve {curve_oid} (P-256, P-384 and P-521 are supported)"
            )));
        };
        let curve = Curve::by_algorithm(algorithm).ok_or_else(bad)?;
        let (d, q) = ec_from_pkcs8(algorithm, der)?;
        let mut p = Plain::new(curve.key_bits())?;
        p.component(&curve.a())?;
        p.component(&unhex(curve.b))?;
        p.component(&unhex(curve.prime))?;
        p.component(&unhex(curve.order))?;
        let mut g = vec![0x04];
        g.extend(unhex(curve.gx));
        g.extend(unhex(curve.gy));
        p.component(&g)?;
        p.component(&d)?;
        p.component(&q)?;
        Ok((BlobKeyType::Ec, p.padded()))
    } else {
        Err(Error::unsupported(format!(
            "private keys of algorithm {oid} (RSA and EC are supported)"
        )))
    }
}

/// The private scalar (fixed width) and uncompressed public point of an EC PKCS#8.
fn ec_from_pkcs8(algorithm: KeyAlgorithm, der: &[u8]) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>)> {
    use pkcs8::DecodePrivateKey;
    let bad = || Error::invalid_input("the EC private key in the PKCS#8 is malformed");
    match algorithm {
        KeyAlgorithm::EcP256 => {
            let sk = p256::SecretKey::from_pkcs8_der(der).map_err(|_| bad())?;
            let q = ToSec1Point::to_sec1_point(&sk.public_key(), false)
                .as_bytes()
                .to_vec();
            Ok((Zeroizing::new(sk.to_bytes().to_vec()), q))
        }
        KeyAlgorithm::EcP384 => {
            let sk = p384::SecretKey::from_pkcs8_der(der).map_err(|_| bad())?;
            let q = ToSec1Point::to_sec1_point(&sk.public_key(), false)
                .as_bytes()
                .to_vec();
            Ok((Zeroizing::new(sk.to_bytes().to_vec()), q))
        }
        _ => {
            let sk = p521::SecretKey::from_pkcs8_der(der).map_err(|_| bad())?;
            let q = ToSec1Point::to_sec1_point(&sk.public_key(), false)
                .as_bytes()
                .to_vec();
            Ok((Zeroizing::new(sk.to_bytes().to_vec()), q))
        }
    }
}
