//! Each layer against a scripted backend that fails or stalls on demand.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failed unwrap is a failed test"
)]

mod scripted;

use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keychain_core::{
    Backend, ErrorKind, HashAlg, HealthStatus, ImportSpec, KeyAlgorithm, KeyMaterial, KeyName,
    KeyRef, KeySpec, Operation, RsaPadding, SecretBytes, SignInput, SignatureScheme, WrapFormat,
    WrappedKey, WrappingSpec,
};
use keychain_layers::{
    AuditConfig, CacheConfig, LayerSpec, RetryPolicy, TimeoutPolicy, apply_all, audit, cache,
    fallback, metrics, retry, timeout,
};
use scripted::Scripted;
use tokio::time::Instant;

const ECDSA: SignatureScheme = SignatureScheme::Ecdsa(HashAlg::Sha256);
const DIGEST: [u8; 32] = [0x4f; 32];

fn name(s: &str) -> KeyName {
    KeyName::new(s).unwrap()
}

fn key(s: &str) -> KeyRef {
    KeyRef::latest(name(s))
}

fn scripted(backend: &str) -> Arc<Scripted> {
    Arc::new(Scripted::new(backend))
}

async fn sign(backend: &dyn Backend, k: &str) -> keychain_core::Result<keychain_core::Signature> {
    backend
        .sign(&key(k), SignInput::digest(HashAlg::Sha256, &DIGEST), ECDSA)
        .await
}

fn fast_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy::default()
        .with_max_attempts(max_attempts)
        .with_backoff(Duration::from_millis(10), Duration::from_millis(40))
        .with_budget(Duration::from_secs(60))
}

// ---------------------------------------------------------------- retry

#[tokio::test(start_paused = true)]
async fn retry_stops_on_a_non_retryable_error() {
    let inner = scripted("hsm");
    inner.fail(Operation::Sign, 5, ErrorKind::NotFound, false);
    let b = retry(inner.clone(), fast_retry(5));
    let err = sign(&*b, "k").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(inner.calls(Operation::Sign), 1);
}

#[tokio::test(start_paused = true)]
async fn retry_retries_retryable_errors_up_to_max_attempts() {
    let inner = scripted("hsm");
    inner.fail(Operation::Sign, 10, ErrorKind::Unavailable, true);
    let b = retry(inner.clone(), fast_retry(3));
    let err = sign(&*b, "k").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.retryable());
    assert_eq!(inner.calls(Operation::Sign), 3);
}

#[tokio::test(start_paused = true)]
async fn retry_returns_the_first_success() {
    let inner = scripted("hsm");
    inner.fail(Operation::KeyInfo, 2, ErrorKind::RateLimited, true);
    let b = retry(inner.clone(), fast_retry(5));
    let info = b.key_info(&key("k")).await.unwrap();
    assert_eq!(info.name, name("k"));
    assert_eq!(inner.calls(Operation::KeyInfo), 3);
}

#[tokio::test(start_paused = true)]
async fn retry_never_retries_rejected_or_locked_credentials() {
    for kind in [ErrorKind::Unauthenticated, ErrorKind::Locked] {
        let inner = scripted("hsm");
        // Flagged retryable on purpose: the layer must still not try a wrong PIN twice.
        inner.fail(Operation::Sign, 5, kind, true);
        let b = retry(inner.clone(), fast_retry(5));
        assert_eq!(sign(&*b, "k").await.unwrap_err().kind(), kind);
        assert_eq!(inner.calls(Operation::Sign), 1, "{kind}");
    }
}

