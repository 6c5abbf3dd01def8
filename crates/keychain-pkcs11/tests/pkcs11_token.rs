//! The backend against a real SoftHSM token, cross-checked with `pkcs11-tool` and `openssl`,
//! and the bad-input cases of the `pkcs11` cell.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use common::{objects, run};

use std::process::Command;

use keychain_core::{
    Backend, BackendExt as _, ErrorKind, HashAlg, HealthStatus, KeyAlgorithm, KeyRef, KeySpec,
    KeyUri, ProviderCode, SecretSource, SignInput, SignatureScheme,
};
use keychain_pkcs11::{Config, Pkcs11Backend};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_key_is_listed_by_pkcs11_tool_with_its_label() {
    let Some(env) = common::env() else { return };
    let backend = env.open().await;
    let name = env.name("listed");
    let info = backend
        .generate_key(&name, &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap();
    assert_eq!(info.version, 1);
    let listing = run(Command::new("pkcs11-tool")
        .arg("--module")
        .arg(&env.module)
        .args(["--token-label", &env.token, "--login", "--pin", &env.pin])
        .arg("--list-objects"));
    // One private and one public key object carry the name as their label, linked by one ID
    // whose first four bytes are the version.
    let blocks: Vec<String> = objects(&listing)
        .into_iter()
        .filter(|b| b.contains(&format!("label:      {name}\n")))
        .collect();
    assert_eq!(blocks.len(), 2, "{listing}");
    assert!(
        blocks.iter().any(|b| b.contains("Private Key Object; EC")),
        "{listing}"
    );
    assert!(
        blocks.iter().any(|b| b.contains("Public Key Object; EC")),
        "{listing}"
    );
    let ids: Vec<&str> = blocks
        .iter()
        .filter_map(|b| b.lines().find_map(|l| l.trim().strip_prefix("ID:")))
        .map(str::trim)
        .collect();
    assert_eq!(ids.len(), 2, "{listing}");
    assert_eq!(ids[0], ids[1], "{listing}");
    assert!(
        ids[0].starts_with("00000001") && ids[0].len() == 32,
        "{listing}"
    );
    // Sensitive and never extractable: the private key cannot leave the token.
    let private = blocks
        .iter()
        .find(|b| b.contains("Private Key Object"))
        .unwrap();
    assert!(private.contains("sensitive"), "{private}");
    assert!(private.contains("never extractable"), "{private}");
    assert!(
        private.contains("Usage:      sign\n"),
        "only the sign usage: {private}"
    );
    backend.delete_key(&name).await.unwrap();
    let listing = run(Command::new("pkcs11-tool")
        .arg("--module")
        .arg(&env.module)
        .args(["--token-label", &env.token, "--login", "--pin", &env.pin])
        .arg("--list-objects"));
    assert!(
        !listing.contains(&format!("label:      {name}\n")),
        "{listing}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_verify_with_openssl() {
    let Some(env) = common::env() else { return };
    let backend = env.open().await;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let data = dir.path().join("data");
    std::fs::write(&data, b"signed by a SoftHSM key through keychain").unwrap();
    let message = std::fs::read(&data).unwrap();
    for (alg, scheme) in [
        (
            KeyAlgorithm::EcP256,
            SignatureScheme::Ecdsa(HashAlg::Sha256),
        ),
        (
            KeyAlgorithm::EcP384,
            SignatureScheme::Ecdsa(HashAlg::Sha384),
        ),
        (
            KeyAlgorithm::Rsa2048,
            SignatureScheme::RsaPkcs1v15(HashAlg::Sha256),
        ),
    ] {
        let name = env.name(alg.as_str());
        let info = backend
            .generate_key(&name, &KeySpec::new(alg))
            .await
            .unwrap();
        let pem = dir.path().join(format!("{alg}.pem"));
        std::fs::write(&pem, info.public_key().unwrap().to_pem()).unwrap();
        let hash = scheme.hash().unwrap();
        let digest = hash.digest(&message);
        let sig = backend
            .sign(
                &KeyRef::from(&name),
                SignInput::digest(hash, &digest),
                scheme,
            )
            .await
            .unwrap();
        let sig_path = dir.path().join(format!("{alg}.sig"));
        std::fs::write(&sig_path, sig.as_bytes()).unwrap();
        let out = run(Command::new("openssl")
            .args(["dgst", &format!("-{hash}"), "-verify"])
            .arg(&pem)
            .arg("-signature")
            .arg(&sig_path)
            .arg(&data));
        assert!(out.contains("Verified OK"), "{alg}: {out}");
        backend.delete_key(&name).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_from_a_pkcs11_uri() {
    let Some(env) = common::env() else { return };
    let uri = KeyUri::new("pkcs11")
        .unwrap()
        .with_path_attr("token", &env.token)
        .unwrap()
        .with_query_attr("module-path", env.module.to_str().unwrap())
        .unwrap()
        .with_query_attr("pin-source", "env:KEYCHAIN_TEST_PKCS11_PIN")
        .unwrap()
        .with_query_attr("max-sessions", "2")
        .unwrap();
    let backend = Pkcs11Backend::open(Config::from_uri(&uri).unwrap())
        .await
        .unwrap();
    assert_eq!(backend.token_label(), env.token);
    let name = env.name("uri");
    backend
        .generate_key(&name, &KeySpec::new(KeyAlgorithm::Ed25519))
        .await
        .unwrap();
    let sig = backend
        .sign_message(&KeyRef::from(&name), b"via a URI")
        .await
        .unwrap();
    backend
        .verify(&name, SignInput::message(b"via a URI"), &sig)
        .await
        .unwrap();
    // The same token, by slot id.
    let by_slot = Pkcs11Backend::open(Config::with_slot(
        &env.module,
        backend.slot_id(),
        SecretSource::value(env.pin.clone()),
    ))
    .await
    .unwrap();
    assert_eq!(by_slot.token_label(), env.token);
    assert!(by_slot.key_info(&KeyRef::from(&name)).await.is_ok());
    backend.delete_key(&name).await.unwrap();
    let health = backend.health().await.unwrap();
    assert_eq!(health.status, HealthStatus::Ok, "{health:?}");
    assert!(
        health
            .details
            .iter()
            .any(|(k, v)| k == "token" && *v == env.token)
    );
    backend.close().await.unwrap();
    backend.close().await.unwrap();
    let e = backend.random(8).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(
        by_slot.random(8).await.is_ok(),
        "the other backend still works"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_module_and_unknown_token_are_clear() {
    let Some(env) = common::env() else { return };
    let pin = || SecretSource::value(env.pin.clone());

    let mut no_module = env.config();
    no_module.module_path = None;
    let e = Pkcs11Backend::open(no_module).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("module-path is required"), "{e}");

    let e = Pkcs11Backend::open(Config::new("/nonexistent/libpkcs11.so", &env.token, pin()))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("/nonexistent/libpkcs11.so"), "{e}");

    let not_a_module = std::env::current_exe().unwrap();
    let e = Pkcs11Backend::open(Config::new(&not_a_module, &env.token, pin()))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");

    let e = Pkcs11Backend::open(Config::new(&env.module, "no-such-token", pin()))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("no-such-token"), "{e}");
    assert!(
        e.to_string().contains(&env.token),
        "names the tokens present: {e}"
    );

    let e = Pkcs11Backend::open(Config::with_slot(&env.module, 0xdead_beef, pin()))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");

    let e = Pkcs11Backend::open(Config::new(
        &env.module,
        &env.token,
        SecretSource::env("KEYCHAIN_TEST_SURELY_UNSET_PIN"),
    ))
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_name_is_already_exists_and_left_untouched() {
    let Some(env) = common::env() else { return };
    let backend = env.open().await;
    let name = env.name("taken");
    let first = backend
        .generate_key(&name, &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap();
    for alg in [KeyAlgorithm::EcP256, KeyAlgorithm::Aes256Gcm] {
        let e = backend
            .generate_key(&name, &KeySpec::new(alg))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
        assert_eq!(e.key(), Some(&name));
    }
    let after = backend.key_info(&KeyRef::from(&name)).await.unwrap();
    assert_eq!(after, first);
    // Another backend on the same token sees the same key, and the same refusal.
    let other = env.open().await;
    assert_eq!(other.key_info(&KeyRef::from(&name)).await.unwrap(), first);
    let e = other
        .generate_key(&name, &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    backend.delete_key(&name).await.unwrap();
    // The other backend's cached handles are stale now: signing says NotFound, not a PKCS#11
    // error.
    let e = other
        .sign(
            &KeyRef::from(&name),
            SignInput::digest(HashAlg::Sha256, &[0; 32]),
            SignatureScheme::Ecdsa(HashAlg::Sha256),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let e = other.key_info(&KeyRef::from(&name)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_the_pkcs11_code_and_limits_hold() {
    let Some(env) = common::env() else { return };
    let backend = env.open().await;
    let max = backend.capabilities().max_random.unwrap();
    let e = backend.random(max + 1).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert_eq!(backend.random(max).await.unwrap().len(), max);
    // A wrong AAD: the token's refusal becomes Integrity, still naming the call and the code.
    let name = env.name("code");
    backend
        .generate_key(&name, &KeySpec::new(KeyAlgorithm::Aes128Gcm))
        .await
        .unwrap();
    let ct = backend
        .encrypt(&KeyRef::from(&name), b"x", b"")
        .await
        .unwrap();
    let e = backend.decrypt_aead(&name, &ct, b"y").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
    assert!(
        matches!(e.provider_code(), Some(ProviderCode::Pkcs11(_))),
        "{e:?}"
    );
    assert!(e.to_string().contains("C_Decrypt"), "{e}");
    backend.delete_key(&name).await.unwrap();
    // SoftHSM has CKM_AES_KEY_WRAP_PAD: exports under a password and imports are declared.
    let caps = backend.capabilities();
    assert!(caps.export_wrapped && caps.import_wrapped && caps.import);
    assert_eq!(caps.backend, <Config as keychain_core::BackendConfig>::TYPE);
    // Closed: every operation is Unavailable and not retryable, and closing again is a no-op.
    backend.close().await.unwrap();
    backend.close().await.unwrap();
    let e = backend.random(8).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(!e.retryable());
    assert_eq!(e.operation(), Some(keychain_core::Operation::Random));
    let e = backend.health().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
}

/// The module's calls run in place on a multi-threaded runtime's worker (`block_in_place`) and on
/// the blocking pool elsewhere; both keep sibling futures of one task and other tasks working.
async fn sign_from_joined_futures_and_tasks(
    backend: std::sync::Arc<Pkcs11Backend>,
    name: &keychain_core::KeyName,
) {
    let key = KeyRef::from(name);
    let (a, b) = tokio::join!(
        backend.sign_message(&key, b"a"),
        backend.sign_message(&key, b"b")
    );
    backend
        .verify(name, SignInput::message(b"a"), &a.unwrap())
        .await
        .unwrap();
    backend
        .verify(name, SignInput::message(b"b"), &b.unwrap())
        .await
        .unwrap();
    let tasks: Vec<_> = (0..8u8)
        .map(|i| {
            let (backend, key) = (std::sync::Arc::clone(&backend), key.clone());
            tokio::spawn(async move { (i, backend.sign_message(&key, &[i]).await.unwrap()) })
        })
        .collect();
    for t in tasks {
        let (i, sig) = t.await.unwrap();
        backend
            .verify(name, SignInput::message(&[i]), &sig)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_run_in_place_on_a_multi_threaded_runtime() {
    let Some(env) = common::env() else { return };
    let backend = std::sync::Arc::new(env.open().await);
    let name = env.name("inplace");
    backend
        .generate_key(&name, &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap();
    sign_from_joined_futures_and_tasks(std::sync::Arc::clone(&backend), &name).await;
    // From a thread of the blocking pool, too.
    let b = std::sync::Arc::clone(&backend);
    let n = name.clone();
    tokio::task::spawn_blocking(move || {
        tokio::runtime::Handle::current().block_on(b.sign_message(&KeyRef::from(&n), b"pool"))
    })
    .await
    .unwrap()
    .unwrap();
    backend.delete_key(&name).await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn calls_go_to_the_blocking_pool_on_a_current_thread_runtime() {
    let Some(env) = common::env() else { return };
    let backend = std::sync::Arc::new(env.open().await);
    let name = env.name("pooled");
    backend
        .generate_key(&name, &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap();
    sign_from_joined_futures_and_tasks(std::sync::Arc::clone(&backend), &name).await;
    backend.delete_key(&name).await.unwrap();
}
