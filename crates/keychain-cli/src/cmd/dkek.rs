//! `keychain dkek …` and `keychain key backup|restore`: SmartCard-HSM DKEK share files and key
//! backups in the card's blob format.

use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use keychain::dkek::{
    self, CustodyShare, Dkek, DkekShare, Kdf, ShareFile, ShareIdRadix, WrapOptions,
};
use keychain::{
    Error, ErrorKind, ImportSpec, KeyMaterial, Keychain, Result, SecretSource, SecretString,
    WrappingSpec,
};
use serde_json::json;
use zeroize::Zeroizing;

use super::{resolve_name, target_of};
use crate::cli::{KdfArgs, ShareSecret, SharesArgs};
use crate::io::{Existing, Secrecy, read_file, stage, write_file, write_output};
use crate::output::{Out, fields};

/// A progress bar for one share file's key derivation (hidden when stderr is no terminal).
fn kdf_with_progress(args: &KdfArgs, what: &str) -> Result<(Kdf, ProgressBar)> {
    let bar = ProgressBar::new(u64::from(args.kdf_rounds));
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {percent}% ({eta})") {
        bar.set_style(style);
    }
    bar.set_message(what.to_owned());
    let shown = bar.clone();
    let kdf = Kdf::with_rounds(args.kdf_rounds)?.with_progress(move |p| {
        shown.set_length(p.total);
        shown.set_position(p.done);
    });
    Ok((kdf, bar))
}

/// Runs the share-file KDF (seconds at the tool's 10,000,000 rounds) off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::new(ErrorKind::Unexpected, format!("worker failed: {e}")))?
}

/// `T:N` of `--pwd-shares`.
fn threshold(spec: &str) -> Result<(u8, u8)> {
    let bad = || Error::invalid_input(format!("--pwd-shares {spec:?}: expected T:N, e.g. 3:5"));
    let (t, n) = spec.split_once(':').ok_or_else(bad)?;
    Ok((t.parse().map_err(|_| bad())?, n.parse().map_err(|_| bad())?))
}

/// `dkek create-share`.
pub(super) async fn create_share(
    out: Out,
    file: &Path,
    pwd_shares: Option<&str>,
    password: Option<SecretSource>,
    kdf: &KdfArgs,
) -> Result<()> {
    if file.exists() {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "{} exists; a share file is never overwritten",
                file.display()
            ),
        ));
    }
    let what = format!("password of the new share {}", file.display());
    let (password, sheets) = match pwd_shares {
        Some(spec) => {
            let (t, n) = threshold(spec)?;
            let (password, shares) = dkek::split_password(t, n)?;
            (
                password.expose().to_vec(),
                Some(dkek::format_sheets(&shares)),
            )
        }
        None => {
            let password = match password {
                Some(source) => source.resolve(&what)?,
                None => crate::prompt::ask(&what, true)?,
            };
            (password.expose().as_bytes().to_vec(), None)
        }
    };
    let password = Zeroizing::new(password);
    let share = DkekShare::generate()?;
    let kcv = share.kcv();
    let (kdf, bar) = kdf_with_progress(kdf, "deriving the share file's key")?;
    let sealed = blocking(move || ShareFile::seal(&share, &password, &kdf)).await;
    bar.finish_and_clear();
    let bytes = sealed?.to_bytes();
    write_file(file, &bytes, Secrecy::Secret, Existing::Keep)?;
    let doc = json!({
        "file": file.display().to_string(),
        "kcv": kcv.to_string(),
        "password_sheets": sheets,
    });
    out.report(&doc, || {
        let mut text = fields(&[
            ("share", file.display().to_string()),
            ("kcv", kcv.to_string()),
        ]);
        if let Some(sheets) = &sheets {
            text.push_str(
                "\nGive each custodian one sheet; any threshold of them open the share:\n\n",
            );
            text.push_str(sheets);
        }
        text
    })
}

/// The DKEK of `args`: its share files opened (each with its password source, or a prompt) and
/// XORed, or its custody shares rebuilt and checked against their KCV.
async fn dkek_of(args: &SharesArgs) -> Result<Dkek> {
    if !args.custody.is_empty() {
        return Ok(from_custody(&args.custody)?.0);
    }
    if args.sources.len() > args.shares.len() {
        return Err(Error::invalid_input(format!(
            "{} share passwords for {} --share files",
            args.sources.len(),
            args.shares.len()
        )));
    }
    let mut shares = Vec::with_capacity(args.shares.len());
    for (i, path) in args.shares.iter().enumerate() {
        let file = ShareFile::from_bytes(&read_file(path)?)
            .map_err(|e| e.with_context(format_args!("{}", path.display())))?;
        let password = share_password(path, args.sources.get(i))?;
        let (kdf, bar) = kdf_with_progress(&args.kdf, &format!("opening {}", path.display()))?;
        let opened = blocking(move || file.open(&password, &kdf)).await;
        bar.finish_and_clear();
        shares.push(opened.map_err(|e| e.with_context(format_args!("{}", path.display())))?);
    }
    Dkek::combine(&shares)
}

