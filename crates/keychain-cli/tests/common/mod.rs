//! What the CLI's end-to-end tests share: a temporary software store with its configuration,
//! the real binary run against it, and the exit codes `keychain --help` documents.
#![allow(dead_code, reason = "each test file uses its own part")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_keychain");
pub(crate) const PASSWORD: &str = "correct horse battery staple";

// The exit codes `keychain --help` documents.
pub(crate) const USAGE: i32 = 2;
pub(crate) const NOT_FOUND: i32 = 3;
pub(crate) const INVALID_INPUT: i32 = 5;
pub(crate) const INVALID_SIGNATURE: i32 = 6;
pub(crate) const UNAUTHENTICATED: i32 = 7;
pub(crate) const UNSUPPORTED: i32 = 10;
pub(crate) const UNAVAILABLE: i32 = 11;
pub(crate) const INTEGRITY: i32 = 12;
pub(crate) const CAPACITY_EXCEEDED: i32 = 13;

/// The KDF setting of a test store: cheap, for tests only.
pub(crate) const CHEAP_KDF: &str = "kdf = { pbkdf2 = { iterations = 1000 } }";

/// A temporary directory with `keychain.toml` configuring a software backend `local` in `keys/`,
/// its password from `KEYCHAIN_PASSWORD`.
pub(crate) struct Store {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) config: PathBuf,
}

impl Store {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("keychain.toml");
        let store = Self { dir, config };
        store.configure(CHEAP_KDF);
        store
    }

    /// Rewrites the configuration with `kdf_line` as its KDF setting.
    pub(crate) fn configure(&self, kdf_line: &str) {
        std::fs::write(
            &self.config,
            format!(
                "[backends.local]\ntype = \"pkcs8\"\ndir = \"{}\"\n\
                 password = {{ env = \"KEYCHAIN_PASSWORD\" }}\n{kdf_line}\n",
                self.keys().display()
            ),
        )
        .unwrap();
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `path(name)` as a command-line argument.
    pub(crate) fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    /// The key directory.
    pub(crate) fn keys(&self) -> PathBuf {
        self.path("keys")
    }

    /// `keychain --config CONFIG` with `password`, in the store's directory, stdin closed.
    pub(crate) fn cmd_as(&self, config: &Path, password: &str) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(config)
            .env("KEYCHAIN_PASSWORD", password)
            .env_remove("KEYCHAIN_CONFIG")
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        cmd
    }

    /// `keychain --config CONFIG` with the password set.
    pub(crate) fn cmd_with(&self, config: &Path) -> Command {
        self.cmd_as(config, PASSWORD)
    }

    /// `keychain --config <this store's config> ARGS` with the password set.
    pub(crate) fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = self.cmd_with(&self.config);
        cmd.args(args);
        cmd
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// As [`Store::run`], with `password` in place of the right one.
    pub(crate) fn run_with(&self, password: &str, args: &[&str]) -> Output {
        self.cmd_as(&self.config, password)
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs and fails the test unless it succeeded.
    pub(crate) fn ok(&self, args: &[&str]) -> Output {
        ok(self.run(args), args)
    }

    /// Starts the command with its output captured.
    pub(crate) fn spawn(&self, args: &[&str]) -> Child {
        self.cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// `--output json ARGS`, which must succeed, parsed.
    pub(crate) fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        json(&self.ok(&all))
    }
}

pub(crate) fn ok(output: Output, what: &[&str]) -> Output {
    assert!(
        output.status.success(),
        "keychain {what:?} failed: {}",
        describe(&output)
    );
    output
}

pub(crate) fn code(output: &Output) -> i32 {
    output.status.code().expect("exited, not killed")
}

pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Exit code, stdout and stderr, for assertion messages.
pub(crate) fn describe(output: &Output) -> String {
    format!(
        "{:?}:\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

pub(crate) fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}
