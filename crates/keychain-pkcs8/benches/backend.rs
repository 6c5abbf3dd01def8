//! `cargo xtask bench`: the software backend side by side with the raw crate underneath it.
//!
//! Each row runs the same operation through `Pkcs8Backend` (warm key cache) and directly through
//! aws-lc-rs on the same key, alternating rounds so both see the same machine state, and reports
//! the best of ten rounds of each. Output: a Markdown table on stdout (`ratio = keychain / baseline`,
//! higher is better).

#![allow(clippy::print_stdout, reason = "the bench reports its table on stdout")]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::digest::{self, Digest};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair, Ed25519KeyPair,
    RSA_PKCS1_SHA256, RsaKeyPair,
};
use keychain_core::{
    Backend, HashAlg, ImportSpec, KeyAlgorithm, KeyMaterial, KeyName, KeyRef, SecretBytes,
    SecretSource, SignInput, SignatureScheme,
};
use keychain_crypto::CryptoProvider as _;
use keychain_pkcs8::{Config, Kdf, Pkcs8Backend};

const ROUND: Duration = Duration::from_millis(200);
const ROUNDS: usize = 10;

/// Runs `op` repeatedly for one round; returns operations per second.
fn round(op: &mut dyn FnMut(usize)) -> f64 {
    let mut batch = 1usize;
    loop {
        let start = Instant::now();
        op(batch);
        let elapsed = start.elapsed();
        if elapsed >= ROUND {
            return batch as f64 / elapsed.as_secs_f64();
        }
        batch = (batch * 2)
            .max(((batch as f64) * ROUND.as_secs_f64() / elapsed.as_secs_f64().max(1e-9)) as usize);
    }
}

/// Best-of-rounds ops/s for keychain and for the baseline, alternating, and swapping which
/// side goes first every round so neither always runs on the other's warm-up.
fn compare(keychain: &mut dyn FnMut(usize), baseline: &mut dyn FnMut(usize)) -> (f64, f64) {
    keychain(16);
    baseline(16);
    let (mut k, mut b) = (0f64, 0f64);
    for i in 0..ROUNDS {
        if i % 2 == 0 {
            k = k.max(round(keychain));
            b = b.max(round(baseline));
        } else {
            b = b.max(round(baseline));
            k = k.max(round(keychain));
        }
    }
    (k, b)
}

