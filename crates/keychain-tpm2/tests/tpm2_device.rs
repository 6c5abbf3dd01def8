//! The TPM backend against swtpm beyond the conformance suite: auth failures, object-slot
//! exhaustion, damaged blobs, unreachable TPMs, attestation, and cross-checks with tpm2-tools and
//! OpenSSL. Each test takes the turn (swtpm serves one connection at a time) and closes its
//! backends before it ends.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::process::Command;
use std::str::FromStr as _;

use keychain_core::{
    Backend, BackendExt, ErrorKind, HashAlg, KeyAlgorithm, KeyName, KeyRef, KeySpec, KeyUsage,
    RsaPadding, SecretSource, SignInput, SignatureScheme,
};
use keychain_tpm2::{Config, TpmBackend, verify_attestation};

fn name(s: &str) -> KeyName {
    KeyName::new(s).unwrap()
}

fn detail<'a>(health: &'a keychain_core::Health, key: &str) -> &'a str {
    health
        .details
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("health has no {key}: {:?}", health.details))
}

#[tokio::test]
async fn wrong_key_auth_is_unauthenticated_and_not_retried() {
    let Some(tcti) = common::tcti() else { return };
    let _turn = common::turn().await;
    let dir = common::key_dir();
    let right = common::config(&tcti, &dir).with_key_auth(SecretSource::value("right"));
    let tpm = TpmBackend::open(right).await.unwrap();
    let key = name("guarded");
    tpm.generate_key(&key, &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap();
    let aes = name("guarded_aes");
    tpm.generate_key(&aes, &KeySpec::new(KeyAlgorithm::Aes256Gcm))
        .await
        .unwrap();
    let sealed = tpm.encrypt(&KeyRef::from(&aes), b"x", b"").await.unwrap();
    tpm.close().await.unwrap();

    for parameter_encryption in [true, false] {
        let wrong = common::config(&tcti, &dir)
            .with_key_auth(SecretSource::value("wrong"))
            .with_parameter_encryption(parameter_encryption);
        let tpm = TpmBackend::open(wrong).await.unwrap();
        let err = tpm
            .sign_message(&KeyRef::from(&key), b"hello")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
        assert!(!err.retryable());
        let err = tpm.decrypt_aead(&aes, &sealed, b"").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
        // The key itself is untouched: its own auth still works, per key.
        tpm.close().await.unwrap();
    }
    let per_key = common::config(&tcti, &dir)
        .with_key_auth(SecretSource::value("wrong"))
        .with_key_auth_for("guarded", SecretSource::value("right"));
    let tpm = TpmBackend::open(per_key).await.unwrap();
    let sig = tpm
        .sign_message(&KeyRef::from(&key), b"hello")
        .await
        .unwrap();
    tpm.verify(&key, SignInput::message(b"hello"), &sig)
        .await
        .unwrap();
    tpm.close().await.unwrap();
}

/// Leaves `n` transient objects in the TPM the way a crashed process does: created, then
/// forgotten by the TSS without a flush.
fn leak_objects(tcti: &str, n: usize) {
    use tss_esapi::interface_types::resource_handles::Hierarchy;
    use tss_esapi::interface_types::session_handles::AuthSession;
    use tss_esapi::tcti_ldr::TctiNameConf;
    let mut ctx = tss_esapi::Context::new(TctiNameConf::from_str(tcti).unwrap()).unwrap();
    for _ in 0..n {
        let template = tss_esapi::utils::create_unrestricted_signing_ecc_public(
            tss_esapi::structures::EccScheme::EcDsa(tss_esapi::structures::HashScheme::new(
                tss_esapi::interface_types::algorithm::HashingAlgorithm::Sha256,
            )),
            tss_esapi::interface_types::ecc::EccCurve::NistP256,
        )
        .unwrap();
        let created = ctx
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.create_primary(Hierarchy::Null, template, None, None, None, None)
            })
            .unwrap();
        let mut handle: tss_esapi::handles::ObjectHandle = created.key_handle.into();
        // ESYS forgets the object (the TPM keeps it); tss-esapi then complains that a loaded
        // object should have been flushed, which is the point here.
        let _ = ctx.tr_close(&mut handle);
    }
}

