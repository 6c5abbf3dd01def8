//! Wrapped-key blobs: round trips, tampering, wrong DKEK, and a hand-written encoder and decoder
//! built from the reference alone to cross-check the library.
//!
//! The keys under `tests/data/` are test-only keys made with `openssl genpkey`.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use aes::Aes256;
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use cmac::{Cmac, KeyInit, Mac};
use der::Decode;
use keychain_core::{ErrorKind, KeyAlgorithm, KeyMaterial, SecretBytes};
use keychain_sc_hsm::dkek::{
    BlobKeyType, Dkek, OID_AES, OID_EC, OID_RSA, RsaForm, WrapFile, WrapOptions, inspect,
    unwrap_key, wrap_key,
};

fn dkek() -> Dkek {
    Dkek::from_bytes(std::array::from_fn(|i| i as u8))
}

fn pem(name: &str) -> KeyMaterial {
    let path = format!("{}/tests/data/{name}.pem", env!("CARGO_MANIFEST_DIR"));
    KeyMaterial::Pkcs8 {
        data: SecretBytes::new(std::fs::read(path).unwrap()),
        password: None,
    }
}

fn der_of(material: &KeyMaterial) -> Vec<u8> {
    match material {
        KeyMaterial::Pkcs8 { data, .. } => {
            let bytes = data.expose();
            if bytes.starts_with(b"-----") {
                let (_, doc) =
                    der::SecretDocument::from_pem(std::str::from_utf8(bytes).unwrap()).unwrap();
                doc.as_bytes().to_vec()
            } else {
                bytes.to_vec()
            }
        }
        KeyMaterial::Symmetric(k) => k.expose().to_vec(),
        _ => unreachable!(),
    }
}

/// n, e, {p, q} of an RSA PKCS#8: what must survive a round trip (d may be reduced mod λ(n)).
fn rsa_parts(material: &KeyMaterial) -> (Vec<u8>, Vec<u8>, Vec<Vec<u8>>) {
    let der = der_of(material);
    let info = pkcs8::PrivateKeyInfoRef::from_der(&der).unwrap();
    let k = pkcs1::RsaPrivateKeyRef::from_der(info.private_key.as_bytes()).unwrap();
    let mut primes = vec![k.prime1.as_bytes().to_vec(), k.prime2.as_bytes().to_vec()];
    primes.sort();
    (
        k.modulus.as_bytes().to_vec(),
        k.public_exponent.as_bytes().to_vec(),
        primes,
    )
}

/// The EC private key of a PKCS#8, as the SEC1 structure's raw scalar.
fn ec_scalar(material: &KeyMaterial, alg: KeyAlgorithm) -> Vec<u8> {
    use pkcs8::DecodePrivateKey;
    let der = der_of(material);
    match alg {
        KeyAlgorithm::EcP256 => p256::SecretKey::from_pkcs8_der(&der)
            .unwrap()
            .to_bytes()
            .to_vec(),
        KeyAlgorithm::EcP384 => p384::SecretKey::from_pkcs8_der(&der)
            .unwrap()
            .to_bytes()
            .to_vec(),
        _ => p521::SecretKey::from_pkcs8_der(&der)
            .unwrap()
            .to_bytes()
            .to_vec(),
    }
}

/// Decrypts a blob by the reference alone: returns (type, OID, plaintext).
fn hand_decode(dkek: &Dkek, blob: &[u8]) -> (u8, Vec<u8>, Vec<u8>) {
    assert_eq!(&blob[..8], &dkek.kcv().to_bytes());
    let mut pos = 9;
    let mut fields = Vec::new();
    for _ in 0..4 {
        let len = usize::from(u16::from_be_bytes([blob[pos], blob[pos + 1]]));
        fields.push(blob[pos + 2..pos + 2 + len].to_vec());
        pos += 2 + len;
    }
    let (body, mac) = blob.split_at(blob.len() - 16);
    let mut m = <Cmac<Aes256> as KeyInit>::new_from_slice(dkek.kmac().expose()).unwrap();
    m.update(body);
    assert_eq!(&m.finalize().into_bytes()[..], mac);
    let mut plain = body[pos..].to_vec();
    cbc::Decryptor::<Aes256>::new_from_slices(dkek.kenc().expose(), &[0; 16])
        .unwrap()
        .decrypt_padded::<NoPadding>(&mut plain)
        .unwrap();
    (blob[8], fields[0].clone(), plain)
}