#[tokio::test(start_paused = true)]
async fn retry_does_not_start_a_wait_past_the_budget() {
    let inner = scripted("hsm");
    inner.fail(Operation::Sign, 100, ErrorKind::Timeout, true);
    let policy = RetryPolicy::default()
        .with_max_attempts(100)
        .with_backoff(Duration::from_secs(1), Duration::from_secs(1))
        .with_budget(Duration::from_millis(2500));
    let b = retry(inner.clone(), policy);
    let start = Instant::now();
    assert_eq!(sign(&*b, "k").await.unwrap_err().kind(), ErrorKind::Timeout);
    // Waits are 0.5–1 s (equal jitter): between 3 and 6 attempts fit in 2.5 s.
    let calls = inner.calls(Operation::Sign);
    assert!((3..=6).contains(&calls), "{calls} attempts");
    // The paused clock rounds each wait up to the next millisecond.
    assert!(
        start.elapsed() <= Duration::from_millis(2502),
        "{:?}",
        start.elapsed()
    );

    let inner = scripted("hsm");
    inner.fail(Operation::Sign, 100, ErrorKind::Timeout, true);
    let policy = RetryPolicy::default()
        .with_max_attempts(100)
        .with_backoff(Duration::from_secs(1), Duration::from_secs(1))
        .with_budget(Duration::from_millis(10));
    let b = retry(inner.clone(), policy);
    let start = Instant::now();
    assert!(sign(&*b, "k").await.is_err());
    assert_eq!(inner.calls(Operation::Sign), 1);
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn retry_leaves_mutations_alone_unless_asked() {
    let inner = scripted("hsm");
    inner.fail(Operation::GenerateKey, 1, ErrorKind::Unavailable, true);
    inner.fail(Operation::RotateKey, 1, ErrorKind::Unavailable, true);
    let b = retry(inner.clone(), fast_retry(3));
    let spec = KeySpec::new(KeyAlgorithm::EcP256);
    assert!(b.generate_key(&name("k"), &spec).await.is_err());
    assert!(b.rotate_key(&name("k")).await.is_err());
    assert_eq!(inner.calls(Operation::GenerateKey), 1);
    assert_eq!(inner.calls(Operation::RotateKey), 1);

    let inner = scripted("hsm");
    inner.fail(Operation::GenerateKey, 1, ErrorKind::Unavailable, true);
    inner.fail(Operation::DeleteKey, 1, ErrorKind::Unavailable, true);
    let b = retry(inner.clone(), fast_retry(3).with_retry_mutations(true));
    b.generate_key(&name("k"), &spec).await.unwrap();
    b.delete_key(&name("k")).await.unwrap();
    assert_eq!(inner.calls(Operation::GenerateKey), 2);
    assert_eq!(inner.calls(Operation::DeleteKey), 2);
}

#[tokio::test(start_paused = true)]
async fn retry_never_repeats_import_key_health_or_close() {
    let inner = scripted("hsm");
    inner.fail(Operation::ImportKey, 1, ErrorKind::Unavailable, true);
    inner.fail(Operation::Health, 1, ErrorKind::Unavailable, true);
    inner.fail(Operation::Close, 1, ErrorKind::Unavailable, true);
    let b = retry(inner.clone(), fast_retry(3).with_retry_mutations(true));
    let material = KeyMaterial::Symmetric(SecretBytes::from_slice(&[7; 32]));
    assert!(
        b.import_key(&name("k"), material, &ImportSpec::new())
            .await
            .is_err()
    );
    assert!(b.health().await.is_err());
    assert!(b.close().await.is_err());
    for op in [Operation::ImportKey, Operation::Health, Operation::Close] {
        assert_eq!(inner.calls(op), 1, "{op}");
    }
}

// ---------------------------------------------------------------- timeout

#[tokio::test(start_paused = true)]
async fn timeout_fires_with_kind_operation_and_key() {
    let inner = scripted("hsm");
    inner.delay(Operation::Sign, Duration::from_secs(60));
    let b = timeout(
        inner.clone(),
        TimeoutPolicy::uniform(Duration::from_millis(100)),
    );
    let start = Instant::now();
    let err = sign(&*b, "slow").await.unwrap_err();
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(100) && waited < Duration::from_millis(110),
        "{waited:?}"
    );
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(err.retryable());
    assert_eq!(err.operation(), Some(Operation::Sign));
    assert_eq!(err.key(), Some(&name("slow")));
    assert_eq!(err.backend(), Some("hsm"));
}

