//! `keychain sign | verify | encrypt | decrypt`.

use base64ct::{Base64, Encoding as _};
use keychain::{
    Error, ErrorKind, HashAlg, KeyAlgorithm, KeyVersion, Keychain, Operation, PublicKey, Result,
    SignInput, SignatureScheme,
};
use serde_json::json;

use super::target_of;
use crate::cli::{CipherArgs, SignArgs, VerifyArgs};
use crate::io::{
    MAX_WHOLE_INPUT, Secrecy, check_binary_destination, hash_input, mib, read_file, read_input,
    read_input_limited, write_output,
};
use crate::output::Out;

/// The scheme to use: the one asked for, else the key's default (with `--hash`'s hash where the
/// scheme family takes one).
fn choose_scheme(
    asked: Option<SignatureScheme>,
    algorithm: KeyAlgorithm,
    hash: Option<HashAlg>,
) -> Result<SignatureScheme> {
    let scheme = match asked {
        Some(s) => s,
        None => {
            let default = algorithm.default_scheme().ok_or_else(|| {
                Error::invalid_input(format!("{algorithm} keys do not make signatures"))
            })?;
            match (default, hash) {
                (SignatureScheme::Ecdsa(_), Some(h)) => SignatureScheme::Ecdsa(h),
                (SignatureScheme::RsaPkcs1v15(_), Some(h)) => SignatureScheme::RsaPkcs1v15(h),
                (SignatureScheme::RsaPss(_), Some(h)) => SignatureScheme::RsaPss(h),
                (s, _) => s,
            }
        }
    };
    scheme.check_fits(algorithm)?;
    Ok(scheme)
}

/// The digest of `--digest-hex`, checked against the hash (`--hash`, else the scheme's).
fn digest_input(
    hex_digest: &str,
    hash: Option<HashAlg>,
    scheme: SignatureScheme,
) -> Result<(HashAlg, Vec<u8>)> {
    let hash = hash.or(scheme.hash()).ok_or_else(|| {
        Error::invalid_input(format!(
            "{scheme} signs whole messages; use --in instead of --digest-hex"
        ))
    })?;
    let digest = hex::decode(hex_digest.trim())
        .map_err(|e| Error::invalid_input(format!("--digest-hex is not hex: {e}")))?;
    Ok((hash, digest))
}

/// The whole message, for Ed25519 (the one scheme without a separate hash step), which cannot
/// stream.
fn read_message(path: Option<&std::path::Path>) -> Result<Vec<u8>> {
    read_input_limited(path, MAX_WHOLE_INPUT)?.ok_or_else(|| {
        Error::invalid_input(format!(
            "the message is larger than {}, the most an Ed25519 signature covers here: \
             Ed25519 needs the whole message in memory; ECDSA and RSA keys take any size",
            mib(MAX_WHOLE_INPUT)
        ))
    })
}

/// `sign`.
pub(super) async fn sign(out: Out, keychain: &Keychain, args: &SignArgs) -> Result<()> {
    if !out.json() {
        check_binary_destination(args.out.as_deref())?;
    }
    let resolved = keychain.resolve(&args.key)?;
    let info = resolved.backend.key_info(&resolved.key).await?;
    let scheme = choose_scheme(args.scheme, info.algorithm, args.hash)?;
    let message;
    let digest;
    let input = match &args.digest_hex {
        Some(hex_digest) => {
            let (hash, d) = digest_input(hex_digest, args.hash, scheme)?;
            digest = d;
            SignInput::digest(hash, &digest)
        }
        None => match scheme.hash() {
            // Every backend signs digests; hashing here keeps memory constant for any input.
            Some(h) => {
                digest = hash_input(args.input.as_deref(), h)?;
                SignInput::digest(h, &digest)
            }
            None => {
                message = read_message(args.input.as_deref())?;
                SignInput::message(&message)
            }
        },
    };
    let signature = resolved.backend.sign(&resolved.key, input, scheme).await?;
    let mut doc = json!({
        "key": format!("{}:{}", resolved.backend_name, resolved.key.name()),
        "version": signature.key_version(),
        "scheme": signature.scheme().name(),
        "bytes": signature.as_bytes().len(),
    });
    if out.json() && args.out.is_none() {
        doc["signature_base64"] = json!(Base64::encode_string(signature.as_bytes()));
        return out.report(&doc, String::new);
    }
    let written = write_output(
        args.out.as_deref(),
        signature.as_bytes(),
        true,
        Secrecy::Public,
    )?;
    match written.path() {
        Some(path) => {
            doc["out"] = json!(path);
            out.report(&doc, || {
                format!(
                    "signed with {} version {} ({}): {} bytes written to {path}",
                    target_of(&resolved),
                    signature.key_version(),
                    signature.scheme(),
                    signature.as_bytes().len()
                )
            })
        }
        None => Ok(()),
    }
}

