//! `keychain sign | verify | encrypt | decrypt`.

use base64ct::{Base64, Encoding as _};
use keychain::{
    BackendExt as _, Error, ErrorKind, Keychain, Operation, PublicKey, Result, SignOptions,
    SignPayload,
};
use serde_json::json;

use super::target_of;
use crate::cli::{CipherArgs, SignArgs, VerifyArgs};
use crate::io::{
    MAX_WHOLE_INPUT, Secrecy, check_binary_destination, mib, open_stream, read_file, read_input,
    read_input_limited, write_output,
};
use crate::output::Out;

/// The signing options of `sign`/`verify`: the scheme and hash asked for, and how much of a
/// message Ed25519 reads whole.
fn options(
    scheme: Option<keychain::SignatureScheme>,
    hash: Option<keychain::HashAlg>,
) -> SignOptions {
    SignOptions::new()
        .with_scheme(scheme)
        .with_hash(hash)
        .with_max_message(MAX_WHOLE_INPUT)
}

/// The bytes of `--digest-hex`.
fn parse_digest(hex_digest: &str) -> Result<Vec<u8>> {
    hex::decode(hex_digest.trim())
        .map_err(|e| Error::invalid_input(format!("--digest-hex is not hex: {e}")))
}

/// `sign`: the library picks the scheme and streams the input through its hash.
pub(super) async fn sign(out: Out, keychain: &Keychain, args: &SignArgs) -> Result<()> {
    if !out.json() {
        check_binary_destination(args.out.as_deref())?;
    }
    let resolved = keychain.resolve(&args.key)?;
    let options = options(args.scheme, args.hash);
    let backend = &resolved.backend;
    let signature = match &args.digest_hex {
        Some(hex_digest) => {
            let digest = parse_digest(hex_digest)?;
            backend
                .sign_digest(&resolved.key, &digest, &options)
                .await?
        }
        None => {
            let mut input = open_stream(args.input.as_deref())?;
            backend
                .sign_reader(&resolved.key, &mut input, &options)
                .await?
        }
    };
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

/// `verify`, with a stored key (`keychain` is `Some`; every version is tried, newest first) or
/// a public key file.
pub(super) async fn verify(out: Out, keychain: Option<&Keychain>, args: &VerifyArgs) -> Result<()> {
    let signature = read_file(&args.signature)?;
    let options = options(args.scheme, args.hash);
    let (label, version, scheme) = match (keychain, &args.key, &args.public_key) {
        (Some(keychain), Some(target), _) => {
            let resolved = keychain.resolve(target)?;
            let backend = &resolved.backend;
            let verified = match &args.digest_hex {
                Some(hex_digest) => {
                    let digest = parse_digest(hex_digest)?;
                    backend
                        .verify_digest(&resolved.key, &digest, &signature, &options)
                        .await?
                }
                None => {
                    let mut input = open_stream(args.input.as_deref())?;
                    backend
                        .verify_reader(&resolved.key, &mut input, &signature, &options)
                        .await?
                }
            };
            let label = format!("{}:{}", resolved.backend_name, resolved.key.name());
            (label, Some(verified.version), verified.scheme)
        }
        (_, _, Some(path)) => {
            let public = parse_public_key(&read_file(path)?)
                .map_err(|e| e.with_context(format_args!("{}", path.display())))?;
            let scheme = options.scheme_for(public.algorithm())?;
            let payload = match &args.digest_hex {
                Some(hex_digest) => {
                    SignPayload::digest(scheme, args.hash, parse_digest(hex_digest)?)?
                }
                None => {
                    let mut input = open_stream(args.input.as_deref())?;
                    SignPayload::read(scheme, &mut input, options.max_message)?
                }
            };
            let label = path.display().to_string();
            keychain::verify(&public, payload.as_input(), scheme, &signature).map_err(|e| {
                let e = if e.kind() == ErrorKind::InvalidSignature {
                    Error::new(
                        ErrorKind::InvalidSignature,
                        format!("the {scheme} signature does not verify with {label}"),
                    )
                } else {
                    e
                };
                e.with_operation(Operation::Verify)
            })?;
            (label, None, scheme)
        }
        _ => return Err(Error::invalid_input("give --key KEY or --public-key FILE")),
    };
    let doc = json!({
        "valid": true,
        "key": label,
        "version": version,
        "scheme": scheme.name(),
    });
    out.report(&doc, || match version {
        Some(v) => format!("signature OK: {label} version {v} ({scheme})"),
        None => format!("signature OK: {label} ({scheme})"),
    })
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
