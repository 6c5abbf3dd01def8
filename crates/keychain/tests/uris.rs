//! Every key URI written in any README resolves: the test collects the URIs from the READMEs
//! and resolves each through a [`Keychain`] with one backend of each type, checking the backend
//! and the key it lands on. A URI added to a README without a row here fails the test, so the
//! docs cannot promise a form that does not work.
//!
//! The backends are each crate's real [`BackendConfig`] — its URI matching and key naming —
//! over a stand-in that opens nothing, so no service is needed.
#![cfg(all(
    feature = "pkcs8",
    feature = "pkcs11",
    feature = "sc-hsm",
    feature = "aws",
    feature = "vault",
    feature = "tpm2"
))]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test assertions")]

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use keychain::{
    Backend, BackendConfig, BackendFactory, Capabilities, Config, KeyInfo, KeyName, KeyRef,
    KeySpec, KeyUri, Keychain, Openers, Protection, Registration, Result, SignInput, Signature,
    SignatureScheme, async_trait,
};

/// The backends the URIs resolve against: one of each type, configured as the READMEs'
/// examples assume (token `prod`, region `eu-west-1`, the default alias prefix and mount...).
const CONFIG: &str = r#"
[backends.local]
type = "pkcs8"

[backends.hsm]
type = "pkcs11"
module-path = "/usr/lib/softhsm/libsofthsm2.so"
token = "prod"
pin = { env = "HSM_PIN" }

[backends.cloudhsm]
type = "pkcs11"
module-path = "/opt/cloudhsm/lib/libcloudhsm_pkcs11.so"
slot-id = 1234
pin = { env = "HSM_PIN" }

[backends.card]
type = "sc-hsm"
module-path = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"
token = "SmartCard-HSM (UserPIN)"
pin = { env = "CARD_PIN" }

[backends.kms]
type = "aws"
region = "eu-west-1"

[backends.transit]
type = "vault"
address = "https://vault:8200"
auth = { method = "token", token = { env = "VAULT_TOKEN" } }

[backends.tpm]
type = "tpm2"
tcti = "swtpm:host=127.0.0.1,port=2321"
"#;

/// Every documented URI: the backend it must land on and the key (`None`: the URI configures a
/// backend and names no key; then the backend's `from_uri` must accept it).
const TABLE: &[(&str, &str, Option<&str>)] = &[
    ("pkcs8:name=release", "local", Some("release")),
    ("pkcs8:name=signer", "local", Some("signer")),
    ("pkcs11:token=prod;object=signer", "hsm", Some("signer")),
    (
        "pkcs11:token=prod;object=release-signer?pin-source=env:HSM_PIN",
        "hsm",
        Some("release-signer"),
    ),
    (
        "pkcs11:token=prod;object=signer?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:HSM_PIN",
        "hsm",
        Some("signer"),
    ),
    (
        "pkcs11:slot-id=1234?module-path=/opt/cloudhsm/lib/libcloudhsm_pkcs11.so&pin-source=file:/run/pin&max-sessions=8",
        "cloudhsm",
        None,
    ),
    ("awskms:key-id=alias/keychain/signer", "kms", Some("signer")),
    (
        "awskms:key-id=alias/keychain/signer;region=eu-west-1",
        "kms",
        Some("signer"),
    ),
    (
        "awskms:region=us-east-1?endpoint=http://127.0.0.1:4566&alias-prefix=app/&secret-access-key-source=env:S&access-key-id-source=env:K",
        "kms",
        None,
    ),
    (
        "transit:mount=transit;name=signer;version=2",
        "transit",
        Some("signer@2"),
    ),
    (
        "transit:mount=transit;name=signer;version=3?address=https://vault:8200&token-source=env:VAULT_TOKEN",
        "transit",
        Some("signer@3"),
    ),
    (
        "transit:name=data?address=http://127.0.0.1:8200&role-id-source=file:/run/r&secret-id-source=env:S",
        "transit",
        None,
    ),
    (
        "tpm2:name=signer?tcti=swtpm:host%3D127.0.0.1,port%3D2321&key-dir=/var/lib/keys",
        "tpm",
        Some("signer"),
    ),
    (
        "sc-hsm:token=SmartCard-HSM%20%28UserPIN%29;object=signer",
        "card",
        Some("signer"),
    ),
    // The canonical schemes, and an alias ARN.
    ("aws:key-id=alias/keychain/signer", "kms", Some("signer")),
    (
        "aws:name=signer;version=4;region=eu-west-1",
        "kms",
        Some("signer@4"),
    ),
    ("vault:name=signer;version=2", "transit", Some("signer@2")),
    (
        "awskms:key-id=arn:aws:kms:eu-west-1:111122223333:alias/keychain/signer",
        "kms",
        Some("signer"),
    ),
];