/// `verify`, with a stored key (`keychain` is `Some`) or a public key file.
pub(super) async fn verify(out: Out, keychain: Option<&Keychain>, args: &VerifyArgs) -> Result<()> {
    let signature = read_file(&args.signature)?;
    // (label, version, public key), newest version first.
    let mut candidates: Vec<(String, Option<KeyVersion>, PublicKey)> = Vec::new();
    match (keychain, &args.key, &args.public_key) {
        (Some(keychain), Some(target), _) => {
            let resolved = keychain.resolve(target)?;
            let info = resolved.backend.key_info(&resolved.key).await?;
            let label = format!("{}:{}", resolved.backend_name, info.name);
            for v in info.versions.iter().rev() {
                if resolved.key.version().is_some_and(|want| want != v.version) {
                    continue;
                }
                if let Some(pk) = &v.public_key {
                    candidates.push((label.clone(), Some(v.version), pk.clone()));
                }
            }
            if candidates.is_empty() {
                return Err(Error::invalid_input(format!(
                    "{label} ({}) is a symmetric key: it has no public key to verify with",
                    info.algorithm
                )));
            }
        }
        (_, _, Some(path)) => {
            let public = parse_public_key(&read_file(path)?)
                .map_err(|e| e.with_context(format_args!("{}", path.display())))?;
            candidates.push((path.display().to_string(), None, public));
        }
        _ => return Err(Error::invalid_input("give --key KEY or --public-key FILE")),
    }
    let algorithm = candidates[0].2.algorithm();
    let scheme = choose_scheme(args.scheme, algorithm, args.hash)?;
    let message;
    let digest;
    let input = match &args.digest_hex {
        Some(hex_digest) => {
            let (hash, d) = digest_input(hex_digest, args.hash, scheme)?;
            digest = d;
            SignInput::digest(hash, &digest)
        }
        None => match scheme.hash() {
            Some(h) => {
                digest = hash_input(args.input.as_deref(), h)?;
                SignInput::digest(h, &digest)
            }
            None => {
                message = read_message(args.input.as_deref())?;
                SignInput::message(&message)
            }
        },
    };
    for (label, version, public) in &candidates {
        match keychain::verify(public, input, scheme, &signature) {
            Ok(()) => {
                let doc = json!({
                    "valid": true,
                    "key": label,
                    "version": version,
                    "scheme": scheme.name(),
                });
                return out.report(&doc, || match version {
                    Some(v) => format!("signature OK: {label} version {v} ({scheme})"),
                    None => format!("signature OK: {label} ({scheme})"),
                });
            }
            Err(e) if e.kind() == ErrorKind::InvalidSignature => {}
            Err(e) => return Err(e.with_operation(Operation::Verify)),
        }
    }
    let tried = candidates
        .iter()
        .filter_map(|(_, v, _)| v.map(|v| v.to_string()))
        .collect::<Vec<_>>();
    let label = &candidates[0].0;
    Err(Error::new(
        ErrorKind::InvalidSignature,
        if tried.len() > 1 {
            format!(
                "the {scheme} signature does not verify with {label} (versions {})",
                tried.join(", ")
            )
        } else {
            format!("the {scheme} signature does not verify with {label}")
        },
    )
    .with_operation(Operation::Verify))
}

