//! Importing keys into Transit (BYOK: RSA-OAEP + AES-KWP under the mount's wrapping key) and
//! exporting exportable keys under a password, on the OpenBao dev server (the `vault` cell).
//! Keys made by the openssl CLI sign in Transit and verify with openssl's public key; exports
//! open with `openssl pkey`; bad input is refused with the documented kinds and creates nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use std::path::Path;
use std::process::Command;

use keychain_core::{
    Backend, BackendExt as _, ErrorKind, ImportSpec, KeyAlgorithm, KeyMaterial, KeyName, KeyRef,
    KeySpec, PublicKey, SecretBytes, SignInput, WrapFormat, WrappingSpec,
};

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().expect("run openssl");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `openssl genpkey ARGS` as PEM PKCS#8, and its public key.
fn openssl_key(dir: &Path, label: &str, args: &[&str]) -> (Vec<u8>, PublicKey) {
    let path = dir.join(format!("{label}.pem"));
    run(Command::new("openssl")
        .arg("genpkey")
        .args(args)
        .arg("-out")
        .arg(&path));
    let mut pkey = Command::new("openssl");
    pkey.args(["pkey", "-pubout"]);
    // An encrypted key's genpkey arguments end in `-pass pass:PW`.
    if let Some(at) = args.iter().position(|a| *a == "-pass") {
        pkey.args(["-passin", args[at + 1]]);
    }
    let public = run(pkey.arg("-in").arg(&path));
    (
        std::fs::read(&path).unwrap(),
        PublicKey::from_pem(std::str::from_utf8(&public).unwrap()).unwrap(),
    )
}

fn pkcs8(data: Vec<u8>, password: Option<&str>) -> KeyMaterial {
    KeyMaterial::Pkcs8 {
        data: SecretBytes::new(data),
        password: password.map(Into::into),
    }
}

fn password(pw: &str) -> WrappingSpec {
    WrappingSpec::Password(pw.into())
}

