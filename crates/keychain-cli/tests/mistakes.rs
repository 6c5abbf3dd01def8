//! The mistakes people make with the CLI's software store: a mistyped password, a careless or
//! hostile KDF setting, a damaged key file. Each gets its exit code and loses nothing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail the test loudly"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

mod common;

use common::*;

/// Every file in the store with its content (lock files aside).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".lock")
            {
                continue;
            }
            if path.is_dir() {
                todo.push(path);
            } else {
                out.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

#[test]
fn a_mistyped_password_is_refused_and_writes_nothing() {
    let store = Store::new();
    store.ok(&["key", "generate", "k", "--algorithm", "ec-p256"]);
    let before = snapshot(&store.keys());
    for args in [
        &["key", "rotate", "k"][..],
        &["key", "generate", "other", "--algorithm", "ec-p256"],
        &["key", "delete", "k", "--yes"],
    ] {
        let output = store.run_with("correct horse battery stapel", args);
        assert_eq!(
            code(&output),
            UNAUTHENTICATED,
            "{args:?}: {}",
            describe(&output)
        );
    }
    assert_eq!(
        snapshot(&store.keys()),
        before,
        "a mistyped password changed the store"
    );
    store.ok(&["key", "rotate", "k"]);
}

#[test]
fn careless_or_hostile_kdf_settings_are_invalid_input() {
    let store = Store::new();
    for kdf in [
        "kdf = { scrypt = { log-n = 40, r = 8, p = 1 } }",
        "kdf = { scrypt = { log-n = 24, r = 8, p = 1 } }",
        "kdf = { pbkdf2 = { iterations = 0 } }",
        "kdf = { pbkdf2 = { iterations = 4294967295 } }",
    ] {
        store.configure(kdf);
        let output = store.run(&["key", "generate", "k", "--algorithm", "ec-p256"]);
        assert_eq!(code(&output), INVALID_INPUT, "{kdf}: {}", describe(&output));
    }
    // Raising the limit is a deliberate, documented act.
    store.configure(
        "kdf = { pbkdf2 = { iterations = 20000000 } }\n\
         kdf-limits = { max-pbkdf2-iterations = 20000000 }",
    );
    let output = store.run(&["key", "list"]);
    assert!(output.status.success(), "{}", describe(&output));
}

#[test]
fn a_damaged_key_is_listed_as_damaged_and_can_be_deleted() {
    let store = Store::new();
    for k in ["a", "broken", "c"] {
        store.ok(&["key", "generate", k, "--algorithm", "ec-p256"]);
    }
    std::fs::write(store.keys().join("broken/meta.json"), b"{ damaged").unwrap();

    let listed: Value =
        serde_json::from_slice(&store.ok(&["--output", "json", "key", "list"]).stdout).unwrap();
    let keys = listed["keys"].as_array().unwrap();
    let status: Vec<(&str, &str)> = keys
        .iter()
        .map(|k| (k["name"].as_str().unwrap(), k["status"].as_str().unwrap()))
        .collect();
    assert_eq!(status, [("a", "ok"), ("c", "ok"), ("broken", "damaged")]);
    assert_eq!(keys[2]["error"]["kind"], "integrity");
    let table = String::from_utf8(store.ok(&["key", "list"]).stdout).unwrap();
    assert!(
        table.contains("local:a") && table.contains("local:c"),
        "{table}"
    );
    assert!(
        table.contains("damaged") && table.contains("local:broken"),
        "{table}"
    );

    let output = store.run(&["sign", "--key", "broken", "--in", "keychain.toml"]);
    assert_eq!(code(&output), INTEGRITY, "{}", describe(&output));
    store.ok(&["key", "delete", "broken", "--yes"]);
    store.ok(&["key", "generate", "broken", "--algorithm", "ec-p256"]);
}

#[test]
fn a_flipped_byte_in_a_key_file_is_integrity_not_a_wrong_password() {
    let store = Store::new();
    store.ok(&["key", "generate", "k", "--algorithm", "ec-p256"]);
    let file = std::fs::read_dir(store.keys().join("k"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "pem"))
        .unwrap();
    let pem = std::fs::read_to_string(&file).unwrap();
    // A character in the middle of the base64 body: inside the ciphertext.
    let at = pem.len() / 2 + 20;
    let mut bytes = pem.into_bytes();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    std::fs::write(&file, bytes).unwrap();
    let output = store.run(&[
        "sign",
        "--key",
        "k",
        "--in",
        "keychain.toml",
        "--out",
        "sig",
    ]);
    assert_eq!(code(&output), INTEGRITY, "{}", describe(&output));
    let output = store.run_with("typo", &["sign", "--key", "k", "--in", "keychain.toml"]);
    assert_eq!(code(&output), UNAUTHENTICATED, "{}", describe(&output));
}

#[test]
fn the_last_version_number_is_refused_not_a_panic() {
    let store = Store::new();
    store.ok(&["key", "generate", "k", "--algorithm", "ec-p256"]);
    let meta = store.keys().join("k/meta.json");
    let text = std::fs::read_to_string(&meta).unwrap();
    std::fs::write(
        &meta,
        text.replace("\"version\": 1,", "\"version\": 4294967295,"),
    )
    .unwrap();
    let output = store.run(&["key", "rotate", "k"]);
    assert_eq!(code(&output), CAPACITY_EXCEEDED, "{}", describe(&output));
}