/// The password of the share file at `path`, from its source or a prompt.
fn share_password(path: &Path, source: Option<&ShareSecret>) -> Result<Zeroizing<Vec<u8>>> {
    let what = format!("password of DKEK share {}", path.display());
    let text = |s: SecretString| Zeroizing::new(s.expose().as_bytes().to_vec());
    Ok(match source {
        Some(ShareSecret::Env(var)) => text(SecretSource::env(var.clone()).resolve(&what)?),
        Some(ShareSecret::File(file)) => text(SecretSource::file(file).resolve(&what)?),
        Some(ShareSecret::Sheets(file)) => {
            let sheets = Zeroizing::new(read_file(file)?);
            let sheets = std::str::from_utf8(&sheets).map_err(|_| {
                Error::invalid_input(format!("{}: the sheets are not text", file.display()))
            })?;
            let shares = dkek::parse_sheets(sheets, ShareIdRadix::Decimal)
                .map_err(|e| e.with_context(format_args!("{}", file.display())))?;
            Zeroizing::new(dkek::reconstruct_password(&shares)?.expose().to_vec())
        }
        None => text(crate::prompt::ask(&what, false)?),
    })
}

/// Reads custody share files and rebuilds their DKEK (checked against the KCV they carry).
/// Returns the DKEK and the shares' threshold.
fn from_custody(paths: &[PathBuf]) -> Result<(Dkek, u8)> {
    let mut shares = Vec::with_capacity(paths.len());
    for path in paths {
        let text = Zeroizing::new(read_file(path)?);
        let text = std::str::from_utf8(&text).map_err(|_| {
            Error::invalid_input(format!("{}: not a custody share", path.display()))
        })?;
        shares.push(
            CustodyShare::from_text(text)
                .map_err(|e| e.with_context(format_args!("{}", path.display())))?,
        );
    }
    let threshold = shares.first().map_or(0, CustodyShare::threshold);
    Ok((dkek::reconstruct_dkek(&shares)?, threshold))
}

/// `dkek split`.
pub(super) async fn split(
    out: Out,
    threshold: u8,
    total: u8,
    dir: &Path,
    shares: &SharesArgs,
) -> Result<()> {
    let dkek = dkek_of(shares).await?;
    let custody = dkek::split_dkek(&dkek, threshold, total)?;
    let files: Vec<PathBuf> = custody
        .iter()
        .map(|c| dir.join(format!("custody-{}-of-{total}.txt", c.id())))
        .collect();
    if let Some(existing) = files.iter().find(|f| f.exists()) {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "{} exists; a custody file is never overwritten",
                existing.display()
            ),
        ));
    }
    create_private_dir(dir)?;
    let mut staged = Vec::with_capacity(files.len());
    for (share, file) in custody.iter().zip(&files) {
        let mut text = share.to_text().expose().as_bytes().to_vec();
        text.push(b'\n');
        let text = Zeroizing::new(text);
        staged.push(stage(file, &text, Secrecy::Secret, Existing::Keep)?);
    }
    // All files or none: a partial set could hold fewer shares than the threshold, which would
    // only show when the DKEK is needed.
    let mut placed: Vec<&PathBuf> = Vec::with_capacity(files.len());
    for (staged, file) in staged.into_iter().zip(&files) {
        if let Err(e) = staged.commit() {
            for done in placed {
                let _ = std::fs::remove_file(done);
            }
            return Err(e);
        }
        placed.push(file);
    }
    let kcv = dkek.kcv().to_string();
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let doc = json!({
        "kcv": kcv,
        "threshold": threshold,
        "shares": total,
        "files": names,
    });
    out.report(&doc, || {
        let mut text = fields(&[
            ("dkek kcv", kcv.clone()),
            ("custody", format!("any {threshold} of {total}")),
        ]);
        text.push_str("\nGive each administrator one file, and delete it here once handed over:\n");
        for name in &names {
            text.push_str(&format!("  {name}\n"));
        }
        text
    })
}

