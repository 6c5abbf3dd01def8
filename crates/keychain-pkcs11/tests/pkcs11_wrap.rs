//! Keys wrapped under a key-encryption key on the token (`WrappingSpec::Key`, the `pkcs11`
//! cell): `C_WrapKey`/`C_UnwrapKey` with AES key wrap with padding, the key never in the clear
//! outside the token. The copies sign for the original public key (or open the original's
//! ciphertext); tampered blobs, a foreign public key, a KEK without the wrap usage and keys not
//! created exportable are refused and create nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use keychain_core::{
    Backend, BackendExt as _, ErrorKind, ImportSpec, KeyAlgorithm, KeyName, KeyRef, KeySpec,
    KeyUsage, KeyUsages, SignInput, WrapFormat, WrappingSpec,
};

/// No key `name`, and (as pkcs11-tool sees the token) no object under its label either.
async fn absent(env: &common::Env, backend: &dyn Backend, name: &KeyName) {
    let err = backend.key_info(&KeyRef::from(name)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{name}: {err}");
    let listing = common::run(
        std::process::Command::new("pkcs11-tool")
            .arg("--module")
            .arg(&env.module)
            .args(["--token-label", &env.token, "--login", "--pin", &env.pin])
            .arg("--list-objects"),
    );
    let left: Vec<String> = common::objects(&listing)
        .into_iter()
        .filter(|b| b.contains(&format!("label:      {name}\n")))
        .collect();
    assert!(left.is_empty(), "objects left under {name}: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_move_under_a_token_kek() {
    let Some(env) = common::env() else { return };
    let backend = env.open().await;
    let kek = env.name("kek");
    let wrap_usages: KeyUsages = [KeyUsage::Encrypt, KeyUsage::Decrypt, KeyUsage::Wrap]
        .into_iter()
        .collect();
    backend
        .generate_key(
            &kek,
            &KeySpec::new(KeyAlgorithm::Aes256Gcm).with_usages(wrap_usages),
        )
        .await
        .unwrap();
    let under = WrappingSpec::Key(KeyRef::from(&kek));

    for algorithm in [
        KeyAlgorithm::EcP256,
        KeyAlgorithm::EcP384,
        KeyAlgorithm::Rsa2048,
        KeyAlgorithm::Aes256Gcm,
    ] {
        let orig = env.name("wrapped-orig");
        let info = backend
            .generate_key(&orig, &KeySpec::new(algorithm).exportable(true))
            .await
            .unwrap();
        let wrapped = backend
            .export_wrapped(&KeyRef::from(&orig), &under)
            .await
            .unwrap_or_else(|e| panic!("{algorithm}: {e}"));
        assert_eq!(wrapped.format, WrapFormat::AesKeyWrapPad);
        assert_eq!(wrapped.algorithm, algorithm);
        assert_eq!(wrapped.public_key.is_some(), algorithm.is_asymmetric());
        let copy = env.name("wrapped-copy");
        let imported = match backend
            .import_wrapped(&copy, &wrapped, &under, &ImportSpec::new())
            .await
        {
            // SoftHSM 2.6 does not record an unwrapped AES key's length: refused, and no
            // object is left behind.
            Err(e) if algorithm.is_symmetric() && e.kind() == ErrorKind::Unsupported => {
                absent(&env, &backend, &copy).await;
                backend.delete_key(&orig).await.unwrap();
                continue;
            }
            other => other.unwrap_or_else(|e| panic!("{algorithm}: {e}")),
        };
        assert_eq!(imported.algorithm, algorithm);
        assert!(!imported.exportable);
        if algorithm.is_asymmetric() {
            assert_eq!(imported.public_key(), info.public_key());
            let sig = backend
                .sign_message(&KeyRef::from(&copy), b"unwrapped")
                .await
                .unwrap();
            keychain_core::verify(
                info.public_key().unwrap(),
                SignInput::message(b"unwrapped"),
                sig.scheme(),
                sig.as_bytes(),
            )
            .unwrap();
        } else {
            let ct = backend
                .encrypt(&KeyRef::from(&orig), b"secret", b"aad")
                .await
                .unwrap();
            let back = backend.decrypt_aead(&copy, &ct, b"aad").await.unwrap();
            assert_eq!(back.expose(), b"secret");
        }

        // A taken name: AlreadyExists.
        let err = backend
            .import_wrapped(&copy, &wrapped, &under, &ImportSpec::new())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{algorithm}: {err}");
        // A flipped byte: the token refuses to unwrap it; nothing is created.
        let mut tampered = wrapped.clone();
        tampered.bytes[5] ^= 1;
        let n = env.name("tampered");
        let err = backend
            .import_wrapped(&n, &tampered, &under, &ImportSpec::new())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Integrity, "{algorithm}: {err}");
        absent(&env, &backend, &n).await;
        for k in [&orig, &copy] {
            backend.delete_key(k).await.unwrap();
        }
    }

    // Another key's public key beside the wrapped private key: caught, nothing created.
    let (a, b) = (env.name("pair-a"), env.name("pair-b"));
    for n in [&a, &b] {
        backend
            .generate_key(n, &KeySpec::new(KeyAlgorithm::EcP256).exportable(true))
            .await
            .unwrap();
    }
    let mut wrapped = backend
        .export_wrapped(&KeyRef::from(&a), &under)
        .await
        .unwrap();
    let other = backend.key_info(&KeyRef::from(&b)).await.unwrap();
    wrapped.public_key = Some(other.public_key().unwrap().der().to_vec());
    let n = env.name("foreign-public");
    let err = backend
        .import_wrapped(&n, &wrapped, &under, &ImportSpec::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    absent(&env, &backend, &n).await;
    // Without its public key, an EC key cannot be unwrapped on the token.
    wrapped.public_key = None;
    let err = backend
        .import_wrapped(&n, &wrapped, &under, &ImportSpec::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    absent(&env, &backend, &n).await;

    // A KEK without the wrap usage; a key not created exportable.
    let plain_aes = env.name("no-wrap");
    backend
        .generate_key(&plain_aes, &KeySpec::new(KeyAlgorithm::Aes256Gcm))
        .await
        .unwrap();
    let err = backend
        .export_wrapped(
            &KeyRef::from(&a),
            &WrappingSpec::Key(KeyRef::from(&plain_aes)),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let sealed = env.name("sealed");
    backend
        .generate_key(&sealed, &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap();
    let err = backend
        .export_wrapped(&KeyRef::from(&sealed), &under)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    // A password export does not unwrap under a token key.
    let by_password = backend
        .export_wrapped(&KeyRef::from(&a), &WrappingSpec::Password("pw".into()))
        .await
        .unwrap();
    let err = backend
        .import_wrapped(&n, &by_password, &under, &ImportSpec::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    for k in [&a, &b, &plain_aes, &sealed, &kek] {
        backend.delete_key(k).await.unwrap();
    }
    backend.close().await.unwrap();
}
