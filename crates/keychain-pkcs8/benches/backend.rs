//! `cargo xtask bench`: the software backend side by side with the raw crate underneath it.
//!
//! Each row runs the same operation through `Pkcs8Backend` (warm key cache) and directly through
//! the provider's crate (aws-lc-rs, or the RustCrypto crates) on the same key, with
//! `keychain_bench::batch`: a row's rounds (100 ms, 20 passes) are spread over the whole run:
//! every pass measures every row once, keychain and baseline back to back (which goes first
//! alternates), and the best round of each side counts. This shared 2-core machine has busy
//! stretches of several seconds; spread out, a row still gets quiet rounds on both sides. Output:
//! a Markdown table per provider on stdout (`ratio = keychain / baseline`, higher is better).

#![allow(clippy::print_stdout, reason = "the bench reports its table on stdout")]

use std::hint::black_box;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::digest::{self, Digest};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair, Ed25519KeyPair,
    RSA_PKCS1_SHA256, RsaKeyPair,
};
use keychain_bench::batch::{Batch, Case, Passes, measure};
use keychain_bench::is_bench_run;
use keychain_core::{
    Backend, HashAlg, ImportSpec, KeyAlgorithm, KeyMaterial, KeyName, KeyRef, SecretBytes,
    SecretSource, SignInput, SignatureScheme,
};
use keychain_crypto::CryptoProvider as _;
use keychain_pkcs8::{Config, Kdf, Pkcs8Backend};

fn print_table(provider: &str, cases: &[Case<'_>]) {
    println!("### keychain-pkcs8 (provider: {provider})\n");
    println!("| operation | keychain | baseline ({provider}) | ratio |");
    println!("|---|---:|---:|---:|");
    for c in cases.iter().filter(|c| c.table == provider) {
        println!("{}", c.row());
    }
    println!();
}

/// The signing rows' keys and schemes.
const SIGN_CASES: [(&str, KeyAlgorithm, SignatureScheme); 4] = [
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

const AEAD_CASES: [(&str, usize); 2] = [
    ("AES-256-GCM encrypt 1 KiB", 1024),
    ("AES-256-GCM encrypt 1 MiB", 1 << 20),
];

const MESSAGE: [u8; 64] = [0x5a; 64];

/// The digest of [`MESSAGE`] a scheme signs (empty for Ed25519, which signs the message).
fn digest_for(scheme: SignatureScheme) -> Vec<u8> {
    scheme
        .hash()
        .map(|h| h.digest(&MESSAGE))
        .unwrap_or_default()
}

/// What the backend signs for `scheme`: the digest, or for Ed25519 the message.
fn sign_input(scheme: SignatureScheme, digest: &[u8]) -> SignInput<'_> {
    match scheme.hash() {
        Some(h) => SignInput::digest(h, digest),
        None => SignInput::message(&MESSAGE),
    }
}

/// Imports `der` as `alg` into `backend` and returns a batch signing through it (key cache
/// warmed by one signature).
fn keychain_signer<'a>(
    rt: &'a tokio::runtime::Runtime,
    backend: &'a dyn Backend,
    alg: KeyAlgorithm,
    scheme: SignatureScheme,
    der: &SecretBytes,
) -> Batch<'a> {
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
    let digest = digest_for(scheme);
    rt.block_on(backend.sign(&key, sign_input(scheme, &digest), scheme))
        .expect("sign");
    Box::new(move |n| {
        rt.block_on(async {
            for _ in 0..n {
                black_box(
                    backend
                        .sign(&key, sign_input(scheme, &digest), scheme)
                        .await
                        .expect("sign"),
                );
            }
        });
    })
}

