//! PIN handling against a real token: a wrong PIN is tried once and never again.
//!
//! One test in its own process: PKCS#11 login state belongs to the process, so no other backend
//! may be logged in while it runs, and it changes the token's PIN for a moment.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use std::process::Command;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use keychain_core::{
    Backend, BackendExt as _, ErrorKind, HealthStatus, KeyAlgorithm, KeyRef, KeySpec, ProviderCode,
    SecretSource,
};
use keychain_pkcs11::{Config, Pkcs11Backend};

fn pkcs11_tool(env: &common::Env, args: &[&str]) -> (bool, String) {
    let out = Command::new("pkcs11-tool")
        .arg("--module")
        .arg(&env.module)
        .args(["--token-label", &env.token])
        .args(args)
        .output()
        .expect("run pkcs11-tool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The token's flags as `pkcs11-tool --list-token-slots` prints them (another process).
fn token_flags(env: &common::Env) -> String {
    let (_, text) = pkcs11_tool(env, &["--list-token-slots"]);
    text.lines()
        .find(|l| l.contains("token flags"))
        .unwrap_or_default()
        .to_owned()
}

/// Puts the PIN back even when an assertion fails, so later test binaries can log in.
struct RestorePin<'a> {
    env: &'a common::Env,
    current: String,
}

impl Drop for RestorePin<'_> {
    fn drop(&mut self) {
        if self.current != self.env.pin {
            let _ = pkcs11_tool(
                self.env,
                &[
                    "--login",
                    "--pin",
                    &self.current,
                    "--change-pin",
                    "--new-pin",
                    &self.env.pin,
                ],
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_pin_is_unauthenticated_and_tried_once() {
    let Some(env) = common::env() else { return };
    let wrong = format!("{}9", env.pin);

    // At open: Unauthenticated, never retryable, with the CKR code and the failing call.
    let e = Pkcs11Backend::open(Config::new(
        &env.module,
        &env.token,
        SecretSource::value(wrong.clone()),
    ))
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
    assert!(!e.retryable());
    assert_eq!(e.provider_code(), Some(&ProviderCode::Pkcs11(0xa0)));
    let shown = format!("{e} {e:?}");
    assert!(
        shown.contains("C_Login") && shown.contains("CKR_PIN_INCORRECT"),
        "{shown}"
    );
    assert!(
        !shown.contains(&wrong) && !shown.contains(&env.pin),
        "a PIN leaked: {shown}"
    );
    // The token counted the failure (SoftHSM keeps no counter, only the "count low" flag).
    assert!(
        token_flags(&env).contains("user PIN count low"),
        "{}",
        token_flags(&env)
    );

    // The right PIN logs in, which clears the flag; a failure by another process shows in health.
    let backend = env.open().await;
    assert!(!token_flags(&env).contains("user PIN count low"));
    assert_eq!(backend.health().await.unwrap().status, HealthStatus::Ok);
    let (ok, _) = pkcs11_tool(&env, &["--login", "--pin", &wrong, "--list-objects"]);
    assert!(!ok);
    let health = backend.health().await.unwrap();
    assert_eq!(health.status, HealthStatus::Degraded, "{health:?}");
    assert!(
        health
            .details
            .iter()
            .any(|(k, v)| k == "pin" && v == "count low"),
        "{health:?}"
    );

    // The PIN changes while the backend is open, and the process loses its login (module
    // re-initialized under it): the backend's next login fails once and is remembered.
    let name = env.name("pin");
    backend
        .generate_key(&name, &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap();
    let new_pin = format!("{}1", env.pin);
    let mut restore = RestorePin {
        env: &env,
        current: env.pin.clone(),
    };
    let (ok, text) = pkcs11_tool(
        &env,
        &[
            "--login",
            "--pin",
            &env.pin,
            "--change-pin",
            "--new-pin",
            &new_pin,
        ],
    );
    assert!(ok, "{text}");
    restore.current = new_pin.clone();
    let raw = Pkcs11::new(&env.module).unwrap();
    raw.clone().finalize().unwrap();
    raw.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .unwrap();
    let key = KeyRef::from(&name);
    let mut kinds = Vec::new();
    for _ in 0..4 {
        let e = backend.sign_message(&key, b"x").await.unwrap_err();
        kinds.push(e.kind());
        if e.kind() == ErrorKind::Unauthenticated {
            assert!(!e.retryable(), "{e}");
        }
    }
    // At most one Unavailable (the dead pooled session), then Unauthenticated every time.
    assert!(
        kinds.ends_with(&[ErrorKind::Unauthenticated; 3]),
        "{kinds:?}"
    );
    let e = backend.sign_message(&key, b"x").await.unwrap_err();
    assert!(e.to_string().contains("remembered"), "{e}");
    let health = backend.health().await.unwrap();
    assert_eq!(health.status, HealthStatus::Unavailable, "{health:?}");
    backend.close().await.unwrap();

    // With the PIN restored, a new backend works and the key is still there.
    drop(restore);
    let backend = env.open().await;
    backend.sign_message(&key, b"x").await.unwrap();
    backend.delete_key(&name).await.unwrap();
    backend.close().await.unwrap();
    drop(raw);
}
