//! Registry and router: configuration checks, feature messages, target resolution, layers and
//! fallback wired from TOML, explicit registration of an application's own backend type.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use keychain::{
    Backend, BackendExt, BackendFactory, Capabilities, Config, Error, ErrorKind, KeyAlgorithm,
    KeyInfo, KeyName, KeyRef, KeySpec, KeyUri, Keychain, Openers, Protection, Registry, Result,
    SignInput, Signature, SignatureScheme, async_trait,
};

/// A software backend's table; the literal password form exists for tests like this one.
fn pkcs8_table(extra: &str) -> String {
    format!(
        "type = \"pkcs8\"\npassword = {{ value = \"registry test password\" }}\n\
         kdf = {{ pbkdf2 = {{ iterations = 1000 }} }}\n{extra}\n"
    )
}

/// A backend that is always unavailable and counts the calls it gets.
#[derive(Debug)]
struct Down {
    capabilities: Capabilities,
    calls: Arc<AtomicUsize>,
}

impl Down {
    fn fail<T>(&self) -> Result<T> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(Error::new(
            ErrorKind::Unavailable,
            "the device is unplugged",
        ))
    }
}

#[async_trait]
impl Backend for Down {
    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }
    async fn generate_key(&self, _: &KeyName, _: &KeySpec) -> Result<KeyInfo> {
        self.fail()
    }
    async fn key_info(&self, _: &KeyRef) -> Result<KeyInfo> {
        self.fail()
    }
    async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        self.fail()
    }
    async fn delete_key(&self, _: &KeyName) -> Result<()> {
        self.fail()
    }
    async fn sign(&self, _: &KeyRef, _: SignInput<'_>, _: SignatureScheme) -> Result<Signature> {
        self.fail()
    }
    async fn close(&self) -> Result<()> {
        Ok(())
    }
}

/// An application's own backend type, registered explicitly.
struct DownFactory(Arc<AtomicUsize>);

#[async_trait]
impl BackendFactory for DownFactory {
    fn backend_type(&self) -> &str {
        "down"
    }
    fn uri_schemes(&self) -> &[&str] {
        &["down"]
    }
    async fn open(&self, _name: &str, settings: &toml::Table) -> Result<Arc<dyn Backend>> {
        if settings.contains_key("refuse") {
            return Err(Error::new(ErrorKind::PermissionDenied, "refused to open"));
        }
        Ok(Arc::new(Down {
            capabilities: Capabilities::new("down", Protection::Software),
            calls: Arc::clone(&self.0),
        }))
    }
}

fn openers(calls: &Arc<AtomicUsize>) -> Openers {
    let mut openers = Openers::builtin();
    openers.register(Arc::new(DownFactory(Arc::clone(calls))));
    openers
}

#[tokio::test]
async fn a_backend_type_not_compiled_in_names_its_feature() {
    // A keychain backend whose feature this build leaves out names the feature to enable.
    let left_out = [
        ("sc-hsm", cfg!(feature = "sc-hsm")),
        ("tpm2", cfg!(feature = "tpm2")),
        ("aws", cfg!(feature = "aws")),
        ("vault", cfg!(feature = "vault")),
        ("pkcs11", cfg!(feature = "pkcs11")),
    ]
    .into_iter()
    .find(|(_, compiled)| !compiled);
    if let Some((backend_type, _)) = left_out {
        let config =
            Config::from_toml(&format!("[backends.other]\ntype = \"{backend_type}\"")).unwrap();
        let e = Registry::open(&config).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert!(
            e.message().contains(&format!("feature `{backend_type}`")),
            "{e}"
        );
        assert!(e.message().contains("backend `other`"), "{e}");
    }
    // Google Cloud KMS has no backend crate yet: no feature to name, so no hint of one.
    let config = Config::from_toml("[backends.cloud]\ntype = \"gcp\"\nproject = \"p\"").unwrap();
    let e = Registry::open(&config).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(!e.message().contains("feature"), "{e}");

    let config = Config::from_toml("[backends.x]\ntype = \"floppy\"").unwrap();
    let e = Registry::open(&config).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(
        e.message().contains("floppy") && e.message().contains("pkcs8"),
        "{e}"
    );
}

