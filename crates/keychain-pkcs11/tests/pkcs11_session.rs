//! Shared module contexts and recovery from sessions destroyed behind the backend's back.
//!
//! One test in its own process: it finalizes the module under every backend of the process,
//! which would disturb tests running beside it.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use keychain_core::{
    Backend, BackendExt as _, ErrorKind, HealthStatus, KeyAlgorithm, KeyRef, KeySpec, SignInput,
};
use keychain_pkcs11::{Pkcs11Backend, shared_leases};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_context_and_destroyed_sessions() {
    let Some(env) = common::env() else { return };

    // Backends on one module share one context; the last to close finalizes it.
    assert_eq!(shared_leases(&env.module), 0);
    let a = env.open().await;
    assert_eq!(shared_leases(&env.module), 1);
    let b = env.open().await;
    assert_eq!(shared_leases(&env.module), 2);
    let name = env.name("shared");
    a.generate_key(&name, &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap();
    a.close().await.unwrap();
    assert_eq!(shared_leases(&env.module), 1);
    let sig = b
        .sign_message(&KeyRef::from(&name), b"after a closed")
        .await
        .unwrap();
    b.verify(&name, SignInput::message(b"after a closed"), &sig)
        .await
        .unwrap();
    b.close().await.unwrap();
    assert_eq!(shared_leases(&env.module), 0);
    // Finalized and initialized again for the next one.
    let c = env.open().await;
    assert_eq!(shared_leases(&env.module), 1);
    // A private context on an initialized module neither breaks nor finalizes the shared one.
    let private = Pkcs11Backend::open(env.config().with_shared_context(false))
        .await
        .unwrap();
    assert!(private.key_info(&KeyRef::from(&name)).await.is_ok());
    private.close().await.unwrap();
    drop(private);
    assert_eq!(shared_leases(&env.module), 1);
    c.sign_message(&KeyRef::from(&name), b"still initialized")
        .await
        .unwrap();

    // Every session and object handle of the process destroyed behind the pool's back, through
    // a second context on the same module: C_Finalize, then C_Initialize.
    let raw = Pkcs11::new(&env.module).unwrap();
    raw.clone().finalize().unwrap();
    raw.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .unwrap();
    // The pooled session is gone: at most one call says so, retryably...
    match c.sign_message(&KeyRef::from(&name), b"recovered").await {
        Ok(_) => {}
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
            assert!(e.retryable(), "{e}");
            assert!(e.to_string().contains("CKR_SESSION_HANDLE_INVALID"), "{e}");
        }
    }
    // ...then a new session logs in again, the key's handles are looked up again, and it works.
    let sig = c
        .sign_message(&KeyRef::from(&name), b"recovered")
        .await
        .unwrap();
    c.verify(&name, SignInput::message(b"recovered"), &sig)
        .await
        .unwrap();
    assert_eq!(c.health().await.unwrap().status, HealthStatus::Ok);
    c.delete_key(&name).await.unwrap();
    c.close().await.unwrap();
    assert_eq!(shared_leases(&env.module), 0);
    drop(raw);
}
