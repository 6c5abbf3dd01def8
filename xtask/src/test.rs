//! `cargo xtask test`: the workspace test run and the summary table per cell.

use crate::Result;
use crate::cells::{CELLS, Cell, cell_configured_with};
use crate::process::{cargo, run_captured};
use crate::report;
use crate::services::load_env_file;

/// The workspace test run (all targets, then doc-tests) and the per-cell summary.
/// Expects `setup` and `services start` to have run.
pub(crate) fn test() -> Result {
    let mut output = String::new();
    let mut all_ok = true;
    // One feature set for every run, so dependencies build once: the workspace plus the
    // feature-gated code the defaults leave out (the pure-Rust provider under the software
    // backend's conformance suite, the umbrella's optional backends). The RSA opt-in of that
    // provider changes only keychain-crypto and its dependents, so its unit tests run last,
    // filtered.
    const FEATURES: &str = "keychain-pkcs8/rustcrypto,keychain/pkcs11,keychain/sc-hsm,keychain/aws,keychain/vault,keychain/tpm2";
    const WITH_RSA_OPT_IN: &str = "keychain-pkcs8/rustcrypto,keychain/pkcs11,keychain/sc-hsm,keychain/aws,keychain/vault,keychain/tpm2,keychain-crypto/rustcrypto-rsa-insecure";
    let runs: [&[&str]; 3] = [
        &[
            "test",
            "--workspace",
            "--all-targets",
            "--features",
            FEATURES,
        ],
        &["test", "--workspace", "--doc", "--features", FEATURES],
        &[
            "test",
            "--workspace",
            "--lib",
            "--features",
            WITH_RSA_OPT_IN,
            "rust_crypto::",
        ],
    ];
    // The services' settings reach the test processes through their environment.
    let vars = load_env_file();
    for args in runs {
        let mut cmd = cargo(args);
        cmd.envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let (ok, text) = run_captured(cmd)?;
        all_ok &= ok;
        output.push_str(&text);
    }
    let parsed = report::parse_test_output(&output);
    let configured = |cell: &Cell| cell_configured_with(cell, &vars);
    let summary = report::summarize(&parsed, CELLS, &configured, all_ok);
    println!("\n{}", report::render_table(&summary.rows));
    let skipped_checks = report::render_skipped_checks(&parsed, CELLS, &configured);
    if !skipped_checks.is_empty() {
        println!("conformance checks skipped (the backend does not declare what they need):");
        println!("{skipped_checks}");
    }
    let mut skipped = parsed.skipped.clone();
    skipped.sort();
    skipped.dedup();
    for cell in &skipped {
        println!("skipped: {cell} not configured");
    }
    if summary.problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "tests failed:\n  {}",
            summary.problems.join("\n  ")
        ))
    }
}
