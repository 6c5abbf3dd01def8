//! `keychain demo`: the main job on the embedded default, with nothing to set up and nothing left
//! behind. A throwaway software store (a temporary directory, a random password made here and
//! never shown), four keys, signatures checked by an independent verifier, AEAD with associated
//! data, a rotation, and the typed errors for a tampered message and a wrong AAD.

use std::sync::Arc;
use std::time::Instant;

use keychain::pkcs8::{Config as Pkcs8Config, Pkcs8Backend};
use keychain::{
    Backend, BackendExt, Error, ErrorKind, HashAlg, KeyAlgorithm, KeyName, KeyRef, KeySpec,
    Keychain, Registry, Result, SecretSource, SecretString, SignInput, Signature, SignatureScheme,
};
use serde_json::{Value, json};

use super::key::key_table;
use crate::output::{Out, Table, key_json};
use crate::progress::Spinner;

const BACKEND: &str = "local";
const MESSAGE: &[u8] = b"keychain demo: sign me";
const PLAINTEXT: &[u8] = b"the launch codes are 0000";
const AAD: &str = "invoice-2026-0042";

/// The report, step by step.
struct Steps {
    spinner: Spinner,
    rows: Vec<Step>,
}

struct Step {
    step: &'static str,
    key: String,
    result: String,
    ms: f64,
}

impl Steps {
    /// Runs one step under the spinner and records its result line and duration.
    async fn run<T>(
        &mut self,
        step: &'static str,
        key: &str,
        work: impl Future<Output = Result<(T, String)>>,
    ) -> Result<T> {
        self.spinner.set_message(format!("{step} {key}"));
        let started = Instant::now();
        let (value, result) = work
            .await
            .map_err(|e| e.with_context(format_args!("demo step `{step}`")))?;
        self.rows.push(Step {
            step,
            key: key.to_owned(),
            result,
            ms: started.elapsed().as_secs_f64() * 1000.0,
        });
        Ok(value)
    }
}

/// A random password for the throwaway store: 32 bytes from the OS, hex-encoded.
fn random_password() -> Result<SecretString> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::new(ErrorKind::Unavailable, format!("no OS randomness: {e}")))?;
    let password = SecretString::new(hex::encode(bytes));
    bytes.fill(0);
    Ok(password)
}

/// `demo`.
pub(super) async fn run(out: Out) -> Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("keychain-demo-")
        .tempdir()
        .map_err(|e| Error::from(e).with_context("cannot create a temporary directory"))?;
    let store = dir.path().join("keys");
    let mut steps = Steps {
        spinner: Spinner::start("opening a throwaway key store"),
        rows: Vec::new(),
    };
    let keychain = steps
        .run("open", "-", async {
            // The embedded default's backend, in a directory that is deleted at the end.
            let config = Pkcs8Config::new(&store, SecretSource::Value(random_password()?));
            let backend: Arc<dyn Backend> = Arc::new(Pkcs8Backend::open(config).await?);
            let mut registry = Registry::new();
            registry.insert(BACKEND, backend)?;
            registry.set_default(BACKEND)?;
            Ok((
                Keychain::new(registry),
                "software backend (pkcs8), temporary directory, random password".into(),
            ))
        })
        .await?;
    let result = scenario(&keychain, &mut steps).await;
    let closed = keychain.close().await;
    drop(steps.spinner);
    let keys = result?;
    closed?;

    let doc = json!({
        "ok": true,
        "store": "temporary directory, deleted on exit; random password, never shown",
        "backend": BACKEND,
        "steps": steps.rows.iter().map(|s| json!({
            "step": s.step,
            "key": s.key,
            "result": s.result,
            "ms": (s.ms * 10.0).round() / 10.0,
        })).collect::<Vec<Value>>(),
        "keys": keys.iter().map(|(b, k)| key_json(b, k, false)).collect::<Vec<_>>(),
    });
    let report = out.report(&doc, || {
        let mut table = Table::new(&["STEP", "KEY", "RESULT", "TIME"]);
        for s in &steps.rows {
            table.row(vec![
                s.step.to_owned(),
                s.key.clone(),
                s.result.clone(),
                format!("{:.1} ms", s.ms),
            ]);
        }
        format!(
            "keychain demo: a throwaway software key store (deleted on exit, random password \
             never shown)\n\n{}\nKeys at the end:\n\n{}\nAll {} steps passed.\n",
            table.render(),
            key_table(&keys).render(),
            steps.rows.len()
        )
    });
    drop(dir);
    report
}

fn target(name: &str) -> String {
    format!("{BACKEND}:{name}")
}