#[tokio::test(start_paused = true)]
async fn timeout_lets_fast_calls_through_and_gives_generate_its_own_deadline() {
    let inner = scripted("hsm");
    inner.delay(Operation::GenerateKey, Duration::from_secs(3));
    inner.delay(Operation::Random, Duration::from_millis(500));
    let policy =
        TimeoutPolicy::uniform(Duration::from_secs(1)).with_generate_key(Duration::from_secs(5));
    let b = timeout(inner.clone(), policy);
    let spec = KeySpec::new(KeyAlgorithm::EcP256);
    b.generate_key(&name("k"), &spec).await.unwrap();
    assert_eq!(b.random(4).await.unwrap().len(), 4);

    inner.delay(Operation::Close, Duration::from_secs(2));
    assert_eq!(b.close().await.unwrap_err().kind(), ErrorKind::Timeout);
}

#[tokio::test(start_paused = true)]
async fn retry_around_timeout_retries_a_stalled_attempt() {
    let inner = scripted("hsm");
    inner.delay(Operation::Sign, Duration::from_secs(60));
    let timed = timeout(
        inner.clone(),
        TimeoutPolicy::uniform(Duration::from_secs(1)),
    );
    let b = retry(timed, fast_retry(3));
    sign(&*b, "k").await.unwrap();
    assert_eq!(inner.calls(Operation::Sign), 2);
}

// ---------------------------------------------------------------- audit

