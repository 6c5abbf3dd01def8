//! The `keychain-tpm2` row of the workspace README's `Backends × capabilities` matrix agrees,
//! column by column, with the capabilities the backend declares on swtpm (the `tpm2` cell of
//! `cargo xtask test`; the capabilities come from what the TPM reports at open).

mod common;

use keychain_core::Backend as _;

const README: &str = include_str!("../../../README.md");

#[tokio::test]
async fn the_matrix_row_is_what_the_backend_declares() {
    let Some(tcti) = common::tcti() else { return };
    let _turn = common::turn().await;
    let backend = common::open(&tcti, &common::key_dir()).await;
    let result =
        keychain_testkit::matrix::check_row(README, "`keychain-tpm2`", backend.capabilities());
    backend.close().await.expect("close");
    if let Err(e) = result {
        panic!("{e}");
    }
}