/// Builds a blob by the reference alone.
fn hand_encode(dkek: &Dkek, key_type: u8, oid: &[u8], plain: &[u8]) -> Vec<u8> {
    let mut plain = plain.to_vec();
    plain.push(0x80);
    while !plain.len().is_multiple_of(16) {
        plain.push(0);
    }
    let mut blob = dkek.kcv().to_bytes().to_vec();
    blob.push(key_type);
    for f in [oid, &[][..], &[][..], &[][..]] {
        blob.extend_from_slice(&(f.len() as u16).to_be_bytes());
        blob.extend_from_slice(f);
    }
    let len = plain.len();
    cbc::Encryptor::<Aes256>::new_from_slices(dkek.kenc().expose(), &[0; 16])
        .unwrap()
        .encrypt_padded::<NoPadding>(&mut plain, len)
        .unwrap();
    blob.extend_from_slice(&plain);
    let mut m = <Cmac<Aes256> as KeyInit>::new_from_slice(dkek.kmac().expose()).unwrap();
    m.update(&blob);
    blob.extend_from_slice(&m.finalize().into_bytes());
    blob
}

fn component(out: &mut Vec<u8>, v: &[u8]) {
    out.extend_from_slice(&(v.len() as u16).to_be_bytes());
    out.extend_from_slice(v);
}

#[test]
fn aes_round_trip_and_layout() {
    for len in [16usize, 24, 32] {
        let key: Vec<u8> = (0..len as u8).map(|b| b ^ 0x5a).collect();
        let material = KeyMaterial::Symmetric(SecretBytes::from_slice(&key));
        let blob = wrap_key(&dkek(), &material, &WrapOptions::new()).unwrap();
        let (t, oid, plain) = hand_decode(&dkek(), &blob);
        assert_eq!((t, &oid[..]), (15, OID_AES));
        assert_eq!(u16::from_be_bytes([plain[8], plain[9]]), len as u16);
        assert_eq!(&plain[10..10 + len], &key[..]);
        assert_eq!(plain[10 + len], 0x80);
        let back = unwrap_key(&dkek(), &blob).unwrap();
        assert_eq!(back.key_size, len as u16);
        assert_eq!(der_of(&back.material), key);
        assert_eq!(
            BlobKeyType::from_code(back.header.key_type),
            Some(BlobKeyType::Aes)
        );
    }
}

#[test]
fn rsa_2048_crt_round_trip() {
    let material = pem("rsa2048");
    let blob = wrap_key(&dkek(), &material, &WrapOptions::new()).unwrap();
    let header = inspect(&blob).unwrap();
    assert_eq!(header.key_type, 6);
    assert_eq!(header.default_algorithm, OID_RSA);
    assert_eq!(header.kcv, dkek().kcv());
    let (_, _, plain) = hand_decode(&dkek(), &blob);
    assert_eq!(u16::from_be_bytes([plain[8], plain[9]]), 2048);
    let back = unwrap_key(&dkek(), &blob).unwrap();
    assert_eq!(back.algorithm, Some(KeyAlgorithm::Rsa2048));
    assert_eq!(back.key_size, 2048);
    assert_eq!(rsa_parts(&back.material), rsa_parts(&material));
}

#[test]
fn rsa_plain_form_recovers_primes() {
    for (name, form, alg) in [
        ("rsa2048", RsaForm::Plain, KeyAlgorithm::Rsa2048),
        ("rsa4096", RsaForm::Auto, KeyAlgorithm::Rsa4096),
    ] {
        let material = pem(name);
        let blob = wrap_key(&dkek(), &material, &WrapOptions::new().rsa_form(form)).unwrap();
        assert_eq!(inspect(&blob).unwrap().key_type, 5, "{name}");
        let back = unwrap_key(&dkek(), &blob).unwrap();
        assert_eq!(back.algorithm, Some(alg));
        assert_eq!(rsa_parts(&back.material), rsa_parts(&material), "{name}");
    }
}

