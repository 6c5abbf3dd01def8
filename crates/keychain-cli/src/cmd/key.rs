//! `keychain key ...`: generate, list, show, rotate, delete, export-public, import.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::Path;

use keychain::{
    Error, ImportSpec, KeyEntry, KeyInfo, KeyMaterial, KeySpec, KeyUsages, Keychain, Result,
    SecretBytes, SecretSource,
};
use serde_json::{Value, json};

use super::{resolve_name, target_of};
use crate::cli::{GenerateArgs, ImportArgs, PublicFormat, usage_names};
use crate::io::{Secrecy, read_input, write_output};
use crate::output::{Out, Table, fields, fingerprint, key_json, protection_name, timestamp};
use crate::progress::Spinner;

/// `key generate`.
pub(super) async fn generate(out: Out, keychain: &Keychain, args: &GenerateArgs) -> Result<()> {
    let (resolved, name) = resolve_name(keychain, &args.name)?;
    let mut spec = KeySpec::new(args.algorithm).exportable(args.exportable);
    if !args.usages.is_empty() {
        spec = spec.with_usages(args.usages.iter().copied().collect());
    }
    // RSA key generation takes seconds; the rest is instant on software backends, but a device
    // or a cloud service may take a while for anything.
    let spinner = Spinner::start(format!(
        "generating {} key {}",
        args.algorithm,
        target_of(&resolved)
    ));
    let info = resolved.backend.generate_key(&name, &spec).await;
    drop(spinner);
    let info = info?;
    let doc = key_json(&resolved.backend_name, &info, true);
    out.report(&doc, || {
        format!(
            "generated {}\n{}",
            target_of(&resolved),
            summary(&resolved.backend_name, &info)
        )
    })
}

/// `key list`.
pub(super) async fn list(out: Out, keychain: &Keychain, backend: Option<&str>) -> Result<()> {
    let names: Vec<String> = match backend {
        Some(b) => {
            keychain.backend(b)?;
            vec![b.to_owned()]
        }
        None => keychain.registry().names().map(str::to_owned).collect(),
    };
    let mut keys = Vec::new();
    let mut damaged = Vec::new();
    for name in &names {
        let backend = keychain.backend(name)?;
        for entry in backend.list_entries().await? {
            match entry {
                KeyEntry::Healthy(info) => keys.push((name.clone(), info)),
                KeyEntry::Damaged(d) => damaged.push((name.clone(), d)),
            }
        }
    }
    let mut docs: Vec<Value> = keys
        .iter()
        .map(|(b, k)| {
            let mut doc = key_json(b, k, false);
            doc["status"] = "ok".into();
            doc
        })
        .collect();
    docs.extend(damaged.iter().map(|(b, d)| {
        json!({
            "backend": b,
            "name": d.name.as_str(),
            "target": format!("{b}:{}", d.name),
            "status": "damaged",
            "error": { "kind": d.error.kind().as_str(), "message": d.error.message() },
        })
    }));
    let doc = json!({ "keys": docs });
    out.report(&doc, || {
        if keys.is_empty() && damaged.is_empty() {
            return format!("no keys in {}", names.join(", "));
        }
        let mut text = if keys.is_empty() {
            String::new()
        } else {
            key_table(&keys).render()
        };
        if !damaged.is_empty() {
            // Named, with the reason, so the operator can repair or delete each one; the
            // healthy keys above stay usable.
            text.push_str("damaged keys (`keychain key delete TARGET --yes` removes one):\n");
            for (b, d) in &damaged {
                text.push_str(&format!("  {b}:{}  {}\n", d.name, d.error.message()));
            }
        }
        text
    })
}

/// The table `key list` and `demo` print.
pub(crate) fn key_table(keys: &[(String, KeyInfo)]) -> Table {
    let mut table = Table::new(&[
        "KEY",
        "ALGORITHM",
        "VERSION",
        "USAGES",
        "PROTECTION",
        "EXPORTABLE",
        "CREATED",
    ]);
    for (backend, info) in keys {
        table.row(vec![
            format!("{backend}:{}", info.name),
            info.algorithm.to_string(),
            info.version.to_string(),
            usage_names(info.usages).join(","),
            protection_name(info.protection),
            if info.exportable { "yes" } else { "no" }.to_owned(),
            info.created().map(timestamp).unwrap_or_else(|| "-".into()),
        ]);
    }
    table
}

fn summary(backend: &str, info: &KeyInfo) -> String {
    let mut pairs = vec![
        ("key", format!("{backend}:{}", info.name)),
        ("algorithm", info.algorithm.to_string()),
        ("usages", usage_names(info.usages).join(", ")),
        ("protection", protection_name(info.protection)),
        (
            "exportable",
            if info.exportable { "yes" } else { "no" }.to_owned(),
        ),
        ("version", info.version.to_string()),
    ];
    if let Some(created) = info.created() {
        pairs.push(("created", timestamp(created)));
    }
    if let Some(pk) = info.public_key() {
        pairs.push(("public key sha256", fingerprint(pk)));
    }
    fields(&pairs)
}

/// `key show`.
pub(super) async fn show(out: Out, keychain: &Keychain, target: &str) -> Result<()> {
    let resolved = keychain.resolve(target)?;
    let info = resolved.backend.key_info(&resolved.key).await?;
    let doc = key_json(&resolved.backend_name, &info, true);
    out.report(&doc, || {
        let mut text = summary(&resolved.backend_name, &info);
        let mut versions = Table::new(&["VERSION", "CREATED", "PUBLIC KEY SHA256"]);
        for v in &info.versions {
            versions.row(vec![
                v.version.to_string(),
                v.created.map(timestamp).unwrap_or_else(|| "-".into()),
                v.public_key
                    .as_ref()
                    .map(fingerprint)
                    .unwrap_or_else(|| "-".into()),
            ]);
        }
        text.push('\n');
        text.push_str(&versions.render());
        text
    })
}

