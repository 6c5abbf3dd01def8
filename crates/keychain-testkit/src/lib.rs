#![doc = include_str!("../README.md")]

/// Fails the current check with a formatted message unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err($crate::ctx::Fail(format!($($msg)+)));
        }
    };
}

mod checks;
mod ctx;
pub mod matrix;
mod not_configured;
mod verify;

use std::fmt;
use std::sync::Arc;

use keychain_core::Backend;

pub use crate::checks::{
    check_aead, check_attest, check_bad_input, check_concurrency, check_export_import,
    check_generate_keys, check_lifecycle, check_random, check_rejection, check_rotate,
    check_rsa_oaep, check_sign_verify,
};
pub use crate::not_configured::NotConfigured;

/// What [`conformance!`] expands to needs, reachable through `$crate` so the downstream crate
/// does not have to name tokio itself. Not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use keychain_core::Backend;
    pub use tokio;
}

/// One conformance check. Each is a public `check_*` function too; [`run_check`] dispatches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Check {
    /// [`check_generate_keys`]: every declared algorithm generates, with consistent `KeyInfo`.
    GenerateKeys,
    /// [`check_sign_verify`]: every declared algorithm × fitting scheme signs, verified with
    /// RustCrypto.
    SignVerify,
    /// [`check_rejection`]: wrong key, wrong digest and tampered signatures do not verify.
    Rejection,
    /// [`check_bad_input`]: malformed requests fail with the documented error kinds.
    BadInput,
    /// [`check_aead`]: symmetric round trips, AAD binding and tamper detection.
    Aead,
    /// [`check_rsa_oaep`]: RSA-OAEP ciphertexts made locally decrypt in the backend.
    RsaOaep,
    /// [`check_rotate`]: rotation adds a version and earlier versions keep working.
    Rotate,
    /// [`check_lifecycle`]: list / AlreadyExists / delete / NotFound semantics.
    Lifecycle,
    /// [`check_concurrency`]: 64 tasks share one backend.
    Concurrency,
    /// [`check_random`]: the random generator returns the requested lengths, never twice the same.
    Random,
    /// [`check_export_import`]: password-wrapped export and import, permission and password errors.
    ExportImport,
    /// [`check_attest`]: key attestations verify with their attestation key and carry the nonce.
    Attest,
}

impl Check {
    /// Every check, in the order [`run_all`] runs them.
    pub const ALL: [Check; 12] = [
        Self::GenerateKeys,
        Self::SignVerify,
        Self::Rejection,
        Self::BadInput,
        Self::Aead,
        Self::RsaOaep,
        Self::Rotate,
        Self::Lifecycle,
        Self::Concurrency,
        Self::Random,
        Self::ExportImport,
        Self::Attest,
    ];

    /// A stable kebab-case name (`sign-verify`), also the middle part of the check's key names.
    pub const fn name(self) -> &'static str {
        match self {
            Self::GenerateKeys => "generate-keys",
            Self::SignVerify => "sign-verify",
            Self::Rejection => "rejection",
            Self::BadInput => "bad-input",
            Self::Aead => "aead",
            Self::RsaOaep => "rsa-oaep",
            Self::Rotate => "rotate",
            Self::Lifecycle => "lifecycle",
            Self::Concurrency => "concurrency",
            Self::Random => "random",
            Self::ExportImport => "export-import",
            Self::Attest => "attest",
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a check ended when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Everything the check could test passed. `notes` name parts it could not test (an algorithm
    /// without an independent verifier, every algorithm declared so none is unsupported, ...).
    Passed {
        /// Parts left out, and why.
        notes: Vec<String>,
    },
    /// The backend's capabilities do not declare what the check needs; the reason says which.
    Skipped(String),
}

impl Outcome {
    /// Whether the check was skipped.
    pub fn is_skipped(&self) -> bool {
        matches!(self, Self::Skipped(_))
    }
}

/// A check found the backend breaking its contract (or the backend failed an operation it
/// declares).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckFailure {
    check: Check,
    backend: String,
    message: String,
}

impl CheckFailure {
    pub(crate) fn new(check: Check, backend: &str, message: String) -> Self {
        Self {
            check,
            backend: backend.to_owned(),
            message,
        }
    }

    /// The check that failed.
    pub fn check(&self) -> Check {
        self.check
    }

