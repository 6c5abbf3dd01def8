//! The on-disk behaviour of the software backend: files OpenSSL can open, wrong passwords,
//! corrupt files, persistence.

#![allow(clippy::unwrap_used, reason = "test helpers panic on setup failure")]

use std::path::Path;
use std::process::Command;

use keychain_core::{
    Backend, BackendExt, ErrorKind, HashAlg, ImportSpec, KeyAlgorithm, KeyMaterial, KeyName,
    KeyRef, KeySpec, SecretBytes, SecretSource, SignInput, SignatureScheme,
};
use keychain_pkcs8::{Config, Kdf, Pkcs8Backend};

const PASSWORD: &str = "correct horse battery staple";

fn config(dir: &Path, password: &str) -> Config {
    Config::new(dir, SecretSource::value(password)).with_kdf(Kdf::Pbkdf2 { iterations: 1000 })
}

fn name(s: &str) -> KeyName {
    KeyName::new(s).unwrap()
}

fn key_files(dir: &Path, key: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join(key))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pem"))
        .collect();
    v.sort();
    v
}

fn openssl_available() -> bool {
    Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test]
async fn key_files_open_with_openssl() {
    assert!(
        openssl_available(),
        "openssl is required (cargo xtask setup installs it)"
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("keys");
    let backend = Pkcs8Backend::open(config(&root, PASSWORD)).await.unwrap();
    for (key, alg) in [
        ("ec", KeyAlgorithm::EcP384),
        ("ed", KeyAlgorithm::Ed25519),
        ("rsa", KeyAlgorithm::Rsa2048),
    ] {
        let info = backend
            .generate_key(&name(key), &KeySpec::new(alg))
            .await
            .unwrap();
        let files = key_files(&root, key);
        assert_eq!(files.len(), 1);
        let out = Command::new("openssl")
            .args([
                "pkey",
                "-pubout",
                "-passin",
                &format!("pass:{PASSWORD}"),
                "-in",
            ])
            .arg(&files[0])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{key}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // OpenSSL derives the same public key the backend reports.
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            info.public_key().unwrap().to_pem()
        );
        let wrong = Command::new("openssl")
            .args(["pkey", "-passin", "pass:wrong", "-in"])
            .arg(&files[0])
            .output()
            .unwrap();
        assert!(!wrong.status.success());
    }
}

#[tokio::test]
async fn files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("keys");
    let backend = Pkcs8Backend::open(config(&root, PASSWORD)).await.unwrap();
    backend
        .generate_key(&name("k"), &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&root), 0o700);
    assert_eq!(mode(&root.join("k")), 0o700);
    assert_eq!(mode(&key_files(&root, "k")[0]), 0o600);
    assert_eq!(mode(&root.join("k/meta.json")), 0o600);
}

#[tokio::test]
async fn keys_persist_and_wrong_password_is_unauthenticated() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("keys");
    let backend = Pkcs8Backend::open(config(&root, PASSWORD)).await.unwrap();
    let k = name("persist");
    backend
        .generate_key(&k, &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap();
    let sig = backend
        .sign_message(&KeyRef::from(&k), b"hello")
        .await
        .unwrap();
    backend.close().await.unwrap();
    assert_eq!(
        backend.list_keys().await.unwrap_err().kind(),
        ErrorKind::Unavailable,
        "a closed backend refuses work"
    );

    let reopened = Pkcs8Backend::open(config(&root, PASSWORD)).await.unwrap();
    reopened
        .verify(&k, SignInput::message(b"hello"), &sig)
        .await
        .unwrap();
    reopened
        .sign_message(&KeyRef::from(&k), b"again")
        .await
        .unwrap();

    let wrong = Pkcs8Backend::open(config(&root, "not the password"))
        .await
        .unwrap();
    // Metadata (names, public keys) needs no password; the private key does.
    assert_eq!(wrong.list_keys().await.unwrap().len(), 1);
    let e = wrong
        .sign_message(&KeyRef::from(&k), b"x")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
    assert!(!e.to_string().contains("not the password"));
}

#[tokio::test]
async fn corrupt_files_are_integrity_errors_and_lose_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("keys");
    let backend = Pkcs8Backend::open(config(&root, PASSWORD)).await.unwrap();
    for k in ["torn", "meta", "fine"] {
        backend
            .generate_key(&name(k), &KeySpec::new(KeyAlgorithm::EcP256))
            .await
            .unwrap();
    }
    let torn = &key_files(&root, "torn")[0];
    let pem = std::fs::read(torn).unwrap();
    std::fs::write(torn, &pem[..pem.len() / 2]).unwrap();
    std::fs::write(root.join("meta/meta.json"), b"{ not json").unwrap();

    let fresh = Pkcs8Backend::open(config(&root, PASSWORD)).await.unwrap();
    let e = fresh
        .sign_message(&KeyRef::from(&name("torn")), b"x")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
    let e = fresh
        .key_info(&KeyRef::from(&name("meta")))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
    fresh
        .sign_message(&KeyRef::from(&name("fine")), b"x")
        .await
        .unwrap();
}