/// A public key from PEM, JWK or DER (SubjectPublicKeyInfo).
fn parse_public_key(data: &[u8]) -> Result<PublicKey> {
    let text = data.trim_ascii_start();
    if text.starts_with(b"-----BEGIN") {
        let pem = std::str::from_utf8(data)
            .map_err(|_| Error::invalid_input("the PEM file is not UTF-8"))?;
        PublicKey::from_pem(pem)
    } else if text.starts_with(b"{") {
        let jwk: serde_json::Value = serde_json::from_slice(data)
            .map_err(|e| Error::invalid_input(format!("not a JWK: {e}")))?;
        PublicKey::from_jwk(&jwk)
    } else {
        PublicKey::from_der(data)
    }
}

/// `encrypt`.
pub(super) async fn encrypt(out: Out, keychain: &Keychain, args: &CipherArgs) -> Result<()> {
    if !out.json() {
        check_binary_destination(args.out.as_deref())?;
    }
    let resolved = keychain.resolve(&args.key)?;
    let plaintext =
        read_input_limited(args.input.as_deref(), MAX_WHOLE_INPUT)?.ok_or_else(|| {
            Error::invalid_input(format!(
                "the input is larger than {}, the most `encrypt` takes: it seals the input in one \
             piece in memory; larger data needs envelope encryption (keychain-envelope, planned)",
                mib(MAX_WHOLE_INPUT)
            ))
        })?;
    let ciphertext = resolved
        .backend
        .encrypt(&resolved.key, &plaintext, args.aad.as_bytes())
        .await?;
    let mut doc = json!({
        "key": target_of(&resolved),
        "aad": args.aad,
        "plaintext_bytes": plaintext.len(),
        "bytes": ciphertext.len(),
    });
    if out.json() && args.out.is_none() {
        doc["ciphertext_base64"] = json!(Base64::encode_string(&ciphertext));
        return out.report(&doc, String::new);
    }
    let written = write_output(args.out.as_deref(), &ciphertext, true, Secrecy::Public)?;
    match written.path() {
        Some(path) => {
            doc["out"] = json!(path);
            out.report(&doc, || {
                format!(
                    "encrypted {} bytes with {}: {} bytes written to {path}",
                    plaintext.len(),
                    target_of(&resolved),
                    ciphertext.len()
                )
            })
        }
        None => Ok(()),
    }
}

/// `decrypt`.
pub(super) async fn decrypt(out: Out, keychain: &Keychain, args: &CipherArgs) -> Result<()> {
    let resolved = keychain.resolve(&args.key)?;
    if let Some(v) = resolved.key.version() {
        return Err(Error::invalid_input(format!(
            "`{}` names version {v}, but the ciphertext names its own key version; \
             pass the key name only",
            args.key
        )));
    }
    let ciphertext = read_input(args.input.as_deref())?;
    let plaintext = resolved
        .backend
        .decrypt_aead(resolved.key.name(), &ciphertext, args.aad.as_bytes())
        .await?;
    let mut doc = json!({
        "key": target_of(&resolved),
        "aad": args.aad,
        "bytes": plaintext.len(),
    });
    if out.json() && args.out.is_none() {
        doc["plaintext_base64"] = json!(Base64::encode_string(plaintext.expose()));
        return out.report(&doc, String::new);
    }
    let written = write_output(
        args.out.as_deref(),
        plaintext.expose(),
        false,
        Secrecy::Secret,
    )?;
    match written.path() {
        Some(path) => {
            doc["out"] = json!(path);
            out.report(&doc, || {
                format!(
                    "decrypted {} bytes with {}, written to {path}",
                    plaintext.len(),
                    target_of(&resolved)
                )
            })
        }
        None => Ok(()),
    }
}
