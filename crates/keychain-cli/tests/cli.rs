//! The `keychain` binary end to end: the demo in an empty environment, signatures checked by
//! OpenSSL, AEAD round trips, and the exit code of each kind of failure.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail the test loudly"
)]

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

mod common;

use common::*;

fn openssl(args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl must be installed (cargo xtask setup installs it)")
}

fn write(path: &Path, data: &[u8]) {
    std::fs::write(path, data).unwrap();
}

/// Generates a key, exports its public key, signs `msg.txt`; returns (pub.pem, msg, sig).
fn sign_file(store: &Store, name: &str, algorithm: &str, scheme: &str) -> [String; 3] {
    store.ok(&["key", "generate", name, "--algorithm", algorithm]);
    let (public, msg, sig) = (
        store.arg(&format!("{name}.pub.pem")),
        store.arg(&format!("{name}.msg")),
        store.arg(&format!("{name}.sig")),
    );
    store.ok(&["key", "export-public", name, "--out", &public]);
    write(Path::new(&msg), b"release 1.0.0\n\x00\xffbinary tail");
    store.ok(&[
        "sign", "--key", name, "--in", &msg, "--out", &sig, "--scheme", scheme,
    ]);
    [public, msg, sig]
}

fn tamper(path: &str) {
    let mut data = std::fs::read(path).unwrap();
    data[0] ^= 1;
    write(Path::new(path), &data);
}

