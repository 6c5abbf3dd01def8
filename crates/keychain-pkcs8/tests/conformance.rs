//! The conformance suite on the software backend, over both stores.

use std::sync::Arc;

use keychain_core::{Backend, SecretSource};
use keychain_pkcs8::{Config, Kdf, Pkcs8Backend};

/// Low KDF cost: the suite decrypts many freshly written keys.
const TEST_KDF: Kdf = Kdf::Pbkdf2 { iterations: 1000 };

async fn memory() -> Arc<dyn Backend> {
    let config = Config::in_memory(SecretSource::value("conformance")).with_kdf(TEST_KDF);
    Arc::new(
        Pkcs8Backend::open(config)
            .await
            .expect("open in-memory backend"),
    )
}

async fn files() -> Arc<dyn Backend> {
    // The directory lives as long as the test process; each check gets its own.
    let dir = tempfile::tempdir().expect("tempdir").keep();
    let config =
        Config::new(dir.join("keys"), SecretSource::value("conformance")).with_kdf(TEST_KDF);
    Arc::new(Pkcs8Backend::open(config).await.expect("open file backend"))
}

keychain_testkit::conformance!(memory_store, memory);
keychain_testkit::conformance!(file_store, files);