    /// The backend's name ([`keychain_core::Capabilities::backend`]).
    pub fn backend(&self) -> &str {
        &self.backend
    }

    /// What went wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for CheckFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "conformance check {} failed on backend {}: {}",
            self.check, self.backend, self.message
        )
    }
}

impl std::error::Error for CheckFailure {}

/// The result of [`run_all`]: one entry per check, in [`Check::ALL`] order.
#[derive(Debug)]
pub struct Report {
    /// The backend's name ([`keychain_core::Capabilities::backend`]).
    pub backend: String,
    /// Each check and how it ended.
    pub results: Vec<(Check, Result<Outcome, CheckFailure>)>,
}

impl Report {
    /// Whether no check failed (skipped checks do not count as failures).
    pub fn is_success(&self) -> bool {
        self.results.iter().all(|(_, r)| r.is_ok())
    }

    /// The failed checks.
    pub fn failures(&self) -> impl Iterator<Item = &CheckFailure> {
        self.results.iter().filter_map(|(_, r)| r.as_ref().err())
    }

    /// The skipped checks with their reasons.
    pub fn skipped(&self) -> impl Iterator<Item = (Check, &str)> {
        self.results.iter().filter_map(|(c, r)| match r {
            Ok(Outcome::Skipped(reason)) => Some((*c, reason.as_str())),
            _ => None,
        })
    }
}

impl fmt::Display for Report {
    /// One line per check: `ok`, `skipped` or `FAILED`, the check, and the note, reason or failure.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "conformance of backend {}:", self.backend)?;
        for (check, result) in &self.results {
            match result {
                Ok(Outcome::Passed { notes }) if notes.is_empty() => {
                    writeln!(f, "  ok      {check}")?
                }
                Ok(Outcome::Passed { notes }) => {
                    writeln!(f, "  ok      {check} (not tested: {})", notes.join("; "))?;
                }
                Ok(Outcome::Skipped(reason)) => writeln!(f, "  skipped {check}: {reason}")?,
                Err(e) => writeln!(f, "  FAILED  {check}: {}", e.message())?,
            }
        }
        Ok(())
    }
}

/// Runs one check on `backend` and returns how it ended.
///
/// The check creates its own keys (named `kt-<check>-<random hex>-...`) and deletes them before
/// it returns, whether it passed or not, so several checks can share one backend.
///
/// # Errors
/// [`CheckFailure`] when the backend breaks its contract in something its
/// [`keychain_core::Capabilities`] declare.
pub async fn run_check(check: Check, backend: &Arc<dyn Backend>) -> Result<Outcome, CheckFailure> {
    let b: &dyn Backend = backend.as_ref();
    match check {
        Check::GenerateKeys => check_generate_keys(b).await,
        Check::SignVerify => check_sign_verify(b).await,
        Check::Rejection => check_rejection(b).await,
        Check::BadInput => check_bad_input(b).await,
        Check::Aead => check_aead(b).await,
        Check::RsaOaep => check_rsa_oaep(b).await,
        Check::Rotate => check_rotate(b).await,
        Check::Lifecycle => check_lifecycle(b).await,
        Check::Concurrency => check_concurrency(Arc::clone(backend)).await,
        Check::Random => check_random(b).await,
        Check::ExportImport => check_export_import(b).await,
        Check::Attest => check_attest(b).await,
    }
}

/// Runs one check the way a `#[test]` wants it: panics with the failure when the check fails,
/// and says what it did in one line on stderr, written straight to the stream so the test
/// harness does not capture it (see [`MARKER`]). [`conformance!`] calls this once per test.
///
/// A backend from [`NotConfigured`] (a cell whose service is absent) runs no check: every check
/// is reported skipped, because the cell is.
///
/// # Panics
/// When the check fails.
pub async fn run(check: Check, backend: Arc<dyn Backend>) -> Outcome {
    let name = backend.capabilities().backend.clone();
    if not_configured::is_stand_in(backend.capabilities()) {
        let outcome = Outcome::Skipped("the cell is not configured".to_owned());
        report_outcome(check, &name, &outcome);
        return outcome;
    }
    match run_check(check, &backend).await {
        Ok(outcome) => {
            report_outcome(check, &name, &outcome);
            outcome
        }
        Err(failure) => {
            mark(&format!("failed {check} on {name}"));
            panic!("{failure}")
        }
    }
}