#[tokio::test]
async fn survives_object_slot_exhaustion() {
    let Some(tcti) = common::tcti() else { return };
    let _turn = common::turn().await;
    let dir = common::key_dir();

    let tpm = common::open(&tcti, &dir).await;
    let key = name("slots");
    tpm.generate_key(&key, &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap();
    tpm.close().await.unwrap();
    // Without the flush of stale objects, leaked objects leave no slot: the pattern is real.
    leak_objects(&tcti, 3);
    let mut no_flush = common::config(&tcti, &dir);
    no_flush.flush_stale_objects = false;
    // Even reading the persistent SRK needs a free slot.
    let err = TpmBackend::open(no_flush).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CapacityExceeded, "{err}");
    assert!(err.retryable());

    // The default flushes them at open and works.
    let tpm = common::open(&tcti, &dir).await;
    assert_eq!(
        detail(&tpm.health().await.unwrap(), "stale-objects-flushed"),
        "3"
    );
    let sig = tpm.sign_message(&KeyRef::from(&key), b"m").await.unwrap();
    tpm.verify(&key, SignInput::message(b"m"), &sig)
        .await
        .unwrap();

    // Many keys through a few slots, each used several times: the cache evicts, never
    // exhausts. Every kind of key that loads (EC, RSA, sealed AES) takes part.
    let mut keys = Vec::new();
    for i in 0..6 {
        let algorithm = match i % 3 {
            0 => KeyAlgorithm::EcP256,
            1 => KeyAlgorithm::Aes128Gcm,
            _ => KeyAlgorithm::EcP384,
        };
        let k = name(&format!("cycle{i}"));
        tpm.generate_key(&k, &KeySpec::new(algorithm))
            .await
            .unwrap();
        keys.push((k, algorithm));
    }
    for round in 0..3 {
        for (k, algorithm) in &keys {
            let kr = KeyRef::from(k);
            if algorithm.is_symmetric() {
                let ct = tpm.encrypt(&kr, b"p", b"a").await.unwrap();
                assert_eq!(tpm.decrypt_aead(k, &ct, b"a").await.unwrap().expose(), b"p");
            } else {
                let sig = tpm.sign_message(&kr, b"m").await.unwrap();
                tpm.verify(k, SignInput::message(b"m"), &sig)
                    .await
                    .unwrap_or_else(|e| panic!("round {round}, {k}: {e}"));
            }
        }
        // Leaked objects appear mid-run too (another process crashing): the backend
        // flushes and retries.
        if round == 1 {
            tpm.close().await.unwrap();
            leak_objects(&tcti, 2);
            let reopened = common::open(&tcti, &dir).await;
            let (k, _) = &keys[0];
            reopened.sign_message(&KeyRef::from(k), b"m").await.unwrap();
            reopened.close().await.unwrap();
            return;
        }
    }
}

#[tokio::test]
async fn many_keys_stay_within_the_cache_bound() {
    let Some(tcti) = common::tcti() else { return };
    let _turn = common::turn().await;
    let dir = common::key_dir();
    let tpm = TpmBackend::open(common::config(&tcti, &dir).with_loaded_keys(2))
        .await
        .unwrap();
    for i in 0..5 {
        let k = name(&format!("bound{i}"));
        tpm.generate_key(&k, &KeySpec::new(KeyAlgorithm::EcP256))
            .await
            .unwrap();
        tpm.sign_message(&KeyRef::from(&k), b"m").await.unwrap();
        let loaded = detail(&tpm.health().await.unwrap(), "loaded-keys").to_owned();
        let n: usize = loaded.split('/').next().unwrap().parse().unwrap();
        assert!((1..=2).contains(&n), "{loaded}");
    }
    tpm.close().await.unwrap();
}