#[tokio::test]
async fn configuration_mistakes_are_caught_before_anything_opens() {
    let calls = Arc::new(AtomicUsize::new(0));
    for (toml, needle) in [
        (
            "default = \"nope\"\n[backends.a]\ntype = \"down\"",
            "default backend `nope`",
        ),
        ("[backends.a]\ntype = \"down\"\nfallback = \"a\"", "itself"),
        (
            "[backends.a]\ntype = \"down\"\nfallback = \"b\"",
            "fallback `b`",
        ),
        ("[backends.\"has:colon\"]\ntype = \"down\"", "has:colon"),
        (
            "[backends.a]\ntype = \"down\"\nlayers = [{ type = \"retry\", max-attempts = 0 }]",
            "max-attempts",
        ),
    ] {
        let config = Config::from_toml(toml).unwrap();
        let e = Registry::open_with(&config, &openers(&calls))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{toml}");
        assert!(e.message().contains(needle), "{toml}: {e}");
    }
    // Unknown layer types and unknown settings of a layer fail at parse time.
    let e = Config::from_toml("[backends.a]\ntype = \"down\"\nlayers = [{ type = \"magic\" }]")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    // A backend's own settings are checked by the backend when it opens.
    let config = Config::from_toml(&format!(
        "[backends.a]\n{}",
        pkcs8_table("colour = \"red\"")
    ))
    .unwrap();
    let e = Registry::open(&config).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.message().contains("colour"), "{e}");
}

#[tokio::test]
async fn an_open_failure_names_the_backend_and_keeps_its_kind() {
    let calls = Arc::new(AtomicUsize::new(0));
    let config = Config::from_toml("[backends.vault]\ntype = \"down\"\nrefuse = true").unwrap();
    let e = Registry::open_with(&config, &openers(&calls))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert!(e.message().starts_with("backend `vault`"), "{e}");
    // A missing password variable is NotFound and names the variable, not a value.
    let config = Config::from_toml(
        "[backends.local]\ntype = \"pkcs8\"\npassword = { env = \"KEYCHAIN_TEST_UNSET_VAR_42\" }",
    )
    .unwrap();
    let e = Registry::open(&config).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.message().contains("KEYCHAIN_TEST_UNSET_VAR_42"), "{e}");
}

#[tokio::test]
async fn targets_resolve_by_name_default_version_and_uri() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let config = Config::from_toml(&format!(
        "default = \"disk\"\n[backends.disk]\n{}\n[backends.mem]\n{}",
        pkcs8_table(&format!("dir = \"{}\"", keys.display())),
        pkcs8_table(""),
    ))
    .unwrap();
    let keychain = Keychain::open(&config).await.unwrap();
    assert_eq!(
        keychain.registry().names().collect::<Vec<_>>(),
        ["disk", "mem"]
    );

    let r = keychain.resolve("mem:k1@2").unwrap();
    assert_eq!(r.backend_name, "mem");
    assert_eq!(r.key.name().as_str(), "k1");
    assert_eq!(r.key.version(), Some(2));
    assert_eq!(keychain.resolve("k1").unwrap().backend_name, "disk");

    // Two pkcs8 backends: a URI needs `dir=` or `?backend=` to pick one.
    let e = keychain.resolve("pkcs8:name=k1").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.message().contains("backend=NAME"), "{e}");
    let by_dir = KeyUri::new("pkcs8")
        .unwrap()
        .with_path_attr("dir", keys.to_str().unwrap())
        .unwrap()
        .with_path_attr("name", "k1")
        .unwrap()
        .with_path_attr("version", "3")
        .unwrap();
    let r = keychain.resolve(&by_dir.to_string()).unwrap();
    assert_eq!(
        (r.backend_name.as_str(), r.key.version()),
        ("disk", Some(3))
    );
    let r = keychain.resolve("pkcs8:name=k1?backend=mem").unwrap();
    assert_eq!(r.backend_name, "mem");

    for (target, kind) in [
        ("nope:k1", ErrorKind::NotFound),
        ("mem:bad name", ErrorKind::InvalidInput),
        ("mem:", ErrorKind::InvalidInput),
        ("awskms:key-id=x;name=k1", ErrorKind::NotFound),
        ("pkcs8:name=k1;dir=/x", ErrorKind::NotFound),
        ("pkcs8:version=2?backend=mem", ErrorKind::InvalidInput),
        ("pkcs8:name=k1;version=two", ErrorKind::InvalidInput),
    ] {
        assert_eq!(
            keychain.resolve(target).unwrap_err().kind(),
            kind,
            "{target}"
        );
    }

    // The key really lives where the target says.
    let r = keychain.resolve("disk:signer").unwrap();
    r.backend
        .generate_key(r.key.name(), &KeySpec::new(KeyAlgorithm::EcP256))
        .await
        .unwrap();
    assert!(keys.join("signer").join("meta.json").exists());
    let mem = keychain.resolve("mem:signer").unwrap();
    assert_eq!(
        mem.backend.key_info(&mem.key).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    keychain.close().await.unwrap();
}