#[tokio::test]
async fn delete_removes_every_version_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("keys");
    let backend = Pkcs8Backend::open(config(&root, PASSWORD)).await.unwrap();
    let k = name("gone");
    backend
        .generate_key(&k, &KeySpec::new(KeyAlgorithm::Aes256Gcm))
        .await
        .unwrap();
    backend.rotate_key(&k).await.unwrap();
    assert_eq!(key_files(&root, "gone").len(), 2);
    backend.delete_key(&k).await.unwrap();
    assert!(!root.join("gone").exists() || key_files(&root, "gone").is_empty());
    assert_eq!(
        backend.delete_key(&k).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn imports_openssl_keys_encrypted_or_not() {
    assert!(
        openssl_available(),
        "openssl is required (cargo xtask setup installs it)"
    );
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.pem");
    let enc = dir.path().join("enc.pem");
    let generated = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
        ])
        .arg(&plain)
        .status()
        .unwrap();
    assert!(generated.success());
    let encrypt = Command::new("openssl")
        .args([
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-passout",
            "pass:import-pw",
            "-in",
        ])
        .arg(&plain)
        .arg("-out")
        .arg(&enc)
        .status()
        .unwrap();
    assert!(encrypt.success());
    let pubkey = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&plain)
        .output()
        .unwrap();

    let backend = Pkcs8Backend::open(
        Config::in_memory(SecretSource::value(PASSWORD)).with_kdf(Kdf::Pbkdf2 { iterations: 1000 }),
    )
    .await
    .unwrap();
    let material = |path: &Path, pw: Option<&str>| KeyMaterial::Pkcs8 {
        data: SecretBytes::new(std::fs::read(path).unwrap()),
        password: pw.map(Into::into),
    };
    let a = backend
        .import_key(&name("a"), material(&plain, None), &ImportSpec::new())
        .await
        .unwrap();
    assert_eq!(a.algorithm, KeyAlgorithm::EcP256);
    assert_eq!(
        a.public_key().unwrap().to_pem(),
        String::from_utf8(pubkey.stdout).unwrap()
    );
    let e = backend
        .import_key(&name("b"), material(&enc, Some("nope")), &ImportSpec::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated);
    let e = backend
        .import_key(&name("b"), material(&enc, None), &ImportSpec::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated);
    let e = backend
        .import_key(
            &name("b"),
            material(&enc, Some("import-pw")),
            &ImportSpec::new().algorithm(KeyAlgorithm::EcP384),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let b = backend
        .import_key(
            &name("b"),
            material(&enc, Some("import-pw")),
            &ImportSpec::new(),
        )
        .await
        .unwrap();
    assert_eq!(b.public_key(), a.public_key());
    let digest = HashAlg::Sha256.digest(b"m");
    let sig = backend
        .sign(
            &KeyRef::from(&name("b")),
            SignInput::digest(HashAlg::Sha256, &digest),
            SignatureScheme::Ecdsa(HashAlg::Sha256),
        )
        .await
        .unwrap();
    backend
        .verify(&name("a"), SignInput::message(b"m"), &sig)
        .await
        .unwrap();
    // Garbage is refused and creates nothing.
    let e = backend
        .import_key(
            &name("c"),
            KeyMaterial::Pkcs8 {
                data: SecretBytes::from_slice(b"garbage"),
                password: None,
            },
            &ImportSpec::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert_eq!(
        backend
            .key_info(&KeyRef::from(&name("c")))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn missing_password_variable_fails_open() {
    let cfg = Config::in_memory(SecretSource::env("KEYCHAIN_PKCS8_TEST_UNSET_PASSWORD"));
    let e = Pkcs8Backend::open(cfg).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = Pkcs8Backend::open(Config::in_memory(SecretSource::value("")))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
}

/// Ciphertexts of the first format (the whole header, nonce included, authenticated as the AAD
/// prefix) still decrypt after the switch to format 2; format 2 is what `encrypt` writes.
#[tokio::test]
async fn format_1_ciphertexts_still_decrypt() {
    use aes_gcm::aead::{Aead as _, KeyInit as _, Payload};

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("keys");
    let backend = Pkcs8Backend::open(config(&root, PASSWORD)).await.unwrap();
    let key = [0x42u8; 32];
    let n = name("legacy");
    backend
        .import_key(
            &n,
            KeyMaterial::Symmetric(SecretBytes::from_slice(&key)),
            &ImportSpec::new(),
        )
        .await
        .unwrap();
    let nonce = [7u8; 12];
    let mut header = vec![0x4b, 0x01, 0, 0, 0, 1];
    header.extend_from_slice(&nonce);
    let aad = [header.as_slice(), b"ctx"].concat();
    let cipher = aes_gcm::Aes256Gcm::new_from_slice(&key).unwrap();
    let body = cipher
        .encrypt(
            &aes_gcm::Nonce::from(nonce),
            Payload {
                msg: b"written by format 1",
                aad: &aad,
            },
        )
        .unwrap();
    let v1 = [header.as_slice(), &body].concat();
    assert_eq!(
        backend
            .decrypt_aead(&n, &v1, b"ctx")
            .await
            .unwrap()
            .expose(),
        b"written by format 1"
    );
    let e = backend.decrypt_aead(&n, &v1, b"other").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Integrity);

    let v2 = backend
        .encrypt(&KeyRef::from(&n), b"format 2", b"ctx")
        .await
        .unwrap();
    assert_eq!(&v2[..2], &[0x4b, 0x02]);
    // Format 2 authenticates magic, format and version, then the caller's AAD.
    let nonce2: [u8; 12] = v2[6..18].try_into().unwrap();
    let plain = cipher
        .decrypt(
            &aes_gcm::Nonce::from(nonce2),
            Payload {
                msg: &v2[18..],
                aad: &[&v2[..6], b"ctx".as_slice()].concat(),
            },
        )
        .unwrap();
    assert_eq!(plain, b"format 2");
}
