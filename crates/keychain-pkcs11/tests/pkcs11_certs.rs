//! Certificates on the SoftHSM token (the `pkcs11` cell): chains saved, read, replaced, listed and
//! deleted through `CertStore`; the objects cross-checked with `pkcs11-tool`; the configured limit
//! and bad input refused without losing the stored chain. One test: the limit counts every
//! certificate on the token.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use common::{objects, run};

use std::path::Path;
use std::process::Command;

use keychain_core::{Backend, CertStore, ErrorKind, KeyAlgorithm, KeySpec};
use keychain_pkcs11::Pkcs11Backend;

/// A self-signed P-256 certificate for `cn`, DER, made by the openssl CLI.
fn certificate(dir: &Path, cn: &str) -> Vec<u8> {
    let out = dir.join(format!("{cn}.der"));
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-outform", "DER"])
        .arg("-subj")
        .arg(format!("/CN={cn}"))
        .arg("-keyout")
        .arg(dir.join(format!("{cn}.key")))
        .arg("-out")
        .arg(&out));
    std::fs::read(out).unwrap()
}

#[tokio::test]
async fn chains_on_the_token() {
    let Some(env) = common::env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let [leaf, intermediate, root, renewed] =
        ["leaf", "intermediate", "root", "renewed"].map(|cn| certificate(dir.path(), cn));
    let backend = env.open().await;
    let name = env.name("certified");
    backend
        .generate_key(&name, &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap();

    let before = backend.capacity().await.unwrap();
    let chain = vec![leaf.clone(), intermediate.clone(), root.clone()];
    backend.save_chain(&name, &chain).await.unwrap();
    assert_eq!(backend.chain(&name).await.unwrap(), chain);
    assert_eq!(backend.certificate(&name).await.unwrap(), leaf);
    assert!(backend.list_chains().await.unwrap().contains(&name));
    assert_eq!(backend.capacity().await.unwrap().stored, before.stored + 3);

    // pkcs11-tool sees three certificate objects under the key's name; the leaf has the key's
    // CKA_ID, so other PKCS#11 software pairs them.
    let listing = run(Command::new("pkcs11-tool")
        .arg("--module")
        .arg(&env.module)
        .args(["--token-label", &env.token, "--login", "--pin", &env.pin])
        .arg("--list-objects"));
    let blocks: Vec<String> = objects(&listing)
        .into_iter()
        .filter(|b| b.contains(&format!("label:      {name}\n")))
        .collect();
    let certs: Vec<&String> = blocks
        .iter()
        .filter(|b| b.starts_with("Certificate Object"))
        .collect();
    assert_eq!(certs.len(), 3, "{listing}");
    let id_of = |b: &str| {
        b.lines()
            .find_map(|l| l.trim().strip_prefix("ID:"))
            .map(|s| s.trim().to_owned())
            .unwrap()
    };
    let key_ids: Vec<String> = blocks
        .iter()
        .filter(|b| b.starts_with("Private Key Object"))
        .map(|b| id_of(b))
        .collect();
    let leaf_block = certs
        .iter()
        .find(|b| b.contains("CN=leaf"))
        .expect("the leaf certificate object");
    assert!(key_ids.contains(&id_of(leaf_block)), "{listing}");

    // Bad input changes nothing.
    for bad in [
        vec![],
        vec![b"\x30\x03abc".to_vec()],
        vec![renewed.clone(), b"junk".to_vec()],
    ] {
        let err = backend.save_chain(&name, &bad).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert_eq!(backend.chain(&name).await.unwrap(), chain);
    }

    // Over the configured limit: CapacityExceeded, and the stored chain stays.
    let stored = backend.capacity().await.unwrap().stored;
    let limited = Pkcs11Backend::open(env.config().with_max_certificates(stored + 1))
        .await
        .unwrap();
    let other = env.name("overflow");
    let err = limited
        .save_chain(&other, &[renewed.clone(), root.clone()])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CapacityExceeded, "{err}");
    assert_eq!(
        limited.chain(&other).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let cap = limited.capacity().await.unwrap();
    assert_eq!(cap.max_certificates, Some(stored + 1));
    assert!(cap.fits(1) && !cap.fits(2));
    // Replacing a chain counts only what it adds: three out, one in.
    limited
        .save_chain(&name, std::slice::from_ref(&renewed))
        .await
        .unwrap();
    assert_eq!(limited.chain(&name).await.unwrap(), [renewed]);
    assert_eq!(limited.capacity().await.unwrap().stored, stored - 2);
    // A certificate under a name with no key on this token.
    limited.save_certificate(&other, &root).await.unwrap();
    assert_eq!(limited.certificate(&other).await.unwrap(), root);
    limited.close().await.unwrap();

    backend.delete_chain(&name).await.unwrap();
    backend.delete_chain(&other).await.unwrap();
    for n in [&name, &other] {
        assert_eq!(
            backend.chain(n).await.unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            backend.delete_chain(n).await.unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }
    // Deleting certificates leaves the key, and the key's deletion is its own.
    backend.delete_key(&name).await.unwrap();
    backend.close().await.unwrap();
}
