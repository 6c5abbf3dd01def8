//! The conformance suite on the software backend, over both stores.

use std::sync::Arc;

use keychain_core::{Backend, SecretSource};
#[cfg(feature = "rustcrypto")]
use keychain_pkcs8::ProviderKind;
use keychain_pkcs8::{Config, Kdf, Pkcs8Backend};

/// Low KDF cost: the suite decrypts many freshly written keys.
const TEST_KDF: Kdf = Kdf::Pbkdf2 { iterations: 1000 };

/// A fresh directory per check, under cargo's scratch directory for integration tests (inside
/// `target/`), kept after the test so the backend can outlive the factory.
fn check_dir() -> std::path::PathBuf {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("tempdir")
        .keep()
}

async fn memory() -> Arc<dyn Backend> {
    let config = Config::in_memory(SecretSource::value("conformance")).with_kdf(TEST_KDF);
    Arc::new(
        Pkcs8Backend::open(config)
            .await
            .expect("open in-memory backend"),
    )
}

async fn files() -> Arc<dyn Backend> {
    let dir = check_dir();
    let config =
        Config::new(dir.join("keys"), SecretSource::value("conformance")).with_kdf(TEST_KDF);
    Arc::new(Pkcs8Backend::open(config).await.expect("open file backend"))
}

/// The pure-Rust provider (without its RSA opt-in, so RSA is declared unsupported).
/// Built with `--features rustcrypto` (`cargo xtask test` runs it).
#[cfg(feature = "rustcrypto")]
async fn rustcrypto_files() -> Arc<dyn Backend> {
    let dir = check_dir();
    let config = Config::new(dir.join("keys"), SecretSource::value("conformance"))
        .with_kdf(TEST_KDF)
        .with_provider(ProviderKind::RustCrypto);
    Arc::new(
        Pkcs8Backend::open(config)
            .await
            .expect("open rustcrypto backend"),
    )
}

#[cfg(feature = "rustcrypto")]
async fn rustcrypto_memory() -> Arc<dyn Backend> {
    let config = Config::in_memory(SecretSource::value("conformance"))
        .with_kdf(TEST_KDF)
        .with_provider(ProviderKind::RustCrypto);
    Arc::new(
        Pkcs8Backend::open(config)
            .await
            .expect("open rustcrypto backend"),
    )
}

keychain_testkit::conformance!(memory_store, memory);
keychain_testkit::conformance!(file_store, files);
#[cfg(feature = "rustcrypto")]
keychain_testkit::conformance!(rustcrypto_memory_store, rustcrypto_memory);
#[cfg(feature = "rustcrypto")]
keychain_testkit::conformance!(rustcrypto_file_store, rustcrypto_files);