#[tokio::test]
async fn no_default_with_several_backends_asks_for_a_backend_name() {
    let config = Config::from_toml(&format!(
        "[backends.a]\n{}\n[backends.b]\n{}",
        pkcs8_table(""),
        pkcs8_table("")
    ))
    .unwrap();
    let keychain = Keychain::open(&config).await.unwrap();
    let e = keychain.resolve("k").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.message().contains("BACKEND:k"), "{e}");
}

#[tokio::test]
async fn fallback_and_metrics_are_wired_from_the_config() {
    let calls = Arc::new(AtomicUsize::new(0));
    let config = Config::from_toml(&format!(
        "[backends.hsm]\ntype = \"down\"\nfallback = \"soft\"\nlayers = [{{ type = \"metrics\" }}]\n\
         [backends.soft]\n{}",
        pkcs8_table("layers = [{ type = \"audit\" }]")
    ))
    .unwrap();
    let keychain = Keychain::open_with(&config, &openers(&calls))
        .await
        .unwrap();
    let soft = keychain.resolve("soft:k").unwrap();
    soft.backend
        .generate_key(soft.key.name(), &KeySpec::new(KeyAlgorithm::Ed25519))
        .await
        .unwrap();

    // `hsm` is down: reads and signatures go to `soft`.
    let hsm = keychain.resolve("hsm:k").unwrap();
    let sig = hsm
        .backend
        .sign_message(&hsm.key, b"through the fallback")
        .await
        .unwrap();
    soft.backend
        .verify(
            soft.key.name(),
            SignInput::message(b"through the fallback"),
            &sig,
        )
        .await
        .unwrap();
    assert!(
        calls.load(Ordering::SeqCst) >= 1,
        "the primary was tried first"
    );

    let metrics = keychain.registry().entry("hsm").unwrap().metrics().unwrap();
    let snapshot = metrics.snapshot();
    assert!(snapshot.total_errors() >= 1, "{snapshot:?}");
    assert!(
        keychain
            .registry()
            .entry("soft")
            .unwrap()
            .metrics()
            .is_none()
    );
    keychain.close().await.unwrap();
}

#[tokio::test]
async fn explicit_registration_in_code() {
    let mut registry = Registry::new();
    let backend = keychain::pkcs8::Pkcs8Backend::open(keychain::pkcs8::Config::in_memory(
        keychain::SecretSource::value("in code"),
    ))
    .await
    .unwrap();
    registry.insert("app", Arc::new(backend)).unwrap();
    let again = keychain::pkcs8::Pkcs8Backend::open(keychain::pkcs8::Config::in_memory(
        keychain::SecretSource::value("in code"),
    ))
    .await
    .unwrap();
    assert_eq!(
        registry.insert("app", Arc::new(again)).unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        registry.set_default("missing").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let keychain = Keychain::new(registry);
    assert_eq!(keychain.resolve("k").unwrap().backend_name, "app");
    assert_eq!(
        keychain.registry().entry("app").unwrap().uri_scheme(),
        "pkcs8"
    );
}
