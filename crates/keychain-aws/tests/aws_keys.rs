//! The documented mappings, checked against the KMS server with the SDK directly: names to
//! aliases (and version aliases after a rotation), AAD to the encryption context, data keys,
//! and deletion as ScheduleKeyDeletion.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: failing loudly is the point"
)]

mod common;

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::KeyState;
use keychain_aws::{AwsBackend, Config};
use keychain_core::{Backend, ErrorKind, KeyAlgorithm, KeyRef, KeySpec, KeyUri, KeyUsages};

#[tokio::test]
async fn aws_names_map_to_aliases_and_versions_to_version_aliases() {
    let Some(env) = common::env() else { return };
    let kms = env.open().await;
    let name = env.name("alias");
    kms.generate_key(&name, &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap();
    let alias = format!("alias/{}{name}", common::prefix());
    assert_eq!(kms.alias_of(&name), alias);
    let rotated = kms.rotate_key(&name).await.unwrap();
    assert_eq!(rotated.version, 2);
    let all = kms.client().list_aliases().send().await.unwrap();
    let mine: Vec<&str> = all
        .aliases()
        .iter()
        .filter_map(|a| a.alias_name())
        .filter(|a| a.starts_with(&alias))
        .collect();
    for want in [alias.clone(), format!("{alias}/v1"), format!("{alias}/v2")] {
        assert!(
            mine.contains(&want.as_str()),
            "{want} missing from {mine:?}"
        );
    }
    // list_keys gives the name back exactly once, not the version aliases.
    let listed: Vec<_> = kms
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .filter(|k| k.name == name)
        .collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].versions.len(), 2);

    // Deletion schedules every version's KMS key and frees the name.
    let ids: Vec<String> = all
        .aliases()
        .iter()
        .filter(|a| a.alias_name().is_some_and(|n| n.starts_with(&alias)))
        .filter_map(|a| a.target_key_id().map(str::to_owned))
        .collect();
    kms.delete_key(&name).await.unwrap();
    for id in ids {
        let meta = kms
            .client()
            .describe_key()
            .key_id(&id)
            .send()
            .await
            .unwrap()
            .key_metadata
            .unwrap();
        assert_eq!(meta.key_state(), Some(&KeyState::PendingDeletion), "{id}");
    }
    assert_eq!(
        kms.key_info(&KeyRef::from(&name)).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    kms.generate_key(&name, &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap();
    kms.delete_key(&name).await.unwrap();
}

#[tokio::test]
async fn aws_aad_is_the_documented_encryption_context() {
    let Some(env) = common::env() else { return };
    let kms = env.open().await;
    let name = env.name("context");
    kms.generate_key(&name, &KeySpec::new(KeyAlgorithm::Aes256Gcm))
        .await
        .unwrap();
    let ct = kms
        .encrypt(&KeyRef::from(&name), b"payload", b"aad bytes")
        .await
        .unwrap();
    assert_eq!(&ct[..5], &[1, 0, 0, 0, 1], "format 1, key version 1");
    // The KMS blob after the header opens with exactly the documented context.
    let out = kms
        .client()
        .decrypt()
        .ciphertext_blob(Blob::new(&ct[5..]))
        .encryption_context("keychain-format", "1")
        .encryption_context("keychain-key-version", "1")
        .encryption_context("keychain-aad", "YWFkIGJ5dGVz")
        .send()
        .await
        .unwrap();
    assert_eq!(out.plaintext.unwrap().as_ref(), b"payload");

    // A data key for envelope encryption opens with decrypt_aead and the same AAD.
    let data = kms
        .generate_data_key(&KeyRef::from(&name), 32, b"envelope")
        .await
        .unwrap();
    assert_eq!(data.plaintext.len(), 32);
    let back = kms
        .decrypt_aead(&name, &data.ciphertext, b"envelope")
        .await
        .unwrap();
    assert_eq!(back.expose(), data.plaintext.expose());
    assert_eq!(
        kms.decrypt_aead(&name, &data.ciphertext, b"other")
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Integrity
    );

    // KMS's plaintext limit, declared as data.
    let max = kms.capabilities().max_plaintext.unwrap();
    assert_eq!(max, 4096);
    let ct = kms
        .encrypt(&KeyRef::from(&name), &vec![7; max], b"")
        .await
        .unwrap();
    assert_eq!(kms.decrypt_aead(&name, &ct, b"").await.unwrap().len(), max);
    let e = kms
        .encrypt(&KeyRef::from(&name), &vec![7; max + 1], b"")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert_eq!(e.backend(), Some("aws"));
    kms.delete_key(&name).await.unwrap();
}

#[tokio::test]
async fn aws_rsa_keys_sign_or_decrypt_not_both() {
    let Some(env) = common::env() else { return };
    let kms = env.open().await;
    let name = env.name("rsa-both");
    let e = kms
        .generate_key(
            &name,
            &KeySpec::new(KeyAlgorithm::Rsa2048).with_usages(KeyUsages::SIGN | KeyUsages::DECRYPT),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    let e = kms
        .generate_key(&name, &KeySpec::new(KeyAlgorithm::EcP256).exportable(true))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert_eq!(
        kms.key_info(&KeyRef::from(&name)).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn aws_opens_from_an_awskms_uri() {
    let Some(env) = common::env() else { return };
    let uri: KeyUri = format!(
        "awskms:region={}?endpoint={}&alias-prefix={}",
        env.region,
        env.endpoint,
        common::prefix()
    )
    .parse()
    .unwrap();
    let kms = AwsBackend::open(Config::from_uri(&uri).unwrap())
        .await
        .unwrap();
    assert_eq!(kms.alias_prefix(), common::prefix());
    assert_eq!(kms.random(32).await.unwrap().len(), 32);
    let max = kms.capabilities().max_random.unwrap();
    assert_eq!(max, 1024);
    assert_eq!(kms.random(max).await.unwrap().len(), max);
    assert_eq!(
        kms.random(max + 1).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    kms.close().await.unwrap();
    assert_eq!(
        kms.random(1).await.unwrap_err().kind(),
        ErrorKind::Unavailable
    );
}