/// After OpenSSL accepted the signature: keychain accepts it too (by key and by public key
/// file); after tampering OpenSSL rejects it and keychain exits with InvalidSignature.
fn check_keychain_verify_and_tamper(
    store: &Store,
    name: &str,
    scheme: &str,
    [public, msg, sig]: &[String; 3],
    openssl_verify: impl Fn() -> Output,
) {
    store.ok(&[
        "verify",
        "--key",
        name,
        "--signature",
        sig,
        "--in",
        msg,
        "--scheme",
        scheme,
    ]);
    store.ok(&[
        "verify",
        "--public-key",
        public,
        "--signature",
        sig,
        "--in",
        msg,
        "--scheme",
        scheme,
    ]);
    tamper(msg);
    let rejected = openssl_verify();
    assert!(
        !rejected.status.success(),
        "openssl accepted a tampered file"
    );
    let out = store.run(&[
        "verify",
        "--key",
        name,
        "--signature",
        sig,
        "--in",
        msg,
        "--scheme",
        scheme,
    ]);
    assert_eq!(code(&out), INVALID_SIGNATURE, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("invalid signature"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn demo_runs_in_an_empty_environment() {
    let cwd = tempfile::tempdir().unwrap();
    let demo = |args: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env_clear()
            .current_dir(cwd.path())
            .stdin(Stdio::null());
        for var in ["PATH", "HOME"] {
            if let Some(v) = std::env::var_os(var) {
                cmd.env(var, v);
            }
        }
        ok(cmd.output().unwrap(), args)
    };
    let table = demo(&["demo"]);
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(text.contains("steps passed"), "{text}");
    for name in ["demo-ecdsa", "demo-rsa", "demo-ed25519", "demo-aes"] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }

    let doc = json(&demo(&["demo", "--output", "json"]));
    assert_eq!(doc["ok"], true);
    let keys = doc["keys"].as_array().unwrap();
    let mut algorithms: Vec<&str> = keys
        .iter()
        .map(|k| k["algorithm"].as_str().unwrap())
        .collect();
    algorithms.sort_unstable();
    assert_eq!(algorithms, ["aes256-gcm", "ec-p256", "ed25519", "rsa-3072"]);
    let rotated = keys.iter().find(|k| k["name"] == "demo-ecdsa").unwrap();
    assert_eq!(rotated["version"], 2);
    let steps = doc["steps"].as_array().unwrap();
    assert!(steps.iter().any(|s| s["step"] == "rotate"));
    // Nothing left behind in the working directory.
    assert_eq!(std::fs::read_dir(cwd.path()).unwrap().count(), 0);
}

#[test]
fn openssl_verifies_ecdsa_p256() {
    let store = Store::new();
    let files = sign_file(&store, "ec", "ec-p256", "ecdsa-sha256");
    let [public, msg, sig] = files.clone();
    let verify = || {
        openssl(&[
            "dgst",
            "-sha256",
            "-verify",
            &public,
            "-signature",
            &sig,
            &msg,
        ])
    };
    let out = verify();
    assert!(out.status.success(), "openssl rejected: {}", stderr(&out));
    check_keychain_verify_and_tamper(&store, "ec", "ecdsa-sha256", &files, verify);
}

#[test]
fn openssl_verifies_rsa_3072_pss() {
    let store = Store::new();
    let files = sign_file(&store, "rsa", "rsa-3072", "rsa-pss-sha256");
    let [public, msg, sig] = files.clone();
    // keychain's PSS salt is the hash length, which `rsa_pss_saltlen:digest` demands.
    let verify = || {
        openssl(&[
            "dgst",
            "-sha256",
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:digest",
            "-verify",
            &public,
            "-signature",
            &sig,
            &msg,
        ])
    };
    let out = verify();
    assert!(out.status.success(), "openssl rejected: {}", stderr(&out));
    assert_eq!(std::fs::metadata(&sig).unwrap().len(), 384);
    check_keychain_verify_and_tamper(&store, "rsa", "rsa-pss-sha256", &files, verify);
}

#[test]
fn openssl_verifies_ed25519() {
    let store = Store::new();
    let files = sign_file(&store, "ed", "ed25519", "ed25519");
    let [public, msg, sig] = files.clone();
    let verify = || {
        openssl(&[
            "pkeyutl", "-verify", "-pubin", "-inkey", &public, "-rawin", "-in", &msg, "-sigfile",
            &sig,
        ])
    };
    let out = verify();
    assert!(out.status.success(), "openssl rejected: {}", stderr(&out));
    check_keychain_verify_and_tamper(&store, "ed", "ed25519", &files, verify);
}

#[test]
fn digest_signing_matches_openssl() {
    let store = Store::new();
    store.ok(&["key", "generate", "ec", "--algorithm", "ec-p256"]);
    let (public, msg, sig) = (store.arg("pub.pem"), store.arg("msg"), store.arg("sig"));
    store.ok(&["key", "export-public", "ec", "--out", &public]);
    write(Path::new(&msg), b"hash me elsewhere");
    let digest = openssl(&["dgst", "-sha256", "-r", &msg]);
    let digest = String::from_utf8(digest.stdout).unwrap();
    let digest = digest.split_whitespace().next().unwrap().to_owned();
    store.ok(&[
        "sign",
        "--key",
        "ec",
        "--digest-hex",
        &digest,
        "--hash",
        "sha256",
        "--out",
        &sig,
    ]);
    let out = openssl(&[
        "dgst",
        "-sha256",
        "-verify",
        &public,
        "-signature",
        &sig,
        &msg,
    ]);
    assert!(out.status.success(), "openssl rejected: {}", stderr(&out));
    store.ok(&[
        "verify",
        "--key",
        "ec",
        "--signature",
        &sig,
        "--digest-hex",
        &digest,
    ]);
    // A digest of the wrong length is invalid input.
    let out = store.run(&["sign", "--key", "ec", "--digest-hex", "abcd", "--out", &sig]);
    assert_eq!(code(&out), INVALID_INPUT, "{}", stderr(&out));
}

#[test]
fn encrypt_decrypt_round_trip_with_aad() {
    let store = Store::new();
    store.ok(&["key", "generate", "data", "--algorithm", "aes256-gcm"]);
    let plaintext: Vec<u8> = (0..=255u8).chain(b"\r\n\x00 end".iter().copied()).collect();
    let (plain, sealed) = (store.arg("plain.bin"), store.arg("sealed.bin"));
    write(Path::new(&plain), &plaintext);
    store.ok(&[
        "encrypt", "--key", "data", "--aad", "order-42", "--in", &plain, "--out", &sealed,
    ]);
    assert_ne!(std::fs::read(&sealed).unwrap(), plaintext);

    // Decrypt from stdin to stdout: binary-safe both ways.
    let mut child = store
        .cmd(&["decrypt", "--key", "data", "--aad", "order-42"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(&sealed).unwrap())
        .unwrap();
    let out = ok(child.wait_with_output().unwrap(), &["decrypt"]);
    assert_eq!(out.stdout, plaintext);

    let out = store.run(&[
        "decrypt", "--key", "data", "--aad", "order-43", "--in", &sealed,
    ]);
    assert_eq!(code(&out), INTEGRITY, "{}", stderr(&out));
    assert!(out.stdout.is_empty());

    let doc = json(&store.ok(&[
        "--output", "json", "encrypt", "--key", "data", "--aad", "x", "--in", &plain,
    ]));
    assert!(doc["ciphertext_base64"].as_str().unwrap().len() > plaintext.len());
}

#[test]
fn rotation_keeps_old_signatures_valid() {
    let store = Store::new();
    store.ok(&["key", "generate", "ed", "--algorithm", "ed25519"]);
    let (msg, sig) = (store.arg("msg"), store.arg("sig"));
    write(Path::new(&msg), b"v1 era");
    store.ok(&["sign", "--key", "ed", "--in", &msg, "--out", &sig]);
    let doc = json(&store.ok(&["--output", "json", "key", "rotate", "ed"]));
    assert_eq!(doc["version"], 2);
    // Without a version every version is tried; the one that made it is reported.
    let doc = json(&store.ok(&[
        "--output",
        "json",
        "verify",
        "--key",
        "ed",
        "--signature",
        &sig,
        "--in",
        &msg,
    ]));
    assert_eq!(doc["version"], 1);
    let out = store.run(&["verify", "--key", "ed@2", "--signature", &sig, "--in", &msg]);
    assert_eq!(code(&out), INVALID_SIGNATURE, "{}", stderr(&out));
    let doc = json(&store.ok(&["--output", "json", "key", "show", "local:ed"]));
    assert_eq!(doc["versions"].as_array().unwrap().len(), 2);
}

#[test]
fn wrong_password_is_unauthenticated() {
    let store = Store::new();
    store.ok(&["key", "generate", "ec", "--algorithm", "ec-p256"]);
    let msg = store.arg("msg");
    write(Path::new(&msg), b"hello");
    let out = store
        .cmd(&[
            "sign",
            "--key",
            "ec",
            "--in",
            &msg,
            "--out",
            &store.arg("sig"),
        ])
        .env("KEYCHAIN_PASSWORD", "not the password")
        .output()
        .unwrap();
    assert_eq!(code(&out), UNAUTHENTICATED, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        !err.contains("not the password") && !err.contains(PASSWORD),
        "{err}"
    );
}

#[test]
fn missing_key_is_not_found_in_both_output_modes() {
    let store = Store::new();
    let msg = store.arg("msg");
    write(Path::new(&msg), b"hello");
    let out = store.run(&[
        "sign",
        "--key",
        "nope",
        "--in",
        &msg,
        "--out",
        &store.arg("sig"),
    ]);
    assert_eq!(code(&out), NOT_FOUND, "{}", stderr(&out));
    let out = store.run(&["--output", "json", "key", "show", "local:nope"]);
    assert_eq!(code(&out), NOT_FOUND);
    let err: Value = serde_json::from_str(&stderr(&out)).unwrap();
    assert_eq!(err["error"]["kind"], "not found");
    assert_eq!(err["error"]["exit_code"], NOT_FOUND);
    assert_eq!(err["error"]["key"], "nope");
}

#[test]
fn unknown_algorithm_is_a_usage_error() {
    let store = Store::new();
    let out = store.run(&["key", "generate", "k", "--algorithm", "dsa-1024"]);
    assert_eq!(code(&out), USAGE);
    // The valid spellings are listed (they come from keychain-core).
    assert!(stderr(&out).contains("ec-p256"), "{}", stderr(&out));
    let out = store.run(&["key", "generate", "bad name", "--algorithm", "ec-p256"]);
    assert_eq!(code(&out), INVALID_INPUT, "{}", stderr(&out));
}

#[test]
fn an_unknown_backend_type_lists_what_this_build_knows() {
    let store = Store::new();
    let config = store.path("hsm.toml");
    write(
        &config,
        // Google Cloud KMS has no backend crate yet: no feature brings it in, so none is named.
        b"[backends.hsm]\ntype = \"gcp\"\nproject = \"p\"\n",
    );
    let out = store
        .cmd_with(&config)
        .args(["key", "list"])
        .output()
        .unwrap();
    assert_eq!(code(&out), INVALID_INPUT, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("gcp") && err.contains("pkcs8"), "{err}");
    assert!(!err.contains("feature"), "{err}");
}

#[test]
fn prompt_fails_without_a_terminal_instead_of_hanging() {
    let cwd = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["key", "list"])
        .env_remove("KEYCHAIN_PASSWORD")
        .env_remove("KEYCHAIN_CONFIG")
        .current_dir(cwd.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&out), UNSUPPORTED, "{}", stderr(&out));
    assert!(stderr(&out).contains("not a terminal"), "{}", stderr(&out));
}

