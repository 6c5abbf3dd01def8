//! What every check shares: unique key names, cleanup, error-kind expectations, signing helpers.

use std::fmt;
use std::sync::Mutex;

use keychain_core::{
    Backend, Capabilities, Error, ErrorKind, KeyAlgorithm, KeyInfo, KeyName, KeyRef, KeySpec,
    KeyVersion, SignInput, Signature, SignatureScheme,
};

use crate::verify::{Verifier, digest};
use crate::{Check, CheckFailure, Outcome};

/// Why a check failed, as a sentence.
#[derive(Debug)]
pub(crate) struct Fail(pub(crate) String);

/// The result type of check bodies.
pub(crate) type R<T> = Result<T, Fail>;

/// Turns a backend error into a failure that says what the check was doing.
pub(crate) trait During<T> {
    fn during(self, what: impl fmt::Display) -> R<T>;
}

impl<T> During<T> for keychain_core::Result<T> {
    fn during(self, what: impl fmt::Display) -> R<T> {
        self.map_err(|e| Fail(format!("{what} failed: {e}")))
    }
}

fn kinds_list(kinds: &[ErrorKind]) -> String {
    kinds
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// Requires `result` to be an error of one of `kinds`.
pub(crate) fn expect_kind<T>(
    result: keychain_core::Result<T>,
    kinds: &[ErrorKind],
    what: impl fmt::Display,
) -> R<Error> {
    match result {
        Ok(_) => Err(Fail(format!(
            "{what}: expected error kind {}, but it succeeded",
            kinds_list(kinds)
        ))),
        Err(e) if kinds.contains(&e.kind()) => Ok(e),
        Err(e) => Err(Fail(format!(
            "{what}: expected error kind {}, got `{}`: {e}",
            kinds_list(kinds),
            e.kind()
        ))),
    }
}

/// Random lowercase hex, `2 * bytes` characters.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    if getrandom::fill(&mut buf).is_err() {
        // No OS generator: fall back to std's per-process random hash keys, still unique enough
        // to keep concurrent runs on one backend apart.
        use std::hash::{BuildHasher as _, RandomState};
        for (i, b) in buf.iter_mut().enumerate() {
            *b = RandomState::new().hash_one(i).to_le_bytes()[0];
        }
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// One run of one check on one backend.
pub(crate) struct Ctx<'a> {
    pub(crate) backend: &'a dyn Backend,
    pub(crate) check: Check,
    prefix: String,
    created: Mutex<Vec<KeyName>>,
    notes: Mutex<Vec<String>>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(backend: &'a dyn Backend, check: Check) -> Self {
        Self {
            backend,
            check,
            prefix: format!("kt-{}-{}-", check.name(), random_hex(4)),
            created: Mutex::new(Vec::new()),
            notes: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn caps(&self) -> &'a Capabilities {
        self.backend.capabilities()
    }

    /// The prefix every key name of this run starts with.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A key name of this run; it is deleted at the end of the check if it exists then.
    pub(crate) fn name(&self, suffix: &str) -> R<KeyName> {
        let name = KeyName::new(format!("{}{suffix}", self.prefix))
            .map_err(|e| Fail(format!("testkit bug: key name for {suffix:?}: {e}")))?;
        let mut created = self.created.lock().unwrap_or_else(|p| p.into_inner());
        if !created.contains(&name) {
            created.push(name.clone());
        }
        Ok(name)
    }

    /// Records a part of the check that could not be tested on this backend.
    pub(crate) fn note(&self, note: impl Into<String>) {
        self.notes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(note.into());
    }

    /// Generates a key named `<prefix><suffix>`.
    pub(crate) async fn generate(&self, suffix: &str, spec: &KeySpec) -> R<(KeyName, KeyInfo)> {
        let name = self.name(suffix)?;
        let info = self
            .backend
            .generate_key(&name, spec)
            .await
            .during(format_args!("generate_key {name} ({})", spec.algorithm))?;
        ensure!(
            info.name == name,
            "generate_key {name}: KeyInfo names the key {}",
            info.name
        );
        ensure!(
            info.algorithm == spec.algorithm,
            "generate_key {name}: asked for {}, KeyInfo says {}",
            spec.algorithm,
            info.algorithm
        );
        Ok((name, info))
    }

    /// Deletes a key of this run now (checks that create many keys keep the backend small).
    pub(crate) async fn delete(&self, name: &KeyName) -> R<()> {
        self.backend
            .delete_key(name)
            .await
            .during(format_args!("delete_key {name}"))?;
        self.created
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|n| n != name);
        Ok(())
    }

    /// Deletes what the check left behind and turns the body's result into the public one.
    pub(crate) async fn finish(self, result: R<Outcome>) -> Result<Outcome, CheckFailure> {
        let names = std::mem::take(&mut *self.created.lock().unwrap_or_else(|p| p.into_inner()));
        let mut cleanup = Ok(());
        for name in names {
            match self.backend.delete_key(&name).await {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => {
                    if cleanup.is_ok() {
                        cleanup = Err(format!("cleanup: delete_key {name} failed: {e}"));
                    }
                }
            }
        }
        let backend = self.caps().backend.as_str();
        match (result, cleanup) {
            (Err(Fail(message)), _) | (Ok(_), Err(message)) => {
                Err(CheckFailure::new(self.check, backend, message))
            }
            (Ok(Outcome::Passed { mut notes }), Ok(())) => {
                notes.extend(std::mem::take(
                    &mut *self.notes.lock().unwrap_or_else(|p| p.into_inner()),
                ));
                Ok(Outcome::Passed { notes })
            }
            (Ok(skipped), Ok(())) => Ok(skipped),
        }
    }
}

