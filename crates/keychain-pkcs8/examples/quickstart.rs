//! The main job on the embedded default: a throwaway key directory, four keys, sign + verify,
//! encrypt + decrypt, rotate, and the typed errors for a wrong password and a tampered ciphertext.
//!
//! `cargo run -p keychain-pkcs8 --example quickstart`
//!
//! The password comes from `KEYCHAIN_PASSWORD` when set; otherwise a random one is made for this
//! run (the directory is deleted at the end either way).

#![allow(clippy::print_stdout, reason = "an example prints what it does")]

use keychain_core::{
    Backend, BackendExt, ErrorKind, HashAlg, KeyAlgorithm, KeyName, KeyRef, KeySpec, KeyUsages,
    RsaPadding, SecretSource, SignInput,
};
use keychain_pkcs8::{Config, Pkcs8Backend};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("keychain-quickstart-{}", std::process::id()));
    let password = match std::env::var("KEYCHAIN_PASSWORD") {
        Ok(_) => SecretSource::env("KEYCHAIN_PASSWORD"),
        Err(_) => {
            let mut bytes = [0u8; 16];
            getrandom::fill(&mut bytes)?;
            SecretSource::value(hex::encode(bytes))
        }
    };
    let result = run(&dir, password).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run(
    dir: &std::path::Path,
    password: SecretSource,
) -> Result<(), Box<dyn std::error::Error>> {
    let keys = dir.join("keys");
    let backend = Pkcs8Backend::open(Config::new(&keys, password.duplicate())).await?;
    println!("key directory: {}", keys.display());

    for (name, algorithm) in [
        ("ecdsa-p256", KeyAlgorithm::EcP256),
        ("rsa-3072", KeyAlgorithm::Rsa3072),
        ("ed25519", KeyAlgorithm::Ed25519),
    ] {
        let name = KeyName::new(name)?;
        let mut spec = KeySpec::new(algorithm);
        if algorithm.is_rsa() {
            spec = spec.with_usages(KeyUsages::SIGN | KeyUsages::DECRYPT);
        }
        backend.generate_key(&name, &spec).await?;
        let signature = backend
            .sign_message(&KeyRef::from(&name), b"hello, keychain")
            .await?;
        backend
            .verify(&name, SignInput::message(b"hello, keychain"), &signature)
            .await?;
        let tampered = backend
            .verify(&name, SignInput::message(b"hello, keychaiN"), &signature)
            .await
            .err()
            .map(|e| e.kind());
        println!(
            "{name:<11} {:<10} signed ({} bytes, {}), verified; altered message -> {tampered:?}",
            algorithm.as_str(),
            signature.as_bytes().len(),
            signature.scheme(),
        );
    }

    // RSA-OAEP: encrypt with the public key (RustCrypto), decrypt inside the backend.
    let rsa = KeyName::new("rsa-3072")?;
    let public = backend.key_info(&KeyRef::from(&rsa)).await?;
    let public = public.public_key().ok_or("no public key")?.to_rsa()?;
    let sealed = public.encrypt(
        &mut rand_core::UnwrapErr(getrandom::SysRng),
        rsa::Oaep::<sha2::Sha256>::new(),
        b"session key",
    )?;
    let opened = backend
        .decrypt(
            &KeyRef::from(&rsa),
            &sealed,
            RsaPadding::Oaep(HashAlg::Sha256),
        )
        .await?;
    println!(
        "rsa-3072    RSA-OAEP round trip: {}",
        opened.expose() == b"session key"
    );

    let aes = KeyName::new("aes-256")?;
    backend
        .generate_key(&aes, &KeySpec::new(KeyAlgorithm::Aes256Gcm))
        .await?;
    let ciphertext = backend
        .encrypt(&KeyRef::from(&aes), b"attack at dawn", b"msg-42")
        .await?;
    let plaintext = backend.decrypt_aead(&aes, &ciphertext, b"msg-42").await?;
    println!(
        "aes-256     encrypted {} bytes -> {} bytes, decrypted: {:?}",
        plaintext.len(),
        ciphertext.len(),
        String::from_utf8_lossy(plaintext.expose())
    );
    let mut tampered = ciphertext.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let err = backend
        .decrypt_aead(&aes, &tampered, b"msg-42")
        .await
        .err()
        .map(|e| e.kind());
    println!("aes-256     tampered ciphertext -> {err:?}");

    let rotated = backend.rotate_key(&aes).await?;
    let old = backend.decrypt_aead(&aes, &ciphertext, b"msg-42").await?;
    println!(
        "aes-256     rotated to version {}; version-1 ciphertext still decrypts: {}",
        rotated.version,
        old.expose() == b"attack at dawn"
    );

    let listed: Vec<String> = backend
        .list_keys()
        .await?
        .into_iter()
        .map(|k| k.name.to_string())
        .collect();
    println!("keys: {}", listed.join(", "));

    // The same directory with the wrong password: listing works (metadata is public),
    // using a private key is refused with a typed error.
    let wrong =
        Pkcs8Backend::open(Config::new(&keys, SecretSource::value("wrong password"))).await?;
    let err = wrong
        .sign_message(&KeyRef::from(&KeyName::new("ecdsa-p256")?), b"x")
        .await
        .err()
        .ok_or("the wrong password was accepted")?;
    assert_eq!(err.kind(), ErrorKind::Unauthenticated);
    println!("wrong password -> {err}");
    backend.close().await?;
    Ok(())
}
