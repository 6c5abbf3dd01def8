//! Importing keys into the SoftHSM token and exporting them under a password (the `pkcs11`
//! cell): keys made by the openssl CLI are imported (plain and encrypted PKCS#8, raw AES) and
//! sign in the token with their original public key; exports open with `openssl pkey`; bad
//! input is refused with the documented kinds and creates nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use common::run_stdout;

use std::path::Path;
use std::process::Command;

use keychain_core::{
    Backend, BackendExt as _, ErrorKind, ImportSpec, KeyAlgorithm, KeyMaterial, KeyRef, KeySpec,
    PublicKey, SecretBytes, SignInput, WrapFormat, WrappingSpec,
};

/// A private key made by `openssl genpkey` (PEM PKCS#8) and its public key (PEM SPKI).
fn openssl_key(dir: &Path, name: &str, args: &[&str]) -> (Vec<u8>, PublicKey) {
    let path = dir.join(format!("{name}.pem"));
    run_stdout(
        Command::new("openssl")
            .arg("genpkey")
            .args(args)
            .arg("-out")
            .arg(&path),
    );
    // The genpkey arguments end in `-pass pass:PW` for an encrypted key.
    let mut pkey = Command::new("openssl");
    pkey.args(["pkey", "-pubout"]);
    if let Some(pass) = args.iter().position(|a| *a == "-pass") {
        pkey.args(["-passin", args[pass + 1]]);
    }
    let public = run_stdout(pkey.arg("-in").arg(&path));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
            "p521",
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521"][..],
            KeyAlgorithm::EcP521,
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
        // Verified against the public key openssl derived, not the token's.
        keychain_core::verify(
            &public,
            SignInput::message(b"imported"),
            sig.scheme(),
            sig.as_bytes(),
        )
        .unwrap_or_else(|e| panic!("{label}: {e}"));
        // Not exportable unless asked for.
        let err = backend
            .export_wrapped(&KeyRef::from(&name), &WrappingSpec::Password("pw".into()))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{label}: {err}");
        backend.delete_key(&name).await.unwrap();
    }
    backend.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_imports_exports_openssl_reads_and_bad_input() {
    let Some(env) = common::env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let backend = env.open().await;

    // An encrypted PKCS#8 from openssl: right password imports, wrong or none does not.
    let (pem, public) = openssl_key(
        dir.path(),
        "enc",
        &[
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-aes-256-cbc",
            "-pass",
            "pass:opensesame",
        ],
    );
    let name = env.name("encrypted");
    for (password, kind) in [
        (Some("wrong"), ErrorKind::Unauthenticated),
        (None, ErrorKind::Unauthenticated),
    ] {
        let err = backend
            .import_key(&name, pkcs8(pem.clone(), password), &ImportSpec::new())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), kind, "{err}");
        assert_eq!(
            backend
                .key_info(&KeyRef::from(&name))
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::NotFound,
            "a refused import left a key"
        );
    }
    let err = backend
        .import_key(
            &name,
            pkcs8(pem.clone(), Some("opensesame")),
            &ImportSpec::new().algorithm(KeyAlgorithm::EcP384),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let info = backend
        .import_key(
            &name,
            pkcs8(pem.clone(), Some("opensesame")),
            &ImportSpec::new().exportable(true),
        )
        .await
        .unwrap();
    assert_eq!(info.public_key(), Some(&public));
    assert!(info.exportable);
    let err = backend
        .import_key(&name, pkcs8(pem, Some("opensesame")), &ImportSpec::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    let garbage = backend
        .import_key(
            &env.name("garbage"),
            pkcs8(b"not a key".to_vec(), None),
            &ImportSpec::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(garbage.kind(), ErrorKind::InvalidInput, "{garbage}");

    // The export is an EncryptedPrivateKeyInfo that openssl opens with the export password.
    let wrapped = backend
        .export_wrapped(
            &KeyRef::from(&name),
            &WrappingSpec::Password("export-pw".into()),
        )
        .await
        .unwrap();
    assert_eq!(wrapped.format, WrapFormat::EncryptedPkcs8);
    let file = dir.path().join("export.der");
    std::fs::write(&file, &wrapped.bytes).unwrap();
    let exported_public = run_stdout(
        Command::new("openssl")
            .args([
                "pkey",
                "-inform",
                "DER",
                "-passin",
                "pass:export-pw",
                "-pubout",
                "-in",
            ])
            .arg(&file),
    );
    assert_eq!(
        PublicKey::from_pem(std::str::from_utf8(&exported_public).unwrap()).unwrap(),
        public
    );
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
    assert!(!wrong.status.success());

    // Raw AES keys: imported, exportable, round-trip through export and import_wrapped.
    let aes = env.name("aes");
    let raw = [0x42u8; 32];
    backend
        .import_key(
            &aes,
            KeyMaterial::Symmetric(SecretBytes::from_slice(&raw)),
            &ImportSpec::new().exportable(true),
        )
        .await
        .unwrap();
    let sealed = backend
        .encrypt(&KeyRef::from(&aes), b"payload", b"aad")
        .await
        .unwrap();
    let aes_wrapped = backend
        .export_wrapped(
            &KeyRef::from(&aes),
            &WrappingSpec::Password("aes-pw".into()),
        )
        .await
        .unwrap();
    assert_eq!(aes_wrapped.algorithm, KeyAlgorithm::Aes256Gcm);
    let copy = env.name("aes-copy");
    let err = backend
        .import_wrapped(
            &copy,
            &aes_wrapped,
            &WrappingSpec::Password("not-it".into()),
            &ImportSpec::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
    backend
        .import_wrapped(
            &copy,
            &aes_wrapped,
            &WrappingSpec::Password("aes-pw".into()),
            &ImportSpec::new(),
        )
        .await
        .unwrap();
    // The copy is the same AES key: it opens what the original sealed.
    assert_eq!(
        backend
            .decrypt_aead(&copy, &sealed, b"aad")
            .await
            .unwrap()
            .expose(),
        b"payload"
    );
    let err = backend
        .import_key(
            &env.name("short"),
            KeyMaterial::Symmetric(SecretBytes::from_slice(&raw[..20])),
            &ImportSpec::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");

    // SoftHSM 2.6 cannot wrap EdDSA keys: Unsupported, said plainly.
    let ed = env.name("ed-export");
    backend
        .generate_key(&ed, &KeySpec::new(KeyAlgorithm::Ed25519).exportable(true))
        .await
        .unwrap();
    let err = backend
        .export_wrapped(&KeyRef::from(&ed), &WrappingSpec::Password("pw".into()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");

    for n in [&name, &aes, &copy, &ed] {
        backend.delete_key(n).await.unwrap();
    }
    backend.close().await.unwrap();
}