/// The outcome of a body that ran to the end.
pub(crate) fn passed() -> R<Outcome> {
    Ok(Outcome::Passed { notes: Vec::new() })
}

/// The outcome of a body the capabilities rule out.
pub(crate) fn skipped(reason: impl Into<String>) -> R<Outcome> {
    Ok(Outcome::Skipped(reason.into()))
}

/// How the testkit prefers algorithms when one of a kind will do: cheap to generate first
/// (RSA keygen is slow everywhere), independently verifiable before not.
pub(crate) fn cost(algorithm: KeyAlgorithm) -> u32 {
    match algorithm {
        KeyAlgorithm::Ed25519 => 0,
        KeyAlgorithm::EcP256 => 1,
        KeyAlgorithm::EcP384 => 2,
        KeyAlgorithm::EcP521 => 3,
        KeyAlgorithm::Aes256Gcm => 4,
        KeyAlgorithm::Aes128Gcm => 5,
        KeyAlgorithm::Aes192Gcm => 6,
        KeyAlgorithm::EcSecp256k1 => 7,
        KeyAlgorithm::Rsa2048 => 20,
        KeyAlgorithm::Rsa3072 => 21,
        KeyAlgorithm::Rsa4096 => 22,
        _ => 30,
    }
}

/// The declared algorithms, each once, cheapest first.
pub(crate) fn declared(caps: &Capabilities) -> Vec<KeyAlgorithm> {
    let mut algs: Vec<KeyAlgorithm> = Vec::new();
    for a in &caps.algorithms {
        if !algs.contains(a) {
            algs.push(*a);
        }
    }
    algs.sort_by_key(|a| cost(*a));
    algs
}

/// The declared schemes that fit `algorithm`, the algorithm's default scheme first.
pub(crate) fn schemes_for(caps: &Capabilities, algorithm: KeyAlgorithm) -> Vec<SignatureScheme> {
    let mut schemes: Vec<SignatureScheme> = Vec::new();
    if let Some(d) = algorithm.default_scheme()
        && caps.supports_scheme(algorithm, d)
    {
        schemes.push(d);
    }
    for s in &caps.signature_schemes {
        if s.fits(algorithm) && !schemes.contains(s) {
            schemes.push(*s);
        }
    }
    schemes
}

/// Declared asymmetric algorithms with at least one declared scheme, cheapest first.
pub(crate) fn signable(caps: &Capabilities) -> Vec<KeyAlgorithm> {
    declared(caps)
        .into_iter()
        .filter(|a| a.is_asymmetric() && !schemes_for(caps, *a).is_empty())
        .collect()
}

