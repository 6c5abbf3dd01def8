//! The software backend's rows of the workspace README's `Backends × capabilities` matrix agree,
//! column by column, with the capabilities each provider declares.

use keychain_core::{Backend, SecretSource};
use keychain_pkcs8::{Config, Kdf, Pkcs8Backend, ProviderKind};

const README: &str = include_str!("../../../README.md");

async fn declared(provider: ProviderKind) -> keychain_core::Capabilities {
    let config = Config::in_memory(SecretSource::value("matrix"))
        .with_kdf(Kdf::Pbkdf2 { iterations: 1000 })
        .with_provider(provider);
    let backend = Pkcs8Backend::open(config).await.expect("open in memory");
    backend.capabilities().clone()
}

fn agrees(row: &str, caps: &keychain_core::Capabilities) {
    if let Err(e) = keychain_testkit::matrix::check_row(README, row, caps) {
        panic!("{e}");
    }
}

#[cfg(feature = "aws-lc-rs")]
#[tokio::test]
async fn the_aws_lc_rs_row_is_what_the_backend_declares() {
    agrees(
        "`keychain-pkcs8` (aws-lc-rs)",
        &declared(ProviderKind::AwsLcRs).await,
    );
}

/// Built with `--features rustcrypto` (`cargo xtask test` runs it). Its RSA columns say
/// "opt-in only": declared with `rustcrypto-rsa-insecure`, not without.
#[cfg(feature = "rustcrypto")]
#[tokio::test]
async fn the_rustcrypto_row_is_what_the_backend_declares() {
    agrees(
        "`keychain-pkcs8` (rustcrypto)",
        &declared(ProviderKind::RustCrypto).await,
    );
}