#[tokio::test]
async fn damaged_blobs_are_integrity_errors_and_lose_nothing_else() {
    let Some(tcti) = common::tcti() else { return };
    let _turn = common::turn().await;
    let dir = common::key_dir();
    let tpm = common::open(&tcti, &dir).await;
    let good = name("good");
    let bad = name("bad");
    let junk = name("junk");
    for k in [&good, &bad, &junk] {
        tpm.generate_key(k, &KeySpec::new(KeyAlgorithm::EcP256))
            .await
            .unwrap();
    }
    tpm.close().await.unwrap();

    // Flip a byte inside the encrypted private blob: the TPM's integrity check refuses it.
    let path = common::record_path(&dir, "bad");
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let private = record["versions"][0]["private"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut bytes = <base64ct::Base64 as base64ct::Encoding>::decode_vec(&private).unwrap();
    let i = bytes.len() - 5;
    bytes[i] ^= 0x40;
    record["versions"][0]["private"] =
        <base64ct::Base64 as base64ct::Encoding>::encode_string(&bytes).into();
    std::fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();
    // Truncate another record to garbage.
    std::fs::write(common::record_path(&dir, "junk"), b"{\"format\":").unwrap();

    let tpm = common::open(&tcti, &dir).await;
    let err = tpm
        .sign_message(&KeyRef::from(&bad), b"m")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    let err = tpm.key_info(&KeyRef::from(&junk)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    // The others still work, and listing skips the unreadable record.
    tpm.sign_message(&KeyRef::from(&good), b"m").await.unwrap();
    let names: Vec<String> = tpm
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.name.to_string())
        .collect();
    assert_eq!(names, ["bad", "good"]);
    tpm.close().await.unwrap();
}

#[tokio::test]
async fn unreachable_and_misconfigured_tpms() {
    let Some(tcti) = common::tcti() else { return };
    let _turn = common::turn().await;
    let dir = common::key_dir();
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = TpmBackend::open(Config::new(
        format!("swtpm:host=127.0.0.1,port={port}"),
        &dir,
    ))
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.retryable());

    let err = TpmBackend::open(Config::new("carrier-pigeon:x", &dir))
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::InvalidInput | ErrorKind::Unavailable),
        "{err}"
    );
    let long = common::config(&tcti, &dir).with_key_auth(SecretSource::value("x".repeat(33)));
    let err = TpmBackend::open(long).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(!err.to_string().contains("xxxx"), "{err}");
    let mut no_dir = Config::default();
    no_dir.tcti = tcti.clone();
    assert_eq!(
        TpmBackend::open(no_dir).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    // An SRK handle with nothing there and creation off.
    let mut absent = common::config(&tcti, &dir);
    absent.srk_handle = 0x8100_0777;
    absent.create_srk = false;
    assert_eq!(
        TpmBackend::open(absent).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );

    // Closed: every call is non-retryable Unavailable; close is idempotent.
    let tpm = common::open(&tcti, &dir).await;
    tpm.close().await.unwrap();
    tpm.close().await.unwrap();
    let err = tpm.random(8).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(!err.retryable());
}

