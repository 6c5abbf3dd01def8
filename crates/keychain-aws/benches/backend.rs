//! `cargo xtask bench`: the AWS KMS backend side by side with bare `aws-sdk-kms` calls.
//!
//! Both sides talk to the same KMS server (the moto server `cargo xtask services start` runs;
//! settings from `KEYCHAIN_TEST_AWS_ENDPOINT` / `KEYCHAIN_TEST_AWS_REGION`) about the same key:
//! sign a P-256 digest (`MessageType=DIGEST`), one task at a time and with 8 concurrent tasks,
//! and read the key's metadata, versions and public key — through the backend alone and through
//! `keychain-layers`' cache layer — against the same three SDK calls (`DescribeKey`,
//! `ListAliases` for the key, `GetPublicKey`). Output: a
//! Markdown table on stdout (`ratio = keychain / baseline`, higher is better).

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "a benchmark binary: it reports on stdout and fails loudly"
)]

use std::sync::Arc;

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec};
use keychain_aws::{AwsBackend, Config};
use keychain_bench::{Op, Plan, compare, is_bench_run, op, row, runtime};
use keychain_core::{
    Backend, HashAlg, KeyAlgorithm, KeyName, KeyRef, KeySpec, SignInput, SignatureScheme,
};
use keychain_layers::{CacheConfig, cache};

fn main() {
    if !is_bench_run() {
        return;
    }
    let (Ok(endpoint), Ok(region)) = (
        std::env::var("KEYCHAIN_TEST_AWS_ENDPOINT"),
        std::env::var("KEYCHAIN_TEST_AWS_REGION"),
    ) else {
        println!("skipped: aws not configured (run through `cargo xtask bench`)");
        return;
    };
    runtime().block_on(run(endpoint, region));
}

async fn run(endpoint: String, region: String) {
    let prefix = format!("bench-{:08x}/", std::process::id());
    let backend = Arc::new(
        AwsBackend::open(
            Config::new(region)
                .with_endpoint(endpoint)
                .with_alias_prefix(&prefix),
        )
        .await
        .unwrap(),
    );
    // The same SDK client the backend uses: one connection pool, one configuration.
    let client = backend.client().clone();
    let name = KeyName::new("p256").unwrap();
    backend
        .generate_key(&name, &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap();
    let key_id: Arc<str> = client
        .describe_key()
        .key_id(backend.alias_of(&name))
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .key_id()
        .into();
    let digest: Arc<[u8]> = HashAlg::Sha256.digest(b"keychain bench").into();
    let key = KeyRef::from(&name);

    let sign_k: Op = {
        let (b, digest, key) = (Arc::clone(&backend), Arc::clone(&digest), key.clone());
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
        let (c, digest, id) = (client.clone(), Arc::clone(&digest), Arc::clone(&key_id));
        op(move || {
            let (c, digest, id) = (c.clone(), Arc::clone(&digest), Arc::clone(&id));
            async move {
                let out = c
                    .sign()
                    .key_id(&*id)
                    .message(Blob::new(digest.to_vec()))
                    .message_type(MessageType::Digest)
                    .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
                    .send()
                    .await
                    .unwrap();
                std::hint::black_box(out.signature().map(|s| s.as_ref().to_vec()));
            }
        })
    };
    let info_op = |b: Arc<dyn Backend>| -> Op {
        let key = key.clone();
        op(move || {
            let (b, key) = (Arc::clone(&b), key.clone());
            async move {
                std::hint::black_box(b.key_info(&key).await.unwrap());
            }
        })
    };
    let info_k = info_op(Arc::clone(&backend) as Arc<dyn Backend>);
    let info_cached = info_op(cache(
        Arc::clone(&backend) as Arc<dyn Backend>,
        CacheConfig::default(),
    ));
    let info_b: Op = {
        let (c, alias) = (client.clone(), backend.alias_of(&name));
        op(move || {
            let (c, alias) = (c.clone(), alias.clone());
            async move {
                // What key_info reads: the key behind the alias, its versions (the version
                // aliases pointing at it), the public key.
                let meta = c.describe_key().key_id(&alias).send().await.unwrap();
                let id = meta.key_metadata().unwrap().key_id().to_owned();
                let aliases = c.list_aliases().key_id(&id).send().await.unwrap();
                let public = c.get_public_key().key_id(id).send().await.unwrap();
                std::hint::black_box((meta, aliases, public));
            }
        })
    };

    println!("### keychain-aws (moto 5.2.5 KMS server on 127.0.0.1, through the launcher)\n");
    println!("| operation | keychain | baseline (bare aws-sdk-kms) | ratio |");
    println!("|---|---:|---:|---:|");
    for (label, k, b, tasks) in [
        ("sign ECDSA P-256 digest, 1 task", &sign_k, &sign_b, 1),
        ("sign ECDSA P-256 digest, 8 tasks", &sign_k, &sign_b, 8),
        ("key_info, no cache layer", &info_k, &info_b, 1),
        (
            "key_info, cache layer (5 min TTL)",
            &info_cached,
            &info_b,
            1,
        ),
    ] {
        let (kr, br) = compare(k, b, tasks, Plan::default()).await;
        println!("{}", row(label, kr, br));
    }
    println!();
    backend.delete_key(&name).await.unwrap();
}
