//! The conformance suite over the software backend wrapped in every layer: the layers must not
//! change what a backend does.

use std::sync::Arc;

use keychain_core::{Backend, SecretSource};
use keychain_layers::{
    AuditConfig, CacheConfig, LayerSpec, RetryPolicy, TimeoutPolicy, apply_all, fallback,
};
use keychain_pkcs8::{Config, Kdf, Pkcs8Backend};

/// Low KDF cost: the suite decrypts many freshly written keys.
const TEST_KDF: Kdf = Kdf::Pbkdf2 { iterations: 1000 };

async fn memory(password: &str) -> Arc<dyn Backend> {
    let config = Config::in_memory(SecretSource::value(password)).with_kdf(TEST_KDF);
    Arc::new(
        Pkcs8Backend::open(config)
            .await
            .expect("open in-memory backend"),
    )
}

/// audit → metrics → cache → retry → timeout → pkcs8, as the primary of a fallback pair whose
/// secondary is a second in-memory store (never used: the primary is always reachable).
async fn layered() -> Arc<dyn Backend> {
    let specs = [
        LayerSpec::Audit(AuditConfig::named("conformance")),
        LayerSpec::Metrics,
        LayerSpec::Cache(CacheConfig::default()),
        LayerSpec::Retry(RetryPolicy::default()),
        LayerSpec::Timeout(TimeoutPolicy::default()),
    ];
    let stack = apply_all(&specs, memory("conformance").await).expect("valid layers");
    fallback(stack.backend, memory("secondary").await)
}

keychain_testkit::conformance!(all_layers, layered);
