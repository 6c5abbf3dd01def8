//! The software store never loses a key: a wrong password writes nothing, damage is told apart
//! from a wrong password, hostile KDF parameters are refused before any work, one damaged key
//! hides no other, and several backends (as several processes would) on one directory keep
//! every version.

#![allow(clippy::unwrap_used, reason = "test helpers panic on setup failure")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use der::{Decode as _, Encode as _};
use keychain_core::{
    Backend, BackendExt, ErrorKind, ImportSpec, KeyAlgorithm, KeyEntry, KeyMaterial, KeyName,
    KeyRef, KeySpec, SecretBytes, SecretSource,
};
use keychain_crypto::pkcs8 as format;
use keychain_pkcs8::{Config, Kdf, Pkcs8Backend};

const PASSWORD: &str = "correct horse battery staple";
const KDF: Kdf = Kdf::Pbkdf2 { iterations: 1000 };

fn config(dir: &Path, password: &str) -> Config {
    Config::new(dir, SecretSource::value(password)).with_kdf(KDF)
}

async fn open(dir: &Path, password: &str) -> Pkcs8Backend {
    Pkcs8Backend::open(config(dir, password)).await.unwrap()
}

fn name(s: &str) -> KeyName {
    KeyName::new(s).unwrap()
}

/// Every file under `dir` (lock files aside) with its content: what "nothing was written"
/// compares.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let file_name = path.file_name().unwrap().to_string_lossy().into_owned();
            if file_name.starts_with(".lock") {
                continue;
            }
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, &mut out);
    out
}

fn key_files(dir: &Path, key: &str) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join(key))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pem"))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_wrong_password_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("keys");
    let right = open(&root, PASSWORD).await;
    let k = name("k");
    right
        .generate_key(&k, &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap();
    let before = snapshot(&root);
    assert!(
        before.keys().any(|p| p.ends_with("store.json")),
        "creating the first key records the password verifier"
    );

    let typo = open(&root, "correct horse battery stapel").await;
    let results = [
        typo.rotate_key(&k).await.map(drop),
        typo.generate_key(&name("new"), &KeySpec::new(KeyAlgorithm::EcP256))
            .await
            .map(drop),
        typo.import_key(
            &name("imported"),
            KeyMaterial::Symmetric(SecretBytes::new(vec![1; 32])),
            &ImportSpec::new(),
        )
        .await
        .map(drop),
        typo.delete_key(&k).await,
        typo.sign_message(&KeyRef::from(&k), b"m").await.map(drop),
    ];
    for result in results {
        assert_eq!(
            result.map_err(|e| e.kind()),
            Err(ErrorKind::Unauthenticated)
        );
    }
    assert_eq!(
        snapshot(&root),
        before,
        "a wrong password changed the store"
    );

    // The right password still does everything.
    let info = right.rotate_key(&k).await.unwrap();
    assert_eq!(info.version, 2);
    right.sign_message(&KeyRef::from(&k), b"m").await.unwrap();
}