/// Opens a stand-in instead of the backend, so the test needs no service; URI matching and key
/// naming are the real configuration's.
struct Offline<C>(Registration<C>);

#[async_trait]
impl<C: BackendConfig> BackendFactory for Offline<C> {
    fn backend_type(&self) -> &str {
        self.0.backend_type()
    }

    fn type_aliases(&self) -> &[&str] {
        self.0.type_aliases()
    }

    fn uri_schemes(&self) -> &[&str] {
        self.0.uri_schemes()
    }

    async fn open(&self, _name: &str, settings: &toml::Table) -> Result<Arc<dyn Backend>> {
        // The settings must be the backend's own, as for a real open.
        let _: C = settings
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| keychain::Error::invalid_input(e.to_string()))?;
        Ok(Arc::new(StandIn(Capabilities::new(
            C::TYPE,
            Protection::Software,
        ))))
    }

    fn matches(&self, settings: &toml::Table, uri: &KeyUri) -> bool {
        self.0.matches(settings, uri)
    }

    fn key_ref(&self, settings: &toml::Table, uri: &KeyUri) -> Result<KeyRef> {
        self.0.key_ref(settings, uri)
    }
}

#[derive(Debug)]
struct StandIn(Capabilities);

#[async_trait]
impl Backend for StandIn {
    fn capabilities(&self) -> &Capabilities {
        &self.0
    }
    async fn generate_key(&self, _: &KeyName, _: &KeySpec) -> Result<KeyInfo> {
        Err(keychain::Error::unsupported("stand-in"))
    }
    async fn key_info(&self, _: &KeyRef) -> Result<KeyInfo> {
        Err(keychain::Error::unsupported("stand-in"))
    }
    async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        Ok(Vec::new())
    }
    async fn delete_key(&self, _: &KeyName) -> Result<()> {
        Err(keychain::Error::unsupported("stand-in"))
    }
    async fn sign(&self, _: &KeyRef, _: SignInput<'_>, _: SignatureScheme) -> Result<Signature> {
        Err(keychain::Error::unsupported("stand-in"))
    }
    async fn close(&self) -> Result<()> {
        Ok(())
    }
}

fn openers() -> Openers {
    let mut openers = Openers::new();
    openers
        .register(Arc::new(Offline(
            Registration::<keychain::pkcs8::Config>::new(),
        )))
        .register(Arc::new(Offline(
            Registration::<keychain::pkcs11::Config>::new(),
        )))
        .register(Arc::new(Offline(
            Registration::<keychain::sc_hsm::Config>::new(),
        )))
        .register(Arc::new(Offline(
            Registration::<keychain::aws::Config>::new(),
        )))
        .register(Arc::new(Offline(
            Registration::<keychain::vault::Config>::new(),
        )))
        .register(Arc::new(Offline(
            Registration::<keychain::tpm2::Config>::new(),
        )));
    openers
}

