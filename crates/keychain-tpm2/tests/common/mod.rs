//! What the tpm2 cell's tests share: the TCTI `cargo xtask services start` writes, the turn
//! every test takes (swtpm serves one connection at a time), and the skip note.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    dead_code,
    unreachable_pub,
    reason = "test helpers: failing loudly is the point, and not every test file uses all of them"
)]

use std::io::Write as _;
use std::path::Path;

use keychain_tpm2::{Config, TpmBackend};

/// The swtpm TCTI, or `None` after writing `skipped: tpm2 not configured` to stderr (straight to
/// the stream: libtest captures `eprintln!`, and `cargo xtask test` counts the note).
pub fn tcti() -> Option<String> {
    match std::env::var("KEYCHAIN_TEST_TPM2_TCTI") {
        Ok(t) if !t.is_empty() => Some(t),
        _ => {
            let _ = writeln!(std::io::stderr(), "skipped: tpm2 not configured");
            None
        }
    }
}

/// swtpm accepts one connection at a time and makes a second one wait: the tests of a binary
/// take turns, each closing its backends before giving the turn on.
pub async fn turn() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    TURN.lock().await
}

/// A fresh key directory (not created: the store makes it, mode 0700), kept after the test for
/// inspection.
pub fn key_dir() -> std::path::PathBuf {
    tempfile::tempdir()
        .expect("tempdir")
        .keep()
        .join("keys-store")
}

/// A configuration for the cell's swtpm with key blobs in `dir`.
pub fn config(tcti: &str, dir: &Path) -> Config {
    Config::new(tcti, dir)
}

pub async fn open(tcti: &str, dir: &Path) -> TpmBackend {
    TpmBackend::open(config(tcti, dir))
        .await
        .expect("open swtpm")
}

/// The record file of `name` in a key directory.
pub fn record_path(dir: &Path, name: &str) -> std::path::PathBuf {
    dir.join("keys").join(format!("{name}.json"))
}

/// Runs a command, failing the test with its output if it fails.
pub fn run(cmd: &mut std::process::Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