/// Records every event of every target as `target level field=value ...`.
struct Capture {
    lines: Arc<Mutex<Vec<String>>>,
}

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        write!(self.0, " {}={value:?}", field.name()).unwrap();
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let meta = event.metadata();
        let mut fields = Fields(format!("{} {}", meta.target(), meta.level()));
        event.record(&mut fields);
        self.lines.lock().unwrap().push(fields.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// Every way a payload could show up in a log line.
fn renderings(bytes: &[u8]) -> Vec<String> {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut forms = vec![
        hex.clone(),
        hex.to_uppercase(),
        base64(bytes),
        format!("{bytes:?}").trim_end_matches(']').to_owned(),
        format!("{:?}", &bytes[..4])
            .trim_end_matches(']')
            .to_owned(),
        hex[..8].to_owned(),
    ];
    if let Ok(s) = std::str::from_utf8(bytes) {
        forms.push(s.to_owned());
    }
    forms
}

#[tokio::test]
async fn audit_records_who_what_and_outcome_but_never_a_payload() {
    const MESSAGE: &[u8] = b"sign this confidential message";
    const SEAL_ME: &[u8] = b"attack at dawn, plaintext";
    const AAD: &[u8] = b"aad bound context value";
    const PKCS8_PASSWORD: &str = "pkcs8-hunter2-password";
    const PKCS8_BODY: &[u8] = b"-----BEGIN ENCRYPTED PRIVATE KEY-----MIIFHDBOBgkqhkiG9w0BBQ0w";
    const EXPORT_PASSWORD: &str = "export-correct-horse-battery";
    const RAW_AES: [u8; 32] = [0x9b; 32];

    let lines = Arc::new(Mutex::new(Vec::new()));
    let _guard = tracing::subscriber::set_default(Capture {
        lines: lines.clone(),
    });

    let inner = scripted("pkcs11");
    inner.fail(Operation::ImportKey, 1, ErrorKind::Unauthenticated, false);
    let b = audit(inner.clone(), AuditConfig::named("prod-hsm"));

    sign(&*b, "signer").await.unwrap();
    b.sign(&key("signer"), SignInput::message(MESSAGE), ECDSA)
        .await
        .unwrap();
    b.encrypt(&key("sealer"), SEAL_ME, AAD).await.unwrap();
    b.decrypt_aead(&name("sealer"), &scripted::CIPHERTEXT, AAD)
        .await
        .unwrap();
    b.decrypt(
        &key("rsa"),
        &scripted::CIPHERTEXT,
        RsaPadding::Oaep(HashAlg::Sha256),
    )
    .await
    .unwrap();
    let material = KeyMaterial::Pkcs8 {
        data: SecretBytes::from_slice(PKCS8_BODY),
        password: Some(PKCS8_PASSWORD.into()),
    };
    let err = b
        .import_key(&name("imported"), material, &ImportSpec::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated);
    let material = KeyMaterial::Symmetric(SecretBytes::from_slice(&RAW_AES));
    b.import_key(&name("aes"), material, &ImportSpec::new())
        .await
        .unwrap();
    let password = WrappingSpec::Password(EXPORT_PASSWORD.into());
    let wrapped = b
        .export_wrapped(&KeyRef::versioned(name("signer"), 1), &password)
        .await
        .unwrap();
    b.import_wrapped(&name("copy"), &wrapped, &password, &ImportSpec::new())
        .await
        .unwrap();
    let wrapped = WrappedKey::new(WrapFormat::RsaOaep, KeyAlgorithm::EcP256, RAW_AES.to_vec());
    b.import_wrapped(&name("copy2"), &wrapped, &password, &ImportSpec::new())
        .await
        .unwrap();
    b.random(16).await.unwrap();
    b.list_keys().await.unwrap();

    let lines = lines.lock().unwrap().clone();
    let audit_lines: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("keychain::audit "))
        .collect();
    assert_eq!(audit_lines.len(), 12, "{lines:#?}");

    let first = audit_lines[0];
    for field in [
        "backend=\"prod-hsm\"",
        "operation=\"sign\"",
        "key=\"signer\"",
        "outcome=\"ok\"",
        "latency_us=",
    ] {
        assert!(first.contains(field), "{field} missing in {first}");
    }
    assert!(first.starts_with("keychain::audit INFO"), "{first}");
    let failed = audit_lines[5];
    for field in [
        "operation=\"import_key\"",
        "key=\"imported\"",
        "outcome=\"error\"",
        "error_kind=\"unauthenticated\"",
    ] {
        assert!(failed.contains(field), "{field} missing in {failed}");
    }
    assert!(failed.starts_with("keychain::audit WARN"), "{failed}");
    assert!(audit_lines[7].contains("version=1"), "{}", audit_lines[7]);
    assert!(!audit_lines[10].contains("key="), "{}", audit_lines[10]);

    let secrets: [&[u8]; 12] = [
        &DIGEST,
        MESSAGE,
        SEAL_ME,
        AAD,
        PKCS8_PASSWORD.as_bytes(),
        PKCS8_BODY,
        EXPORT_PASSWORD.as_bytes(),
        &RAW_AES,
        &scripted::SIGNATURE,
        &scripted::CIPHERTEXT,
        scripted::PLAINTEXT,
        &scripted::WRAPPED,
    ];
    let all = lines.join("\n");
    for secret in secrets {
        for form in renderings(secret) {
            assert!(
                !all.contains(&form),
                "audit output contains {form:?}:\n{all}"
            );
        }
    }
    // "scripted failure" is the scripted error's message: the audit records the kind only.
    assert!(!all.contains("scripted failure"));
}

// ---------------------------------------------------------------- metrics

