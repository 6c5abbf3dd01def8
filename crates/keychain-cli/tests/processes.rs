//! Several `keychain` processes on one software store at once — a CLI beside a service, two cron
//! jobs — never lose a key version nor make a ciphertext unreadable, and processes killed with
//! `SIGKILL` at any point leave every listed version usable.
//!
//! Every test spawns the real binary; none uses threads in place of processes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail the test loudly"
)]

use std::hash::{BuildHasher as _, RandomState};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

mod common;

use common::*;

/// The versions `key show` lists for `key`.
fn versions(store: &Store, key: &str) -> Vec<u64> {
    store.json(&["key", "show", key])["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect()
}

/// The key files in `keys/<key>/`.
fn key_files(store: &Store, key: &str) -> usize {
    match std::fs::read_dir(store.keys().join(key)) {
        Ok(entries) => entries
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".pem")
            })
            .count(),
        Err(_) => 0,
    }
}

fn listed(store: &Store) -> Vec<String> {
    store.json(&["key", "list"])["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap().to_owned())
        .collect()
}

fn wait(child: Child) -> Output {
    child.wait_with_output().unwrap()
}

#[test]
fn twenty_concurrent_rotations_keep_every_version() {
    let store = Store::new();
    store.ok(&["key", "generate", "rot", "--algorithm", "ec-p256"]);
    let children: Vec<_> = (0..20)
        .map(|_| store.spawn(&["--output", "json", "key", "rotate", "rot"]))
        .collect();
    let mut reported = Vec::new();
    for child in children {
        let output = wait(child);
        assert!(output.status.success(), "{}", describe(&output));
        let doc: Value = serde_json::from_slice(&output.stdout).unwrap();
        reported.push(doc["version"].as_u64().unwrap());
    }
    reported.sort_unstable();
    assert_eq!(
        reported,
        (2..=21).collect::<Vec<u64>>(),
        "each process made its own version"
    );
    assert_eq!(versions(&store, "rot"), (1..=21).collect::<Vec<u64>>());
    assert_eq!(key_files(&store, "rot"), 21, "no orphaned key file");
}

#[test]
fn rotating_and_encrypting_from_ten_processes_keeps_every_ciphertext_readable() {
    let store = Store::new();
    store.ok(&["key", "generate", "k", "--algorithm", "aes256-gcm"]);
    let plain = store.path("plain");
    std::fs::write(&plain, b"the message every process seals").unwrap();
    let children: Vec<_> = (0..10)
        .map(|i| {
            let out = store.path(&format!("sealed-{i}"));
            // Rotate, then encrypt, in two separate processes, ten such pairs at once.
            Command::new("sh")
                .arg("-c")
                .arg(
                    r#""$0" --config "$1" key rotate k >/dev/null && "$0" --config "$1" encrypt --key k --in "$2" --out "$3""#,
                )
                .arg(BIN)
                .arg(&store.config)
                .arg(&plain)
                .arg(&out)
                .env("KEYCHAIN_PASSWORD", PASSWORD)
                .env_remove("KEYCHAIN_CONFIG")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = wait(child);
        assert!(output.status.success(), "{}", describe(&output));
    }
    assert_eq!(versions(&store, "k").len(), 11);
    for i in 0..10 {
        let sealed = store.path(&format!("sealed-{i}"));
        let opened = store.path(&format!("opened-{i}"));
        store.ok(&[
            "decrypt",
            "--key",
            "k",
            "--in",
            sealed.to_str().unwrap(),
            "--out",
            opened.to_str().unwrap(),
        ]);
        assert_eq!(
            std::fs::read(&opened).unwrap(),
            std::fs::read(&plain).unwrap()
        );
    }
}

#[test]
fn a_rotation_racing_a_delete_ends_in_one_consistent_state() {
    let store = Store::new();
    for round in 0..6 {
        store.ok(&["key", "generate", "k", "--algorithm", "ec-p256"]);
        let rotate = store.spawn(&["key", "rotate", "k"]);
        let delete = store.spawn(&["key", "delete", "k", "--yes"]);
        let (rotated, deleted) = (wait(rotate), wait(delete));
        assert!(
            deleted.status.success(),
            "round {round}: {}",
            describe(&deleted)
        );
        // Before the delete it succeeded; after it, the key was gone.
        let code = rotated.status.code().unwrap();
        assert!(
            code == 0 || code == NOT_FOUND,
            "round {round}: rotate {}",
            describe(&rotated)
        );
        assert!(
            listed(&store).is_empty(),
            "round {round}: the key is listed"
        );
        assert_eq!(
            key_files(&store, "k"),
            0,
            "round {round}: files outlived the key"
        );
    }
}

/// Kills every process of a burst of rotations and encryptions at a random moment, then checks
/// that every listed version of each key still signs or decrypts, and that the store accepts
/// more work.
#[test]
fn processes_killed_at_random_points_leave_every_listed_version_usable() {
    let store = Store::new();
    store.ok(&["key", "generate", "sig", "--algorithm", "ec-p256"]);
    store.ok(&["key", "generate", "aead", "--algorithm", "aes256-gcm"]);
    let message = store.path("message");
    std::fs::write(&message, b"signed and sealed").unwrap();
    let random = RandomState::new();
    let mut sealed = Vec::new();
    for round in 0..8u64 {
        let out = store.path(&format!("sealed-{round}"));
        let children = vec![
            store.spawn(&["key", "rotate", "sig"]),
            store.spawn(&["key", "rotate", "aead"]),
            store.spawn(&["key", "rotate", "sig"]),
            store.spawn(&[
                "encrypt",
                "--key",
                "aead",
                "--in",
                message.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ]),
        ];
        std::thread::sleep(Duration::from_millis(random.hash_one(round) % 40));
        for mut child in children {
            let _ = child.kill();
            let _ = child.wait();
        }
        if out.exists() && std::fs::metadata(&out).unwrap().len() > 0 {
            sealed.push(out);
        }
    }
    for version in versions(&store, "sig") {
        let target = format!("sig@{version}");
        let sig = store.path(&format!("sig-{version}"));
        store.ok(&[
            "sign",
            "--key",
            &target,
            "--in",
            message.to_str().unwrap(),
            "--out",
            sig.to_str().unwrap(),
        ]);
        store.ok(&[
            "verify",
            "--key",
            &target,
            "--in",
            message.to_str().unwrap(),
            "--signature",
            sig.to_str().unwrap(),
        ]);
    }
    for version in versions(&store, "aead") {
        let out = store.path(&format!("check-{version}"));
        store.ok(&[
            "encrypt",
            "--key",
            &format!("aead@{version}"),
            "--in",
            message.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        sealed.push(out);
    }
    for file in &sealed {
        let opened = store.path("opened");
        store.ok(&[
            "decrypt",
            "--key",
            "aead",
            "--in",
            file.to_str().unwrap(),
            "--out",
            opened.to_str().unwrap(),
        ]);
        assert_eq!(
            std::fs::read(&opened).unwrap(),
            std::fs::read(&message).unwrap()
        );
    }
    // The store takes more work, and the next rotation tidies what the kills left.
    store.ok(&["key", "rotate", "sig"]);
    let versions = versions(&store, "sig");
    assert_eq!(
        key_files(&store, "sig"),
        versions.len(),
        "orphans outlived a rotation"
    );
    assert_no_dead_leftovers(&store.path("keys"));
}

/// No temporary file a killed writer left behind is visible to a newly opened store: opening
/// removes them (the CLI opens the store on every run).
fn assert_no_dead_leftovers(root: &Path) {
    for entry in std::fs::read_dir(root.join("sig")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.starts_with(".tmp-"), "{name} left behind");
    }
}
