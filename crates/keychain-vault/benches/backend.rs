//! `cargo xtask bench`: the Transit backend side by side with bare `vaultrs` calls.
//!
//! Both sides send the same request to the same OpenBao server (the one `cargo xtask services
//! start` runs; settings from `KEYCHAIN_TEST_VAULT_ADDR` / `KEYCHAIN_TEST_VAULT_TOKEN`) with the
//! same key: sign a P-256 digest (prehashed, ASN.1) and encrypt 1 KiB with AES-256-GCM, one
//! task at a time and with 8 concurrent tasks. Rounds alternate between the two sides so both
//! see the same machine state; the best round of each is reported. Output: a Markdown table on
//! stdout (`ratio = keychain / baseline`, higher is better).

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "a benchmark binary: it reports on stdout and fails loudly"
)]

use std::sync::Arc;

use base64ct::{Base64, Encoding as _};
use keychain_bench::{Op, Plan, compare, is_bench_run, op, row, runtime};
use keychain_core::{
    Backend, HashAlg, KeyAlgorithm, KeyName, KeyRef, KeySpec, SecretSource, SignInput,
    SignatureScheme,
};
use keychain_vault::{Config, VaultBackend};
use vaultrs::api::transit::MarshalingAlgorithm;
use vaultrs::api::transit::requests::{EncryptDataRequestBuilder, SignDataRequestBuilder};
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};

fn main() {
    if !is_bench_run() {
        return;
    }
    let (Ok(addr), Ok(token)) = (
        std::env::var("KEYCHAIN_TEST_VAULT_ADDR"),
        std::env::var("KEYCHAIN_TEST_VAULT_TOKEN"),
    ) else {
        println!("skipped: vault not configured (run through `cargo xtask bench`)");
        return;
    };
    runtime().block_on(run(addr, token));
}

async fn run(addr: String, token: String) {
    let prefix = format!("bench-{:08x}.", std::process::id());
    let backend = Arc::new(
        VaultBackend::open(
            Config::new(&addr, SecretSource::value(&token)).with_key_prefix(&prefix),
        )
        .await
        .unwrap(),
    );
    let mut settings = VaultClientSettingsBuilder::default();
    settings
        .address(&addr)
        .token(&token)
        .ca_certs(Vec::new())
        .verify(true);
    let bare = Arc::new(VaultClient::new(settings.build().unwrap()).unwrap());

    let ec = KeyName::new("p256").unwrap();
    let aes = KeyName::new("aes").unwrap();
    backend
        .generate_key(&ec, &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap();
    backend
        .generate_key(&aes, &KeySpec::new(KeyAlgorithm::Aes256Gcm))
        .await
        .unwrap();
    let ec_transit = backend.transit_name(&ec);
    let aes_transit = backend.transit_name(&aes);
    let digest: Arc<[u8]> = HashAlg::Sha256.digest(b"keychain bench").into();
    let plaintext: Arc<[u8]> = vec![0x5a; 1024].into();

    let sign_k: Op = {
        let (b, digest) = (Arc::clone(&backend), Arc::clone(&digest));
        let key = KeyRef::from(&ec);
        op(move || {
            let (b, digest, key) = (Arc::clone(&b), Arc::clone(&digest), key.clone());
            async move {
                let sig = b
                    .sign(
                        &key,
                        SignInput::digest(HashAlg::Sha256, &digest),
                        SignatureScheme::Ecdsa(HashAlg::Sha256),
                    )
                    .await
                    .unwrap();
                std::hint::black_box(sig);
            }
        })
    };
    let sign_b: Op = {
        let (c, digest, name) = (Arc::clone(&bare), Arc::clone(&digest), ec_transit.clone());
        op(move || {
            let (c, digest, name) = (Arc::clone(&c), Arc::clone(&digest), name.clone());
            async move {
                let input = Base64::encode_string(&digest);
                let mut opts = SignDataRequestBuilder::default();
                opts.prehashed(true)
                    .hash_algorithm(vaultrs::api::transit::HashAlgorithm::Sha2_256)
                    .marshaling_algorithm(MarshalingAlgorithm::Asn1);
                let sig =
                    vaultrs::transit::data::sign(&*c, "transit", &name, &input, Some(&mut opts))
                        .await
                        .unwrap();
                // The same work keychain does with the answer: strip vault:v1: and decode.
                let b64 = sig.signature.rsplit(':').next().unwrap_or_default();
                std::hint::black_box(Base64::decode_vec(b64).unwrap());
            }
        })
    };
    let enc_k: Op = {
        let (b, pt) = (Arc::clone(&backend), Arc::clone(&plaintext));
        let key = KeyRef::from(&aes);
        op(move || {
            let (b, pt, key) = (Arc::clone(&b), Arc::clone(&pt), key.clone());
            async move {
                std::hint::black_box(b.encrypt(&key, &pt, b"").await.unwrap());
            }
        })
    };
    let enc_b: Op = {
        let (c, pt, name) = (
            Arc::clone(&bare),
            Arc::clone(&plaintext),
            aes_transit.clone(),
        );
        op(move || {
            let (c, pt, name) = (Arc::clone(&c), Arc::clone(&pt), name.clone());
            async move {
                let input = Base64::encode_string(&pt);
                let mut opts = EncryptDataRequestBuilder::default();
                let ct =
                    vaultrs::transit::data::encrypt(&*c, "transit", &name, &input, Some(&mut opts))
                        .await
                        .unwrap();
                let b64 = ct.ciphertext.rsplit(':').next().unwrap_or_default();
                std::hint::black_box(Base64::decode_vec(b64).unwrap());
            }
        })
    };

    println!("### keychain-vault (OpenBao 2.7 dev server on 127.0.0.1)\n");
    println!("| operation | keychain | baseline (bare vaultrs) | ratio |");
    println!("|---|---:|---:|---:|");
    for (label, k, b, tasks) in [
        ("sign ECDSA P-256 digest, 1 task", &sign_k, &sign_b, 1),
        ("sign ECDSA P-256 digest, 8 tasks", &sign_k, &sign_b, 8),
        ("AES-256-GCM encrypt 1 KiB, 1 task", &enc_k, &enc_b, 1),
        ("AES-256-GCM encrypt 1 KiB, 8 tasks", &enc_k, &enc_b, 8),
    ] {
        let (kr, br) = compare(k, b, tasks, Plan::default()).await;
        println!("{}", row(label, kr, br));
    }
    println!();
    backend.delete_key(&ec).await.unwrap();
    backend.delete_key(&aes).await.unwrap();
}