#[tokio::test]
async fn metrics_count_calls_errors_and_latency() {
    let inner = scripted("hsm");
    inner.fail(Operation::Sign, 2, ErrorKind::NotFound, false);
    inner.delay(Operation::KeyInfo, Duration::from_millis(30));
    let (b, handle) = metrics(inner.clone());
    for _ in 0..5 {
        let _ = sign(&*b, "k").await;
    }
    b.key_info(&key("k")).await.unwrap();

    let snap = handle.snapshot();
    let signs = snap.get(Operation::Sign).unwrap();
    assert_eq!((signs.count, signs.errors), (5, 2));
    assert!(signs.p50 <= signs.p99 && signs.p99 <= signs.max);
    let info = snap.get(Operation::KeyInfo).unwrap();
    assert_eq!((info.count, info.errors), (1, 0));
    assert!(info.p50 >= Duration::from_millis(30), "{:?}", info.p50);
    assert!(info.max >= Duration::from_millis(30));
    assert!(snap.get(Operation::DeleteKey).is_none());
    assert_eq!((snap.total_count(), snap.total_errors()), (6, 2));
}

// ---------------------------------------------------------------- cache

#[tokio::test]
async fn cache_hits_skip_the_backend() {
    let inner = scripted("hsm");
    let b = cache(inner.clone(), CacheConfig::default());
    let first = b.key_info(&key("k")).await.unwrap();
    let second = b.key_info(&key("k")).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(inner.calls(Operation::KeyInfo), 1);
    // Another version and another name are other entries.
    b.key_info(&KeyRef::versioned(name("k"), 1)).await.unwrap();
    b.key_info(&key("other")).await.unwrap();
    assert_eq!(inner.calls(Operation::KeyInfo), 3);
}

#[tokio::test]
async fn cache_is_invalidated_by_rotate_delete_generate_and_import() {
    let inner = scripted("hsm");
    let b = cache(inner.clone(), CacheConfig::default());
    let k = name("k");
    let mut expected_calls = 0;
    for mutation in ["rotate", "delete", "generate", "import", "import_wrapped"] {
        b.key_info(&key("k")).await.unwrap();
        b.key_info(&KeyRef::versioned(k.clone(), 1)).await.unwrap();
        b.key_info(&key("untouched")).await.unwrap();
        expected_calls += if expected_calls == 0 { 3 } else { 2 };
        assert_eq!(inner.calls(Operation::KeyInfo), expected_calls);
        match mutation {
            "rotate" => drop(b.rotate_key(&k).await.unwrap()),
            "delete" => b.delete_key(&k).await.unwrap(),
            "generate" => drop(
                b.generate_key(&k, &KeySpec::new(KeyAlgorithm::EcP256))
                    .await
                    .unwrap(),
            ),
            "import" => {
                let material = KeyMaterial::Symmetric(SecretBytes::from_slice(&[1; 32]));
                drop(
                    b.import_key(&k, material, &ImportSpec::new())
                        .await
                        .unwrap(),
                );
            }
            _ => {
                let wrapped =
                    WrappedKey::new(WrapFormat::EncryptedPkcs8, KeyAlgorithm::EcP256, vec![]);
                let with = WrappingSpec::Password("pw".into());
                drop(
                    b.import_wrapped(&k, &wrapped, &with, &ImportSpec::new())
                        .await
                        .unwrap(),
                );
            }
        }
        // "untouched" is still cached; both entries of "k" were dropped.
        b.key_info(&key("untouched")).await.unwrap();
        assert_eq!(
            inner.calls(Operation::KeyInfo),
            expected_calls,
            "{mutation}"
        );
    }
    // After the rotation the fresh answer shows version 2.
    assert_eq!(b.key_info(&key("k")).await.unwrap().version, 2);
}

#[tokio::test]
async fn cache_is_invalidated_even_when_the_mutation_fails() {
    let inner = scripted("hsm");
    inner.fail(Operation::RotateKey, 1, ErrorKind::Timeout, true);
    let b = cache(inner.clone(), CacheConfig::default());
    b.key_info(&key("k")).await.unwrap();
    assert!(b.rotate_key(&name("k")).await.is_err());
    b.key_info(&key("k")).await.unwrap();
    assert_eq!(inner.calls(Operation::KeyInfo), 2);
}