#[test]
fn default_store_with_password_from_the_environment() {
    let cwd = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .env("KEYCHAIN_PASSWORD", PASSWORD)
            .env_remove("KEYCHAIN_CONFIG")
            .current_dir(cwd.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        ok(out, args)
    };
    run(&["key", "generate", "signer", "--algorithm", "ed25519"]);
    assert!(cwd.path().join(".keychain").is_dir());
    let doc = json(&run(&["--output", "json", "key", "list"]));
    assert_eq!(doc["keys"][0]["target"], "local:signer");
    let pem = run(&["key", "export-public", "pkcs8:name=signer"]);
    assert!(
        String::from_utf8(pem.stdout)
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );
}

#[test]
fn import_openssl_keys_plain_and_encrypted() {
    let store = Store::new();
    let (plain, encrypted) = (store.arg("ec.pem"), store.arg("ec-enc.pem"));
    let out = openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        &plain,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = openssl(&[
        "pkcs8",
        "-topk8",
        "-in",
        &plain,
        "-out",
        &encrypted,
        "-v2",
        "aes-256-cbc",
        "-passout",
        "pass:import secret",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let expected = openssl(&["pkey", "-in", &plain, "-pubout"]).stdout;

    store.ok(&["key", "import", "plain", "--in", &plain]);
    let exported = store.ok(&["key", "export-public", "plain"]).stdout;
    assert_eq!(exported, expected);

    let out = store
        .cmd(&[
            "key",
            "import",
            "enc",
            "--in",
            &encrypted,
            "--password-env",
            "IMPORT_PW",
        ])
        .env("IMPORT_PW", "import secret")
        .output()
        .unwrap();
    ok(out, &["key", "import", "enc"]);
    assert_eq!(store.ok(&["key", "export-public", "enc"]).stdout, expected);

    let out = store
        .cmd(&[
            "key",
            "import",
            "enc2",
            "--in",
            &encrypted,
            "--password-env",
            "IMPORT_PW",
        ])
        .env("IMPORT_PW", "wrong")
        .output()
        .unwrap();
    assert_eq!(code(&out), UNAUTHENTICATED, "{}", stderr(&out));

    let jwk = json(&store.ok(&["key", "export-public", "plain", "--format", "jwk"]));
    assert_eq!(jwk["crv"], "P-256");
}

#[test]
fn delete_needs_confirmation_without_a_terminal() {
    let store = Store::new();
    store.ok(&["key", "generate", "gone", "--algorithm", "ec-p256"]);
    let out = store.run(&["key", "delete", "gone"]);
    assert_eq!(code(&out), INVALID_INPUT, "{}", stderr(&out));
    store.ok(&["key", "delete", "gone", "--yes"]);
    assert_eq!(code(&store.run(&["key", "show", "gone"])), NOT_FOUND);
    assert_eq!(
        code(&store.run(&["key", "delete", "gone", "--yes"])),
        NOT_FOUND
    );
}

#[test]
fn backends_and_doctor() {
    let store = Store::new();
    let doc = json(&store.ok(&["--output", "json", "backends"]));
    let local = &doc["backends"][0];
    assert_eq!(local["name"], "local");
    assert_eq!(local["type"], "pkcs8");
    assert_eq!(local["default"], true);
    assert!(
        local["operations"]
            .as_array()
            .unwrap()
            .contains(&Value::from("aead"))
    );
    let doc = json(&store.ok(&["--output", "json", "doctor"]));
    assert_eq!(doc["healthy"], true);
    assert_eq!(doc["backends"][0]["status"], "ok");

    // A key directory that cannot exist (under a regular file): unreachable, non-zero exit.
    let broken = store.path("broken.toml");
    write(store.path("a-file").as_path(), b"");
    write(
        &broken,
        format!(
            "[backends.local]\ntype = \"pkcs8\"\ndir = \"{}\"\npassword = {{ env = \"KEYCHAIN_PASSWORD\" }}\n",
            store.path("a-file").join("keys").display()
        )
        .as_bytes(),
    );
    let out = store.cmd_with(&broken).arg("doctor").output().unwrap();
    assert_eq!(code(&out), UNAVAILABLE, "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("unreachable"), "{text}");
}

#[test]
fn help_documents_exit_codes() {
    let out = ok(
        Command::new(BIN).arg("--help").output().unwrap(),
        &["--help"],
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Exit codes:"), "{text}");
    assert!(text.contains("  6  invalid signature"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// SmartCard-HSM DKEK shares and key backups

const ALREADY_EXISTS: i32 = 4;

/// `dkek create-share FILE` with a password from the environment and a cheap KDF (tests only).
fn create_share(store: &Store, file: &str, password: &str) -> Value {
    let out = store
        .cmd(&[
            "--output",
            "json",
            "dkek",
            "create-share",
            &store.arg(file),
            "--password-env",
            "SHARE_PW",
            "--kdf-rounds",
            "1000",
        ])
        .env("SHARE_PW", password)
        .output()
        .unwrap();
    json(&ok(out, &["dkek", "create-share", file]))
}

/// The DKEK two share files make, opened with the library (not the CLI).
fn library_kcv(store: &Store, files: &[(&str, &str)]) -> String {
    use keychain::dkek::{Dkek, Kdf, ShareFile};
    let kdf = Kdf::with_rounds(1000).unwrap();
    let shares: Vec<_> = files
        .iter()
        .map(|(f, pw)| {
            ShareFile::from_bytes(&std::fs::read(store.path(f)).unwrap())
                .unwrap()
                .open(pw.as_bytes(), &kdf)
                .unwrap()
        })
        .collect();
    Dkek::combine(&shares).unwrap().kcv().to_string()
}

fn shares_args(store: &Store, files: &[&str]) -> Vec<String> {
    let mut args = Vec::new();
    for (i, f) in files.iter().enumerate() {
        args.extend([
            "--share".to_owned(),
            store.arg(f),
            "--password-env".to_owned(),
            format!("SHARE_PW_{i}"),
        ]);
    }
    args.extend(["--kdf-rounds".to_owned(), "1000".to_owned()]);
    args
}

#[test]
fn dkek_shares_and_their_kcv() {
    let store = Store::new();
    let a = create_share(&store, "a.pbe", "alpha");
    let b = create_share(&store, "b.pbe", "bravo");
    assert_eq!(std::fs::read(store.path("a.pbe")).unwrap().len(), 64);
    assert_ne!(a["kcv"], b["kcv"]);
    let mut args = vec![
        "--output".to_owned(),
        "json".to_owned(),
        "dkek".into(),
        "kcv".into(),
    ];
    args.extend(shares_args(&store, &["a.pbe", "b.pbe"]));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = store
        .cmd(&args)
        .env("SHARE_PW_0", "alpha")
        .env("SHARE_PW_1", "bravo")
        .output()
        .unwrap();
    let doc = json(&ok(out, &args));
    assert_eq!(
        doc["kcv"],
        library_kcv(&store, &[("a.pbe", "alpha"), ("b.pbe", "bravo")])
    );
    assert_eq!(doc["shares"], 2);

    // A wrong password: Unauthenticated. An existing file: never overwritten.
    let out = store
        .cmd(&args)
        .env("SHARE_PW_0", "alpha")
        .env("SHARE_PW_1", "wrong")
        .output()
        .unwrap();
    assert_eq!(code(&out), UNAUTHENTICATED, "{}", stderr(&out));
    let before = std::fs::read(store.path("a.pbe")).unwrap();
    let out = store
        .cmd(&[
            "dkek",
            "create-share",
            &store.arg("a.pbe"),
            "--password-env",
            "X",
        ])
        .env("X", "x")
        .output()
        .unwrap();
    assert_eq!(code(&out), ALREADY_EXISTS, "{}", stderr(&out));
    assert_eq!(std::fs::read(store.path("a.pbe")).unwrap(), before);
    // Not a share file.
    write(&store.path("junk.pbe"), b"short");
    let out = store
        .cmd(&[
            "dkek",
            "kcv",
            "--share",
            &store.arg("junk.pbe"),
            "--password-env",
            "X",
        ])
        .env("X", "x")
        .output()
        .unwrap();
    assert_eq!(code(&out), INVALID_INPUT, "{}", stderr(&out));
}

#[test]
fn dkek_share_with_password_shares() {
    use keychain::dkek::{Kdf, ShareFile, ShareIdRadix, parse_sheets, reconstruct_password};
    let store = Store::new();
    let out = store.ok(&[
        "--output",
        "json",
        "dkek",
        "create-share",
        &store.arg("t.pbe"),
        "--pwd-shares",
        "2:3",
        "--kdf-rounds",
        "1000",
    ]);
    let doc = json(&out);
    let sheets = parse_sheets(
        doc["password_sheets"].as_str().unwrap(),
        ShareIdRadix::Decimal,
    )
    .unwrap();
    assert_eq!(sheets.len(), 3);
    // Any two custodians open the share.
    let password = reconstruct_password(&sheets[1..]).unwrap();
    let share = ShareFile::from_bytes(&std::fs::read(store.path("t.pbe")).unwrap())
        .unwrap()
        .open(password.expose(), &Kdf::with_rounds(1000).unwrap())
        .unwrap();
    assert_eq!(share.kcv().to_string(), doc["kcv"]);
    let out = store.run(&[
        "dkek",
        "create-share",
        &store.arg("u.pbe"),
        "--pwd-shares",
        "3",
    ]);
    assert_eq!(code(&out), INVALID_INPUT, "{}", stderr(&out));
}

#[test]
fn key_backup_and_restore_as_card_blobs() {
    let store = Store::new();
    create_share(&store, "a.pbe", "alpha");
    create_share(&store, "b.pbe", "bravo");
    store.ok(&["key", "generate", "orig", "-a", "ec-p256", "--exportable"]);
    let with_shares = |args: &[&str], files: &[&str]| {
        let mut all: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        all.extend(shares_args(&store, files));
        let mut cmd = store.cmd(&all.iter().map(String::as_str).collect::<Vec<_>>());
        cmd.env("SHARE_PW_0", "alpha").env("SHARE_PW_1", "bravo");
        cmd.output().unwrap()
    };
    let blob = store.arg("orig.blob");
    let out = with_shares(
        &["key", "backup", "orig", "--out", &blob],
        &["a.pbe", "b.pbe"],
    );
    ok(out, &["key", "backup"]);
    assert_eq!(
        keychain::dkek::inspect(&std::fs::read(&blob).unwrap())
            .unwrap()
            .kcv
            .to_string(),
        library_kcv(&store, &[("a.pbe", "alpha"), ("b.pbe", "bravo")])
    );
    let out = with_shares(
        &["key", "restore", "copy", "--in", &blob],
        &["a.pbe", "b.pbe"],
    );
    ok(out, &["key", "restore"]);
    let public =
        |name: &str| String::from_utf8(store.ok(&["key", "export-public", name]).stdout).unwrap();
    assert_eq!(public("orig"), public("copy"));

    // One share short: another DKEK, refused as the wrong key; nothing restored.
    let out = with_shares(&["key", "restore", "other", "--in", &blob], &["a.pbe"]);
    assert_eq!(code(&out), UNAUTHENTICATED, "{}", stderr(&out));
    assert_eq!(code(&store.run(&["key", "show", "other"])), NOT_FOUND);
    // A key not created exportable cannot be backed up.
    store.ok(&["key", "generate", "locked", "-a", "ec-p256"]);
    let out = with_shares(
        &[
            "key",
            "backup",
            "locked",
            "--out",
            &store.arg("locked.blob"),
        ],
        &["a.pbe", "b.pbe"],
    );
    assert_ne!(code(&out), 0, "{}", stderr(&out));
    assert!(!store.path("locked.blob").exists());
}

#[test]
fn dkek_custody_split_reconstruct_and_use() {
    let store = Store::new();
    create_share(&store, "a.pbe", "alpha");
    create_share(&store, "b.pbe", "bravo");
    let kcv = library_kcv(&store, &[("a.pbe", "alpha"), ("b.pbe", "bravo")]);
    let dir = store.arg("custody");
    let mut split: Vec<String> = ["--output", "json", "dkek", "split"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    split.extend(["--threshold", "2", "--shares", "3", "--out-dir", &dir].map(str::to_owned));
    split.extend(shares_args(&store, &["a.pbe", "b.pbe"]));
    let split: Vec<&str> = split.iter().map(String::as_str).collect();
    let run_split = || {
        store
            .cmd(&split)
            .env("SHARE_PW_0", "alpha")
            .env("SHARE_PW_1", "bravo")
            .output()
            .unwrap()
    };
    let doc = json(&ok(run_split(), &split));
    assert_eq!(doc["kcv"], kcv);
    let files: Vec<String> = doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(files.len(), 3);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&files[0]).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let before = std::fs::read(&files[0]).unwrap();
    // Splitting again into the same directory overwrites nothing.
    let out = run_split();
    assert_eq!(code(&out), ALREADY_EXISTS, "{}", stderr(&out));
    assert_eq!(std::fs::read(&files[0]).unwrap(), before);

    // Any two rebuild the DKEK; one is too few; a damaged share is caught by the KCV.
    let reconstruct = |paths: &[&String]| {
        let mut args = vec!["--output", "json", "dkek", "reconstruct"];
        for p in paths {
            args.extend(["--custody", p.as_str()]);
        }
        store.run(&args)
    };
    let doc = json(&ok(reconstruct(&[&files[2], &files[0]]), &["reconstruct"]));
    assert_eq!(doc["kcv"], kcv);
    assert_eq!(doc["threshold"], 2);
    let out = reconstruct(&[&files[1]]);
    assert_eq!(code(&out), INVALID_INPUT, "{}", stderr(&out));
    let text = std::fs::read_to_string(&files[1]).unwrap();
    let last = text.trim_end().chars().last().unwrap();
    let flipped = if last == '0' { '1' } else { '0' };
    let damaged = format!(
        "{}{flipped}\n",
        &text.trim_end()[..text.trim_end().len() - 1]
    );
    let damaged_path = store.path("damaged.txt");
    write(&damaged_path, damaged.as_bytes());
    let damaged_arg = damaged_path.display().to_string();
    let out = reconstruct(&[&files[0], &damaged_arg]);
    assert_eq!(code(&out), INTEGRITY, "{}", stderr(&out));
    let out = reconstruct(&[&store.arg("a.pbe"), &files[0]]);
    assert_eq!(code(&out), INVALID_INPUT, "{}", stderr(&out));

    // A backup under the custody-rebuilt DKEK restores with the card shares (same DKEK).
    store.ok(&["key", "generate", "orig", "-a", "ec-p256", "--exportable"]);
    let blob = store.arg("orig.blob");
    store.ok(&[
        "key",
        "backup",
        "orig",
        "--custody",
        &files[0],
        "--custody",
        &files[1],
        "--out",
        &blob,
    ]);
    let mut restore: Vec<String> = ["key", "restore", "copy", "--sc-hsm-blob", &blob]
        .map(str::to_owned)
        .to_vec();
    restore.extend(shares_args(&store, &["a.pbe", "b.pbe"]));
    let restore: Vec<&str> = restore.iter().map(String::as_str).collect();
    let out = store
        .cmd(&restore)
        .env("SHARE_PW_0", "alpha")
        .env("SHARE_PW_1", "bravo")
        .output()
        .unwrap();
    ok(out, &restore);
    let public =
        |name: &str| String::from_utf8(store.ok(&["key", "export-public", name]).stdout).unwrap();
    assert_eq!(public("orig"), public("copy"));
}

#[test]
fn dkek_share_passwords_from_files_and_sheets_in_order() {
    let store = Store::new();
    // A threshold-protected share and a share with a password in a file.
    let doc = json(&store.ok(&[
        "--output",
        "json",
        "dkek",
        "create-share",
        &store.arg("t.pbe"),
        "--pwd-shares",
        "2:3",
        "--kdf-rounds",
        "1000",
    ]));
    let sheets = doc["password_sheets"].as_str().unwrap();
    // Two of the three custodians' sheets (the second and third blocks).
    let two: String = sheets
        .split("\n\n")
        .skip_while(|b| !b.starts_with("Share 2 of 3"))
        .map(|b| format!("{b}\n\n"))
        .collect();
    assert!(
        two.contains("Share ID : 2") && two.contains("Share ID : 3"),
        "{two}"
    );
    assert!(!two.contains("Share ID : 1"), "{two}");
    write(&store.path("sheets.txt"), two.as_bytes());
    write(&store.path("pw.txt"), b"file-password\n");
    let out = store.ok(&[
        "dkek",
        "create-share",
        &store.arg("f.pbe"),
        "--password-file",
        &store.arg("pw.txt"),
        "--kdf-rounds",
        "1000",
    ]);
    assert!(out.status.success());
    let kcv = |sources: &[&str]| {
        let mut args = vec![
            "--output".to_owned(),
            "json".to_owned(),
            "dkek".to_owned(),
            "kcv".to_owned(),
            "--share".to_owned(),
            store.arg("t.pbe"),
            "--share".to_owned(),
            store.arg("f.pbe"),
            "--kdf-rounds".to_owned(),
            "1000".to_owned(),
        ];
        args.extend(sources.iter().map(|s| (*s).to_owned()));
        store.run(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let sheets_arg = store.arg("sheets.txt");
    let pw_arg = store.arg("pw.txt");
    // Sources apply in the order written: sheets open t.pbe, the file opens f.pbe.
    let doc = json(&ok(
        kcv(&["--pwd-shares-file", &sheets_arg, "--password-file", &pw_arg]),
        &["kcv"],
    ));
    let expected = {
        use keychain::dkek::{
            Dkek, Kdf, ShareFile, ShareIdRadix, parse_sheets, reconstruct_password,
        };
        let kdf = Kdf::with_rounds(1000).unwrap();
        let open = |f: &str, pw: &[u8]| {
            ShareFile::from_bytes(&std::fs::read(store.path(f)).unwrap())
                .unwrap()
                .open(pw, &kdf)
                .unwrap()
        };
        let pw = reconstruct_password(&parse_sheets(&two, ShareIdRadix::Decimal).unwrap()).unwrap();
        let t = open("t.pbe", pw.expose());
        let f = open("f.pbe", b"file-password");
        Dkek::combine([&t, &f]).unwrap().kcv().to_string()
    };
    assert_eq!(doc["kcv"], expected);
    // The other order gives each share the other's password.
    let out = kcv(&["--password-file", &pw_arg, "--pwd-shares-file", &sheets_arg]);
    assert_eq!(code(&out), UNAUTHENTICATED, "{}", stderr(&out));
    // More passwords than shares is a mistake, not a guess.
    let out = kcv(&[
        "--pwd-shares-file",
        &sheets_arg,
        "--password-file",
        &pw_arg,
        "--password-file",
        &pw_arg,
    ]);
    assert_eq!(code(&out), INVALID_INPUT, "{}", stderr(&out));
    // Sheets that are not sheets.
    write(&store.path("junk.txt"), b"nothing here\n");
    let out = kcv(&[
        "--pwd-shares-file",
        &store.arg("junk.txt"),
        "--password-file",
        &pw_arg,
    ]);
    assert_eq!(code(&out), INVALID_INPUT, "{}", stderr(&out));
}

// ---------------------------------------------------------------------------------------------
// Data safety, and a typed error for every failure

const CAPACITY_EXCEEDED: i32 = 13;

/// The temporary output files (`.keychain-*`) left in `dir`.
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".keychain-"))
        .collect()
}

/// `keychain --config <store's config> ARGS`, started by `sh` after `prelude` (a umask, a
/// ulimit), whose settings the binary inherits.
fn run_after(store: &Store, prelude: &str, args: &[&str]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!("{prelude}; exec \"$0\" \"$@\""))
        .arg(BIN)
        .arg("--config")
        .arg(&store.config)
        .args(args)
        .env("KEYCHAIN_PASSWORD", PASSWORD)
        .env_remove("KEYCHAIN_CONFIG")
        .current_dir(store.dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `len` bytes that are not all alike (xorshift), the same every run.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn an_output_naming_an_input_is_refused_before_anything_is_touched() {
    let store = Store::new();
    store.ok(&["key", "generate", "ec", "--algorithm", "ec-p256"]);
    store.ok(&["key", "generate", "aes", "--algorithm", "aes256-gcm"]);
    let data = noise(5000);
    let f = store.path("f");
    write(&f, &data);
    let refused = |args: &[&str]| {
        let out = store.run(args);
        assert_eq!(code(&out), INVALID_INPUT, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("same file"), "{}", stderr(&out));
        assert_eq!(
            std::fs::read(&f).unwrap(),
            data,
            "{args:?} changed the input"
        );
    };
    let fa = store.arg("f");
    refused(&["sign", "--key", "ec", "--in", &fa, "--out", &fa]);
    // The check comes before the key is looked up (and before the store is opened).
    refused(&["sign", "--key", "no-such-key", "--in", &fa, "--out", &fa]);
    // Another spelling (relative to the working directory, the store's), a hard link and a
    // symbolic link name the same file.
    refused(&["encrypt", "--key", "aes", "--in", &fa, "--out", "./f"]);
    std::fs::hard_link(&f, store.path("hard")).unwrap();
    refused(&[
        "decrypt",
        "--key",
        "aes",
        "--in",
        &fa,
        "--out",
        &store.arg("hard"),
    ]);
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&f, store.path("soft")).unwrap();
        refused(&[
            "sign",
            "--key",
            "ec",
            "--in",
            &store.arg("soft"),
            "--out",
            &fa,
        ]);
    }
    // The configuration and DKEK share files are inputs too.
    let config = std::fs::read(&store.config).unwrap();
    let out = store.run(&[
        "key",
        "export-public",
        "ec",
        "--out",
        &store.config.display().to_string(),
    ]);
    assert_eq!(code(&out), INVALID_INPUT, "{}", stderr(&out));
    assert_eq!(std::fs::read(&store.config).unwrap(), config);
    create_share(&store, "a.pbe", "alpha");
    let share = std::fs::read(store.path("a.pbe")).unwrap();
    store.ok(&["key", "generate", "x", "-a", "ec-p256", "--exportable"]);
    let mut args: Vec<String> = ["key", "backup", "x", "--out"].map(str::to_owned).to_vec();
    args.push(store.arg("a.pbe"));
    args.extend(shares_args(&store, &["a.pbe"]));
    let out = store
        .cmd(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .env("SHARE_PW_0", "alpha")
        .output()
        .unwrap();
    assert_eq!(code(&out), INVALID_INPUT, "{}", stderr(&out));
    assert_eq!(std::fs::read(store.path("a.pbe")).unwrap(), share);
    // A different file is fine.
    store.ok(&[
        "sign",
        "--key",
        "ec",
        "--in",
        &fa,
        "--out",
        &store.arg("f.sig"),
    ]);
    assert_eq!(leftovers(store.dir.path()), Vec::<String>::new());
}

#[test]
fn a_failed_write_leaves_the_target_as_it_was_and_no_temporary_file() {
    let store = Store::new();
    store.ok(&["key", "generate", "aes", "--algorithm", "aes256-gcm"]);
    let (plain, sealed, target) = (store.arg("plain"), store.arg("sealed"), store.arg("target"));
    let plaintext = noise(100_000);
    write(Path::new(&plain), &plaintext);
    store.ok(&["encrypt", "--key", "aes", "--in", &plain, "--out", &sealed]);
    write(Path::new(&target), b"keep me");

    // Fails before writing (wrong AAD).
    let out = store.run(&[
        "decrypt", "--key", "aes", "--aad", "other", "--in", &sealed, "--out", &target,
    ]);
    assert_eq!(code(&out), INTEGRITY, "{}", stderr(&out));
    assert_eq!(std::fs::read(&target).unwrap(), b"keep me");

    // Fails while writing: a file size limit stops the write part-way (the signal it would
    // send is ignored, so the write fails with EFBIG instead of killing the process).
    let decrypt = ["decrypt", "--key", "aes", "--in", &sealed, "--out", &target];
    let out = run_after(&store, "trap '' XFSZ; ulimit -f 8", &decrypt);
    assert_eq!(code(&out), CAPACITY_EXCEEDED, "{}", stderr(&out));
    assert_eq!(std::fs::read(&target).unwrap(), b"keep me");
    assert_eq!(leftovers(store.dir.path()), Vec::<String>::new());

    // Without the limit the same command replaces the target whole.
    store.ok(&decrypt);
    assert_eq!(std::fs::read(&target).unwrap(), plaintext);
    assert_eq!(leftovers(store.dir.path()), Vec::<String>::new());
}

#[cfg(unix)]
#[test]
fn pipes_and_devices_are_written_to_not_replaced() {
    use std::io::Read as _;
    use std::os::unix::fs::FileTypeExt as _;
    let store = Store::new();
    store.ok(&["key", "generate", "ec", "--algorithm", "ec-p256"]);
    let (msg, fifo) = (store.arg("msg"), store.arg("fifo"));
    write(Path::new(&msg), b"to a pipe");
    let made = Command::new("mkfifo").arg(&fifo).output().unwrap();
    assert!(made.status.success(), "{}", stderr(&made));
    // Held open for reading and writing, so the binary's open for writing does not block.
    let mut reader = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    store.ok(&["sign", "--key", "ec", "--in", &msg, "--out", &fifo]);
    let kind = std::fs::symlink_metadata(&fifo).unwrap().file_type();
    assert!(kind.is_fifo(), "the FIFO was replaced: {kind:?}");
    let mut signature = vec![0u8; 256];
    let n = reader.read(&mut signature).unwrap();
    signature.truncate(n);
    let sig = store.path("sig");
    write(&sig, &signature);
    store.ok(&[
        "verify",
        "--key",
        "ec",
        "--signature",
        &sig.display().to_string(),
        "--in",
        &msg,
    ]);
    store.ok(&["sign", "--key", "ec", "--in", &msg, "--out", "/dev/null"]);
}

#[cfg(unix)]
#[test]
fn secret_outputs_are_0600_whatever_the_umask() {
    let store = Store::new();
    store.ok(&["key", "generate", "aes", "--algorithm", "aes256-gcm"]);
    store.ok(&["key", "generate", "ec", "-a", "ec-p256", "--exportable"]);
    let (plain, sealed, opened) = (store.arg("plain"), store.arg("sealed"), store.arg("opened"));
    write(Path::new(&plain), b"the secret");
    for umask in ["022", "000"] {
        let out = run_after(
            &store,
            &format!("umask {umask}"),
            &["encrypt", "--key", "aes", "--in", &plain, "--out", &sealed],
        );
        ok(out, &["encrypt"]);
        // Public outputs keep what the umask gives.
        let public = if umask == "022" { 0o644 } else { 0o666 };
        assert_eq!(mode(Path::new(&sealed)), public, "umask {umask}");
        // An existing, readable target does not pass its mode on to the plaintext.
        write(Path::new(&opened), b"old");
        std::fs::set_permissions(&opened, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
        let out = run_after(
            &store,
            &format!("umask {umask}"),
            &["decrypt", "--key", "aes", "--in", &sealed, "--out", &opened],
        );
        ok(out, &["decrypt"]);
        assert_eq!(std::fs::read(&opened).unwrap(), b"the secret");
        assert_eq!(mode(Path::new(&opened)), 0o600, "umask {umask}");
        std::fs::remove_file(&opened).unwrap();
    }
    // Key backups and DKEK shares.
    let out = run_after(
        &store,
        "umask 000",
        &[
            "dkek",
            "create-share",
            &store.arg("a.pbe"),
            "--password-file",
            &plain,
            "--kdf-rounds",
            "1000",
        ],
    );
    ok(out, &["dkek", "create-share"]);
    assert_eq!(mode(&store.path("a.pbe")), 0o600);
    let mut args: Vec<String> = ["key", "backup", "ec", "--out"].map(str::to_owned).to_vec();
    args.push(store.arg("ec.blob"));
    args.extend([
        "--share".to_owned(),
        store.arg("a.pbe"),
        "--password-file".to_owned(),
        plain.clone(),
        "--kdf-rounds".to_owned(),
        "1000".to_owned(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(run_after(&store, "umask 000", &args), &args);
    assert_eq!(mode(&store.path("ec.blob")), 0o600);
    assert_eq!(leftovers(store.dir.path()), Vec::<String>::new());
}

#[test]
fn large_inputs_stream_through_sign_and_verify() {
    let store = Store::new();
    // Not a whole number of read chunks.
    let big = store.path("big");
    write(&big, &noise(5 * 1024 * 1024 + 123));
    let big_arg = store.arg("big");

    store.ok(&["key", "generate", "ec", "--algorithm", "ec-p256"]);
    let (public, sig) = (store.arg("ec.pem"), store.arg("ec.sig"));
    store.ok(&["key", "export-public", "ec", "--out", &public]);
    store.ok(&["sign", "--key", "ec", "--in", &big_arg, "--out", &sig]);
    let out = openssl(&[
        "dgst",
        "-sha256",
        "-verify",
        &public,
        "-signature",
        &sig,
        &big_arg,
    ]);
    assert!(out.status.success(), "openssl rejected: {}", stderr(&out));
    store.ok(&[
        "verify",
        "--key",
        "ec",
        "--signature",
        &sig,
        "--in",
        &big_arg,
    ]);
    store.ok(&[
        "verify",
        "--public-key",
        &public,
        "--signature",
        &sig,
        "--in",
        &big_arg,
    ]);
    // Streamed from stdin too.
    let out = store
        .cmd(&["verify", "--key", "ec", "--signature", &sig])
        .stdin(std::fs::File::open(&big).unwrap())
        .output()
        .unwrap();
    ok(out, &["verify", "(stdin)"]);

    // RSA PKCS#1 v1.5 is deterministic: the streamed file, the streamed stdin and OpenSSL's
    // digest of it give the same signature bytes.
    store.ok(&["key", "generate", "rsa", "--algorithm", "rsa-2048"]);
    let scheme = ["--scheme", "rsa-pkcs1-sha384"];
    let from_file = store
        .cmd(&["sign", "--key", "rsa", "--in", &big_arg])
        .args(scheme)
        .output()
        .unwrap();
    let from_file = ok(from_file, &["sign", "rsa"]).stdout;
    let from_stdin = store
        .cmd(&["sign", "--key", "rsa"])
        .args(scheme)
        .stdin(std::fs::File::open(&big).unwrap())
        .output()
        .unwrap();
    assert_eq!(
        ok(from_stdin, &["sign", "rsa", "(stdin)"]).stdout,
        from_file
    );
    let digest = openssl(&["dgst", "-sha384", "-r", &big_arg]).stdout;
    let digest = String::from_utf8(digest).unwrap();
    let digest = digest.split_whitespace().next().unwrap();
    let from_digest = store
        .cmd(&["sign", "--key", "rsa", "--digest-hex", digest])
        .args(scheme)
        .output()
        .unwrap();
    assert_eq!(
        ok(from_digest, &["sign", "rsa", "--digest-hex"]).stdout,
        from_file
    );
}

#[test]
fn whole_message_inputs_above_the_limit_are_refused() {
    let store = Store::new();
    store.ok(&["key", "generate", "ed", "--algorithm", "ed25519"]);
    store.ok(&["key", "generate", "aes", "--algorithm", "aes256-gcm"]);
    // Sparse: 64 MiB and one byte on the disk's say-so, nothing written.
    let huge = store.path("huge");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(64 * 1024 * 1024 + 1)
        .unwrap();
    let huge_arg = store.arg("huge");
    let sig = store.arg("sig");
    let refused = |out: Output, mentions: &str| {
        assert_eq!(code(&out), INVALID_INPUT, "{}", stderr(&out));
        assert!(stderr(&out).contains("64 MiB"), "{}", stderr(&out));
        assert!(stderr(&out).contains(mentions), "{}", stderr(&out));
    };
    refused(
        store.run(&["sign", "--key", "ed", "--in", &huge_arg, "--out", &sig]),
        "Ed25519",
    );
    assert!(!Path::new(&sig).exists());
    write(Path::new(&sig), &[0u8; 64]);
    refused(
        store.run(&[
            "verify",
            "--key",
            "ed",
            "--signature",
            &sig,
            "--in",
            &huge_arg,
        ]),
        "Ed25519",
    );
    let sealed = store.arg("sealed");
    refused(
        store.run(&[
            "encrypt", "--key", "aes", "--in", &huge_arg, "--out", &sealed,
        ]),
        "envelope",
    );
    assert!(!Path::new(&sealed).exists());
    // From stdin, which has no length to check first: read up to the limit, then refused.
    let mut child = store
        .cmd(&["encrypt", "--key", "aes", "--out", &sealed])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let chunk = vec![0u8; 1024 * 1024];
        for _ in 0..65 {
            // The binary stops reading past the limit: a broken pipe here is expected.
            if stdin.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    refused(out, "envelope");
    assert!(!Path::new(&sealed).exists());
}

#[test]
fn usage_errors_are_json_under_output_json() {
    let store = Store::new();
    let usage_json = |args: &[&str], mentions: &str| {
        let out = store.run(args);
        assert_eq!(code(&out), USAGE, "{args:?}: {}", stderr(&out));
        let doc: Value = serde_json::from_str(&stderr(&out))
            .unwrap_or_else(|e| panic!("{args:?}: stderr is not JSON ({e}): {}", stderr(&out)));
        assert_eq!(doc["error"]["kind"], "usage");
        assert_eq!(doc["error"]["exit_code"], USAGE);
        let message = doc["error"]["message"].as_str().unwrap();
        assert!(message.contains(mentions), "{message}");
        assert!(out.stdout.is_empty());
    };
    usage_json(
        &[
            "--output",
            "json",
            "key",
            "generate",
            "k",
            "--algorithm",
            "dsa-1024",
        ],
        "dsa-1024",
    );
    usage_json(&["sign", "--output=json"], "--key");
    usage_json(&["--output", "json", "key", "list", "--bogus"], "--bogus");
    usage_json(&["--output", "json", "key"], "subcommand");
    // Without --output json: clap's text, as before.
    let out = store.run(&["key", "list", "--bogus"]);
    assert_eq!(code(&out), USAGE);
    assert!(stderr(&out).starts_with("error: "), "{}", stderr(&out));
    // Help and version print as usual.
    let help = ok(store.run(&["--output", "json", "--help"]), &["--help"]);
    assert!(String::from_utf8_lossy(&help.stdout).contains("Exit codes:"));
    let version = ok(
        store.run(&["--output", "json", "--version"]),
        &["--version"],
    );
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("keychain "));
}

#[test]
fn directories_and_bad_paths_are_invalid_input_not_bugs() {
    let store = Store::new();
    store.ok(&["key", "generate", "aes", "--algorithm", "aes256-gcm"]);
    let dir = store.arg("keys");
    let (plain, sealed) = (store.arg("plain"), store.arg("sealed"));
    write(Path::new(&plain), b"data");
    let invalid = |out: Output| {
        assert_eq!(code(&out), INVALID_INPUT, "{}", stderr(&out));
        assert!(stderr(&out).contains("directory"), "{}", stderr(&out));
    };
    invalid(store.run(&["encrypt", "--key", "aes", "--in", &dir, "--out", &sealed]));
    invalid(store.run(&["encrypt", "--key", "aes", "--in", &plain, "--out", &dir]));
    invalid(store.run(&["verify", "--public-key", &dir, "--signature", &plain]));
    invalid(
        store
            .cmd_with(&store.path("keys"))
            .args(["key", "list"])
            .output()
            .unwrap(),
    );
    invalid(
        store
            .cmd_with(&store.path("keys"))
            .args(["encrypt", "--key", "aes", "--in", &plain, "--out", &sealed])
            .output()
            .unwrap(),
    );
    // A path through a regular file.
    let through_file = format!("{plain}/x");
    invalid(store.run(&[
        "encrypt",
        "--key",
        "aes",
        "--in",
        &plain,
        "--out",
        &through_file,
    ]));
    assert!(!Path::new(&sealed).exists());
    assert_eq!(leftovers(store.dir.path()), Vec::<String>::new());
}
