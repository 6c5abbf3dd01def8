//! `cargo xtask bench`: the share-file KDF (`EVP_BytesToKey`, MD5, 10,000,000 rounds) against
//! OpenSSL's own `EVP_BytesToKey` doing the same derivation.
//!
//! The baseline is `evp_bytestokey.c` beside this file, compiled here with `cc … -lcrypto`
//! (the xtask installs `gcc` and `libssl-dev`); it times the call inside its own process and
//! prints the key and IV, which must equal keychain's. Each side runs `ROUNDS` times,
//! alternating; the best of each is reported. `ratio = OpenSSL time / keychain time`, so higher
//! is better, as in the other tables.

#![allow(clippy::print_stdout, reason = "the bench reports its table on stdout")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use keychain_sc_hsm::dkek::{DEFAULT_KDF_ROUNDS, Kdf};

const ROUNDS: usize = 3;
const PASSWORD: &str = "custodian password";
const SALT: [u8; 8] = [0x53, 0x61, 0x6c, 0x74, 0x65, 0x64, 0x5f, 0x5f];

fn out_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    );
    target.join("keychain-bench")
}

/// Compiles the C baseline; returns its path.
fn compile_baseline() -> PathBuf {
    let dir = out_dir();
    std::fs::create_dir_all(&dir).expect("bench output directory");
    let exe = dir.join("evp_bytestokey");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/evp_bytestokey.c");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let status = Command::new(&cc)
        .args(["-O2", "-o"])
        .arg(&exe)
        .arg(&source)
        .arg("-lcrypto")
        .status()
        .unwrap_or_else(|e| panic!("{cc}: {e} (cargo xtask setup installs gcc and libssl-dev)"));
    assert!(status.success(), "compiling {} failed", source.display());
    exe
}

/// One OpenSSL derivation: (seconds, key ‖ IV as hex).
fn openssl_once(exe: &Path, rounds: u32) -> (f64, String) {
    let out = Command::new(exe)
        .arg(rounds.to_string())
        .arg(PASSWORD)
        .arg(hex::encode(SALT))
        .output()
        .expect("run the OpenSSL baseline");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("baseline output");
    let mut parts = text.split_whitespace();
    let seconds: f64 = parts.next().and_then(|s| s.parse().ok()).expect("seconds");
    let key = parts.next().expect("key");
    let iv = parts.next().expect("iv");
    (seconds, format!("{key}{iv}"))
}

/// One keychain derivation: (seconds, key ‖ IV as hex).
fn keychain_once(kdf: &Kdf) -> (f64, String) {
    let start = Instant::now();
    let derived = kdf.derive(PASSWORD.as_bytes(), &SALT);
    let seconds = start.elapsed().as_secs_f64();
    (seconds, hex::encode(derived.as_slice()))
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let exe = compile_baseline();
    let rounds = DEFAULT_KDF_ROUNDS;
    let kdf = Kdf::with_rounds(rounds).expect("kdf");
    // Same bytes first (a cheap count), so the timing compares the same computation.
    let (_, small_ours) = keychain_once(&Kdf::with_rounds(1000).expect("kdf"));
    let (_, small_theirs) = openssl_once(&exe, 1000);
    assert_eq!(
        small_ours, small_theirs,
        "keychain and OpenSSL derive different keys"
    );
    let (mut ours, mut theirs) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..ROUNDS {
        let (t, k) = keychain_once(&kdf);
        ours = ours.min(t);
        let (t, o) = openssl_once(&exe, rounds);
        theirs = theirs.min(t);
        assert_eq!(
            k, o,
            "keychain and OpenSSL derive different keys at {rounds} rounds"
        );
    }
    println!("### keychain-sc-hsm (share-file KDF)\n");
    println!("| operation | keychain | baseline (OpenSSL libcrypto EVP_BytesToKey) | ratio |");
    println!("|---|---:|---:|---:|");
    println!(
        "| EVP_BytesToKey AES-256-CBC / MD5, {rounds} rounds (one share file) | {ours:.3} s | \
         {theirs:.3} s | {:.3} |",
        theirs / ours
    );
    println!();
}