/// `dkek reconstruct`.
pub(super) async fn reconstruct(out: Out, custody: &[PathBuf]) -> Result<()> {
    let (dkek, threshold) = from_custody(custody)?;
    let kcv = dkek.kcv().to_string();
    let doc = json!({ "kcv": kcv, "threshold": threshold, "shares_used": custody.len() });
    out.report(&doc, || {
        fields(&[
            ("dkek kcv", kcv.clone()),
            (
                "rebuilt from",
                format!(
                    "{} custody shares (threshold {threshold}); nothing written",
                    custody.len()
                ),
            ),
        ])
    })
}

/// Creates `dir` (0700 on Unix) unless it exists.
fn create_private_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| Error::from(e).with_context(format_args!("creating {}", dir.display())))
}

/// `dkek kcv`.
pub(super) async fn kcv(out: Out, args: &SharesArgs) -> Result<()> {
    let dkek = dkek_of(args).await?;
    let kcv = dkek.kcv().to_string();
    let doc = json!({ "shares": args.shares.len(), "kcv": kcv });
    out.report(&doc, || {
        fields(&[
            ("shares", args.shares.len().to_string()),
            ("kcv", kcv.clone()),
        ])
    })
}

/// `key backup`: the key leaves its backend under a one-time password (its own export), is
/// re-encoded as a card blob under the DKEK, and the plaintext is zeroized.
pub(super) async fn backup(
    out: Out,
    keychain: &Keychain,
    target: &str,
    shares: &SharesArgs,
    file: &Path,
) -> Result<()> {
    crate::io::check_binary_destination(Some(file))?;
    let resolved = keychain.resolve(target)?;
    let dkek = dkek_of(shares).await?;
    let mut one_time = Zeroizing::new([0u8; 24]);
    getrandom::fill(one_time.as_mut_slice())
        .map_err(|e| Error::new(ErrorKind::Unexpected, format!("random generator: {e}")))?;
    let password = SecretString::new(one_time.iter().map(|b| format!("{b:02x}")).collect());
    let wrapped = resolved
        .backend
        .export_wrapped(&resolved.key, &WrappingSpec::Password(password.duplicate()))
        .await?;
    let der = keychain_crypto::pkcs8::decrypt(&wrapped.bytes, password.expose().as_bytes())?;
    let plain = keychain_crypto::pkcs8::inspect(der.expose())?;
    if plain.algorithm.is_symmetric() && !plain.algorithm.is_aes() {
        return Err(Error::unsupported(format!(
            "the SmartCard-HSM's blobs hold RSA, EC and AES keys, not {}",
            plain.algorithm
        )));
    }
    let material = if plain.algorithm.is_symmetric() {
        KeyMaterial::Symmetric(plain.material)
    } else {
        KeyMaterial::Pkcs8 {
            data: der,
            password: None,
        }
    };
    let blob = dkek::wrap_key(&dkek, &material, &WrapOptions::new())?;
    write_output(Some(file), &blob, true, Secrecy::Secret)?;
    let kcv = dkek.kcv().to_string();
    let doc = json!({
        "key": target_of(&resolved),
        "algorithm": wrapped.algorithm.to_string(),
        "kcv": kcv,
        "out": file.display().to_string(),
    });
    out.report(&doc, || {
        fields(&[
            ("backed up", target_of(&resolved)),
            ("algorithm", wrapped.algorithm.to_string()),
            ("dkek kcv", kcv.clone()),
            ("blob", file.display().to_string()),
        ])
    })
}

/// `key restore`.
pub(super) async fn restore(
    out: Out,
    keychain: &Keychain,
    name: &str,
    input: &Path,
    shares: &SharesArgs,
    exportable: bool,
) -> Result<()> {
    let (resolved, key_name) = resolve_name(keychain, name)?;
    let blob = read_file(input)?;
    let dkek = dkek_of(shares).await?;
    let unwrapped = dkek::unwrap_key(&dkek, &blob)?;
    let algorithm = unwrapped.algorithm.ok_or_else(|| {
        Error::unsupported("the blob holds a card-only key type keychain has no algorithm for")
    })?;
    let spec = ImportSpec::new()
        .algorithm(algorithm)
        .exportable(exportable);
    let info = resolved
        .backend
        .import_key(&key_name, unwrapped.material, &spec)
        .await?;
    let doc = crate::output::key_json(&resolved.backend_name, &info, true);
    out.report(&doc, || {
        format!(
            "restored {}:{} ({algorithm}) from {}",
            resolved.backend_name,
            info.name,
            input.display()
        )
    })
}