#[tokio::test]
async fn cache_does_not_keep_errors() {
    let inner = scripted("hsm");
    inner.fail(Operation::KeyInfo, 1, ErrorKind::NotFound, false);
    let b = cache(inner.clone(), CacheConfig::default());
    assert!(b.key_info(&key("k")).await.is_err());
    b.key_info(&key("k")).await.unwrap();
    b.key_info(&key("k")).await.unwrap();
    assert_eq!(inner.calls(Operation::KeyInfo), 2);
}

#[tokio::test(start_paused = true)]
async fn cache_entries_expire_after_the_ttl() {
    let inner = scripted("hsm");
    let config = CacheConfig::default().with_ttl(Some(Duration::from_secs(10)));
    let b = cache(inner.clone(), config);
    b.key_info(&key("k")).await.unwrap();
    tokio::time::advance(Duration::from_secs(9)).await;
    b.key_info(&key("k")).await.unwrap();
    assert_eq!(inner.calls(Operation::KeyInfo), 1);
    tokio::time::advance(Duration::from_secs(2)).await;
    b.key_info(&key("k")).await.unwrap();
    assert_eq!(inner.calls(Operation::KeyInfo), 2);
}

#[tokio::test]
async fn cache_stays_within_max_entries() {
    let inner = scripted("hsm");
    let b = cache(inner.clone(), CacheConfig::default().with_max_entries(2));
    for k in ["a", "b", "c"] {
        b.key_info(&key(k)).await.unwrap();
    }
    // "a" was the oldest and made room for "c".
    b.key_info(&key("c")).await.unwrap();
    assert_eq!(inner.calls(Operation::KeyInfo), 3);
    b.key_info(&key("a")).await.unwrap();
    assert_eq!(inner.calls(Operation::KeyInfo), 4);
}

// ---------------------------------------------------------------- fallback

#[tokio::test]
async fn fallback_switches_on_unavailable_and_timeout() {
    for kind in [ErrorKind::Unavailable, ErrorKind::Timeout] {
        let primary = scripted("cloud");
        let secondary = scripted("local");
        primary.fail(Operation::Sign, 1, kind, true);
        let b = fallback(primary.clone(), secondary.clone());
        sign(&*b, "k").await.unwrap();
        assert_eq!(primary.calls(Operation::Sign), 1);
        assert_eq!(secondary.calls(Operation::Sign), 1, "{kind}");
        // The next call goes to the primary again.
        sign(&*b, "k").await.unwrap();
        assert_eq!(primary.calls(Operation::Sign), 2);
        assert_eq!(secondary.calls(Operation::Sign), 1);
    }
}

#[tokio::test]
async fn fallback_keeps_the_primarys_answer_for_other_errors() {
    for kind in [
        ErrorKind::NotFound,
        ErrorKind::InvalidInput,
        ErrorKind::Unauthenticated,
        ErrorKind::RateLimited,
    ] {
        let primary = scripted("cloud");
        let secondary = scripted("local");
        primary.fail(Operation::Sign, 1, kind, kind.default_retryable());
        let b = fallback(primary.clone(), secondary.clone());
        assert_eq!(sign(&*b, "k").await.unwrap_err().kind(), kind);
        assert_eq!(secondary.calls(Operation::Sign), 0, "{kind}");
    }
}