/// `key rotate`.
pub(super) async fn rotate(out: Out, keychain: &Keychain, target: &str) -> Result<()> {
    let (resolved, name) = resolve_name(keychain, target)?;
    let info = resolved.backend.rotate_key(&name).await?;
    let doc = key_json(&resolved.backend_name, &info, false);
    out.report(&doc, || {
        let earlier: Vec<String> = info
            .versions
            .iter()
            .filter(|v| v.version != info.version)
            .map(|v| v.version.to_string())
            .collect();
        let earlier = match earlier.as_slice() {
            [] => String::new(),
            [one] => format!("; version {one} still verifies and decrypts"),
            many => format!("; versions {} still verify and decrypt", many.join(", ")),
        };
        format!(
            "rotated {}: version {} is current{earlier}",
            target_of(&resolved),
            info.version
        )
    })
}

/// `key delete`.
pub(super) async fn delete(out: Out, keychain: &Keychain, target: &str, yes: bool) -> Result<()> {
    let (resolved, name) = resolve_name(keychain, target)?;
    let shown = target_of(&resolved);
    if !yes {
        // Fails with NotFound before asking about a key that does not exist.
        let info = resolved.backend.key_info(&resolved.key).await?;
        confirm(&format!(
            "Delete {shown} ({}, {} version{}) for good? [y/N] ",
            info.algorithm,
            info.versions.len(),
            if info.versions.len() == 1 { "" } else { "s" }
        ))?;
    }
    resolved.backend.delete_key(&name).await?;
    out.report(&json!({ "deleted": shown }), || format!("deleted {shown}"))
}

fn confirm(question: &str) -> Result<()> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(Error::invalid_input(
            "refusing to delete without confirmation: stdin is not a terminal; pass --yes",
        ));
    }
    let mut stderr = std::io::stderr().lock();
    let _ = write!(stderr, "{question}");
    let _ = stderr.flush();
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(())
    } else {
        Err(Error::invalid_input("not deleted: not confirmed"))
    }
}

/// `key export-public`.
pub(super) async fn export_public(
    out: Out,
    keychain: &Keychain,
    target: &str,
    format: PublicFormat,
    file: Option<&Path>,
) -> Result<()> {
    let resolved = keychain.resolve(target)?;
    let info = resolved.backend.key_info(&resolved.key).await?;
    let version = resolved.key.version().unwrap_or(info.version);
    let public = info
        .version_info(version)
        .and_then(|v| v.public_key.as_ref())
        .ok_or_else(|| {
            Error::invalid_input(format!(
                "{} ({}) is a symmetric key: it has no public key",
                target_of(&resolved),
                info.algorithm
            ))
        })?;
    let (format_name, text, value) = match format {
        PublicFormat::Pem => {
            let pem = public.to_pem();
            ("pem", pem.clone(), Value::String(pem))
        }
        PublicFormat::Jwk => {
            let jwk = public.to_jwk();
            let text = serde_json::to_string_pretty(&jwk).unwrap_or_default() + "\n";
            ("jwk", text, jwk)
        }
    };
    let mut doc = json!({
        "key": format!("{}:{}", resolved.backend_name, info.name),
        "version": version,
        "algorithm": info.algorithm.as_str(),
        "format": format_name,
        "public_key_sha256": fingerprint(public),
    });
    match file {
        Some(path) if path.as_os_str() != "-" => {
            let written = write_output(Some(path), text.as_bytes(), false, Secrecy::Public)?;
            doc["out"] = json!(written.path());
            out.report(&doc, || {
                format!(
                    "wrote the public key of {}:{} version {version} ({format_name}) to {}",
                    resolved.backend_name,
                    info.name,
                    path.display()
                )
            })
        }
        _ if out.json() => {
            doc["public_key"] = value;
            out.report(&doc, String::new)
        }
        _ => write_output(None, text.as_bytes(), false, Secrecy::Public).map(drop),
    }
}

/// `key import`.
pub(super) async fn import(out: Out, keychain: &Keychain, args: &ImportArgs) -> Result<()> {
    let (resolved, name) = resolve_name(keychain, &args.name)?;
    let data = read_input(Some(&args.input))?;
    let what = format!("password of {}", args.input.display());
    let password = match &args.password_env {
        Some(var) => Some(SecretSource::env(var.clone()).resolve(&what)?),
        None if looks_encrypted(&data) => Some(crate::prompt::ask(&what, false)?),
        None => None,
    };
    let mut spec = ImportSpec::new().exportable(args.exportable);
    if let Some(a) = args.algorithm {
        spec = spec.algorithm(a);
    }
    if !args.usages.is_empty() {
        spec = spec.with_usages(args.usages.iter().copied().collect::<KeyUsages>());
    }
    let material = KeyMaterial::Pkcs8 {
        data: SecretBytes::new(data),
        password,
    };
    let info = resolved.backend.import_key(&name, material, &spec).await?;
    let doc = key_json(&resolved.backend_name, &info, true);
    out.report(&doc, || {
        format!(
            "imported {}\n{}",
            target_of(&resolved),
            summary(&resolved.backend_name, &info)
        )
    })
}

/// Whether PEM data is an `ENCRYPTED PRIVATE KEY` (DER is not sniffed: pass --password-env).
fn looks_encrypted(data: &[u8]) -> bool {
    const LABEL: &[u8] = b"-----BEGIN ENCRYPTED PRIVATE KEY-----";
    data.windows(LABEL.len()).any(|w| w == LABEL)
}