/// Imports the AES key into `backend` and returns a batch encrypting `size` bytes through it.
fn keychain_sealer<'a>(
    rt: &'a tokio::runtime::Runtime,
    backend: &'a dyn Backend,
    key: &SecretBytes,
    size: usize,
) -> Batch<'a> {
    let name = KeyName::new(format!("aes-{size}")).expect("name");
    rt.block_on(backend.import_key(
        &name,
        KeyMaterial::Symmetric(key.duplicate()),
        &ImportSpec::new(),
    ))
    .expect("import aes");
    let key = KeyRef::from(&name);
    let plaintext = vec![0x11u8; size];
    rt.block_on(backend.encrypt(&key, &plaintext, b"aad"))
        .expect("encrypt");
    Box::new(move |n| {
        rt.block_on(async {
            for _ in 0..n {
                black_box(
                    backend
                        .encrypt(&key, &plaintext, b"aad")
                        .await
                        .expect("encrypt"),
                );
            }
        });
    })
}

fn open(rt: &tokio::runtime::Runtime, config: Config) -> Pkcs8Backend {
    rt.block_on(Pkcs8Backend::open(
        config.with_kdf(Kdf::Pbkdf2 { iterations: 1000 }),
    ))
    .expect("open")
}

fn main() {
    if !is_bench_run() {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let backend = open(
        &rt,
        Config::in_memory(SecretSource::value("bench password")),
    );
    #[cfg(feature = "rustcrypto")]
    let rc_backend = open(
        &rt,
        Config::in_memory(SecretSource::value("bench password"))
            .with_provider(keychain_pkcs8::ProviderKind::RustCrypto),
    );
    // The same on a key directory: every use first compares the key's metadata stamp (one
    // `lstat`) to notice another process's rotation or deletion. These rows price that check.
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = open(
        &rt,
        Config::new(
            dir.path().join("keys"),
            SecretSource::value("bench password"),
        ),
    );
    let mut cases = aws_lc_cases(&rt, &backend);
    cases.extend(disk_cases(&rt, &disk));
    #[cfg(feature = "rustcrypto")]
    cases.extend(rustcrypto::cases(&rt, &rc_backend));
    measure(&mut cases, Passes::default());
    print_table("aws-lc-rs", &cases);
    #[cfg(feature = "rustcrypto")]
    print_table("rustcrypto", &cases);
}

/// The aws-lc-rs rows: the same PKCS#8 key imported into the backend and loaded raw; AEAD is the
/// backend's self-describing ciphertext against a bare seal with a fresh random nonce (the least
/// any correct caller of the raw crate must do).
fn aws_lc_cases<'a>(rt: &'a tokio::runtime::Runtime, backend: &'a Pkcs8Backend) -> Vec<Case<'a>> {
    let provider = keychain_crypto::AwsLcProvider::new();
    let mut cases = Vec::new();
    for (label, alg, scheme) in SIGN_CASES {
        let der = provider.generate(alg).expect("keygen");
        let keychain = keychain_signer(rt, backend, alg, scheme, &der);
        let digest_bytes = digest_for(scheme);
        let baseline: Batch<'a> = match alg {
            KeyAlgorithm::EcP256 | KeyAlgorithm::EcP384 => {
                let (a, d) = if alg == KeyAlgorithm::EcP256 {
                    (&ECDSA_P256_SHA256_ASN1_SIGNING, &digest::SHA256)
                } else {
                    (&ECDSA_P384_SHA384_ASN1_SIGNING, &digest::SHA384)
                };
                let kp = EcdsaKeyPair::from_pkcs8(a, der.expose()).expect("raw key");
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
                        black_box(kp.sign(&MESSAGE).as_ref().to_vec());
                    }
                })
            }
            _ => {
                let kp = RsaKeyPair::from_pkcs8(der.expose()).expect("raw key");
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
        cases.push(Case::new("aws-lc-rs", label, None, keychain, baseline));
    }
    let aes = SecretBytes::new(vec![7u8; 32]);
    for (label, size) in AEAD_CASES {
        let keychain = keychain_sealer(rt, backend, &aes, size);
        let raw = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, aes.expose()).expect("aes"));
        let plaintext = vec![0x11u8; size];
        let baseline: Batch<'a> = Box::new(move |n| {
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
        });
        cases.push(Case::new(
            "aws-lc-rs",
            label,
            Some(size),
            keychain,
            baseline,
        ));
    }
    cases
}