/// The URIs written in the workspace's READMEs: text starting with a backend scheme and a
/// colon, up to the first character no URI here contains, keeping those with an attribute.
fn documented_uris() -> BTreeSet<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("crates")).unwrap() {
        let readme = entry.unwrap().path().join("README.md");
        if readme.exists() {
            files.push(readme);
        }
    }
    let schemes = [
        "pkcs8:", "pkcs11:", "sc-hsm:", "awskms:", "aws:", "transit:", "vault:", "tpm2:",
    ];
    let mut found = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (at, _) in text.char_indices() {
            let rest = &text[at..];
            let boundary = text[..at]
                .chars()
                .next_back()
                .is_none_or(|c| !(c.is_ascii_alphanumeric() || "-/.:@".contains(c)));
            if !boundary || !schemes.iter().any(|s| rest.starts_with(s)) {
                continue;
            }
            let end = rest
                .find(|c: char| {
                    c.is_whitespace() || matches!(c, '`' | '"' | '\'' | '<' | '>' | ')')
                })
                .unwrap_or(rest.len());
            let uri = &rest[..end];
            if uri.contains('=') {
                found.insert(uri.to_owned());
            }
        }
    }
    found
}

#[test]
fn every_uri_in_a_readme_has_a_row() {
    let documented = documented_uris();
    assert!(documented.len() >= 10, "found only {documented:?}");
    let tested: BTreeSet<String> = TABLE.iter().map(|(u, _, _)| (*u).to_owned()).collect();
    let missing: Vec<_> = documented.difference(&tested).collect();
    assert!(
        missing.is_empty(),
        "documented URIs without a row in TABLE: {missing:#?}"
    );
}

#[tokio::test]
async fn every_documented_uri_resolves_to_its_backend_and_key() {
    let keychain = Keychain::open_with(&Config::from_toml(CONFIG).unwrap(), &openers())
        .await
        .unwrap();
    for (uri, backend, key) in TABLE {
        let parsed: KeyUri = uri.parse().unwrap_or_else(|e| panic!("{uri}: {e}"));
        match key {
            Some(key) => {
                let resolved = keychain
                    .resolve(uri)
                    .unwrap_or_else(|e| panic!("{uri}: {e}"));
                assert_eq!(resolved.backend_name, *backend, "{uri}");
                assert_eq!(resolved.key.to_string(), *key, "{uri}");
            }
            None => {
                // A URI that configures a backend: it opens one, and matches the configured one.
                let entry = keychain.registry().entry(backend).unwrap();
                let accepted = match entry.backend_type() {
                    "pkcs11" => keychain::pkcs11::Config::from_uri(&parsed).map(drop),
                    "aws" => <keychain::aws::Config as BackendConfig>::from_uri(&parsed).map(drop),
                    "vault" => {
                        <keychain::vault::Config as BackendConfig>::from_uri(&parsed).map(drop)
                    }
                    other => panic!("no from_uri check for {other}"),
                };
                accepted.unwrap_or_else(|e| panic!("{uri}: {e}"));
            }
        }
    }
}

#[tokio::test]
async fn uris_that_name_another_backend_or_no_key_are_refused() {
    let keychain = Keychain::open_with(&Config::from_toml(CONFIG).unwrap(), &openers())
        .await
        .unwrap();
    for (uri, kind) in [
        // Another namespace's alias, a version alias, a key id: not a key of this keychain.
        (
            "awskms:key-id=alias/other/signer;region=eu-west-1",
            keychain::ErrorKind::InvalidInput,
        ),
        (
            "awskms:key-id=1234abcd-12ab-34cd-56ef-1234567890ab;region=eu-west-1",
            keychain::ErrorKind::InvalidInput,
        ),
        // No backend on that token, mount, region or TPM.
        (
            "aws:name=signer;region=us-east-1",
            keychain::ErrorKind::NotFound,
        ),
        (
            "pkcs11:token=staging;object=signer",
            keychain::ErrorKind::NotFound,
        ),
        (
            "transit:mount=other;name=signer",
            keychain::ErrorKind::NotFound,
        ),
        (
            "tpm2:name=k?tcti=device:/dev/tpmrm0",
            keychain::ErrorKind::NotFound,
        ),
        ("pkcs8:name=k;version=0", keychain::ErrorKind::InvalidInput),
        ("gcpkms:name=k", keychain::ErrorKind::NotFound),
    ] {
        let e = keychain.resolve(uri).unwrap_err();
        assert_eq!(e.kind(), kind, "{uri}: {e}");
    }
}