/// The start of every line [`run`] writes to stderr, one per check:
///
/// ```text
/// keychain-testkit: passed <check> on <backend>
/// keychain-testkit: skipped <check> on <backend>: <reason>
/// keychain-testkit: failed <check> on <backend>
/// keychain-testkit: note <check> on <backend>: did not test <what>
/// ```
///
/// `cargo xtask test` counts them per test cell, so a check that passed only because the backend
/// did not declare what it needs shows as skipped, not as a pass.
pub const MARKER: &str = "keychain-testkit: ";

/// Writes `MARKER line` to stderr in one write, past the test harness's capture (which only
/// takes `print!`/`eprint!`), so concurrent tests cannot interleave within the line.
fn mark(line: &str) {
    use std::io::Write as _;
    let text = format!("{MARKER}{line}\n");
    // Nowhere to report a failed write to stderr; the check's result stands either way.
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

fn report_outcome(check: Check, backend: &str, outcome: &Outcome) {
    match outcome {
        Outcome::Skipped(reason) => mark(&format!("skipped {check} on {backend}: {reason}")),
        Outcome::Passed { notes } => {
            mark(&format!("passed {check} on {backend}"));
            for note in notes {
                mark(&format!("note {check} on {backend}: did not test {note}"));
            }
        }
    }
}

/// Runs every check on one backend, one after another, and collects the results; never panics
/// on a failed check. For a downstream harness that wants a [`Report`] rather than one `#[test]`
/// per check.
pub async fn run_all(backend: Arc<dyn Backend>) -> Report {
    let mut results = Vec::with_capacity(Check::ALL.len());
    for check in Check::ALL {
        results.push((check, run_check(check, &backend).await));
    }
    Report {
        backend: backend.capabilities().backend.to_string(),
        results,
    }
}

/// Expands to a module of `#[tokio::test]`s, one per [`Check`], each running the check on a fresh
/// backend from `factory`.
///
/// `factory` is a path to an `async fn() -> Arc<dyn Backend>` (resolved from the module the macro
/// is called in). A check the backend's capabilities do not cover passes and writes
/// `keychain-testkit: skipped <check> on <backend>: <reason>` to stderr (see [`MARKER`]); a
/// declared capability that misbehaves fails the test with the reason. The module is named
/// `conformance`, or the name given first:
///
/// ```ignore
/// async fn my_factory() -> std::sync::Arc<dyn keychain_core::Backend> { /* ... */ }
/// keychain_testkit::conformance!(my_factory);
/// keychain_testkit::conformance!(conformance_hsm, hsm_factory); // a second backend, same file
/// ```
///
/// The tests run on tokio's multi-threaded runtime with two workers; the calling crate does not
/// need its own tokio dependency, but it must depend on this crate as `keychain-testkit`
/// (unrenamed), because `#[tokio::test]` is pointed at `::keychain_testkit::__private::tokio`.
#[macro_export]
macro_rules! conformance {
    ($module:ident, $factory:path) => {
        #[allow(missing_docs)]
        mod $module {
            #[allow(unused_imports)]
            use super::*;

            $crate::conformance!(@test generate_keys, GenerateKeys, $factory);
            $crate::conformance!(@test sign_verify, SignVerify, $factory);
            $crate::conformance!(@test rejection, Rejection, $factory);
            $crate::conformance!(@test bad_input, BadInput, $factory);
            $crate::conformance!(@test aead, Aead, $factory);
            $crate::conformance!(@test rsa_oaep, RsaOaep, $factory);
            $crate::conformance!(@test rotate, Rotate, $factory);
            $crate::conformance!(@test lifecycle, Lifecycle, $factory);
            $crate::conformance!(@test concurrency, Concurrency, $factory);
            $crate::conformance!(@test random, Random, $factory);
            $crate::conformance!(@test export_import, ExportImport, $factory);
            $crate::conformance!(@test attest, Attest, $factory);
        }
    };
    (@test $test:ident, $check:ident, $factory:path) => {
        #[$crate::__private::tokio::test(
            flavor = "multi_thread",
            worker_threads = 2,
            crate = "::keychain_testkit::__private::tokio"
        )]
        async fn $test() {
            let backend: ::std::sync::Arc<dyn $crate::__private::Backend> = $factory().await;
            $crate::run($crate::Check::$check, backend).await;
        }
    };
    ($factory:path) => {
        $crate::conformance!(conformance, $factory);
    };
}