/// Key family, for picking one representative of each.
#[derive(PartialEq, Eq)]
enum Family {
    Rsa,
    Ec,
    Ed,
    Other,
}

fn family(a: KeyAlgorithm) -> Family {
    if a.is_rsa() {
        Family::Rsa
    } else if a.is_ecdsa() {
        Family::Ec
    } else if a == KeyAlgorithm::Ed25519 {
        Family::Ed
    } else {
        Family::Other
    }
}

/// The cheapest signable algorithm of each family (smallest RSA, cheapest curve, Ed25519).
pub(crate) fn signable_families(caps: &Capabilities) -> Vec<KeyAlgorithm> {
    let mut reps: Vec<KeyAlgorithm> = Vec::new();
    for a in signable(caps) {
        if !reps.iter().any(|r| family(*r) == family(a)) {
            reps.push(a);
        }
    }
    reps
}

/// The signable algorithms worth one key each in the sign/verify check: every curve and Ed25519,
/// and of RSA only the smallest size.
pub(crate) fn signable_all_but_big_rsa(caps: &Capabilities) -> Vec<KeyAlgorithm> {
    let mut out: Vec<KeyAlgorithm> = Vec::new();
    for a in signable(caps) {
        if a.is_rsa() && out.iter().any(|r| r.is_rsa()) {
            continue;
        }
        out.push(a);
    }
    out
}

/// The cheapest signable algorithm that has an independent verifier, else the cheapest signable.
pub(crate) fn cheapest_signable(caps: &Capabilities) -> Option<KeyAlgorithm> {
    let all = signable(caps);
    all.iter()
        .copied()
        .find(|a| Verifier::available(*a))
        .or_else(|| all.first().copied())
}

/// The declared symmetric algorithms, cheapest first.
pub(crate) fn symmetric(caps: &Capabilities) -> Vec<KeyAlgorithm> {
    declared(caps)
        .into_iter()
        .filter(|a| a.is_symmetric())
        .collect()
}

/// The input to sign `message` with `scheme`: the digest (made by the testkit with sha2) unless
/// `as_message`, and always the message for Ed25519.
pub(crate) fn sign_input(
    scheme: SignatureScheme,
    message: &[u8],
    as_message: bool,
) -> R<(Vec<u8>, bool)> {
    match scheme.hash() {
        Some(h) if !as_message => {
            let d = digest(h, message)
                .ok_or_else(|| Fail(format!("testkit has no implementation of {h}")))?;
            Ok((d, false))
        }
        _ => Ok((message.to_vec(), true)),
    }
}

/// Signs `message` (as a digest, or as a message when `as_message`) with `key`, checks the
/// returned scheme and version, and verifies it independently when `verifier` is given.
pub(crate) async fn sign_checked(
    backend: &dyn Backend,
    key: &KeyRef,
    scheme: SignatureScheme,
    message: &[u8],
    as_message: bool,
    expect_version: KeyVersion,
    verifier: Option<&Verifier>,
) -> R<Signature> {
    let (data, is_message) = sign_input(scheme, message, as_message)?;
    let input = match (is_message, scheme.hash()) {
        (false, Some(h)) => SignInput::digest(h, &data),
        _ => SignInput::message(&data),
    };
    let how = if is_message { "message" } else { "digest" };
    let sig = backend
        .sign(key, input, scheme)
        .await
        .during(format_args!("sign {key} with {scheme} ({how} input)"))?;
    ensure!(
        sig.scheme() == scheme,
        "sign {key} with {scheme}: the Signature says its scheme is {}",
        sig.scheme()
    );
    ensure!(
        sig.key_version() == expect_version,
        "sign {key} with {scheme}: the Signature says key version {}, expected {expect_version}",
        sig.key_version()
    );
    if let Some(v) = verifier {
        v.verify(scheme, message, sig.as_bytes()).map_err(|e| {
            Fail(format!(
                "sign {key} with {scheme} ({how} input): the signature does not verify with \
                 RustCrypto against the key's public key: {e}"
            ))
        })?;
    }
    Ok(sig)
}
