//! What the PKCS#11 cell's tests share: the settings `cargo xtask services start` writes, and
//! the skip note when they are absent.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    dead_code,
    unreachable_pub,
    reason = "test helpers: failing loudly is the point, and not every test file uses all of them"
)]

use std::io::Write as _;
use std::path::PathBuf;

use keychain_core::SecretSource;
use keychain_pkcs11::{Config, Pkcs11Backend};

/// The SoftHSM token the cell runs on.
pub struct Env {
    pub module: PathBuf,
    pub token: String,
    pub pin: String,
    pub so_pin: String,
}

/// The cell's settings, or `None` after writing `skipped: pkcs11 not configured` to stderr
/// (straight to the stream: libtest captures `eprintln!`, and `cargo xtask test` counts the note).
pub fn env() -> Option<Env> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    match (
        var("KEYCHAIN_TEST_PKCS11_MODULE"),
        var("KEYCHAIN_TEST_PKCS11_TOKEN"),
        var("KEYCHAIN_TEST_PKCS11_PIN"),
        var("KEYCHAIN_TEST_PKCS11_SO_PIN"),
    ) {
        (Some(module), Some(token), Some(pin), Some(so_pin)) => Some(Env {
            module: module.into(),
            token,
            pin,
            so_pin,
        }),
        _ => {
            let _ = writeln!(std::io::stderr(), "skipped: pkcs11 not configured");
            None
        }
    }
}

impl Env {
    /// The configuration for the cell's token with the right PIN (and a cheap export KDF: the
    /// default's 600 000 PBKDF2 rounds take seconds in a debug build).
    pub fn config(&self) -> Config {
        Config::new(
            &self.module,
            &self.token,
            SecretSource::value(self.pin.clone()),
        )
        .with_export_kdf(keychain_crypto::pkcs8::Kdf::Pbkdf2 { iterations: 2048 })
    }

    /// A backend on the cell's token.
    pub async fn open(&self) -> Pkcs11Backend {
        Pkcs11Backend::open(self.config())
            .await
            .expect("open the PKCS#11 backend on the test token")
    }

    /// A unique key name for one test.
    pub fn name(&self, what: &str) -> keychain_core::KeyName {
        let mut r = [0u8; 4];
        getrandom::fill(&mut r).expect("random");
        let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
        keychain_core::KeyName::new(format!("t-{what}-{hex}")).expect("key name")
    }
}

/// `pkcs11-tool --list-objects` output split into one text per object (each starts unindented).
pub fn objects(listing: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in listing.lines() {
        if !line.starts_with(char::is_whitespace) {
            out.push(String::new());
        }
        if let Some(last) = out.last_mut() {
            last.push_str(line);
            last.push('\n');
        }
    }
    out
}

/// Runs a command, failing the test with its output if it fails; returns stdout and stderr.
pub fn run(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed: {text}");
    text
}

/// Runs a command, failing the test with its stderr if it fails; returns stdout alone.
pub fn run_stdout(cmd: &mut std::process::Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