#[tokio::test]
async fn a_store_without_verifier_gets_one_on_first_unlock() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("keys");
    let k = name("k");
    open(&root, PASSWORD)
        .await
        .generate_key(&k, &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap();
    // A store as versions before the verifier wrote it.
    std::fs::remove_file(root.join("store.json")).unwrap();
    let before = snapshot(&root);

    let typo = open(&root, "typo").await;
    let e = typo.rotate_key(&k).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
    let e = typo
        .sign_message(&KeyRef::from(&k), b"m")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
    assert_eq!(
        snapshot(&root),
        before,
        "a wrong password changed the store"
    );

    open(&root, PASSWORD)
        .await
        .sign_message(&KeyRef::from(&k), b"m")
        .await
        .unwrap();
    assert!(root.join("store.json").exists(), "the unlock recorded it");
    let e = open(&root, "typo")
        .await
        .generate_key(&name("other"), &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
    assert!(!root.join("other").exists());
}

#[tokio::test]
async fn damage_is_integrity_never_a_wrong_password() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("keys");
    let backend = open(&root, PASSWORD).await;
    let k = name("k");
    backend
        .generate_key(&k, &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap();
    let file = key_files(&root, "k").remove(0);
    let original = std::fs::read_to_string(&file).unwrap();
    let body_start = original.find('\n').unwrap() + 1;
    let body_end = original.rfind("-----END").unwrap();
    let mut errors = 0;
    // Flip one character at a time across the whole file (headers included), each time into
    // another base64 character, and use the key from a fresh backend.
    for at in (0..original.len()).step_by(5) {
        let mut bytes = original.clone().into_bytes();
        let c = bytes[at];
        if c == b'\n' {
            continue;
        }
        bytes[at] = if c == b'A' { b'B' } else { b'A' };
        std::fs::write(&file, &bytes).unwrap();
        let fresh = open(&root, PASSWORD).await;
        match fresh.sign_message(&KeyRef::from(&k), b"m").await {
            Ok(_) => assert!(
                (body_start..body_end).contains(&at),
                "a flip at {at} outside the body was accepted"
            ),
            Err(e) => {
                errors += 1;
                assert_eq!(e.kind(), ErrorKind::Integrity, "flip at {at}: {e}");
            }
        }
    }
    assert!(errors > 20, "only {errors} flips were detected");
    std::fs::write(&file, &original).unwrap();
    open(&root, PASSWORD)
        .await
        .sign_message(&KeyRef::from(&k), b"m")
        .await
        .unwrap();
}

/// An encrypted PKCS#8 document whose KDF asks for `kdf`'s work, though it was encrypted with
/// cheap parameters: the kind of file a hostile party hands over. Decrypting it as declared
/// would take the declared work.
fn hostile(kdf: pkcs5::pbes2::Kdf) -> Vec<u8> {
    let der = format::symmetric_to_pkcs8(KeyAlgorithm::Aes256Gcm, &[7; 32]).unwrap();
    let cheap = format::encrypt_der(
        der.expose(),
        b"pw",
        Kdf::Scrypt {
            log_n: 10,
            r: 8,
            p: 1,
        },
    )
    .unwrap();
    let info = pkcs8::EncryptedPrivateKeyInfoRef::from_der(&cheap).unwrap();
    let pkcs5::EncryptionScheme::Pbes2(mut params) = info.encryption_algorithm.clone() else {
        panic!("PBES2 expected");
    };
    let salt = match &params.kdf {
        pkcs5::pbes2::Kdf::Scrypt(s) => s.salt,
        _ => panic!("scrypt expected"),
    };
    params.kdf = match kdf {
        pkcs5::pbes2::Kdf::Scrypt(mut s) => {
            s.salt = salt;
            pkcs5::pbes2::Kdf::Scrypt(s)
        }
        other => other,
    };
    pkcs8::EncryptedPrivateKeyInfoRef {
        encryption_algorithm: pkcs5::EncryptionScheme::Pbes2(params),
        encrypted_data: info.encrypted_data,
    }
    .to_der()
    .unwrap()
}

fn scrypt_kdf(log_n: u8, r: u32, p: u32) -> pkcs5::pbes2::Kdf {
    let params = scrypt::Params::new(log_n, r, p).unwrap();
    pkcs5::pbes2::Kdf::Scrypt(
        pkcs5::pbes2::ScryptParams::from_params_and_salt(params, &[1; 16]).unwrap(),
    )
}

#[tokio::test]
async fn hostile_kdf_parameters_are_refused_before_any_work() {
    // In the configuration: refused when the backend opens.
    let dir = tempfile::tempdir().unwrap();
    for kdf in [
        Kdf::Scrypt {
            log_n: 40,
            r: 8,
            p: 1,
        },
        Kdf::Scrypt {
            log_n: 63,
            r: 8,
            p: 1,
        },
        Kdf::Scrypt {
            log_n: 20,
            r: 8,
            p: 1,
        },
        Kdf::Scrypt {
            log_n: 14,
            r: 8,
            p: 1000,
        },
        Kdf::Scrypt {
            log_n: 14,
            r: 0,
            p: 1,
        },
        Kdf::Pbkdf2 { iterations: 0 },
        Kdf::Pbkdf2 { iterations: 999 },
        Kdf::Pbkdf2 {
            iterations: u32::MAX,
        },
    ] {
        let config = Config::new(dir.path().join("k"), SecretSource::value(PASSWORD)).with_kdf(kdf);
        let e = Pkcs8Backend::open(config).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{kdf:?}: {e}");
    }

    // In a file handed over for import: refused before the derivation runs (N = 2^24 with
    // r = 8 would need 16 GiB; 2^32 - 1 PBKDF2 iterations, hours).
    let backend = open(&dir.path().join("store"), PASSWORD).await;
    // pkcs5 refuses to build such parameters but decodes them.
    let mut huge = pkcs5::pbes2::Pbkdf2Params::hmac_sha256(1000, &[1; 16]).unwrap();
    huge.iteration_count = u32::MAX;
    let pbkdf2 = pkcs5::pbes2::Kdf::Pbkdf2(huge);
    for doc in [
        hostile(scrypt_kdf(24, 8, 1)),
        hostile(scrypt_kdf(30, 8, 1)),
        hostile(pbkdf2),
    ] {
        let e = backend
            .import_key(
                &name("hostile"),
                KeyMaterial::Pkcs8 {
                    data: SecretBytes::new(doc.clone()),
                    password: Some("pw".into()),
                },
                &ImportSpec::new(),
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(e.message().contains("limit"), "{e}");

        // Planted in the store as a key's file: the store's integrity failed.
        let k = name("planted");
        backend
            .generate_key(&k, &KeySpec::new(KeyAlgorithm::Aes256Gcm))
            .await
            .unwrap();
        let root = dir.path().join("store");
        std::fs::write(&key_files(&root, "planted")[0], &doc).unwrap();
        let fresh = open(&root, PASSWORD).await;
        let e = fresh
            .encrypt(&KeyRef::from(&k), b"x", b"")
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
        backend.delete_key(&k).await.unwrap();
    }
    // The cheap document itself imports: the refusals above are about the parameters.
    let ok = format::encrypt_der(
        format::symmetric_to_pkcs8(KeyAlgorithm::Aes256Gcm, &[7; 32])
            .unwrap()
            .expose(),
        b"pw",
        KDF,
    )
    .unwrap();
    backend
        .import_key(
            &name("fine"),
            KeyMaterial::Pkcs8 {
                data: SecretBytes::new(ok),
                password: Some("pw".into()),
            },
            &ImportSpec::new(),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_damaged_key_hides_no_other_and_can_be_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("keys");
    let backend = open(&root, PASSWORD).await;
    for k in ["a", "broken", "c"] {
        backend
            .generate_key(&name(k), &KeySpec::new(KeyAlgorithm::EcP256))
            .await
            .unwrap();
    }
    std::fs::write(root.join("broken/meta.json"), b"{ not json").unwrap();

    let fresh = open(&root, PASSWORD).await;
    let names: Vec<_> = fresh
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.name.to_string())
        .collect();
    assert_eq!(names, ["a", "c"]);
    let entries = fresh.list_entries().await.unwrap();
    assert_eq!(entries.len(), 3);
    match &entries[1] {
        KeyEntry::Damaged(d) => {
            assert_eq!(d.name.as_str(), "broken");
            assert_eq!(d.error.kind(), ErrorKind::Integrity);
        }
        KeyEntry::Healthy(i) => panic!("listed as healthy: {i:?}"),
    }
    let e = fresh
        .generate_key(&name("broken"), &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    fresh.delete_key(&name("broken")).await.unwrap();
    assert!(!root.join("broken").exists(), "its files went with it");
    fresh
        .generate_key(&name("broken"), &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap();
    assert_eq!(fresh.list_keys().await.unwrap().len(), 3);
}

#[tokio::test]
async fn a_version_at_the_end_of_the_range_is_refused_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("keys");
    let backend = open(&root, PASSWORD).await;
    let k = name("k");
    backend
        .generate_key(&k, &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap();
    let meta_path = root.join("k/meta.json");
    let meta = std::fs::read_to_string(&meta_path).unwrap();
    assert!(meta.contains("\"version\": 1,"), "{meta}");
    std::fs::write(
        &meta_path,
        meta.replace("\"version\": 1,", "\"version\": 4294967295,"),
    )
    .unwrap();
    let before = snapshot(&root);
    let fresh = open(&root, PASSWORD).await;
    let e = fresh.rotate_key(&k).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CapacityExceeded, "{e}");
    assert_eq!(snapshot(&root), before);
    // The key still signs with the version it has.
    let sig = fresh.sign_message(&KeyRef::from(&k), b"m").await.unwrap();
    assert_eq!(sig.key_version(), u32::MAX);

    // Versions out of order or naming files outside the key's directory are damage.
    for bad in [
        meta.replace("\"version\": 1,", "\"version\": 0,"),
        meta.replace("\"file\": \"v1-", "\"file\": \"../v1-"),
        meta.replace("\"file\": \"v1-", "\"file\": \"sub/v1-"),
    ] {
        std::fs::write(&meta_path, bad).unwrap();
        let e = open(&root, PASSWORD)
            .await
            .sign_message(&KeyRef::from(&k), b"m")
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
    }
}

#[tokio::test]
async fn a_cache_never_serves_what_another_process_changed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("keys");
    let (a, b) = (open(&root, PASSWORD).await, open(&root, PASSWORD).await);
    let k = name("k");
    a.generate_key(&k, &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap();
    a.sign_message(&KeyRef::from(&k), b"warm the cache")
        .await
        .unwrap();

    // Rotated elsewhere: the next signature is made by the new version.
    let rotated = b.rotate_key(&k).await.unwrap();
    let sig = a.sign_message(&KeyRef::from(&k), b"m").await.unwrap();
    assert_eq!(sig.key_version(), rotated.version);

    // Deleted and re-created elsewhere: the old key's material is never used again.
    b.delete_key(&k).await.unwrap();
    let e = a.sign_message(&KeyRef::from(&k), b"m").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let recreated = b
        .generate_key(&k, &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap();
    let sig = a.sign_message(&KeyRef::from(&k), b"m").await.unwrap();
    assert_eq!(sig.key_version(), 1);
    keychain_core::verify(
        recreated.public_key().unwrap(),
        keychain_core::SignInput::message(b"m"),
        sig.scheme(),
        sig.as_bytes(),
    )
    .unwrap();

    // The encrypt fast path too: after a rotation elsewhere it seals under the new version.
    let s = name("s");
    a.generate_key(&s, &KeySpec::new(KeyAlgorithm::Aes256Gcm))
        .await
        .unwrap();
    a.encrypt(&KeyRef::from(&s), b"x", b"").await.unwrap();
    b.rotate_key(&s).await.unwrap();
    let ct = a.encrypt(&KeyRef::from(&s), b"x", b"").await.unwrap();
    let version = keychain_crypto::AeadCiphertext::parse(&ct)
        .unwrap()
        .key_version;
    assert_eq!(version, 2);
    assert_eq!(b.decrypt_aead(&s, &ct, b"").await.unwrap().expose(), b"x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_rotations_keep_every_version() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("keys");
    let k = name("rot");
    open(&root, PASSWORD)
        .await
        .generate_key(&k, &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap();
    // One backend (and one FileStore) per task, as separate processes would have.
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let root = root.clone();
            let k = k.clone();
            tokio::spawn(async move {
                let backend = Arc::new(open(&root, PASSWORD).await);
                backend.rotate_key(&k).await.map(|i| i.version)
            })
        })
        .collect();
    let mut versions = Vec::new();
    for task in tasks {
        versions.push(task.await.unwrap().unwrap());
    }
    versions.sort_unstable();
    assert_eq!(
        versions,
        (2..=21).collect::<Vec<_>>(),
        "each rotation its own version"
    );
    let info = open(&root, PASSWORD)
        .await
        .key_info(&KeyRef::from(&k))
        .await
        .unwrap();
    assert_eq!(info.versions.len(), 21);
    assert_eq!(key_files(&root, "rot").len(), 21, "no orphaned key file");
}

#[tokio::test]
async fn orphans_of_a_killed_writer_are_removed_under_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("keys");
    let backend = open(&root, PASSWORD).await;
    let k = name("k");
    backend
        .generate_key(&k, &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap();
    // What a rotation killed between writing its key file and committing the metadata leaves.
    let orphan = root.join("k/v2-0123456789ab.pem");
    std::fs::copy(&key_files(&root, "k")[0], &orphan).unwrap();
    assert_eq!(backend.list_keys().await.unwrap()[0].versions.len(), 1);
    backend.rotate_key(&k).await.unwrap();
    assert!(!orphan.exists());
    assert_eq!(key_files(&root, "k").len(), 2);
    // And a killed creator's leftovers, with no metadata at all.
    std::fs::create_dir(root.join("half")).unwrap();
    std::fs::write(root.join("half/v1-0123456789ab.pem"), b"leftover").unwrap();
    assert_eq!(backend.list_keys().await.unwrap().len(), 1);
    backend
        .generate_key(&name("half"), &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap();
    assert_eq!(key_files(&root, "half").len(), 1);
}

#[tokio::test]
async fn a_damaged_or_hostile_verifier_is_integrity_and_can_be_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("keys");
    let k = name("k");
    open(&root, PASSWORD)
        .await
        .generate_key(&k, &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap();
    let record = root.join("store.json");
    let original = std::fs::read_to_string(&record).unwrap();
    assert!(original.contains("\"iterations\": 1000"), "{original}");
    for bad in [
        "{ damaged".to_owned(),
        original.replace("\"iterations\": 1000", "\"iterations\": 4294967295"),
        original.replace("\"format\": 1", "\"format\": 9"),
    ] {
        std::fs::write(&record, &bad).unwrap();
        let e = open(&root, PASSWORD)
            .await
            .rotate_key(&k)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Integrity, "{bad}: {e}");
    }
    // The way out the message names: remove it; the next unlock records a new one.
    std::fs::remove_file(&record).unwrap();
    let backend = open(&root, PASSWORD).await;
    backend.rotate_key(&k).await.unwrap();
    assert!(record.exists());
    let e = open(&root, "typo").await.rotate_key(&k).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated);
}

#[tokio::test]
async fn backends_sharing_a_memory_store_see_each_others_changes() {
    let store: Arc<dyn keychain_storage::BlobStore> =
        Arc::new(keychain_storage::MemoryStore::new());
    let backend = || {
        Pkcs8Backend::with_store(
            Arc::clone(&store),
            PASSWORD.into(),
            KDF,
            Arc::new(keychain_crypto::AwsLcProvider::new()),
        )
        .unwrap()
    };
    let (a, b) = (backend(), backend());
    let k = name("k");
    a.generate_key(&k, &KeySpec::new(KeyAlgorithm::Aes256Gcm))
        .await
        .unwrap();
    a.encrypt(&KeyRef::from(&k), b"x", b"").await.unwrap();
    // Writes to other keys move the store's generation without invalidating this one.
    b.generate_key(&name("other"), &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap();
    a.encrypt(&KeyRef::from(&k), b"x", b"").await.unwrap();
    b.rotate_key(&k).await.unwrap();
    let ct = a.encrypt(&KeyRef::from(&k), b"x", b"").await.unwrap();
    let version = keychain_crypto::AeadCiphertext::parse(&ct)
        .unwrap()
        .key_version;
    assert_eq!(version, 2, "the fast path noticed the rotation");
    b.delete_key(&k).await.unwrap();
    let e = a.encrypt(&KeyRef::from(&k), b"x", b"").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
}
