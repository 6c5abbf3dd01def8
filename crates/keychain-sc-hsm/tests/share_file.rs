//! Share files against OpenSSL's `enc` (count 1) and at the tool's 10,000,000 rounds.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::process::Command;

use keychain_core::ErrorKind;
use keychain_sc_hsm::dkek::{Dkek, DkekShare, Kdf, ShareFile};

/// Fails the test (a missing tool is a broken setup, not a reason to pass) unless `openssl` runs.
fn require_openssl() {
    let runs = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        runs,
        "the `openssl` command is required and does not run here; `cargo xtask setup` installs it"
    );
}

/// The whole 64-byte file is OpenSSL's `enc` format ("Salted__" ‖ salt ‖ ciphertext), so
/// `openssl enc -d` takes it as it is and strips the 16 × 0x10 padding block.
#[test]
fn openssl_decrypts_a_count_one_share_file() {
    require_openssl();
    let dir = tempfile::tempdir().unwrap();
    let share = DkekShare::generate().unwrap();
    let file = ShareFile::seal(&share, b"pass word!", &Kdf::with_rounds(1).unwrap()).unwrap();
    let path = dir.path().join("share.pbe");
    std::fs::write(&path, file.to_bytes()).unwrap();
    let out = Command::new("openssl")
        .args([
            "enc",
            "-d",
            "-aes-256-cbc",
            "-md",
            "md5",
            "-pass",
            "pass:pass word!",
            "-in",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, share.expose());
}

#[test]
fn a_file_openssl_encrypts_opens_at_count_one() {
    require_openssl();
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("share.bin");
    let share: [u8; 32] = std::array::from_fn(|i| i as u8);
    std::fs::write(&plain, share).unwrap();
    let out = Command::new("openssl")
        .args([
            "enc",
            "-aes-256-cbc",
            "-md",
            "md5",
            "-S",
            "0102030405060708",
        ])
        .args(["-pass", "pass:testpw", "-in"])
        .arg(&plain)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // OpenSSL 3 writes no "Salted__" header when the salt is given with -S; add it.
    let mut bytes = b"Salted__\x01\x02\x03\x04\x05\x06\x07\x08".to_vec();
    if out.stdout.starts_with(b"Salted__") {
        bytes.clear();
    }
    bytes.extend_from_slice(&out.stdout);
    // The reference's c = 1 vector, from OpenSSL itself.
    assert_eq!(
        hex::encode_upper(&bytes[16..]),
        "AFB20DADE6D26FE9DA281EA4B2B1D4850EE1E0CC9046237C43F632A39200C3B4\
         AB7A881F6715052AEBFD866A39C92BCD"
    );
    let file = ShareFile::from_bytes(&bytes).unwrap();
    assert_eq!(file.salt(), [1, 2, 3, 4, 5, 6, 7, 8]);
    let opened = file.open(b"testpw", &Kdf::with_rounds(1).unwrap()).unwrap();
    assert_eq!(opened.expose(), &share);
}

/// The share file for share 00 01 … 1F, password "testpw", salt 01 … 08 at the tool's
/// 10,000,000 rounds, made by OpenSSL's own `EVP_BytesToKey` (a small C program) and
/// AES-256-CBC: an independent vector for the full count.
const OPENSSL_10M_FILE: &str = "53616C7465645F5F0102030405060708\
    7EB1FD129500F336D37E67C626D6139D819F84D81B08E88D02ECDEF048A2E0AD\
    C793958B4327CD67EB9EDCC85538958D";

fn counting_share() -> DkekShare {
    DkekShare::from_bytes(std::array::from_fn(|i| i as u8))
}

/// Sealing at the tool's count gives OpenSSL's bytes (one 10M-round derivation, ~4 s in a
/// debug build).
#[test]
fn ten_million_rounds_seal_matches_openssl() {
    let kdf = Kdf::default();
    let started = std::time::Instant::now();
    let file =
        ShareFile::seal_with_salt(&counting_share(), b"testpw", [1, 2, 3, 4, 5, 6, 7, 8], &kdf)
            .unwrap();
    eprintln!("10M-round derivation took {:?}", started.elapsed());
    assert_eq!(hex::encode_upper(file.to_bytes()), OPENSSL_10M_FILE);
}

/// Opening OpenSSL's 10M-round file gives the reference share, whose DKEK has the reference KCV.
#[test]
fn ten_million_rounds_open_gives_reference_kcv() {
    let file = ShareFile::from_bytes(&hex::decode(OPENSSL_10M_FILE).unwrap()).unwrap();
    let opened = file.open(b"testpw", &Kdf::default()).unwrap();
    assert_eq!(Dkek::from(opened).kcv().to_string(), "630DCD2966C43366");
}

/// A wrong password at the full count.
#[test]
fn ten_million_rounds_wrong_password() {
    let file = ShareFile::from_bytes(&hex::decode(OPENSSL_10M_FILE).unwrap()).unwrap();
    assert_eq!(
        file.open(b"testpx", &Kdf::default()).unwrap_err().kind(),
        ErrorKind::Unauthenticated
    );
}