#[tokio::test]
async fn keys_survive_reopen_with_a_transient_srk_and_without_parameter_encryption() {
    let Some(tcti) = common::tcti() else { return };
    let _turn = common::turn().await;
    let dir = common::key_dir();
    let tpm = common::open(&tcti, &dir).await;
    let signer = name("survivor");
    let rsa = name("survivor_rsa");
    let aes = name("survivor_aes");
    tpm.generate_key(&signer, &KeySpec::new(KeyAlgorithm::EcP384))
        .await
        .unwrap();
    tpm.generate_key(
        &rsa,
        &KeySpec::new(KeyAlgorithm::Rsa2048).with_usages(KeyUsage::Decrypt.into()),
    )
    .await
    .unwrap();
    tpm.generate_key(&aes, &KeySpec::new(KeyAlgorithm::Aes256Gcm))
        .await
        .unwrap();
    let sealed = tpm
        .encrypt(&KeyRef::from(&aes), b"kept", b"ctx")
        .await
        .unwrap();
    let rsa_public = tpm
        .key_info(&KeyRef::from(&rsa))
        .await
        .unwrap()
        .public_key()
        .unwrap()
        .to_rsa()
        .unwrap();
    tpm.close().await.unwrap();

    // The transient SRK is the same key (same template, same owner seed): blobs load under it.
    let config = common::config(&tcti, &dir)
        .with_transient_srk(true)
        .with_parameter_encryption(false);
    let tpm = TpmBackend::open(config).await.unwrap();
    assert_eq!(
        tpm.decrypt_aead(&aes, &sealed, b"ctx")
            .await
            .unwrap()
            .expose(),
        b"kept"
    );
    let sig = tpm
        .sign_message(&KeyRef::from(&signer), b"m")
        .await
        .unwrap();
    tpm.verify(&signer, SignInput::message(b"m"), &sig)
        .await
        .unwrap();
    let ct = rsa_public
        .encrypt(
            &mut getrandom::rand_core::UnwrapErr(getrandom::SysRng),
            rsa::Oaep::<sha2::Sha256>::new(),
            b"oaep",
        )
        .unwrap();
    assert_eq!(
        tpm.decrypt(&KeyRef::from(&rsa), &ct, RsaPadding::Oaep(HashAlg::Sha256))
            .await
            .unwrap()
            .expose(),
        b"oaep"
    );
    // A decrypt-only key refuses to sign; a signature scheme of another family is refused.
    let err = tpm
        .sign_message(&KeyRef::from(&rsa), b"m")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let digest = HashAlg::Sha256.digest(b"m");
    let err = tpm
        .sign(
            &KeyRef::from(&signer),
            SignInput::digest(HashAlg::Sha256, &digest[..31]),
            SignatureScheme::Ecdsa(HashAlg::Sha256),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    tpm.close().await.unwrap();
}

#[tokio::test]
async fn attestation_round_trip_and_tampering() {
    let Some(tcti) = common::tcti() else { return };
    let _turn = common::turn().await;
    let dir = common::key_dir();
    let tpm = common::open(&tcti, &dir).await;
    assert!(tpm.capabilities().attest);
    let key = name("attested");
    let other = name("other");
    for k in [&key, &other] {
        tpm.generate_key(k, &KeySpec::new(KeyAlgorithm::EcP256))
            .await
            .unwrap();
    }
    let public = tpm
        .key_info(&KeyRef::from(&key))
        .await
        .unwrap()
        .public_key()
        .cloned()
        .unwrap();
    let nonce = tpm.random(32).await.unwrap();
    let att = tpm.attest_key(&KeyRef::from(&key), &nonce).await.unwrap();
    assert_eq!(att.key_version, 1);
    verify_attestation(&att, &nonce, &public).unwrap();
    // The AK is derived from the endorsement seed: the same every time.
    let again = tpm.attest_key(&KeyRef::from(&key), &nonce).await.unwrap();
    assert_eq!(again.attestation_key, att.attestation_key);

    // Another nonce, another key, a flipped statement byte, a flipped signature: refused.
    let err = verify_attestation(&att, b"another nonce", &public).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    let other_public = tpm
        .key_info(&KeyRef::from(&other))
        .await
        .unwrap()
        .public_key()
        .cloned()
        .unwrap();
    let err = verify_attestation(&att, &nonce, &other_public).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    let mut tampered = att.clone();
    let last = tampered.statement.len() - 1;
    tampered.statement[last] ^= 1;
    let err = verify_attestation(&tampered, &nonce, &public).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidSignature, "{err}");
    let mut tampered = att.clone();
    let other_att = tpm.attest_key(&KeyRef::from(&other), &nonce).await.unwrap();
    tampered.key_description = other_att.key_description;
    let err = verify_attestation(&tampered, &nonce, &other_public).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    // Errors: too long a nonce, a sealed key.
    let err = tpm
        .attest_key(&KeyRef::from(&key), &[0; 65])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let aes = name("attested_aes");
    tpm.generate_key(&aes, &KeySpec::new(KeyAlgorithm::Aes128Gcm))
        .await
        .unwrap();
    assert_eq!(
        tpm.attest_key(&KeyRef::from(&aes), &nonce)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    tpm.close().await.unwrap();
}

#[tokio::test]
async fn tpm2_tools_and_openssl_agree() {
    let Some(tcti) = common::tcti() else { return };
    let _turn = common::turn().await;
    let dir = common::key_dir();
    let work = tempfile::tempdir().unwrap();
    let tpm = common::open(&tcti, &dir).await;
    let key = name("crosscheck");
    let info = tpm
        .generate_key(&key, &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap();
    let message = b"signed by the TPM through keychain";
    let sig = tpm
        .sign_message(&KeyRef::from(&key), message)
        .await
        .unwrap();
    tpm.close().await.unwrap();

    // Load the stored blobs with tpm2-tools under the same SRK and read the public key back.
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(common::record_path(&dir, "crosscheck")).unwrap())
            .unwrap();
    for (field, file) in [("public", "key.pub"), ("private", "key.priv")] {
        let b64 = record["versions"][0][field].as_str().unwrap();
        let bytes: Vec<u8> = <base64ct::Base64 as base64ct::Encoding>::decode_vec(b64).unwrap();
        std::fs::write(work.path().join(file), bytes).unwrap();
    }
    let tools = |args: &[&str]| {
        let mut cmd = Command::new(args[0]);
        cmd.args(&args[1..])
            .current_dir(work.path())
            .env("TPM2TOOLS_TCTI", &tcti);
        common::run(&mut cmd)
    };
    tools(&[
        "tpm2_load",
        "-C",
        "0x81000001",
        "-u",
        "key.pub",
        "-r",
        "key.priv",
        "-c",
        "key.ctx",
    ]);
    tools(&[
        "tpm2_readpublic",
        "-c",
        "key.ctx",
        "-f",
        "pem",
        "-o",
        "key.pem",
    ]);
    let pem = std::fs::read_to_string(work.path().join("key.pem")).unwrap();
    assert_eq!(pem.trim(), info.public_key().unwrap().to_pem().trim());

    std::fs::write(work.path().join("msg"), message).unwrap();
    std::fs::write(work.path().join("sig"), sig.as_bytes()).unwrap();
    let mut openssl = Command::new("openssl");
    openssl
        .args([
            "dgst",
            "-sha256",
            "-verify",
            "key.pem",
            "-signature",
            "sig",
            "msg",
        ])
        .current_dir(work.path());
    common::run(&mut openssl);
    // A tampered message does not verify.
    std::fs::write(work.path().join("msg"), b"something else").unwrap();
    let out = Command::new("openssl")
        .args([
            "dgst",
            "-sha256",
            "-verify",
            "key.pem",
            "-signature",
            "sig",
            "msg",
        ])
        .current_dir(work.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[tokio::test]
async fn changes_by_others_are_seen_within_the_record_ttl() {
    let Some(tcti) = common::tcti() else { return };
    let _turn = common::turn().await;
    let dir = common::key_dir();
    let tpm = common::open(&tcti, &dir).await;
    let key = name("shared");
    tpm.generate_key(&key, &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap();
    tpm.sign_message(&KeyRef::from(&key), b"m").await.unwrap();
    // Another process removes the key from the directory.
    std::fs::remove_file(common::record_path(&dir, "shared")).unwrap();
    tokio::time::sleep(keychain_tpm2::RECORD_TTL + std::time::Duration::from_millis(100)).await;
    let err = tpm
        .sign_message(&KeyRef::from(&key), b"m")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    // This process's own deletion is seen at once.
    let other = name("mine");
    tpm.generate_key(&other, &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap();
    tpm.sign_message(&KeyRef::from(&other), b"m").await.unwrap();
    tpm.delete_key(&other).await.unwrap();
    let err = tpm
        .sign_message(&KeyRef::from(&other), b"m")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    tpm.close().await.unwrap();
}
