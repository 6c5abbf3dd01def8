//! `keychain dkek …` and `keychain key backup|restore`: SmartCard-HSM DKEK share files and key
//! backups in the card's blob format.

use std::io::Write as _;
use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use keychain::{
    Error, ErrorKind, ImportSpec, KeyMaterial, Keychain, Result, SecretSource, SecretString,
    WrappingSpec,
};
use keychain_sc_hsm::dkek::{self, Dkek, DkekShare, Kdf, ShareFile, WrapOptions};
use serde_json::json;

use super::{resolve_name, target_of};
use crate::cli::{KdfArgs, SharesArgs};
use crate::io::{read_file, write_output};
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
    password_env: Option<String>,
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
            let password = match password_env {
                Some(var) => SecretSource::env(var).resolve(&what)?,
                None => crate::prompt::ask(&what, true)?,
            };
            (password.expose().as_bytes().to_vec(), None)
        }
    };
    let password = zeroize::Zeroizing::new(password);
    let share = DkekShare::generate()?;
    let kcv = share.kcv();
    let (kdf, bar) = kdf_with_progress(kdf, "deriving the share file's key")?;
    let sealed = blocking(move || ShareFile::seal(&share, &password, &kdf)).await;
    bar.finish_and_clear();
    let bytes = sealed?.to_bytes();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(file)
        .map_err(|e| Error::from(e).with_context(format_args!("creating {}", file.display())))?;
    f.write_all(&bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::from(e).with_context(format_args!("writing {}", file.display())))?;
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

/// Opens every share file (passwords from the environment in order, then prompts) and XORs them.
async fn dkek_of(args: &SharesArgs) -> Result<Dkek> {
    let mut shares = Vec::with_capacity(args.shares.len());
    for (i, path) in args.shares.iter().enumerate() {
        let file = ShareFile::from_bytes(&read_file(path)?)
            .map_err(|e| e.with_context(format_args!("{}", path.display())))?;
        let what = format!("password of DKEK share {}", path.display());
        let password: SecretString = match args.password_envs.get(i) {
            Some(var) => SecretSource::env(var.clone()).resolve(&what)?,
            None => crate::prompt::ask(&what, false)?,
        };
        let (kdf, bar) = kdf_with_progress(&args.kdf, &format!("opening {}", path.display()))?;
        let opened = blocking(move || file.open(password.expose().as_bytes(), &kdf)).await;
        bar.finish_and_clear();
        shares.push(opened.map_err(|e| e.with_context(format_args!("{}", path.display())))?);
    }
    Dkek::combine(&shares)
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
    let mut one_time = zeroize::Zeroizing::new([0u8; 24]);
    getrandom::fill(one_time.as_mut_slice())
        .map_err(|e| Error::new(ErrorKind::Unexpected, format!("random generator: {e}")))?;
    let password = SecretString::new(one_time.iter().map(|b| format!("{b:02x}")).collect());
    let wrapped = resolved
        .backend
        .export_wrapped(&resolved.key, &WrappingSpec::Password(password.duplicate()))
        .await?;
    let der = keychain_crypto::pkcs8::decrypt(&wrapped.bytes, password.expose().as_bytes())?;
    let plain = keychain_crypto::pkcs8::inspect(der.expose())?;
    let material = if plain.algorithm.is_symmetric() {
        KeyMaterial::Symmetric(plain.material)
    } else {
        KeyMaterial::Pkcs8 {
            data: der,
            password: None,
        }
    };
    let blob = dkek::wrap_key(&dkek, &material, &WrapOptions::new())?;
    write_output(Some(file), &blob, true)?;
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