#[tokio::test]
async fn fallback_returns_the_primarys_error_when_both_fail() {
    let primary = scripted("cloud");
    let secondary = scripted("local");
    primary.fail(Operation::KeyInfo, 1, ErrorKind::Unavailable, true);
    secondary.fail(Operation::KeyInfo, 1, ErrorKind::NotFound, false);
    let b = fallback(primary.clone(), secondary.clone());
    let err = b.key_info(&key("k")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert_eq!(err.backend(), Some("cloud"));
    assert_eq!(secondary.calls(Operation::KeyInfo), 1);
}

#[tokio::test]
async fn fallback_sends_mutations_to_the_primary_only() {
    let primary = scripted("cloud");
    let secondary = scripted("local");
    primary.fail(Operation::GenerateKey, 1, ErrorKind::Unavailable, true);
    primary.fail(Operation::RotateKey, 1, ErrorKind::Unavailable, true);
    primary.fail(Operation::DeleteKey, 1, ErrorKind::Unavailable, true);
    let b = fallback(primary.clone(), secondary.clone());
    let spec = KeySpec::new(KeyAlgorithm::EcP256);
    assert!(b.generate_key(&name("k"), &spec).await.is_err());
    assert!(b.rotate_key(&name("k")).await.is_err());
    assert!(b.delete_key(&name("k")).await.is_err());
    for op in [
        Operation::GenerateKey,
        Operation::RotateKey,
        Operation::DeleteKey,
    ] {
        assert_eq!(secondary.calls(op), 0, "{op}");
    }
}

#[tokio::test]
async fn fallback_reports_primary_capabilities_degraded_health_and_closes_both() {
    let primary = scripted("cloud");
    let secondary = scripted("local");
    let b = fallback(primary.clone(), secondary.clone());
    assert_eq!(b.capabilities().backend, "cloud");

    assert_eq!(b.health().await.unwrap().status, HealthStatus::Ok);
    primary.fail(Operation::Health, 1, ErrorKind::Unavailable, true);
    let health = b.health().await.unwrap();
    assert_eq!(health.status, HealthStatus::Degraded);
    assert!(health.details.iter().any(|(k, _)| k == "fallback"));

    b.close().await.unwrap();
    assert_eq!(primary.calls(Operation::Close), 1);
    assert_eq!(secondary.calls(Operation::Close), 1);
}

// ---------------------------------------------------------------- configuration

fn specs(toml_text: &str) -> Result<Vec<LayerSpec>, toml::de::Error> {
    #[derive(serde::Deserialize)]
    struct Doc {
        layers: Vec<LayerSpec>,
    }
    toml::from_str::<Doc>(toml_text).map(|d| d.layers)
}

#[test]
fn layer_specs_deserialize_from_toml_with_defaults() {
    let layers = specs(
        r#"
        [[layers]]
        type = "audit"
        [[layers]]
        type = "metrics"
        [[layers]]
        type = "cache"
        ttl-ms = 0
        [[layers]]
        type = "retry"
        max-attempts = 5
        budget-ms = 2000
        [[layers]]
        type = "timeout"
        operation-ms = 750
        "#,
    )
    .unwrap();
    let kinds: Vec<&str> = layers.iter().map(LayerSpec::kind).collect();
    assert_eq!(kinds, ["audit", "metrics", "cache", "retry", "timeout"]);
    assert_eq!(layers[0], LayerSpec::Audit(AuditConfig::default()));
    assert_eq!(
        layers[2],
        LayerSpec::Cache(CacheConfig::default().with_ttl(None))
    );
    let retry = RetryPolicy::default()
        .with_max_attempts(5)
        .with_budget(Duration::from_secs(2));
    assert_eq!(layers[3], LayerSpec::Retry(retry));
    let LayerSpec::Timeout(t) = &layers[4] else {
        panic!("{:?}", layers[4]);
    };
    assert_eq!(
        (t.operation_ms, t.generate_key_ms),
        (750, TimeoutPolicy::default().generate_key_ms)
    );

    assert!(specs("[[layers]]\ntype = \"retry\"\nmax-atempts = 3\n").is_err());
    assert!(specs("[[layers]]\ntype = \"fallback\"\n").is_err());
    assert!(specs("[[layers]]\nmax-attempts = 3\n").is_err());
}

#[tokio::test(start_paused = true)]
async fn apply_all_wraps_the_first_listed_outermost() {
    let inner = scripted("hsm");
    inner.fail(Operation::Sign, 2, ErrorKind::Unavailable, true);
    let layers = specs(
        "[[layers]]\ntype = \"metrics\"\n[[layers]]\ntype = \"retry\"\ninitial-backoff-ms = 1\n",
    )
    .unwrap();
    let stack = apply_all(&layers, inner.clone()).unwrap();
    sign(&*stack.backend, "k").await.unwrap();
    let snap = stack.metrics.unwrap().snapshot();
    // Metrics outside retry: one call, no error, although the backend was called 3 times.
    assert_eq!(snap.get(Operation::Sign).unwrap().count, 1);
    assert_eq!(snap.total_errors(), 0);
    assert_eq!(inner.calls(Operation::Sign), 3);

    let inner = scripted("hsm");
    inner.fail(Operation::Sign, 2, ErrorKind::Unavailable, true);
    let reversed: Vec<LayerSpec> = layers.into_iter().rev().collect();
    let stack = apply_all(&reversed, inner.clone()).unwrap();
    sign(&*stack.backend, "k").await.unwrap();
    let snap = stack.metrics.unwrap().snapshot();
    assert_eq!(snap.get(Operation::Sign).unwrap().count, 3);
    assert_eq!(snap.total_errors(), 2);
}

#[test]
fn apply_all_rejects_senseless_stacks() {
    let inner: Arc<dyn Backend> = scripted("hsm");
    for text in [
        "[[layers]]\ntype = \"metrics\"\n[[layers]]\ntype = \"metrics\"\n",
        "[[layers]]\ntype = \"retry\"\nmax-attempts = 0\n",
        "[[layers]]\ntype = \"timeout\"\noperation-ms = 0\n",
    ] {
        let err = apply_all(&specs(text).unwrap(), inner.clone()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{text}");
    }
    let stack = apply_all(&[], inner).unwrap();
    assert!(stack.metrics.is_none());
}

// ---------------------------------------------------------------- every layer

type Wrap = fn(Arc<dyn Backend>) -> Arc<dyn Backend>;

#[tokio::test]
async fn every_layer_forwards_attest_key() {
    let layers: Vec<(&str, Wrap)> = vec![
        ("retry", |b| retry(b, fast_retry(2))),
        ("timeout", |b| {
            timeout(b, TimeoutPolicy::uniform(Duration::from_secs(5)))
        }),
        ("audit", |b| audit(b, AuditConfig::named("hsm"))),
        ("metrics", |b| metrics(b).0),
        ("cache", |b| cache(b, CacheConfig::default())),
        ("fallback", |b| fallback(b, scripted("spare"))),
    ];
    for (layer, wrap) in layers {
        let inner = scripted("hsm");
        let b = wrap(inner.clone());
        let err = b.attest_key(&key("k"), b"nonce").await.unwrap_err();
        // The scripted backend's own answer, not the trait's default.
        assert!(
            err.message().contains("no attestation key"),
            "{layer}: {err}"
        );
        assert_eq!(inner.calls(Operation::AttestKey), 1, "{layer}");
    }
}

#[tokio::test]
async fn every_layer_passes_damaged_keys_through() {
    let inner = || -> Arc<dyn Backend> { scripted("inner") };
    let layered: Vec<(&str, Arc<dyn Backend>)> = vec![
        ("audit", audit(inner(), AuditConfig::default())),
        ("cache", cache(inner(), CacheConfig::default())),
        ("fallback", fallback(inner(), inner())),
        ("metrics", metrics(inner()).0),
        ("retry", retry(inner(), fast_retry(2))),
        ("timeout", timeout(inner(), TimeoutPolicy::default())),
    ];
    for (layer, backend) in layered {
        let entries = backend.list_entries().await.unwrap();
        let names: Vec<&str> = entries.iter().map(|e| e.name().as_str()).collect();
        assert_eq!(names, ["listed", "damaged"], "{layer}");
        assert!(
            matches!(&entries[1], keychain_core::KeyEntry::Damaged(d) if d.error.kind() == ErrorKind::Integrity),
            "{layer}"
        );
    }
}
