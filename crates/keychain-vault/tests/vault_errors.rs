//! Error mapping and Transit behaviour on the OpenBao dev server (the `vault` cell): missing
//! keys, refused tokens, a sealed server, an unreachable one, rotation and
//! `min_decryption_version`, signatures checked by Transit's own verify, token renewal, AppRole.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64ct::{Base64, Encoding as _};
use keychain_core::{
    Backend, BackendExt, ErrorKind, HashAlg, HealthStatus, KeyAlgorithm, KeyName, KeyRef, KeySpec,
    ProviderCode, SecretSource, SignInput, SignatureScheme,
};
use keychain_vault::{Auth, Config, VaultBackend};
use sha2::Digest as _;
use tempfile::TempDir;

#[tokio::test]
async fn missing_keys_are_not_found_and_encrypt_creates_nothing() {
    let Some(env) = common::env() else { return };
    let b = env.open().await;
    let name = env.name("missing");
    let key = KeyRef::from(&name);
    let e = b.key_info(&key).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert_eq!(e.key(), Some(&name));
    let digest = sha2::Sha256::digest(b"x");
    let e = b
        .sign(
            &key,
            SignInput::digest(HashAlg::Sha256, &digest),
            SignatureScheme::Ecdsa(HashAlg::Sha256),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert_eq!(
        b.delete_key(&name).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        b.rotate_key(&name).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    // Transit's encrypt would create a missing key on the fly ("upsert"); keychain must not.
    let e = b.encrypt(&key, b"data", b"").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let read = env.bao(&["read", &format!("transit/keys/{}", env.transit(&name))]);
    assert!(
        read.is_err(),
        "encrypt created Transit key {name}: {read:?}"
    );
    let e = b
        .decrypt_aead(&name, &[1, 0, 0, 0, 1, 9, 9, 9], b"")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

#[tokio::test]
async fn refused_tokens_are_permission_denied() {
    let Some(env) = common::env() else { return };
    let bad = VaultBackend::open(
        Config::new(&env.addr, SecretSource::value("not-a-token"))
            .with_key_prefix(common::prefix()),
    )
    .await
    .unwrap_err();
    assert_eq!(bad.kind(), ErrorKind::PermissionDenied, "{bad}");
    assert_eq!(bad.provider_code(), Some(&ProviderCode::Http(403)));
    assert!(!bad.to_string().contains("not-a-token"), "{bad}");
    assert!(!format!("{bad:?}").contains("not-a-token"), "{bad:?}");

    // A valid token without Transit rights: it opens (it may look itself up), then every
    // Transit call is refused.
    let weak = env.token("default", "10m");
    let b = VaultBackend::open(
        Config::new(&env.addr, SecretSource::value(&weak)).with_key_prefix(common::prefix()),
    )
    .await
    .unwrap();
    assert!(!format!("{b:?}").contains(&weak), "Debug shows the token");
    let name = env.name("denied");
    let e = b
        .generate_key(&name, &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    assert!(!e.retryable());
}

/// A second dev server of the test's own, so that sealing it disturbs no other test; with
/// `tls`, OpenBao's `-dev-tls` mode (a generated CA and server certificate in `dir`).
struct OwnServer {
    child: Child,
    addr: String,
    token: String,
    /// The generated CA certificate (TLS mode).
    ca: Option<PathBuf>,
    _dir: Option<TempDir>,
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl OwnServer {
    /// The `bao` CLI against this server (trusting its CA in TLS mode).
    fn bao(&self, bao: &str, args: &[&str]) -> Result<String, String> {
        let mut all: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        if let Some(ca) = &self.ca {
            all.insert(args.len().min(2), format!("-ca-cert={}", ca.display()));
        }
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        common::bao_at(bao, &self.addr, &self.token, &all, "")
    }
}

fn own_server(bao: &str, tls: bool) -> OwnServer {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let token = format!("own-{}", common::random_hex(8));
    let dir = tls.then(|| tempfile::tempdir().unwrap());
    let mut cmd = Command::new(bao);
    cmd.args(["server", "-dev-no-store-token"])
        .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
        .env("BAO_DEV_ROOT_TOKEN_ID", &token)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    match &dir {
        Some(d) => cmd
            .arg("-dev-tls")
            .arg(format!("-dev-tls-cert-dir={}", d.path().display())),
        None => cmd.arg("-dev"),
    };
    let child = cmd.spawn().expect("start a second bao dev server");
    let scheme = if tls { "https" } else { "http" };
    let server = OwnServer {
        child,
        addr: format!("{scheme}://127.0.0.1:{port}"),
        token,
        ca: dir.as_ref().map(|d| d.path().join("vault-ca.pem")),
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.bao(bao, &["secrets", "enable", "transit"]).is_err() {
        assert!(
            Instant::now() < deadline,
            "the second bao server did not start"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    server
}

#[tokio::test]
async fn a_sealed_server_is_unavailable_and_says_sealed() {
    let Some(env) = common::env() else { return };
    let server = own_server(&env.bao, false);
    let b = VaultBackend::open(Config::new(
        &server.addr,
        SecretSource::value(&server.token),
    ))
    .await
    .unwrap();
    let name = env.name("sealed");
    b.generate_key(&name, &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap();
    assert_eq!(b.health().await.unwrap().status, HealthStatus::Ok);
    common::bao_at(
        &env.bao,
        &server.addr,
        &server.token,
        &["operator", "seal"],
        "",
    )
    .unwrap();
    let e = b.key_info(&KeyRef::from(&name)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.retryable());
    assert!(e.to_string().contains("sealed"), "{e}");
    assert_eq!(e.provider_code(), Some(&ProviderCode::Http(503)));
    let health = b.health().await.unwrap();
    assert_eq!(health.status, HealthStatus::Unavailable);
    assert!(
        health
            .details
            .iter()
            .any(|(k, v)| k == "sealed" && v == "true")
    );
    // Opening against the sealed server works (the token is looked up later) and then fails
    // the same way on use.
    let late = VaultBackend::open(Config::new(
        &server.addr,
        SecretSource::value(&server.token),
    ))
    .await
    .unwrap();
    assert_eq!(
        late.list_keys().await.unwrap_err().kind(),
        ErrorKind::Unavailable
    );
}

#[tokio::test]
async fn an_unreachable_server_is_retryable_unavailable() {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let b = VaultBackend::open(
        Config::new(format!("http://127.0.0.1:{port}"), SecretSource::value("t"))
            .with_timeout_ms(2000),
    )
    .await
    .expect("a token backend opens while the server is down");
    let e = b.list_keys().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.retryable());
    assert_eq!(e.backend(), Some("vault"));
    // Logins need the server: an AppRole backend does not open.
    let e = VaultBackend::open(
        Config::new(format!("http://127.0.0.1:{port}"), SecretSource::value("t")).with_auth(
            Auth::AppRole {
                role_id: SecretSource::value("r"),
                secret_id: SecretSource::value("s"),
                mount: "approle".into(),
            },
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
}

#[tokio::test]
async fn rotation_keeps_old_ciphertexts_until_min_decryption_version() {
    let Some(env) = common::env() else { return };
    let b = env.open().await;
    let name = env.name("minver");
    b.generate_key(&name, &KeySpec::new(KeyAlgorithm::Aes256Gcm))
        .await
        .unwrap();
    let key = KeyRef::from(&name);
    let old = b.encrypt(&key, b"version one", b"aad").await.unwrap();
    let info = b.rotate_key(&name).await.unwrap();
    assert_eq!(info.version, 2);
    let new = b.encrypt(&key, b"version two", b"aad").await.unwrap();
    assert_eq!(&old[..5], &[1, 0, 0, 0, 1]);
    assert_eq!(&new[..5], &[1, 0, 0, 0, 2]);
    assert_eq!(
        b.decrypt_aead(&name, &old, b"aad").await.unwrap().expose(),
        b"version one"
    );
    // The same ciphertext in Transit's own form opens with the bao CLI.
    let text = keychain_vault::to_transit_ciphertext(&old).unwrap();
    let out = env
        .bao(&[
            "write",
            "-field=plaintext",
            &format!("transit/decrypt/{}", env.transit(&name)),
            &format!("ciphertext={text}"),
            &format!("associated_data={}", Base64::encode_string(b"aad")),
        ])
        .unwrap();
    assert_eq!(Base64::decode_vec(out.trim()).unwrap(), b"version one");

    env.bao(&[
        "write",
        &format!("transit/keys/{}/config", env.transit(&name)),
        "min_decryption_version=2",
    ])
    .unwrap();
    let e = b.decrypt_aead(&name, &old, b"aad").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("disallowed by policy"), "{e}");
    assert_eq!(
        b.decrypt_aead(&name, &new, b"aad").await.unwrap().expose(),
        b"version two"
    );
    let info = b.key_info(&key).await.unwrap();
    let versions: Vec<_> = info.versions.iter().map(|v| v.version).collect();
    assert_eq!(versions, [2]);
    assert_eq!(
        b.key_info(&KeyRef::versioned(name.clone(), 1))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    b.delete_key(&name).await.unwrap();
}

#[tokio::test]
async fn transit_verifies_keychain_signatures() {
    let Some(env) = common::env() else { return };
    let b = env.open().await;
    let message = b"signed through keychain, verified by Transit";
    for (alg, scheme, extra) in [
        (
            KeyAlgorithm::EcP256,
            SignatureScheme::Ecdsa(HashAlg::Sha256),
            &[
                "hash_algorithm=sha2-256",
                "prehashed=true",
                "marshaling_algorithm=asn1",
            ][..],
        ),
        (
            KeyAlgorithm::Rsa2048,
            SignatureScheme::RsaPss(HashAlg::Sha384),
            &[
                "hash_algorithm=sha2-384",
                "prehashed=true",
                "signature_algorithm=pss",
                "salt_length=hash",
            ][..],
        ),
        (
            KeyAlgorithm::Rsa2048,
            SignatureScheme::RsaPkcs1v15(HashAlg::Sha512),
            &[
                "hash_algorithm=sha2-512",
                "prehashed=true",
                "signature_algorithm=pkcs1v15",
            ][..],
        ),
        (KeyAlgorithm::Ed25519, SignatureScheme::Ed25519, &[][..]),
    ] {
        let name = env.name(alg.as_str());
        b.generate_key(&name, &KeySpec::new(alg)).await.unwrap();
        let input = match scheme.hash() {
            Some(h) => h.digest(message),
            None => message.to_vec(),
        };
        let sig = match scheme.hash() {
            Some(h) => b
                .sign(&KeyRef::from(&name), SignInput::digest(h, &input), scheme)
                .await
                .unwrap(),
            None => b
                .sign(&KeyRef::from(&name), SignInput::message(message), scheme)
                .await
                .unwrap(),
        };
        assert_eq!(sig.key_version(), 1);
        b.verify(&name, SignInput::message(message), &sig)
            .await
            .unwrap();
        let mut args = vec![
            "write".to_owned(),
            "-field=valid".to_owned(),
            format!("transit/verify/{}", env.transit(&name)),
            format!("input={}", Base64::encode_string(&input)),
            format!(
                "signature=vault:v1:{}",
                Base64::encode_string(sig.as_bytes())
            ),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let valid = env.bao(&args).unwrap();
        assert_eq!(valid.trim(), "true", "{scheme}: Transit says {valid}");
        // And a signature over something else does not verify there.
        let mut tampered = sig.as_bytes().to_vec();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        let mut args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        args[4] = format!("signature=vault:v1:{}", Base64::encode_string(&tampered));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let verdict = env.bao(&args);
        assert!(
            verdict.as_deref().map(str::trim) != Ok("true"),
            "{scheme}: a tampered signature verified in Transit"
        );
        b.delete_key(&name).await.unwrap();
    }
}

#[tokio::test]
async fn short_lived_tokens_are_renewed() {
    let Some(env) = common::env() else { return };
    let policy = env.transit_policy();
    // A 4-second token: without renewal it is gone before the last call.
    let token = env.token(policy, "4s");
    let stale = env.token(policy, "4s");
    let b = VaultBackend::open(
        Config::new(&env.addr, SecretSource::value(&token)).with_key_prefix(common::prefix()),
    )
    .await
    .unwrap();
    let name = env.name("renew");
    b.generate_key(&name, &KeySpec::new(KeyAlgorithm::Ed25519))
        .await
        .unwrap();
    for _ in 0..4 {
        // Past two thirds of the TTL each time: every call here renews first.
        tokio::time::sleep(Duration::from_millis(2900)).await;
        b.sign(
            &KeyRef::from(&name),
            SignInput::message(b"m"),
            SignatureScheme::Ed25519,
        )
        .await
        .expect("sign with a renewed token");
    }
    // A token made alongside, left unrenewed, has expired by now: renewal is what kept the
    // backend's alive.
    let lookup = common::bao_at(&env.bao, &env.addr, &stale, &["token", "lookup"], "");
    assert!(
        lookup.is_err(),
        "an unrenewed 4s token still works: {lookup:?}"
    );
    b.delete_key(&name).await.unwrap();
}

/// A new AppRole role with the Transit policy and `settings` (`token_ttl=...`); its role id and
/// a fresh secret id.
fn approle(env: &common::Env, settings: &[&str]) -> (String, String) {
    let policy = env.transit_policy();
    // Idempotent across test runs on one server: enabling twice fails, which is fine.
    let _ = env.bao(&["auth", "enable", "approle"]);
    let role = format!("kt-{}", common::random_hex(4));
    let path = format!("auth/approle/role/{role}");
    let mut args = vec![
        "write".to_owned(),
        path.clone(),
        format!("token_policies={policy}"),
    ];
    args.extend(settings.iter().map(|s| (*s).to_owned()));
    env.bao(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .unwrap();
    let role_id = env
        .bao(&["read", "-field=role_id", &format!("{path}/role-id")])
        .unwrap();
    let secret_id = env
        .bao(&[
            "write",
            "-f",
            "-field=secret_id",
            &format!("{path}/secret-id"),
        ])
        .unwrap();
    (role_id.trim().to_owned(), secret_id.trim().to_owned())
}

#[tokio::test]
async fn approle_login_and_refused_secret_id() {
    let Some(env) = common::env() else { return };
    let (role_id, secret_id) = approle(&env, &["token_ttl=10m"]);
    let config = |secret: &str| {
        Config::new(&env.addr, SecretSource::value("unused"))
            .with_key_prefix(common::prefix())
            .with_auth(Auth::AppRole {
                role_id: SecretSource::value(role_id.as_str()),
                secret_id: SecretSource::value(secret),
                mount: "approle".into(),
            })
    };
    let b = VaultBackend::open(config(&secret_id)).await.unwrap();
    let name = env.name("approle");
    b.generate_key(&name, &KeySpec::new(KeyAlgorithm::EcP384))
        .await
        .unwrap();
    let sig = b
        .sign_message(&KeyRef::from(&name), b"approle")
        .await
        .unwrap();
    b.verify(&name, SignInput::message(b"approle"), &sig)
        .await
        .unwrap();
    b.delete_key(&name).await.unwrap();
    b.close().await.unwrap();

    let wrong = "00000000-0000-0000-0000-000000000000";
    let e = VaultBackend::open(config(wrong)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
    for shown in [e.to_string(), format!("{e:?}")] {
        assert!(!shown.contains(wrong), "the secret id sent shows: {shown}");
        assert!(
            !shown.contains(role_id.as_str()),
            "the role id shows: {shown}"
        );
    }
}

#[tokio::test]
async fn versions_signatures_and_random_limits() {
    let Some(env) = common::env() else { return };
    let b = env.open().await;
    let name = env.name("versions");
    b.generate_key(&name, &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap();
    let v1 = b.sign_message(&KeyRef::from(&name), b"m").await.unwrap();
    b.rotate_key(&name).await.unwrap();
    let v2 = b.sign_message(&KeyRef::from(&name), b"m").await.unwrap();
    let pinned = b
        .sign_message(&KeyRef::versioned(name.clone(), 1), b"m")
        .await
        .unwrap();
    assert_eq!(
        (v1.key_version(), v2.key_version(), pinned.key_version()),
        (1, 2, 1)
    );
    for sig in [&v1, &v2, &pinned] {
        b.verify(&name, SignInput::message(b"m"), sig)
            .await
            .unwrap();
    }
    let e = b
        .sign_message(&KeyRef::versioned(name.clone(), 3), b"m")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let info = b.key_info(&KeyRef::from(&name)).await.unwrap();
    assert_ne!(
        info.version_info(1).unwrap().public_key,
        info.version_info(2).unwrap().public_key
    );
    assert!(info.created().is_some());
    b.delete_key(&name).await.unwrap();

    let max = b.capabilities().max_random.unwrap();
    assert_eq!(max, 65_536);
    assert_eq!(b.random(max).await.unwrap().len(), max);
    assert_eq!(
        b.random(max + 1).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert!(b.random(0).await.unwrap().is_empty());
    b.close().await.unwrap();
    assert_eq!(
        b.random(8).await.unwrap_err().kind(),
        ErrorKind::Unavailable
    );
}

#[tokio::test]
async fn tls_with_the_servers_ca_and_without_it() {
    let Some(env) = common::env() else { return };
    let server = own_server(&env.bao, true);
    let config = || Config::new(&server.addr, SecretSource::value(&server.token));
    let mut trusted = config();
    trusted.ca_bundle = server.ca.clone();
    let b = VaultBackend::open(trusted).await.unwrap();
    let name = env.name("tls");
    b.generate_key(&name, &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap();
    let sig = b.sign_message(&KeyRef::from(&name), b"tls").await.unwrap();
    b.verify(&name, SignInput::message(b"tls"), &sig)
        .await
        .unwrap();

    // The dev CA is in no trust store: without it the token lookup at open is refused by TLS,
    // a configuration error (not retryable), named as such.
    let e = VaultBackend::open(config()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(
        !e.retryable(),
        "an untrusted certificate is configuration, not a blip: {e}"
    );
    assert!(e.to_string().contains("not trusted"), "{e}");
    assert!(!e.to_string().contains("refused"), "{e}");

    let mut insecure = config();
    insecure.danger_accept_invalid_certs = true;
    let i = VaultBackend::open(insecure).await.unwrap();
    assert_eq!(i.key_info(&KeyRef::from(&name)).await.unwrap().version, 1);

    let mut missing = config();
    missing.ca_bundle = Some("/nonexistent/ca.pem".into());
    let e = VaultBackend::open(missing).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

#[tokio::test]
async fn namespaces_keep_keys_apart() {
    let Some(env) = common::env() else { return };
    let ns = format!("kt-ns-{}", common::random_hex(4));
    env.bao(&["namespace", "create", &ns]).unwrap();
    env.bao(&["secrets", "enable", &format!("-namespace={ns}"), "transit"])
        .unwrap();
    let b = VaultBackend::open(env.config().with_namespace(&ns))
        .await
        .unwrap();
    let name = env.name("ns");
    b.generate_key(&name, &KeySpec::new(KeyAlgorithm::Aes128Gcm))
        .await
        .unwrap();
    let path = format!("transit/keys/{}", env.transit(&name));
    assert!(
        env.bao(&["read", &format!("-namespace={ns}"), &path])
            .is_ok()
    );
    assert!(
        env.bao(&["read", &path]).is_err(),
        "the key is in the root namespace too"
    );
    let root = env.open().await;
    assert_eq!(
        root.key_info(&KeyRef::from(&name))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    let ct = b.encrypt(&KeyRef::from(&name), b"ns", b"").await.unwrap();
    assert_eq!(
        b.decrypt_aead(&name, &ct, b"").await.unwrap().expose(),
        b"ns"
    );
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    // Accepts connections and reads, never writes.
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let b = VaultBackend::open(
        Config::new(format!("http://127.0.0.1:{port}"), SecretSource::value("t"))
            .with_timeout_ms(300),
    )
    .await
    .unwrap();
    let e = b.list_keys().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(e.retryable());
}

#[tokio::test]
async fn encrypt_never_recreates_a_key_deleted_behind_the_cache() {
    let Some(env) = common::env() else { return };
    // A mount of the test's own with Transit's upsert off, as the README advises.
    let mount = format!("kt-strict-{}", common::random_hex(4));
    env.bao(&["secrets", "enable", &format!("-path={mount}"), "transit"])
        .unwrap();
    env.bao(&[
        "write",
        &format!("{mount}/config/keys"),
        "disable_upsert=true",
    ])
    .unwrap();
    let b = VaultBackend::open(env.config().with_mount(&mount))
        .await
        .unwrap();
    let health = b.health().await.unwrap();
    assert!(
        health
            .details
            .iter()
            .any(|(k, v)| k == "disable-upsert" && v == "true"),
        "{health:?}"
    );
    let name = env.name("upsert");
    let key = KeyRef::from(&name);
    b.generate_key(&name, &KeySpec::new(KeyAlgorithm::Aes256Gcm))
        .await
        .unwrap();
    b.encrypt(&key, b"warm", b"").await.unwrap(); // the cache knows the key now
    let path = format!("{mount}/keys/{}", env.transit(&name));
    env.bao(&["write", &format!("{path}/config"), "deletion_allowed=true"])
        .unwrap();
    env.bao(&["delete", &path]).unwrap();
    let e = b.encrypt(&key, b"after delete", b"").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(
        env.bao(&["read", &path]).is_err(),
        "encrypt created the key again"
    );
    // The stale entry is gone: the name can be generated again.
    b.generate_key(&name, &KeySpec::new(KeyAlgorithm::Aes256Gcm))
        .await
        .unwrap();
    // On the default mount (upsert on) health says so.
    let default = env.open().await;
    let health = default.health().await.unwrap();
    assert!(
        health
            .details
            .iter()
            .any(|(k, v)| k == "disable-upsert" && v == "false"),
        "{health:?}"
    );
}

#[tokio::test]
async fn names_ending_in_a_dash_and_nested_prefixes() {
    let Some(env) = common::env() else { return };
    let outer = VaultBackend::open(env.config()).await.unwrap();
    let inner_prefix = format!("{}inner.", common::prefix());
    let inner = VaultBackend::open(env.config().with_key_prefix(&inner_prefix))
        .await
        .unwrap();
    let tag = common::random_hex(3);
    let names: Vec<KeyName> = [format!("{tag}-"), format!("{tag}--"), format!("{tag}_-")]
        .into_iter()
        .map(|n| KeyName::new(n).unwrap())
        .collect();
    for n in &names {
        inner
            .generate_key(n, &KeySpec::new(KeyAlgorithm::Ed25519))
            .await
            .unwrap();
        let sig = inner
            .sign(
                &KeyRef::from(n),
                SignInput::message(b"dash"),
                SignatureScheme::Ed25519,
            )
            .await
            .unwrap();
        inner
            .verify(n, SignInput::message(b"dash"), &sig)
            .await
            .unwrap();
        let t = inner.transit_name(n);
        assert!(
            t.ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_'),
            "{t}"
        );
        assert!(
            env.bao(&["read", &format!("transit/keys/{t}")]).is_ok(),
            "{t}"
        );
    }
    let listed: Vec<KeyName> = inner
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.name)
        .collect();
    for n in &names {
        assert!(listed.contains(n), "{n} not listed: {listed:?}");
        // The outer prefix does not see (or delete) the inner one's keys.
        assert_eq!(
            outer.delete_key(n).await.unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }
    let outer_listed: Vec<KeyName> = outer
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.name)
        .collect();
    assert!(
        names.iter().all(|n| !outer_listed.contains(n)),
        "the outer prefix lists the inner keys: {outer_listed:?}"
    );
    for n in &names {
        inner.delete_key(n).await.unwrap();
    }
}

#[tokio::test]
async fn exportable_is_transit_s_own_flag() {
    let Some(env) = common::env() else { return };
    let b = env.open().await;
    for exportable in [true, false] {
        let name = env.name("exportable");
        let info = b
            .generate_key(
                &name,
                &KeySpec::new(KeyAlgorithm::EcP256).exportable(exportable),
            )
            .await
            .unwrap();
        assert_eq!(info.exportable, exportable);
        let transit = env.transit(&name);
        let flag = env
            .bao(&[
                "read",
                "-field=exportable",
                &format!("transit/keys/{transit}"),
            ])
            .unwrap();
        assert_eq!(flag.trim(), exportable.to_string());
        // Transit itself refuses to export a key created without the flag.
        let exported = env.bao(&["read", &format!("transit/export/signing-key/{transit}")]);
        assert_eq!(exported.is_ok(), exportable, "{exported:?}");
        b.delete_key(&name).await.unwrap();
    }
}

#[tokio::test]
async fn retired_versions_do_not_sign_and_oaep_follows_a_rotation_elsewhere() {
    let Some(env) = common::env() else { return };
    let a = env.open().await;
    let b = env.open().await;
    let name = env.name("retired");
    a.generate_key(&name, &KeySpec::new(KeyAlgorithm::Rsa2048))
        .await
        .unwrap();
    let v1_sig = a
        .sign_message(&KeyRef::versioned(name.clone(), 1), b"m")
        .await
        .unwrap();
    assert_eq!(v1_sig.key_version(), 1);
    // Another client rotates; a ciphertext for the new public key decrypts without a version.
    let info = b.rotate_key(&name).await.unwrap();
    let public = info.public_key().unwrap().to_rsa().unwrap();
    let mut rng = getrandom::rand_core::UnwrapErr(getrandom::SysRng);
    let ct = public
        .encrypt(&mut rng, rsa::Oaep::<sha2::Sha256>::new(), b"for version 2")
        .unwrap();
    let plain = a
        .decrypt(
            &KeyRef::from(&name),
            &ct,
            keychain_core::RsaPadding::Oaep(HashAlg::Sha256),
        )
        .await
        .unwrap();
    assert_eq!(plain.expose(), b"for version 2");
    // Version 1 retired: it neither signs nor shows up.
    env.bao(&[
        "write",
        &format!("transit/keys/{}/config", env.transit(&name)),
        "min_decryption_version=2",
    ])
    .unwrap();
    let e = b
        .sign_message(&KeyRef::versioned(name.clone(), 1), b"m")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    a.delete_key(&name).await.unwrap();
}

#[tokio::test]
async fn a_wrong_mount_is_a_configuration_error() {
    let Some(env) = common::env() else { return };
    let b = VaultBackend::open(env.config().with_mount("no-such-mount"))
        .await
        .unwrap();
    let e = b.list_keys().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("mount"), "{e}");
    let e = b
        .generate_key(&env.name("nomount"), &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert_eq!(b.health().await.unwrap().status, HealthStatus::Degraded);
}

#[tokio::test]
async fn approle_logs_in_again_past_the_token_max_ttl() {
    let Some(env) = common::env() else { return };
    // Tokens live 4 s and can be renewed to 8 s at most: a backend that only renewed would
    // be refused after 8 s.
    let (role_id, secret_id) = approle(&env, &["token_ttl=4s", "token_max_ttl=8s"]);
    let b = VaultBackend::open(
        Config::new(&env.addr, SecretSource::value("unused"))
            .with_key_prefix(common::prefix())
            .with_auth(Auth::AppRole {
                role_id: SecretSource::value(role_id.as_str()),
                secret_id: SecretSource::value(secret_id.as_str()),
                mount: "approle".into(),
            }),
    )
    .await
    .unwrap();
    let name = env.name("relogin");
    b.generate_key(&name, &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap();
    let start = Instant::now();
    let mut signed = 0u32;
    while start.elapsed() < Duration::from_secs(20) {
        let sig = b
            .sign_message(&KeyRef::from(&name), b"past max ttl")
            .await
            .unwrap_or_else(|e| panic!("after {:?}: {e}", start.elapsed()));
        assert!(!sig.as_bytes().is_empty());
        signed += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Well past two max TTLs, every call worked: the backend logged in again.
    assert!(signed > 40, "{signed} signatures in 20 s");
    b.delete_key(&name).await.unwrap();
    b.close().await.unwrap();
}
