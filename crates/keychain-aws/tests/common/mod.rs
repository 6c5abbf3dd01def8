//! What the AWS cell's tests share: the settings `cargo xtask services start` writes, a
//! per-process alias namespace, and the skip note when the settings are absent.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    dead_code,
    unreachable_pub,
    reason = "test helpers: failing loudly is the point, and not every test file uses all of them"
)]

use std::io::Write as _;
use std::sync::OnceLock;

use keychain_aws::{AwsBackend, Config};
use keychain_core::KeyName;

/// The KMS server the cell runs on (moto through the harness's launcher, or LocalStack).
pub struct Env {
    pub endpoint: String,
    pub region: String,
}

/// The cell's settings, or `None` after writing `skipped: aws not configured` to stderr
/// (straight to the stream: libtest captures `eprintln!`, and `cargo xtask test` counts the note).
pub fn env() -> Option<Env> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    match (
        var("KEYCHAIN_TEST_AWS_ENDPOINT"),
        var("KEYCHAIN_TEST_AWS_REGION"),
    ) {
        (Some(endpoint), Some(region)) => Some(Env { endpoint, region }),
        _ => {
            let _ = writeln!(std::io::stderr(), "skipped: aws not configured");
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

/// This test process's alias namespace, `kt-<random>/`, so that runs sharing one server (and
/// the keys a failed run leaves behind) never meet.
pub fn prefix() -> &'static str {
    static PREFIX: OnceLock<String> = OnceLock::new();
    PREFIX.get_or_init(|| format!("kt-{}/", random_hex(4)))
}

impl Env {
    /// The configuration for the cell's server: credentials from the SDK's default chain
    /// (the env file's test AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY), this process's prefix.
    pub fn config(&self) -> Config {
        Config::new(&self.region)
            .with_endpoint(&self.endpoint)
            .with_alias_prefix(prefix())
    }

    /// A backend on the cell's server.
    pub async fn open(&self) -> AwsBackend {
        AwsBackend::open(self.config())
            .await
            .expect("open the AWS KMS backend on the test server")
    }

    /// A unique key name for one test.
    pub fn name(&self, what: &str) -> KeyName {
        KeyName::new(format!("t-{what}-{}", random_hex(4))).expect("key name")
    }
}
