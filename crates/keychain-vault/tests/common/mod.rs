//! What the vault cell's tests share: the settings `cargo xtask services start` writes, a
//! per-process key prefix, the `bao` CLI, and the skip note when the settings are absent.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    dead_code,
    unreachable_pub,
    reason = "test helpers: failing loudly is the point, and not every test file uses all of them"
)]

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use keychain_core::{KeyName, SecretSource};
use keychain_vault::{Config, Kdf, VaultBackend};

/// The OpenBao dev server the cell runs on.
pub struct Env {
    pub addr: String,
    pub token: String,
    /// The `bao` command (CLI and server).
    pub bao: String,
}

/// The cell's settings, or `None` after writing `skipped: vault not configured` to stderr
/// (straight to the stream: libtest captures `eprintln!`, and `cargo xtask test` counts the note).
pub fn env() -> Option<Env> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    match (
        var("KEYCHAIN_TEST_VAULT_ADDR"),
        var("KEYCHAIN_TEST_VAULT_TOKEN"),
        var("KEYCHAIN_TEST_VAULT_BAO"),
    ) {
        (Some(addr), Some(token), Some(bao)) => Some(Env { addr, token, bao }),
        _ => {
            let _ = writeln!(std::io::stderr(), "skipped: vault not configured");
            None
        }
    }
}

/// `bytes` random bytes as lowercase hex.
pub fn random_hex(bytes: usize) -> String {
    let mut r = vec![0u8; bytes];
    getrandom::fill(&mut r).expect("random");
    r.iter().map(|b| format!("{b:02x}")).collect()
}

/// This test process's key prefix, `kt-<random>.`, so that runs sharing one server never meet.
pub fn prefix() -> &'static str {
    static PREFIX: OnceLock<String> = OnceLock::new();
    PREFIX.get_or_init(|| format!("kt-{}.", random_hex(4)))
}

/// Runs `bao` with `args` against `addr` as `token`, feeding `stdin`; returns stdout, or stderr
/// as the error.
pub fn bao_at(
    bao: &str,
    addr: &str,
    token: &str,
    args: &[&str],
    stdin: &str,
) -> Result<String, String> {
    let mut child = Command::new(bao)
        .args(args)
        .env("BAO_ADDR", addr)
        .env("BAO_TOKEN", token)
        .env_remove("VAULT_ADDR")
        .env_remove("VAULT_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bao");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

impl Env {
    /// The configuration for the cell's server with the root token and this process's prefix.
    pub fn config(&self) -> Config {
        // A cheap PBES2 for password exports: the tests check the format, not the cost.
        Config::new(&self.addr, SecretSource::value(&self.token))
            .with_key_prefix(prefix())
            .with_export_kdf(Kdf::Pbkdf2 { iterations: 10_000 })
    }

    /// A backend on the cell's server.
    pub async fn open(&self) -> VaultBackend {
        VaultBackend::open(self.config())
            .await
            .expect("open the Transit backend on the test server")
    }

    /// A unique key name for one test.
    pub fn name(&self, what: &str) -> KeyName {
        KeyName::new(format!("t-{what}-{}", random_hex(4))).expect("key name")
    }

    /// The Transit key name of `name` (with this process's prefix).
    pub fn transit(&self, name: &KeyName) -> String {
        format!("{}{name}", prefix())
    }

    /// Runs the `bao` CLI as root against the cell's server.
    pub fn bao(&self, args: &[&str]) -> Result<String, String> {
        bao_at(&self.bao, &self.addr, &self.token, args, "")
    }

    /// Runs the `bao` CLI as root with `stdin`.
    pub fn bao_stdin(&self, args: &[&str], stdin: &str) -> Result<String, String> {
        bao_at(&self.bao, &self.addr, &self.token, args, stdin)
    }

    /// A policy that may use Transit and the random endpoint, created once per process.
    pub fn transit_policy(&self) -> &'static str {
        static POLICY: OnceLock<()> = OnceLock::new();
        POLICY.get_or_init(|| {
            self.bao_stdin(
                &["policy", "write", "kt-transit", "-"],
                "path \"transit/*\" { capabilities = [\"create\", \"read\", \"update\", \"delete\", \"list\"] }\n\
                 path \"sys/tools/random/*\" { capabilities = [\"update\"] }\n",
            )
            .expect("write the kt-transit policy");
        });
        "kt-transit"
    }

    /// A new token with `policy`, and `ttl` (e.g. `"3s"`), from `bao token create`.
    pub fn token(&self, policy: &str, ttl: &str) -> String {
        let out = self
            .bao(&[
                "token",
                "create",
                "-field=token",
                &format!("-policy={policy}"),
                &format!("-ttl={ttl}"),
                "-explicit-max-ttl=1h",
            ])
            .expect("bao token create");
        out.trim().to_owned()
    }
}