async fn absent(backend: &dyn Backend, name: &KeyName) {
    let err = backend.key_info(&KeyRef::from(name)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{name}: {err}");
}

#[tokio::test]
async fn openssl_keys_import_and_sign_with_their_public_key() {
    let Some(env) = common::env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let backend = env.open().await;
    for (label, args, algorithm) in [
        (
            "rsa",
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"][..],
            KeyAlgorithm::Rsa2048,
        ),
        (
            "p256",
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"][..],
            KeyAlgorithm::EcP256,
        ),
        (
            "p384",
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"][..],
            KeyAlgorithm::EcP384,
        ),
        (
            "ed25519",
            &["-algorithm", "ED25519"][..],
            KeyAlgorithm::Ed25519,
        ),
    ] {
        let (pem, public) = openssl_key(dir.path(), label, args);
        let name = env.name(&format!("imported-{label}"));
        let info = backend
            .import_key(&name, pkcs8(pem, None), &ImportSpec::new())
            .await
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(info.algorithm, algorithm);
        assert!(!info.exportable);
        assert_eq!(info.public_key(), Some(&public), "{label}");
        let sig = backend
            .sign_message(&KeyRef::from(&name), b"imported")
            .await
            .unwrap();
        keychain_core::verify(
            &public,
            SignInput::message(b"imported"),
            sig.scheme(),
            sig.as_bytes(),
        )
        .unwrap_or_else(|e| panic!("{label}: {e}"));
        // Imported without `exportable`: Transit refuses to hand it out.
        let err = backend
            .export_wrapped(&KeyRef::from(&name), &password("pw"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{label}: {err}");
        backend.delete_key(&name).await.unwrap();
    }
    backend.close().await.unwrap();
}

#[tokio::test]
async fn exports_open_with_openssl_and_round_trip() {
    let Some(env) = common::env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let backend = env.open().await;
    for algorithm in [
        KeyAlgorithm::EcP256,
        KeyAlgorithm::EcP521,
        KeyAlgorithm::Rsa2048,
        KeyAlgorithm::Ed25519,
    ] {
        let name = env.name(&format!("export-{algorithm}"));
        let info = backend
            .generate_key(&name, &KeySpec::new(algorithm).exportable(true))
            .await
            .unwrap();
        assert!(info.exportable);
        let wrapped = backend
            .export_wrapped(&KeyRef::from(&name), &password("export-pw"))
            .await
            .unwrap();
        assert_eq!(wrapped.format, WrapFormat::EncryptedPkcs8);
        assert_eq!(wrapped.algorithm, algorithm);
        // openssl opens it with the password, and its public key is Transit's.
        let file = dir.path().join(format!("{algorithm}.der"));
        std::fs::write(&file, &wrapped.bytes).unwrap();
        let public = run(Command::new("openssl")
            .args([
                "pkey",
                "-inform",
                "DER",
                "-passin",
                "pass:export-pw",
                "-pubout",
                "-in",
            ])
            .arg(&file));
        let public = PublicKey::from_pem(std::str::from_utf8(&public).unwrap()).unwrap();
        assert_eq!(info.public_key(), Some(&public), "{algorithm}");
        let wrong = Command::new("openssl")
            .args([
                "pkey",
                "-inform",
                "DER",
                "-passin",
                "pass:nope",
                "-noout",
                "-in",
            ])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            !wrong.status.success(),
            "{algorithm}: a wrong password opened it"
        );
        backend.delete_key(&name).await.unwrap();
    }

    // AES: the copy decrypts what the original encrypted, so the key bytes crossed intact.
    let orig = env.name("aes-orig");
    backend
        .generate_key(
            &orig,
            &KeySpec::new(KeyAlgorithm::Aes256Gcm).exportable(true),
        )
        .await
        .unwrap();
    let ct = backend
        .encrypt(&KeyRef::from(&orig), b"secret", b"aad")
        .await
        .unwrap();
    let wrapped = backend
        .export_wrapped(&KeyRef::from(&orig), &password("pw"))
        .await
        .unwrap();
    let copy = env.name("aes-copy");
    backend
        .import_wrapped(&copy, &wrapped, &password("pw"), &ImportSpec::new())
        .await
        .unwrap();
    // A Transit ciphertext names no key, so the original's decrypts under the copy's name.
    let back = backend.decrypt_aead(&copy, &ct, b"aad").await.unwrap();
    assert_eq!(back.expose(), b"secret");
    // Wrapping under another key is not offered.
    let err = backend
        .export_wrapped(
            &KeyRef::from(&orig),
            &WrappingSpec::Key(KeyRef::from(&copy)),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    // A version that does not exist.
    let err = backend
        .export_wrapped(&KeyRef::versioned(orig.clone(), 7), &password("pw"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    for n in [&orig, &copy] {
        backend.delete_key(n).await.unwrap();
    }
    backend.close().await.unwrap();
}

#[tokio::test]
async fn bad_imports_are_refused_and_create_nothing() {
    let Some(env) = common::env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let backend = env.open().await;
    let ec = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];

    // Encrypted PKCS#8: the right password imports, a wrong or missing one does not.
    let mut args = ec.to_vec();
    args.extend(["-aes-256-cbc", "-pass", "pass:right"]);
    let (encrypted, _) = openssl_key(dir.path(), "encrypted", &args);
    for (pw, kind) in [
        (Some("wrong"), ErrorKind::Unauthenticated),
        (None, ErrorKind::Unauthenticated),
    ] {
        let name = env.name("enc-bad");
        let err = backend
            .import_key(&name, pkcs8(encrypted.clone(), pw), &ImportSpec::new())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), kind, "{pw:?}: {err}");
        absent(&backend, &name).await;
    }
    let name = env.name("enc-good");
    backend
        .import_key(&name, pkcs8(encrypted, Some("right")), &ImportSpec::new())
        .await
        .unwrap();

    // The name exists: AlreadyExists, and the existing key is untouched.
    let before = backend.key_info(&KeyRef::from(&name)).await.unwrap();
    let (other, _) = openssl_key(dir.path(), "other", &ec);
    let err = backend
        .import_key(&name, pkcs8(other.clone(), None), &ImportSpec::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    let after = backend.key_info(&KeyRef::from(&name)).await.unwrap();
    assert_eq!(before.public_key(), after.public_key());

    // The wrong algorithm, garbage, a short AES key, a usage the type lacks.
    let cases: [(&str, KeyMaterial, ImportSpec); 4] = [
        (
            "wrong algorithm",
            pkcs8(other.clone(), None),
            ImportSpec::new().algorithm(KeyAlgorithm::EcP384),
        ),
        (
            "garbage",
            pkcs8(b"not a key".to_vec(), None),
            ImportSpec::new(),
        ),
        (
            "short aes",
            KeyMaterial::Symmetric(SecretBytes::new(vec![1; 20])),
            ImportSpec::new().algorithm(KeyAlgorithm::Aes256Gcm),
        ),
        (
            "usage",
            pkcs8(other, None),
            ImportSpec::new().with_usages(keychain_core::KeyUsage::Encrypt.into()),
        ),
    ];
    for (what, material, spec) in cases {
        let n = env.name("bad");
        let err = backend.import_key(&n, material, &spec).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{what}: {err}");
        absent(&backend, &n).await;
    }

    // Raw AES imports and encrypts; exportable on request, and the export gives the same bytes.
    let aes = env.name("raw-aes");
    let info = backend
        .import_key(
            &aes,
            KeyMaterial::Symmetric(SecretBytes::new(vec![0x42; 32])),
            &ImportSpec::new().exportable(true),
        )
        .await
        .unwrap();
    assert_eq!(info.algorithm, KeyAlgorithm::Aes256Gcm);
    assert!(info.exportable);
    let wrapped = backend
        .export_wrapped(&KeyRef::from(&aes), &password("pw"))
        .await
        .unwrap();
    let der = keychain_crypto::pkcs8::decrypt(&wrapped.bytes, b"pw").unwrap();
    let plain = keychain_crypto::pkcs8::inspect(der.expose()).unwrap();
    assert_eq!(plain.material.expose(), &[0x42; 32]);
    // import_wrapped with a wrong password creates nothing.
    let n = env.name("wrapped-wrong");
    let err = backend
        .import_wrapped(&n, &wrapped, &password("nope"), &ImportSpec::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
    absent(&backend, &n).await;
    for n in [&name, &aes] {
        backend.delete_key(n).await.unwrap();
    }
    backend.close().await.unwrap();
}

#[tokio::test]
async fn chacha20_poly1305_keys_are_what_they_say() {
    let Some(env) = common::env() else { return };
    let backend = env.open().await;
    let name = env.name("chacha");
    let info = backend
        .generate_key(
            &name,
            &KeySpec::new(KeyAlgorithm::ChaCha20Poly1305).exportable(true),
        )
        .await
        .unwrap();
    assert_eq!(info.algorithm, KeyAlgorithm::ChaCha20Poly1305);
    let transit = env.transit(&name);
    let key_type = env
        .bao(&["read", "-field=type", &format!("transit/keys/{transit}")])
        .unwrap();
    assert_eq!(key_type.trim(), "chacha20-poly1305");
    let ct = backend
        .encrypt(&KeyRef::from(&name), b"over chacha", b"context")
        .await
        .unwrap();

    // The exported key opens Transit's ciphertext (nonce ‖ ciphertext ‖ tag) with a local
    // ChaCha20-Poly1305: the server really used that cipher with the AAD.
    let wrapped = backend
        .export_wrapped(&KeyRef::from(&name), &password("pw"))
        .await
        .unwrap();
    assert_eq!(wrapped.algorithm, KeyAlgorithm::ChaCha20Poly1305);
    let der = keychain_crypto::pkcs8::decrypt(&wrapped.bytes, b"pw").unwrap();
    let plain = keychain_crypto::pkcs8::inspect(der.expose()).unwrap();
    assert_eq!(plain.algorithm, KeyAlgorithm::ChaCha20Poly1305);
    let text = keychain_vault::to_transit_ciphertext(&ct).unwrap();
    let body = text.rsplit(':').next().unwrap();
    let raw = {
        use base64ct::{Base64, Encoding as _};
        Base64::decode_vec(body).unwrap()
    };
    let (nonce, sealed) = raw.split_at(12);
    let local = keychain_crypto::default_provider()
        .unwrap()
        .aead_key(KeyAlgorithm::ChaCha20Poly1305, plain.material.expose())
        .unwrap();
    let opened = local
        .open(nonce.try_into().unwrap(), b"context", sealed)
        .unwrap();
    assert_eq!(opened.expose(), b"over chacha");
    assert!(
        local
            .open(nonce.try_into().unwrap(), b"other", sealed)
            .is_err()
    );

    // Imported back under another name (BYOK), it decrypts the same ciphertext.
    let copy = env.name("chacha-copy");
    let imported = backend
        .import_wrapped(&copy, &wrapped, &password("pw"), &ImportSpec::new())
        .await
        .unwrap();
    assert_eq!(imported.algorithm, KeyAlgorithm::ChaCha20Poly1305);
    let back = backend.decrypt_aead(&copy, &ct, b"context").await.unwrap();
    assert_eq!(back.expose(), b"over chacha");
    for n in [&name, &copy] {
        backend.delete_key(n).await.unwrap();
    }
    backend.close().await.unwrap();
}
