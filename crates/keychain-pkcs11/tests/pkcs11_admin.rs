//! Token administration as the Security Officer (the `pkcs11` cell), on a SoftHSM token this test
//! creates for itself (so that changing PINs cannot disturb the cell's token) and deletes.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use std::process::Command;

use keychain_core::{ErrorKind, SecretSource, SecretString};
use keychain_pkcs11::{Config, Pkcs11Backend, TokenAdmin};

fn random_hex(n: usize) -> String {
    let mut r = vec![0u8; n];
    getrandom::fill(&mut r).unwrap();
    r.iter().map(|b| format!("{b:02x}")).collect()
}

fn softhsm(args: &[&str]) {
    let out = Command::new("softhsm2-util").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "softhsm2-util {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A token of this test's own, removed when dropped.
struct Token(String);

impl Drop for Token {
    fn drop(&mut self) {
        let _ = Command::new("softhsm2-util")
            .args(["--delete-token", "--token", &self.0])
            .output();
    }
}

// One test function: the steps share the token and its login state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_security_officer_sets_pins() {
    let Some(env) = common::env() else { return };
    let label = format!("kt-admin-{}", random_hex(4));
    let (so_pin, user_pin) = (random_hex(8), random_hex(8));
    // Created before this process loads the module, so SoftHSM sees it at C_Initialize.
    softhsm(&[
        "--init-token",
        "--free",
        "--label",
        &label,
        "--so-pin",
        &so_pin,
        "--pin",
        &user_pin,
    ]);
    let token = Token(label.clone());
    let config = |pin: &str, so: Option<&str>| {
        let mut c = Config::new(&env.module, &token.0, SecretSource::value(pin.to_owned()));
        c.so_pin = so.map(|p| SecretSource::value(p.to_owned()));
        c
    };

    // No SO PIN configured; a wrong one.
    let err = TokenAdmin::open(&config(&user_pin, None))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let err = TokenAdmin::open(&config(&user_pin, Some("wrong-so-pin")))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
    assert!(!format!("{err:?}").contains(&so_pin));

    // The SO gives the user a new PIN: the new one opens the token, the old one no longer.
    let admin = TokenAdmin::open(&config(&user_pin, Some(&so_pin)))
        .await
        .unwrap();
    assert_eq!(admin.token_label(), label);
    assert!(!format!("{admin:?}").contains(&so_pin));
    let new_user = random_hex(8);
    admin
        .init_user_pin(&SecretString::from(new_user.as_str()))
        .await
        .unwrap();
    let backend = Pkcs11Backend::open(config(&new_user, None)).await.unwrap();

    // While a backend is logged in as the user, the SO cannot log in.
    let err = admin
        .init_user_pin(&SecretString::from("another"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    keychain_core::Backend::close(&backend).await.unwrap();
    drop(backend);
    // (Checked with no session logged in: PKCS#11's login belongs to the process, so a backend
    // opened beside a logged-in one never presents its PIN.)
    let err = Pkcs11Backend::open(config(&user_pin, None))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");

    // The SO PIN changes; the handle goes on with the new one, and only the new one opens.
    let new_so = random_hex(8);
    admin
        .change_so_pin(&SecretString::from(new_so.as_str()))
        .await
        .unwrap();
    admin
        .init_user_pin(&SecretString::from(user_pin.as_str()))
        .await
        .unwrap();
    admin.close();
    let err = admin
        .init_user_pin(&SecretString::from("after close"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    drop(admin);
    let err = TokenAdmin::open(&config(&user_pin, Some(&so_pin)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
    let again = TokenAdmin::open(&config(&user_pin, Some(&new_so)))
        .await
        .unwrap();
    again.close();
    // The PIN the SO set last opens the token.
    let backend = Pkcs11Backend::open(config(&user_pin, None)).await.unwrap();
    keychain_core::Backend::close(&backend).await.unwrap();
    drop(env);
}
