//! Fuzz-style properties: no input makes the parsers panic.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use aes::Aes256;
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockModeEncrypt, KeyIvInit};
use cmac::{Cmac, KeyInit, Mac};
use keychain_core::{KeyMaterial, SecretBytes};
use keychain_sc_hsm::dkek::{
    CustodyShare, Dkek, Kdf, ShareFile, ShareIdRadix, WrapFile, WrapOptions, inspect, parse_sheets,
    reconstruct_password, unwrap_key, wrap_key,
};
use proptest::prelude::*;

fn dkek() -> Dkek {
    Dkek::from_bytes([0x42; 32])
}

/// A correctly encrypted and MACed blob around an arbitrary plaintext, so the parser behind the
/// MAC sees fuzzed input too.
fn authentic_blob(key_type: u8, plain: &[u8]) -> Vec<u8> {
    let d = dkek();
    let mut plain = plain.to_vec();
    plain.resize(plain.len().div_ceil(16).max(1) * 16, 0);
    let mut blob = d.kcv().to_bytes().to_vec();
    blob.push(key_type);
    blob.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
    let len = plain.len();
    cbc::Encryptor::<Aes256>::new_from_slices(d.kenc().expose(), &[0; 16])
        .unwrap()
        .encrypt_padded::<NoPadding>(&mut plain, len)
        .unwrap();
    blob.extend_from_slice(&plain);
    let mut m = <Cmac<Aes256> as KeyInit>::new_from_slice(d.kmac().expose()).unwrap();
    m.update(&blob);
    blob.extend_from_slice(&m.finalize().into_bytes());
    blob
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_blobs_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = inspect(&bytes);
        let _ = unwrap_key(&dkek(), &bytes);
        // The same bytes with our KCV in front reach the MAC check.
        let mut with_kcv = dkek().kcv().to_bytes().to_vec();
        with_kcv.extend_from_slice(&bytes);
        let _ = unwrap_key(&dkek(), &with_kcv);
    }

    #[test]
    fn authentic_garbage_never_panics(
        key_type in prop::sample::select(vec![5u8, 6, 12, 15, 0, 255]),
        plain in proptest::collection::vec(any::<u8>(), 0..700),
        sizes in proptest::collection::vec(any::<u16>(), 0..8),
    ) {
        // Sprinkle plausible lengths so the component reader goes deep.
        let mut p = plain;
        for (i, s) in sizes.iter().enumerate() {
            let at = 8 + 2 * i;
            if at + 2 <= p.len() {
                p[at..at + 2].copy_from_slice(&(s % 300).to_be_bytes());
            }
        }
        let _ = unwrap_key(&dkek(), &authentic_blob(key_type, &p));
    }

    #[test]
    fn truncated_and_flipped_blobs_never_panic(cut in 0usize..200, flip in 0usize..200, bit in 0u8..8) {
        let blob = wrap_key(
            &dkek(),
            &KeyMaterial::Symmetric(SecretBytes::from_slice(&[7; 24])),
            &WrapOptions::new(),
        ).unwrap();
        let n = cut.min(blob.len());
        prop_assert!(unwrap_key(&dkek(), &blob[..n]).is_err() || n == blob.len());
        let mut bad = blob.clone();
        let i = flip % bad.len();
        bad[i] ^= 1 << bit;
        prop_assert!(unwrap_key(&dkek(), &bad).is_err());
    }

    #[test]
    fn random_share_files_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
        let kdf = Kdf::with_rounds(1).unwrap();
        if let Ok(f) = ShareFile::from_bytes(&bytes) {
            let _ = f.open(b"pw", &kdf);
        }
        let mut salted = b"Salted__".to_vec();
        salted.extend_from_slice(&bytes);
        if let Ok(f) = ShareFile::from_bytes(&salted) {
            let _ = f.open(b"pw", &kdf);
        }
    }

    #[test]
    fn truncated_share_files_are_invalid_input(cut in 0usize..64) {
        let kdf = Kdf::with_rounds(1).unwrap();
        let share = keychain_sc_hsm::dkek::DkekShare::from_bytes([1; 32]);
        let file = ShareFile::seal(&share, b"pw", &kdf).unwrap().to_bytes();
        let err = ShareFile::from_bytes(&file[..cut]).unwrap_err();
        prop_assert_eq!(err.kind(), keychain_core::ErrorKind::InvalidInput);
    }

    #[test]
    fn random_text_never_panics(text in "\\PC{0,300}") {
        if let Ok(shares) = parse_sheets(&text, ShareIdRadix::Decimal) {
            let _ = reconstruct_password(&shares);
        }
        let _ = parse_sheets(&text, ShareIdRadix::Hex);
        let _ = CustodyShare::from_text(&text);
        let _ = text.parse::<keychain_sc_hsm::dkek::Kcv>();
    }

    #[test]
    fn sheet_like_text_never_panics(
        prime in "[0-9a-fA-F: ]{0,40}",
        id in "[0-9a-fx]{0,6}",
        value in "[0-9a-fA-F: ]{0,40}",
    ) {
        let text = format!("Prime : {prime}\nShare ID : {id}\nShare value : {value}\n\
                            Share ID : 2\nShare value : {value}\n");
        if let Ok(shares) = parse_sheets(&text, ShareIdRadix::Decimal) {
            let _ = reconstruct_password(&shares);
        }
    }

    #[test]
    fn random_wrap_files_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = WrapFile::from_der(&bytes);
        let mut seq = vec![0x30, bytes.len().min(127) as u8];
        seq.extend_from_slice(&bytes[..bytes.len().min(127)]);
        let _ = WrapFile::from_der(&seq);
    }
}
