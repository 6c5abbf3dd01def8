//! Error mapping: KMS exceptions and transport failures become the documented kinds, with the
//! AWS error code kept. The transport and throttling tests need no KMS server (a closed port, a
//! tiny local HTTP server); the others run on the `aws` cell's server.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: failing loudly is the point"
)]

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use keychain_aws::{AwsBackend, Config};
use keychain_core::{
    Backend, ErrorKind, HashAlg, KeyAlgorithm, KeyRef, KeySpec, ProviderCode, SecretSource,
    SignInput, SignatureScheme,
};
use keychain_layers::{RetryPolicy, retry};

/// A config for a loopback endpoint with test credentials and no SDK retries, so every
/// failure reaches the caller.
fn local_config(port: u16) -> Config {
    Config::new("us-east-1")
        .with_endpoint(format!("http://127.0.0.1:{port}"))
        .with_static_credentials(
            SecretSource::value("AKIDTEST"),
            SecretSource::value("test-secret"),
            None,
        )
        .with_max_attempts(1)
        .with_timeouts(Some(2_000), Some(10_000))
}

/// What the fake KMS answers, one entry per request, in order.
#[derive(Clone, Copy)]
enum Answer {
    Throttle,
    Random16,
}

/// Serves `plan` (one request per connection, `Connection: close`) on 127.0.0.1 from a thread
/// and counts the requests; stops after the plan or after 30 seconds.
fn fake_kms(plan: Vec<Answer>) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&served);
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut plan = plan.into_iter();
        while Instant::now() < deadline {
            let (stream, _) = match listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                Err(_) => return,
            };
            let Some(answer) = plan.next() else { return };
            stream.set_nonblocking(false).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut reader = BufReader::new(stream);
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0u8; length];
            let _ = reader.read_exact(&mut body);
            count.fetch_add(1, Ordering::SeqCst);
            let (status, json) = match answer {
                Answer::Throttle => (
                    "400 Bad Request",
                    r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.to_owned(),
                ),
                Answer::Random16 => (
                    "200 OK",
                    r#"{"Plaintext":"AAECAwQFBgcICQoLDA0ODw=="}"#.to_owned(),
                ),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/x-amz-json-1.1\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{json}",
                json.len()
            );
            let mut stream = reader.into_inner();
            let _ = stream.write_all(response.as_bytes());
        }
    });
    (port, served)
}

#[tokio::test]
async fn aws_unreachable_endpoint_is_retryable_unavailable() {
    // A port that was just free: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kms = AwsBackend::open(local_config(port)).await.unwrap();
    let e = kms.random(8).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.retryable(), "{e}");
    assert!(std::error::Error::source(&e).is_some());
}

#[tokio::test]
async fn aws_throttling_is_retryable_rate_limited_with_its_code() {
    let (port, served) = fake_kms(vec![Answer::Throttle, Answer::Random16]);
    let kms = AwsBackend::open(local_config(port)).await.unwrap();
    let e = kms.random(16).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RateLimited, "{e}");
    assert!(e.retryable());
    assert_eq!(
        e.provider_code(),
        Some(&ProviderCode::Named("ThrottlingException".into()))
    );
    assert!(e.to_string().contains("Rate exceeded"), "{e}");
    // The same call again is answered.
    assert_eq!(kms.random(16).await.unwrap(), (0u8..16).collect::<Vec<_>>());
    assert_eq!(served.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn aws_throttling_is_retried_by_the_retry_layer() {
    let (port, served) = fake_kms(vec![Answer::Throttle, Answer::Random16]);
    let kms: Arc<dyn Backend> = Arc::new(AwsBackend::open(local_config(port)).await.unwrap());
    let policy = RetryPolicy::default()
        .with_max_attempts(3)
        .with_backoff(Duration::from_millis(10), Duration::from_millis(50));
    let kms = retry(kms, policy);
    assert_eq!(kms.random(16).await.unwrap().len(), 16);
    assert_eq!(
        served.load(Ordering::SeqCst),
        2,
        "one throttled attempt, one answered"
    );
}

#[tokio::test]
async fn aws_sdk_retries_throttling_when_configured_to() {
    let (port, served) = fake_kms(vec![Answer::Throttle, Answer::Random16]);
    let kms = AwsBackend::open(local_config(port).with_max_attempts(3))
        .await
        .unwrap();
    assert_eq!(kms.random(16).await.unwrap().len(), 16);
    assert_eq!(served.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn aws_unknown_key_is_not_found() {
    let Some(env) = common::env() else { return };
    let kms = env.open().await;
    let name = env.name("missing");
    let key = KeyRef::from(&name);
    let e = kms.key_info(&key).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(!e.retryable());
    let digest = [0u8; 32];
    let e = kms
        .sign(
            &key,
            SignInput::digest(HashAlg::Sha256, &digest),
            SignatureScheme::Ecdsa(HashAlg::Sha256),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert_eq!(
        kms.delete_key(&name).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        kms.rotate_key(&name).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        kms.encrypt(&key, b"x", b"").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn aws_alias_clash_is_already_exists() {
    let Some(env) = common::env() else { return };
    let kms = env.open().await;
    let name = env.name("clash");
    let spec = KeySpec::new(KeyAlgorithm::EcP256);
    let first = kms.generate_key(&name, &spec).await.unwrap();
    let e = kms.generate_key(&name, &spec).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    let after = kms.key_info(&KeyRef::from(&name)).await.unwrap();
    assert_eq!(after.public_key(), first.public_key());
    kms.delete_key(&name).await.unwrap();

    // An alias someone else made in the namespace, for a key keychain did not create.
    let taken = env.name("foreign");
    let foreign = kms
        .client()
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    kms.client()
        .create_alias()
        .alias_name(kms.alias_of(&taken))
        .target_key_id(&foreign)
        .send()
        .await
        .unwrap();
    let e = kms
        .generate_key(&taken, &KeySpec::new(KeyAlgorithm::Aes256Gcm))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    let aliases = kms
        .client()
        .list_aliases()
        .key_id(&foreign)
        .send()
        .await
        .unwrap();
    assert_eq!(aliases.aliases().len(), 1, "the foreign alias is untouched");
    kms.delete_key(&taken).await.unwrap();
}

#[tokio::test]
async fn aws_access_denied_is_permission_denied() {
    let Some(env) = common::env() else { return };
    let kms = env.open().await;
    let name = env.name("denied");
    let info = kms
        .generate_key(&name, &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap();
    assert_eq!(info.version, 1);
    let key_id = kms
        .client()
        .describe_key()
        .key_id(kms.alias_of(&name))
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    let deny = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":"*",
        "Action":"kms:DescribeKey","Resource":"*"}]}"#;
    kms.client()
        .put_key_policy()
        .key_id(&key_id)
        .policy_name("default")
        .policy(deny)
        .send()
        .await
        .unwrap();
    let e = kms.key_info(&KeyRef::from(&name)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    assert!(!e.retryable());
    assert_eq!(
        e.provider_code(),
        Some(&ProviderCode::Named("AccessDeniedException".into()))
    );
    let allow = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*",
        "Action":"kms:*","Resource":"*"}]}"#;
    kms.client()
        .put_key_policy()
        .key_id(&key_id)
        .policy_name("default")
        .policy(allow)
        .send()
        .await
        .unwrap();
    kms.delete_key(&name).await.unwrap();
}
