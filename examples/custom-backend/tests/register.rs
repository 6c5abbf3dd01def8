//! The toy backend registered with the umbrella at run time: opened from TOML, its keys found
//! by `backend:key` and by its own URI scheme, a wrong instance refused.

#![allow(clippy::unwrap_used, reason = "test assertions")]

use keychain::{
    BackendExt, Config, ErrorKind, KeyAlgorithm, KeySpec, Keychain, Openers, SignInput,
};
use keychain_example_custom_backend::ToyConfig;

const CONFIG: &str = r#"
[backends.play]
type = "toy"
label = "demo"

[backends.other]
type = "toy"
label = "second"
"#;

#[tokio::test]
async fn registers_opens_and_resolves_like_a_builtin_backend() {
    // Without the registration the type is unknown.
    let config = Config::from_toml(CONFIG).unwrap();
    let e = Keychain::open(&config).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");

    let mut openers = Openers::builtin();
    openers.register_config::<ToyConfig>();
    let keychain = Keychain::open_with(&config, &openers).await.unwrap();
    assert_eq!(
        keychain.registry().entry("play").unwrap().backend_type(),
        "toy"
    );

    let target = keychain.resolve("play:signer").unwrap();
    target
        .backend
        .generate_key(target.key.name(), &KeySpec::new(KeyAlgorithm::Ed25519))
        .await
        .unwrap();
    let signature = target
        .backend
        .sign_message(&target.key, b"hello")
        .await
        .unwrap();

    let by_uri = keychain.resolve("toy:label=demo;name=signer").unwrap();
    assert_eq!(by_uri.backend_name, "play");
    by_uri
        .backend
        .verify(by_uri.key.name(), SignInput::message(b"hello"), &signature)
        .await
        .unwrap();
    // The other instance holds no such key; a label nobody has matches no backend; two
    // instances answer a URI without a label.
    let other = keychain.resolve("toy:label=second;name=signer").unwrap();
    assert_eq!(other.backend_name, "other");
    let e = other.backend.key_info(&other.key).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = keychain.resolve("toy:label=third;name=signer").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = keychain.resolve("toy:name=signer").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    // An unknown setting is refused when opening, as for a built-in backend.
    let bad = Config::from_toml("[backends.x]\ntype = \"toy\"\ncolour = \"red\"").unwrap();
    let e = Keychain::open_with(&bad, &openers).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
}
