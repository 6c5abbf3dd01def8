//! `ScHsmBackend` on the SoftHSM token (the `pkcs11` cell): keys backed up as SmartCard-HSM
//! blobs under a DKEK assembled from two shares, restored into the token and into the software
//! backend, and the blobs' protections: another DKEK (both KCVs named), a flipped byte, keys that
//! are not exportable or that the card format cannot carry.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::io::Write as _;

use keychain_core::{
    Backend, BackendExt as _, ErrorKind, ImportSpec, KeyAlgorithm, KeyName, KeyRef, KeySpec,
    SecretSource, SignInput,
};
use keychain_sc_hsm::dkek::{self, Dkek, DkekShare};
use keychain_sc_hsm::{BackupPath, ScHsmBackend, restore_into};

fn settings() -> Option<keychain_pkcs11::Config> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    match (
        var("KEYCHAIN_TEST_PKCS11_MODULE"),
        var("KEYCHAIN_TEST_PKCS11_TOKEN"),
        var("KEYCHAIN_TEST_PKCS11_PIN"),
    ) {
        (Some(module), Some(token), Some(pin)) => Some(keychain_pkcs11::Config::new(
            module,
            token,
            SecretSource::value(pin),
        )),
        _ => {
            let _ = writeln!(std::io::stderr(), "skipped: pkcs11 not configured");
            None
        }
    }
}

fn name(what: &str) -> KeyName {
    let mut r = [0u8; 4];
    getrandom::fill(&mut r).unwrap();
    let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
    KeyName::new(format!("sc-{what}-{hex}")).unwrap()
}

fn dkek() -> Dkek {
    let shares = [
        DkekShare::generate().unwrap(),
        DkekShare::generate().unwrap(),
    ];
    Dkek::combine(&shares).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_restore_into_the_token_and_the_software_backend() {
    let Some(config) = settings() else { return };
    let hsm = ScHsmBackend::open(config).await.unwrap();
    assert_eq!(hsm.capabilities().backend, "sc-hsm");
    assert_eq!(hsm.backup_path(), BackupPath::Host);
    let software = keychain_pkcs8::Pkcs8Backend::open(keychain_pkcs8::Config::in_memory(
        SecretSource::value("software-store"),
    ))
    .await
    .unwrap();
    let dkek = dkek();

    for algorithm in [
        KeyAlgorithm::EcP256,
        KeyAlgorithm::EcP384,
        KeyAlgorithm::Rsa2048,
        KeyAlgorithm::Aes256Gcm,
    ] {
        let original = name("orig");
        let info = hsm
            .generate_key(&original, &KeySpec::new(algorithm).exportable(true))
            .await
            .unwrap();
        let blob = hsm
            .backup_key(&KeyRef::from(&original), &dkek)
            .await
            .unwrap_or_else(|e| panic!("{algorithm}: {e}"));
        assert_eq!(dkek::inspect(&blob).unwrap().kcv, dkek.kcv(), "{algorithm}");

        let in_token = name("restored");
        let in_software = name("migrated");
        let restored = hsm
            .restore_key(&in_token, &blob, &dkek, &ImportSpec::new())
            .await
            .unwrap_or_else(|e| panic!("{algorithm}: {e}"));
        let migrated = restore_into(&software, &in_software, &blob, &dkek, &ImportSpec::new())
            .await
            .unwrap_or_else(|e| panic!("{algorithm}: {e}"));
        assert_eq!(restored.algorithm, algorithm);
        assert_eq!(migrated.algorithm, algorithm);
        if algorithm.is_asymmetric() {
            // The same key: same public key, and signatures made by the copies verify with it.
            assert_eq!(restored.public_key(), info.public_key());
            assert_eq!(migrated.public_key(), info.public_key());
            for (backend, n) in [
                (&hsm as &dyn Backend, &in_token),
                (&software as &dyn Backend, &in_software),
            ] {
                let sig = backend
                    .sign_message(&KeyRef::from(n), b"restored")
                    .await
                    .unwrap();
                keychain_core::verify(
                    info.public_key().unwrap(),
                    SignInput::message(b"restored"),
                    sig.scheme(),
                    sig.as_bytes(),
                )
                .unwrap();
            }
        } else {
            // The same AES key: what the original sealed, both copies open.
            let sealed = hsm
                .encrypt(&KeyRef::from(&original), b"secret", b"ctx")
                .await
                .unwrap();
            assert_eq!(
                hsm.decrypt_aead(&in_token, &sealed, b"ctx")
                    .await
                    .unwrap()
                    .expose(),
                b"secret"
            );
            let sealed_by_software = software
                .encrypt(&KeyRef::from(&in_software), b"back", b"")
                .await
                .unwrap();
            // Different ciphertext formats per backend are fine; each round-trips with the key.
            assert_eq!(
                software
                    .decrypt_aead(&in_software, &sealed_by_software, b"")
                    .await
                    .unwrap()
                    .expose(),
                b"back"
            );
        }
        // Restoring onto a taken name changes nothing.
        let err = hsm
            .restore_key(&in_token, &blob, &dkek, &ImportSpec::new())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");

        // Another DKEK: refused as the wrong key, naming both check values.
        let other = self::dkek();
        let err = hsm
            .restore_key(&name("wrong-dkek"), &blob, &other, &ImportSpec::new())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
        let text = err.to_string().to_lowercase();
        assert!(
            text.contains(&dkek.kcv().to_string().to_lowercase())
                && text.contains(&other.kcv().to_string().to_lowercase()),
            "{err}"
        );
        // A flipped byte in the encrypted part: the MAC refuses it.
        let mut tampered = blob.clone();
        let i = tampered.len() - 20;
        tampered[i] ^= 0x01;
        let err = hsm
            .restore_key(&name("tampered"), &tampered, &dkek, &ImportSpec::new())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");

        for n in [&original, &in_token] {
            hsm.delete_key(n).await.unwrap();
        }
        software.delete_key(&in_software).await.unwrap();
    }

    // Keys that cannot be backed up.
    let locked = name("locked");
    hsm.generate_key(&locked, &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap();
    let err = hsm
        .backup_key(&KeyRef::from(&locked), &dkek)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    let ed = name("ed");
    hsm.generate_key(&ed, &KeySpec::new(KeyAlgorithm::Ed25519).exportable(true))
        .await
        .unwrap();
    let err = hsm.backup_key(&KeyRef::from(&ed), &dkek).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    let err = hsm
        .backup_key(&KeyRef::from(&name("missing")), &dkek)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    for n in [&locked, &ed] {
        hsm.delete_key(n).await.unwrap();
    }
    hsm.close().await.unwrap();
}
