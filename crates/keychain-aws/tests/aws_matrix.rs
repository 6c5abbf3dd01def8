//! The `keychain-aws` row of the workspace README's `Backends × capabilities` matrix agrees,
//! column by column, with the capabilities the backend declares on the KMS test server (the `aws`
//! cell of `cargo xtask test`).

mod common;

use keychain_core::Backend as _;

const README: &str = include_str!("../../../README.md");

#[tokio::test]
async fn the_matrix_row_is_what_the_backend_declares() {
    let Some(env) = common::env() else { return };
    let backend = env.open().await;
    let result =
        keychain_testkit::matrix::check_row(README, "`keychain-aws`", backend.capabilities());
    backend.close().await.expect("close");
    if let Err(e) = result {
        panic!("{e}");
    }
}