#[test]
fn ec_round_trips() {
    for (name, alg, bits, field) in [
        ("p256", KeyAlgorithm::EcP256, 256u16, 32usize),
        ("p384", KeyAlgorithm::EcP384, 384, 48),
        ("p521", KeyAlgorithm::EcP521, 528, 66),
    ] {
        let material = pem(name);
        let blob = wrap_key(&dkek(), &material, &WrapOptions::new()).unwrap();
        let (t, oid, plain) = hand_decode(&dkek(), &blob);
        assert_eq!((t, &oid[..]), (12, OID_EC));
        assert_eq!(u16::from_be_bytes([plain[8], plain[9]]), bits);
        // A, B, P, N, G, D, Q: check the widths and that A = P - 3.
        let mut pos = 10;
        let mut comps = Vec::new();
        for _ in 0..7 {
            let len = usize::from(u16::from_be_bytes([plain[pos], plain[pos + 1]]));
            comps.push(plain[pos + 2..pos + 2 + len].to_vec());
            pos += 2 + len;
        }
        let widths: Vec<usize> = comps.iter().map(Vec::len).collect();
        assert_eq!(
            widths,
            [
                field,
                field,
                field,
                field,
                1 + 2 * field,
                field,
                1 + 2 * field
            ]
        );
        assert_eq!(comps[0].last().unwrap() + 3, *comps[2].last().unwrap());
        let back = unwrap_key(&dkek(), &blob).unwrap();
        assert_eq!(back.algorithm, Some(alg));
        assert_eq!(back.key_size, bits);
        assert_eq!(ec_scalar(&back.material, alg), ec_scalar(&material, alg));
        assert_eq!(comps[5], ec_scalar(&material, alg));
    }
}

#[test]
fn generator_and_order_match_the_curve_crates() {
    use p256::elliptic_curve::group::Group;
    use p256::elliptic_curve::sec1::ToSec1Point;
    fn check(name: &str, field: usize, g: Vec<u8>, n_minus_1: Vec<u8>) {
        let blob = wrap_key(&dkek(), &pem(name), &WrapOptions::new()).unwrap();
        let (_, _, plain) = hand_decode(&dkek(), &blob);
        let at = |k: usize| 10 + k * (2 + field) + 2;
        assert_eq!(&plain[at(4)..at(4) + 1 + 2 * field], &g[..], "{name} G");
        let mut n = plain[at(3)..at(3) + field].to_vec();
        *n.last_mut().unwrap() -= 1; // no NIST order ends in a zero byte
        assert_eq!(n, n_minus_1, "{name} N");
    }
    check(
        "p256",
        32,
        p256::ProjectivePoint::generator()
            .to_affine()
            .to_sec1_point(false)
            .as_bytes()
            .to_vec(),
        (-p256::Scalar::ONE).to_bytes().to_vec(),
    );
    check(
        "p384",
        48,
        p384::ProjectivePoint::generator()
            .to_affine()
            .to_sec1_point(false)
            .as_bytes()
            .to_vec(),
        (-p384::Scalar::ONE).to_bytes().to_vec(),
    );
    check(
        "p521",
        66,
        p521::ProjectivePoint::generator()
            .to_affine()
            .to_sec1_point(false)
            .as_bytes()
            .to_vec(),
        (-p521::Scalar::ONE).to_bytes().to_vec(),
    );
}