fn fmt_rate(ops: f64, bytes: Option<usize>) -> String {
    match bytes {
        None => format!("{ops:.0} ops/s"),
        Some(n) => format!("{:.1} MiB/s", ops * n as f64 / (1024.0 * 1024.0)),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it,
    // and a benchmark is not a test.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let backend: Arc<dyn Backend> = Arc::new(rt.block_on(async {
        Pkcs8Backend::open(
            Config::in_memory(SecretSource::value("bench password"))
                .with_kdf(Kdf::Pbkdf2 { iterations: 1000 }),
        )
        .await
        .expect("open")
    }));
    let provider = keychain_crypto::AwsLcProvider::new();
    let mut rows = Vec::new();

    // Signing: the same PKCS#8 key is imported into the backend and loaded raw.
    let sign_cases: [(&str, KeyAlgorithm, SignatureScheme); 4] = [
        (
            "sign ECDSA P-256 (SHA-256 digest)",
            KeyAlgorithm::EcP256,
            SignatureScheme::Ecdsa(HashAlg::Sha256),
        ),
        (
            "sign ECDSA P-384 (SHA-384 digest)",
            KeyAlgorithm::EcP384,
            SignatureScheme::Ecdsa(HashAlg::Sha384),
        ),
        (
            "sign Ed25519 (64-byte message)",
            KeyAlgorithm::Ed25519,
            SignatureScheme::Ed25519,
        ),
        (
            "sign RSA-2048 PKCS#1 v1.5 (SHA-256 digest)",
            KeyAlgorithm::Rsa2048,
            SignatureScheme::RsaPkcs1v15(HashAlg::Sha256),
        ),
    ];
    for (label, alg, scheme) in sign_cases {
        let der = provider.generate(alg).expect("keygen");
        let name = KeyName::new(alg.as_str()).expect("name");
        rt.block_on(backend.import_key(
            &name,
            KeyMaterial::Pkcs8 {
                data: der.duplicate(),
                password: None,
            },
            &ImportSpec::new(),
        ))
        .expect("import");
        let key = KeyRef::from(&name);
        let message = [0x5au8; 64];
        let hash = scheme.hash();
        let digest_bytes = hash.map(|h| h.digest(&message)).unwrap_or_default();
        let input = match hash {
            Some(h) => SignInput::digest(h, &digest_bytes),
            None => SignInput::message(&message),
        };
        // Warm the key cache (the first signature decrypts the key file).
        rt.block_on(backend.sign(&key, input, scheme))
            .expect("sign");
        let mut keychain = |n: usize| {
            rt.block_on(async {
                for _ in 0..n {
                    black_box(backend.sign(&key, input, scheme).await.expect("sign"));
                }
            })
        };
        let mut baseline: Box<dyn FnMut(usize)> = match alg {
            KeyAlgorithm::EcP256 | KeyAlgorithm::EcP384 => {
                let a = if alg == KeyAlgorithm::EcP256 {
                    &ECDSA_P256_SHA256_ASN1_SIGNING
                } else {
                    &ECDSA_P384_SHA384_ASN1_SIGNING
                };
                let d = if alg == KeyAlgorithm::EcP256 {
                    &digest::SHA256
                } else {
                    &digest::SHA384
                };
                let kp = EcdsaKeyPair::from_pkcs8(a, der.expose()).expect("raw key");
                let digest_bytes = digest_bytes.clone();
                Box::new(move |n| {
                    for _ in 0..n {
                        let dg = Digest::import_less_safe(&digest_bytes, d).expect("digest");
                        black_box(kp.sign_digest(&dg).expect("sign").as_ref().to_vec());
                    }
                })
            }
            KeyAlgorithm::Ed25519 => {
                let kp = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der.expose()).expect("raw key");
                Box::new(move |n| {
                    for _ in 0..n {
                        black_box(kp.sign(&message).as_ref().to_vec());
                    }
                })
            }
            _ => {
                let kp = RsaKeyPair::from_pkcs8(der.expose()).expect("raw key");
                let digest_bytes = digest_bytes.clone();
                Box::new(move |n| {
                    for _ in 0..n {
                        let dg = Digest::import_less_safe(&digest_bytes, &digest::SHA256)
                            .expect("digest");
                        let mut sig = vec![0u8; kp.public_modulus_len()];
                        kp.sign_digest(&RSA_PKCS1_SHA256, &dg, &mut sig)
                            .expect("sign");
                        black_box(sig);
                    }
                })
            }
        };
        let (k, b) = compare(&mut keychain, &mut *baseline);
        rows.push((
            label.to_owned(),
            fmt_rate(k, None),
            fmt_rate(b, None),
            k / b,
        ));
    }

    // AEAD: the backend's self-describing ciphertext vs a bare seal with a fresh random nonce
    // (the least any correct caller of the raw crate must do).
    let aes = SecretBytes::new(vec![7u8; 32]);
    let aes_name = KeyName::new("aes").expect("name");
    rt.block_on(backend.import_key(
        &aes_name,
        KeyMaterial::Symmetric(aes.duplicate()),
        &ImportSpec::new(),
    ))
    .expect("import aes");
    let aes_key = KeyRef::from(&aes_name);
    for (label, size) in [
        ("AES-256-GCM encrypt 1 KiB", 1024usize),
        ("AES-256-GCM encrypt 1 MiB", 1 << 20),
    ] {
        let plaintext = vec![0x11u8; size];
        rt.block_on(backend.encrypt(&aes_key, &plaintext, b"aad"))
            .expect("encrypt");
        let mut keychain = |n: usize| {
            rt.block_on(async {
                for _ in 0..n {
                    black_box(
                        backend
                            .encrypt(&aes_key, &plaintext, b"aad")
                            .await
                            .expect("encrypt"),
                    );
                }
            })
        };
        let raw = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, aes.expose()).expect("aes"));
        let mut baseline = |n: usize| {
            for _ in 0..n {
                let mut nonce = [0u8; 12];
                aws_lc_rs::rand::fill(&mut nonce).expect("rng");
                let mut buf = plaintext.clone();
                raw.seal_in_place_append_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(b"aad"),
                    &mut buf,
                )
                .expect("seal");
                black_box(buf);
            }
        };
        let (k, b) = compare(&mut keychain, &mut baseline);
        rows.push((
            label.to_owned(),
            fmt_rate(k, Some(size)),
            fmt_rate(b, Some(size)),
            k / b,
        ));
    }

    print_table("aws-lc-rs", &rows);

    #[cfg(feature = "rustcrypto")]
    rustcrypto::run(&rt);
}

type Row = (String, String, String, f64);

fn print_table(provider: &str, rows: &[Row]) {
    println!("### keychain-pkcs8 (provider: {provider})\n");
    println!("| operation | keychain | baseline ({provider}) | ratio |");
    println!("|---|---:|---:|---:|");
    for (label, k, b, ratio) in rows {
        println!("| {label} | {k} | {b} | {ratio:.3} |");
    }
    println!();
}

/// The same rows on the pure-Rust provider against the RustCrypto crates it calls. RSA is not
/// measured: its private-key operations are an opt-in (RUSTSEC-2023-0071).
#[cfg(feature = "rustcrypto")]
mod rustcrypto {
    use super::*;
    use aes_gcm::aead::{AeadInOut, KeyInit};
    use keychain_pkcs8::ProviderKind;
    use p256::pkcs8::DecodePrivateKey as _;
    use signature::hazmat::PrehashSigner as _;

