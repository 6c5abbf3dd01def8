//! A SmartCard-HSM backup moves a key between tokens (the `pkcs11` cell): keys made on the cell's
//! SoftHSM token are backed up as card blobs and restored into a second SoftHSM token that this
//! test creates for itself (and deletes); the copies sign for the original public key and open
//! the original's ciphertexts.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::io::Write as _;
use std::process::Command;

use keychain_core::{
    Backend, BackendExt as _, ImportSpec, KeyAlgorithm, KeyName, KeyRef, KeySpec, SecretSource,
    SignInput,
};
use keychain_sc_hsm::ScHsmBackend;
use keychain_sc_hsm::dkek::{Dkek, DkekShare};

fn random_hex(n: usize) -> String {
    let mut r = vec![0u8; n];
    getrandom::fill(&mut r).unwrap();
    r.iter().map(|b| format!("{b:02x}")).collect()
}

/// The second token, deleted when dropped.
struct Token(String);

impl Drop for Token {
    fn drop(&mut self) {
        let _ = Command::new("softhsm2-util")
            .args(["--delete-token", "--token", &self.0])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_move_keys_to_another_token() {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let (Some(module), Some(token), Some(pin)) = (
        var("KEYCHAIN_TEST_PKCS11_MODULE"),
        var("KEYCHAIN_TEST_PKCS11_TOKEN"),
        var("KEYCHAIN_TEST_PKCS11_PIN"),
    ) else {
        let _ = writeln!(std::io::stderr(), "skipped: pkcs11 not configured");
        return;
    };
    // Created before this process loads the module (the only test here), so SoftHSM sees it.
    let (label, pin_b) = (format!("kt-second-{}", random_hex(4)), random_hex(8));
    let out = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", &label])
        .args(["--so-pin", &random_hex(8), "--pin", &pin_b])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let second = Token(label);

    let a = ScHsmBackend::open(keychain_pkcs11::Config::new(
        &module,
        token,
        SecretSource::value(pin),
    ))
    .await
    .unwrap();
    let b = ScHsmBackend::open(keychain_pkcs11::Config::new(
        &module,
        &second.0,
        SecretSource::value(pin_b),
    ))
    .await
    .unwrap();
    let dkek = Dkek::combine(&[
        DkekShare::generate().unwrap(),
        DkekShare::generate().unwrap(),
    ])
    .unwrap();
    for algorithm in [
        KeyAlgorithm::EcP256,
        KeyAlgorithm::Rsa2048,
        KeyAlgorithm::Aes256Gcm,
    ] {
        let n = KeyName::new(format!("moved-{algorithm}-{}", random_hex(4))).unwrap();
        let info = a
            .generate_key(&n, &KeySpec::new(algorithm).exportable(true))
            .await
            .unwrap();
        let blob = a.backup_key(&KeyRef::from(&n), &dkek).await.unwrap();
        // The same name on the other token: nothing of the first token is involved any more.
        let restored = b
            .restore_key(&n, &blob, &dkek, &ImportSpec::new())
            .await
            .unwrap_or_else(|e| panic!("{algorithm}: {e}"));
        assert_eq!(restored.algorithm, algorithm);
        if algorithm.is_asymmetric() {
            assert_eq!(restored.public_key(), info.public_key());
            let sig = b.sign_message(&KeyRef::from(&n), b"moved").await.unwrap();
            keychain_core::verify(
                info.public_key().unwrap(),
                SignInput::message(b"moved"),
                sig.scheme(),
                sig.as_bytes(),
            )
            .unwrap();
        } else {
            let sealed = a
                .encrypt(&KeyRef::from(&n), b"secret", b"ctx")
                .await
                .unwrap();
            let opened = b.decrypt_aead(&n, &sealed, b"ctx").await.unwrap();
            assert_eq!(opened.expose(), b"secret");
        }
        a.delete_key(&n).await.unwrap();
        b.delete_key(&n).await.unwrap();
    }
    a.close().await.unwrap();
    b.close().await.unwrap();
}