async fn scenario(
    keychain: &Keychain,
    steps: &mut Steps,
) -> Result<Vec<(String, keychain::KeyInfo)>> {
    let backend = Arc::clone(keychain.backend(BACKEND)?);
    let backend = backend.as_ref();

    let keys = [
        (
            "demo-ecdsa",
            KeyAlgorithm::EcP256,
            Some(SignatureScheme::Ecdsa(HashAlg::Sha256)),
        ),
        (
            "demo-rsa",
            KeyAlgorithm::Rsa3072,
            Some(SignatureScheme::RsaPss(HashAlg::Sha256)),
        ),
        (
            "demo-ed25519",
            KeyAlgorithm::Ed25519,
            Some(SignatureScheme::Ed25519),
        ),
        ("demo-aes", KeyAlgorithm::Aes256Gcm, None),
    ];
    for (name, algorithm, _) in keys {
        let key_name = KeyName::new(name)?;
        steps
            .run("generate", &target(name), async {
                let info = backend
                    .generate_key(&key_name, &KeySpec::new(algorithm))
                    .await?;
                let usages = crate::cli::usage_names(info.usages).join("+");
                Ok(((), format!("{algorithm}, usages {usages}")))
            })
            .await?;
    }

    let mut first_signature = None;
    for (name, _, scheme) in keys {
        let Some(scheme) = scheme else { continue };
        let key_name = KeyName::new(name)?;
        let signature = steps
            .run("sign", &target(name), async {
                let signature = backend
                    .sign(
                        &KeyRef::from(&key_name),
                        SignInput::message(MESSAGE),
                        scheme,
                    )
                    .await?;
                let encoding = if matches!(scheme, SignatureScheme::Ecdsa(_)) {
                    "DER"
                } else {
                    "raw"
                };
                let line = format!(
                    "{scheme}, {} bytes ({encoding})",
                    signature.as_bytes().len()
                );
                Ok((signature, line))
            })
            .await?;
        steps
            .run("verify", &target(name), async {
                backend
                    .verify(&key_name, SignInput::message(MESSAGE), &signature)
                    .await?;
                Ok((
                    (),
                    "valid (checked with RustCrypto against the public key)".into(),
                ))
            })
            .await?;
        steps
            .run("verify", &target(name), async {
                let tampered = [MESSAGE, b"!"].concat();
                expect_error(
                    backend
                        .verify(&key_name, SignInput::message(&tampered), &signature)
                        .await,
                    ErrorKind::InvalidSignature,
                    "altered message",
                )
            })
            .await?;
        if first_signature.is_none() {
            first_signature = Some((name, signature));
        }
    }

    let aes = KeyName::new("demo-aes")?;
    let ciphertext = steps
        .run("encrypt", &target("demo-aes"), async {
            let ciphertext = backend
                .encrypt(&KeyRef::from(&aes), PLAINTEXT, AAD.as_bytes())
                .await?;
            let line = format!(
                "aad {AAD:?}, {} -> {} bytes",
                PLAINTEXT.len(),
                ciphertext.len()
            );
            Ok((ciphertext, line))
        })
        .await?;
    steps
        .run("decrypt", &target("demo-aes"), async {
            let plaintext = backend
                .decrypt_aead(&aes, &ciphertext, AAD.as_bytes())
                .await?;
            if plaintext.expose() != PLAINTEXT {
                return Err(Error::new(
                    ErrorKind::Integrity,
                    "round trip changed the data",
                ));
            }
            Ok(((), "same plaintext back".into()))
        })
        .await?;
    steps
        .run("decrypt", &target("demo-aes"), async {
            expect_error(
                backend
                    .decrypt_aead(&aes, &ciphertext, b"invoice-2026-0043")
                    .await
                    .map(drop),
                ErrorKind::Integrity,
                "wrong AAD",
            )
        })
        .await?;

    let (rotated, old_signature): (&str, Signature) = first_signature
        .ok_or_else(|| Error::new(ErrorKind::Unexpected, "no signing key in the demo"))?;
    let rotated_name = KeyName::new(rotated)?;
    steps
        .run("rotate", &target(rotated), async {
            let info = backend.rotate_key(&rotated_name).await?;
            Ok(((), format!("version {} is current", info.version)))
        })
        .await?;
    steps
        .run("sign", &target(rotated), async {
            let signature = backend
                .sign_message(&KeyRef::from(&rotated_name), MESSAGE)
                .await?;
            backend
                .verify(&rotated_name, SignInput::message(MESSAGE), &signature)
                .await?;
            Ok((
                (),
                format!(
                    "signed and verified with version {}",
                    signature.key_version()
                ),
            ))
        })
        .await?;
    steps
        .run("verify", &target(rotated), async {
            backend
                .verify(&rotated_name, SignInput::message(MESSAGE), &old_signature)
                .await?;
            Ok((
                (),
                format!(
                    "version-{} signature from before the rotation still valid",
                    old_signature.key_version()
                ),
            ))
        })
        .await?;

    steps
        .run("list", BACKEND, async {
            let keys: Vec<(String, keychain::KeyInfo)> = backend
                .list_keys()
                .await?
                .into_iter()
                .map(|k| (BACKEND.to_owned(), k))
                .collect();
            let line = format!("{} keys", keys.len());
            Ok((keys, line))
        })
        .await
}

/// Turns the expected failure into a result line, and an unexpected success or another kind into
/// an error.
fn expect_error(result: Result<()>, kind: ErrorKind, what: &str) -> Result<((), String)> {
    match result {
        Err(e) if e.kind() == kind => Ok(((), format!("{what} rejected ({kind})"))),
        Err(e) => Err(e),
        Ok(()) => Err(Error::new(
            ErrorKind::Unexpected,
            format!("{what} was accepted; expected {kind}"),
        )),
    }
}