    pub(super) fn run(rt: &tokio::runtime::Runtime) {
        let backend: Arc<dyn Backend> = Arc::new(rt.block_on(async {
            Pkcs8Backend::open(
                Config::in_memory(SecretSource::value("bench password"))
                    .with_kdf(Kdf::Pbkdf2 { iterations: 1000 })
                    .with_provider(ProviderKind::RustCrypto),
            )
            .await
            .expect("open")
        }));
        let provider = keychain_crypto::RustCryptoProvider::new();
        let mut rows = Vec::new();
        let cases: [(&str, KeyAlgorithm, SignatureScheme); 3] = [
            (
                "sign ECDSA P-256 (SHA-256 digest)",
                KeyAlgorithm::EcP256,
                SignatureScheme::Ecdsa(HashAlg::Sha256),
            ),
            (
                "sign ECDSA P-384 (SHA-384 digest)",
                KeyAlgorithm::EcP384,
                SignatureScheme::Ecdsa(HashAlg::Sha384),
            ),
            (
                "sign Ed25519 (64-byte message)",
                KeyAlgorithm::Ed25519,
                SignatureScheme::Ed25519,
            ),
        ];
        for (label, alg, scheme) in cases {
            let der = provider.generate(alg).expect("keygen");
            let name = KeyName::new(alg.as_str()).expect("name");
            rt.block_on(backend.import_key(
                &name,
                KeyMaterial::Pkcs8 {
                    data: der.duplicate(),
                    password: None,
                },
                &ImportSpec::new(),
            ))
            .expect("import");
            let key = KeyRef::from(&name);
            let message = [0x5au8; 64];
            let digest_bytes = scheme
                .hash()
                .map(|h| h.digest(&message))
                .unwrap_or_default();
            let input = match scheme.hash() {
                Some(h) => SignInput::digest(h, &digest_bytes),
                None => SignInput::message(&message),
            };
            rt.block_on(backend.sign(&key, input, scheme))
                .expect("sign");
            let mut keychain = |n: usize| {
                rt.block_on(async {
                    for _ in 0..n {
                        black_box(backend.sign(&key, input, scheme).await.expect("sign"));
                    }
                })
            };
            let mut baseline: Box<dyn FnMut(usize)> = match alg {
                KeyAlgorithm::EcP256 => {
                    let k = p256::ecdsa::SigningKey::from_pkcs8_der(der.expose()).expect("key");
                    let d = digest_bytes.clone();
                    Box::new(move |n| {
                        for _ in 0..n {
                            let s: p256::ecdsa::DerSignature = k.sign_prehash(&d).expect("sign");
                            black_box(s.as_bytes().to_vec());
                        }
                    })
                }
                KeyAlgorithm::EcP384 => {
                    let k = p384::ecdsa::SigningKey::from_pkcs8_der(der.expose()).expect("key");
                    let d = digest_bytes.clone();
                    Box::new(move |n| {
                        for _ in 0..n {
                            let s: p384::ecdsa::DerSignature = k.sign_prehash(&d).expect("sign");
                            black_box(s.as_bytes().to_vec());
                        }
                    })
                }
                _ => {
                    let k = ed25519_dalek::SigningKey::from_pkcs8_der(der.expose()).expect("key");
                    Box::new(move |n| {
                        for _ in 0..n {
                            use ed25519_dalek::Signer as _;
                            black_box(k.sign(&message).to_bytes().to_vec());
                        }
                    })
                }
            };
            let (k, b) = compare(&mut keychain, &mut *baseline);
            rows.push((
                label.to_owned(),
                fmt_rate(k, None),
                fmt_rate(b, None),
                k / b,
            ));
        }

        let aes = SecretBytes::new(vec![7u8; 32]);
        let aes_name = KeyName::new("aes").expect("name");
        rt.block_on(backend.import_key(
            &aes_name,
            KeyMaterial::Symmetric(aes.duplicate()),
            &ImportSpec::new(),
        ))
        .expect("import aes");
        let aes_key = KeyRef::from(&aes_name);
        let raw = aes_gcm::Aes256Gcm::new_from_slice(aes.expose()).expect("aes");
        for (label, size) in [
            ("AES-256-GCM encrypt 1 KiB", 1024usize),
            ("AES-256-GCM encrypt 1 MiB", 1 << 20),
        ] {
            let plaintext = vec![0x11u8; size];
            rt.block_on(backend.encrypt(&aes_key, &plaintext, b"aad"))
                .expect("encrypt");
            let mut keychain = |n: usize| {
                rt.block_on(async {
                    for _ in 0..n {
                        black_box(
                            backend
                                .encrypt(&aes_key, &plaintext, b"aad")
                                .await
                                .expect("encrypt"),
                        );
                    }
                })
            };
            let mut baseline = |n: usize| {
                for _ in 0..n {
                    let mut nonce = [0u8; 12];
                    getrandom::fill(&mut nonce).expect("rng");
                    let mut buf = plaintext.clone();
                    let tag = raw
                        .encrypt_inout_detached(
                            &aes_gcm::Nonce::from(nonce),
                            b"aad",
                            buf.as_mut_slice().into(),
                        )
                        .expect("seal");
                    buf.extend_from_slice(&tag);
                    black_box(buf);
                }
            };
            let (k, b) = compare(&mut keychain, &mut baseline);
            rows.push((
                label.to_owned(),
                fmt_rate(k, Some(size)),
                fmt_rate(b, Some(size)),
                k / b,
            ));
        }
        print_table("rustcrypto", &rows);
    }
}
