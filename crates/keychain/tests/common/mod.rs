//! What the umbrella's tests over the software backend share.
#![allow(dead_code, reason = "each test file uses its own part")]

use std::sync::Arc;

use keychain::{Backend, KeyAlgorithm, KeyName, KeyRef, KeySpec};

/// An in-memory software backend with `password`.
pub(crate) async fn software(password: &str) -> Arc<dyn Backend> {
    let config = keychain::pkcs8::Config::in_memory(keychain::SecretSource::value(password));
    Arc::new(keychain::pkcs8::Pkcs8Backend::open(config).await.unwrap())
}

/// Generates `name` with `algorithm` and returns a reference to its newest version.
pub(crate) async fn key(backend: &Arc<dyn Backend>, name: &str, algorithm: KeyAlgorithm) -> KeyRef {
    let name = KeyName::new(name).unwrap();
    backend
        .generate_key(&name, &KeySpec::new(algorithm))
        .await
        .unwrap();
    KeyRef::latest(name)
}