#[test]
fn minimal_width_components_are_accepted() {
    // A P-256 key with a scalar that has a leading zero byte, written with minimal widths.
    use p256::elliptic_curve::sec1::ToSec1Point;
    let mut d = [0u8; 32];
    d[1] = 0x12;
    d[31] = 0x34;
    let sk = p256::SecretKey::from_slice(&d).unwrap();
    let q = sk.public_key().to_sec1_point(false).as_bytes().to_vec();
    let p =
        hex::decode("ffffffff00000001000000000000000000000000ffffffffffffffffffffffff").unwrap();
    let mut plain = vec![7u8; 8];
    plain.extend_from_slice(&256u16.to_be_bytes());
    for c in [&[1u8][..], &[2], &p, &[3], &[4]] {
        component(&mut plain, c); // A, B, N and G are not read back; only P selects the curve.
    }
    component(&mut plain, &d[1..]);
    component(&mut plain, &q);
    let blob = hand_encode(&dkek(), 12, OID_EC, &plain);
    let back = unwrap_key(&dkek(), &blob).unwrap();
    assert_eq!(back.algorithm, Some(KeyAlgorithm::EcP256));
    assert_eq!(ec_scalar(&back.material, KeyAlgorithm::EcP256), d);

    // A public point that does not belong to the scalar is refused.
    let mut wrong = plain.clone();
    let last = wrong.len() - 1;
    wrong[last] ^= 1;
    let err = unwrap_key(&dkek(), &hand_encode(&dkek(), 12, OID_EC, &wrong)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[test]
fn every_altered_byte_is_detected() {
    let material = KeyMaterial::Symmetric(SecretBytes::from_slice(&[0x11; 32]));
    let blob = wrap_key(
        &dkek(),
        &material,
        &WrapOptions::new().allowed_algorithms(vec![0x10, 0x11]),
    )
    .unwrap();
    for i in 0..blob.len() {
        let mut bad = blob.clone();
        bad[i] ^= 0x01;
        let err = unwrap_key(&dkek(), &bad).unwrap_err();
        let want = if i < 8 {
            ErrorKind::Unauthenticated
        } else {
            ErrorKind::Integrity
        };
        assert_eq!(err.kind(), want, "byte {i}: {err}");
    }
    for n in 0..blob.len() {
        assert!(unwrap_key(&dkek(), &blob[..n]).is_err(), "truncated to {n}");
    }
}

#[test]
fn another_dkek_names_both_kcvs() {
    let blob = wrap_key(
        &dkek(),
        &KeyMaterial::Symmetric(SecretBytes::from_slice(&[1; 16])),
        &WrapOptions::new(),
    )
    .unwrap();
    let other = Dkek::from_bytes([0; 32]);
    let err = unwrap_key(&other, &blob).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated);
    let msg = err.to_string();
    assert!(
        msg.contains("630DCD2966C43366") && msg.contains("66687AADF862BD77"),
        "{msg}"
    );
}

#[test]
fn unknown_type_and_unsupported_material() {
    let blob = hand_encode(&dkek(), 99, OID_AES, &[0; 26]);
    assert_eq!(
        unwrap_key(&dkek(), &blob).unwrap_err().kind(),
        ErrorKind::Unsupported
    );
    let bad_aes = KeyMaterial::Symmetric(SecretBytes::from_slice(&[1; 20]));
    assert_eq!(
        wrap_key(&dkek(), &bad_aes, &WrapOptions::new())
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    let garbage = KeyMaterial::Pkcs8 {
        data: SecretBytes::from_slice(b"not a key"),
        password: None,
    };
    assert_eq!(
        wrap_key(&dkek(), &garbage, &WrapOptions::new())
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
}

#[test]
fn encrypted_pkcs8_input() {
    let der = der_of(&pem("p256"));
    let info = pkcs8::PrivateKeyInfoRef::from_der(&der).unwrap();
    let enc = info.encrypt(b"pw").unwrap();
    let material = KeyMaterial::Pkcs8 {
        data: SecretBytes::from_slice(enc.as_bytes()),
        password: Some("pw".into()),
    };
    let blob = wrap_key(&dkek(), &material, &WrapOptions::new()).unwrap();
    let back = unwrap_key(&dkek(), &blob).unwrap();
    assert_eq!(
        ec_scalar(&back.material, KeyAlgorithm::EcP256),
        ec_scalar(&pem("p256"), KeyAlgorithm::EcP256)
    );
    let wrong = KeyMaterial::Pkcs8 {
        data: SecretBytes::from_slice(enc.as_bytes()),
        password: Some("nope".into()),
    };
    assert_eq!(
        wrap_key(&dkek(), &wrong, &WrapOptions::new())
            .unwrap_err()
            .kind(),
        ErrorKind::Unauthenticated
    );
}

#[test]
fn wrap_file_carries_a_blob() {
    let blob = wrap_key(&dkek(), &pem("p384"), &WrapOptions::new()).unwrap();
    let file = WrapFile::new(blob.clone());
    let der = file.to_der().unwrap();
    let back = WrapFile::from_der(&der).unwrap();
    assert_eq!(back.blob, blob);
    assert!(unwrap_key(&dkek(), &back.blob).is_ok());
}