/// A signing row and a small-AEAD row on a backend over a key directory, against the same raw
/// aws-lc-rs operations as the in-memory rows.
fn disk_cases<'a>(rt: &'a tokio::runtime::Runtime, backend: &'a Pkcs8Backend) -> Vec<Case<'a>> {
    let provider = keychain_crypto::AwsLcProvider::new();
    let (_, alg, scheme) = SIGN_CASES[0];
    let der = provider.generate(alg).expect("keygen");
    let keychain = keychain_signer(rt, backend, alg, scheme, &der);
    let digest_bytes = digest_for(scheme);
    let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, der.expose()).expect("key");
    let baseline: Batch<'a> = Box::new(move |n| {
        for _ in 0..n {
            let dg = Digest::import_less_safe(&digest_bytes, &digest::SHA256).expect("digest");
            black_box(kp.sign_digest(&dg).expect("sign").as_ref().to_vec());
        }
    });
    let mut cases = vec![Case::new(
        "aws-lc-rs",
        "sign ECDSA P-256 (SHA-256 digest), key directory on disk",
        None,
        keychain,
        baseline,
    )];
    let aes = SecretBytes::new(vec![7u8; 32]);
    let keychain = keychain_sealer(rt, backend, &aes, 1024);
    let raw = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, aes.expose()).expect("aes"));
    let plaintext = vec![0x11u8; 1024];
    let baseline: Batch<'a> = Box::new(move |n| {
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
    });
    cases.push(Case::new(
        "aws-lc-rs",
        "AES-256-GCM encrypt 1 KiB, key directory on disk",
        Some(1024),
        keychain,
        baseline,
    ));
    cases
}

/// The same rows on the pure-Rust provider against the RustCrypto crates it calls. RSA is not
/// measured: its private-key operations are an opt-in (RUSTSEC-2023-0071).
#[cfg(feature = "rustcrypto")]
mod rustcrypto {
    use super::*;
    use aes_gcm::aead::{AeadInOut, KeyInit};
    use p256::pkcs8::DecodePrivateKey as _;
    use signature::hazmat::PrehashSigner as _;

    pub(super) fn cases<'a>(
        rt: &'a tokio::runtime::Runtime,
        backend: &'a Pkcs8Backend,
    ) -> Vec<Case<'a>> {
        let provider = keychain_crypto::RustCryptoProvider::new();
        let mut cases = Vec::new();
        for (label, alg, scheme) in SIGN_CASES {
            if alg.is_rsa() {
                continue;
            }
            let der = provider.generate(alg).expect("keygen");
            let keychain = keychain_signer(rt, backend, alg, scheme, &der);
            let d = digest_for(scheme);
            let baseline: Batch<'a> = match alg {
                KeyAlgorithm::EcP256 => {
                    let k = p256::ecdsa::SigningKey::from_pkcs8_der(der.expose()).expect("key");
                    Box::new(move |n| {
                        for _ in 0..n {
                            let s: p256::ecdsa::DerSignature = k.sign_prehash(&d).expect("sign");
                            black_box(s.as_bytes().to_vec());
                        }
                    })
                }
                KeyAlgorithm::EcP384 => {
                    let k = p384::ecdsa::SigningKey::from_pkcs8_der(der.expose()).expect("key");
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
                            black_box(k.sign(&MESSAGE).to_bytes().to_vec());
                        }
                    })
                }
            };
            cases.push(Case::new("rustcrypto", label, None, keychain, baseline));
        }
        let aes = SecretBytes::new(vec![7u8; 32]);
        for (label, size) in AEAD_CASES {
            let keychain = keychain_sealer(rt, backend, &aes, size);
            let raw = aes_gcm::Aes256Gcm::new_from_slice(aes.expose()).expect("aes");
            let plaintext = vec![0x11u8; size];
            let baseline: Batch<'a> = Box::new(move |n| {
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
            });
            cases.push(Case::new(
                "rustcrypto",
                label,
                Some(size),
                keychain,
                baseline,
            ));
        }
        cases
    }
}
