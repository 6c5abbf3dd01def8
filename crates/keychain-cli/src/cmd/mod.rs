//! One module per group of commands; [`run`] dispatches.

mod backends;
mod crypto;
mod demo;
mod dkek;
mod key;

use std::path::Path;

use keychain::{Error, KeyName, Keychain, Resolved, Result, SecretSource};

use crate::cli::{Cli, Command, DkekCommand, KeyCommand, SharesArgs};
use crate::output::Out;

/// Runs the parsed command line.
///
/// # Errors
/// Whatever the command fails with; the caller maps its kind to the exit code.
pub(crate) async fn run(cli: Cli) -> Result<()> {
    // Before anything is read or written: an output over an input would destroy the input.
    let (inputs, outputs) = files(&cli);
    crate::io::check_files(&inputs, &outputs)?;
    let out = Out { format: cli.output };
    let config = cli.config.as_deref();
    match cli.command {
        Command::Demo => demo::run(out).await,
        Command::Backends => backends::list(out, config).await,
        Command::Doctor => backends::doctor(out, config).await,
        // DKEK shares need no backend.
        Command::Dkek(DkekCommand::CreateShare {
            file,
            pwd_shares,
            password_env,
            password_file,
            kdf,
        }) => {
            let password = password_env
                .map(SecretSource::env)
                .or(password_file.map(SecretSource::file));
            dkek::create_share(out, &file, pwd_shares.as_deref(), password, &kdf).await
        }
        Command::Dkek(DkekCommand::Kcv { shares }) => dkek::kcv(out, &shares).await,
        Command::Dkek(DkekCommand::Split {
            threshold,
            total,
            out_dir,
            shares,
        }) => dkek::split(out, threshold, total, &out_dir, &shares).await,
        Command::Dkek(DkekCommand::Reconstruct { custody }) => {
            dkek::reconstruct(out, &custody).await
        }
        // Verifying with a public key file needs no backend (and so no password).
        Command::Verify(args) if args.key.is_none() => crypto::verify(out, None, &args).await,
        command => {
            let (keychain, _) = crate::config::open(config).await?;
            let result = with_keychain(out, &keychain, command).await;
            let closed = keychain.close().await;
            result.and(closed)
        }
    }
}

/// A file a command reads or writes, with the option that names it.
type NamedFile<'a> = (&'static str, &'a Path);

/// The files a DKEK source reads.
fn shares<'a>(inputs: &mut Vec<NamedFile<'a>>, args: &'a SharesArgs) {
    for (option, paths) in [
        ("--share", &args.shares),
        ("--custody", &args.custody),
        ("--password-file", &args.password_files),
        ("--pwd-shares-file", &args.pwd_shares_files),
    ] {
        inputs.extend(paths.iter().map(|p| (option, p.as_path())));
    }
}

/// The files `cli` names: (inputs, outputs). The configuration counts as an input of the
/// commands that write a file, all of which open it.
fn files(cli: &Cli) -> (Vec<NamedFile<'_>>, Vec<NamedFile<'_>>) {
    let mut inputs: Vec<NamedFile<'_>> = Vec::new();
    let mut outputs: Vec<NamedFile<'_>> = Vec::new();
    match &cli.command {
        Command::Sign(args) => {
            inputs.extend(args.input.as_deref().map(|p| ("--in", p)));
            outputs.extend(args.out.as_deref().map(|p| ("--out", p)));
        }
        Command::Verify(args) => {
            inputs.extend(args.input.as_deref().map(|p| ("--in", p)));
            inputs.push(("--signature", &args.signature));
            inputs.extend(args.public_key.as_deref().map(|p| ("--public-key", p)));
        }
        Command::Encrypt(args) | Command::Decrypt(args) => {
            inputs.extend(args.input.as_deref().map(|p| ("--in", p)));
            outputs.extend(args.out.as_deref().map(|p| ("--out", p)));
        }
        Command::Key(KeyCommand::Import(args)) => inputs.push(("--in", &args.input)),
        Command::Key(KeyCommand::ExportPublic { out, .. }) => {
            outputs.extend(out.as_deref().map(|p| ("--out", p)));
        }
        Command::Key(KeyCommand::Backup { shares: s, out, .. }) => {
            shares(&mut inputs, s);
            outputs.push(("--out", out));
        }
        Command::Key(KeyCommand::Restore {
            input, shares: s, ..
        }) => {
            inputs.push(("--sc-hsm-blob", input));
            shares(&mut inputs, s);
        }
        Command::Dkek(DkekCommand::CreateShare {
            file,
            password_file,
            ..
        }) => {
            inputs.extend(password_file.as_deref().map(|p| ("--password-file", p)));
            outputs.push(("FILE", file));
        }
        Command::Dkek(DkekCommand::Kcv { shares: s } | DkekCommand::Split { shares: s, .. }) => {
            shares(&mut inputs, s);
        }
        Command::Dkek(DkekCommand::Reconstruct { custody }) => {
            inputs.extend(custody.iter().map(|p| ("--custody", p.as_path())));
        }
        Command::Demo
        | Command::Backends
        | Command::Doctor
        | Command::Key(
            KeyCommand::Generate(_)
            | KeyCommand::List { .. }
            | KeyCommand::Show { .. }
            | KeyCommand::Rotate { .. }
            | KeyCommand::Delete { .. },
        ) => {}
    }
    if !outputs.is_empty()
        && !matches!(cli.command, Command::Dkek(_))
        && let Some(config) = &cli.config
    {
        inputs.push(("--config", config));
    }
    (inputs, outputs)
}

async fn with_keychain(out: Out, keychain: &Keychain, command: Command) -> Result<()> {
    match command {
        Command::Key(KeyCommand::Generate(args)) => key::generate(out, keychain, &args).await,
        Command::Key(KeyCommand::List { backend }) => {
            key::list(out, keychain, backend.as_deref()).await
        }
        Command::Key(KeyCommand::Show { key }) => key::show(out, keychain, &key).await,
        Command::Key(KeyCommand::Rotate { key }) => key::rotate(out, keychain, &key).await,
        Command::Key(KeyCommand::Delete { key, yes }) => {
            key::delete(out, keychain, &key, yes).await
        }
        Command::Key(KeyCommand::ExportPublic {
            key,
            format,
            out: file,
        }) => key::export_public(out, keychain, &key, format, file.as_deref()).await,
        Command::Key(KeyCommand::Import(args)) => key::import(out, keychain, &args).await,
        Command::Key(KeyCommand::Backup {
            key,
            shares,
            out: file,
        }) => dkek::backup(out, keychain, &key, &shares, &file).await,
        Command::Key(KeyCommand::Restore {
            name,
            input,
            shares,
            exportable,
        }) => dkek::restore(out, keychain, &name, &input, &shares, exportable).await,
        Command::Sign(args) => crypto::sign(out, keychain, &args).await,
        Command::Verify(args) => crypto::verify(out, Some(keychain), &args).await,
        Command::Encrypt(args) => crypto::encrypt(out, keychain, &args).await,
        Command::Decrypt(args) => crypto::decrypt(out, keychain, &args).await,
        Command::Demo | Command::Backends | Command::Doctor | Command::Dkek(_) => Err(Error::new(
            keychain::ErrorKind::Unexpected,
            "command dispatched twice",
        )),
    }
}

/// Resolves a target that must name a whole key, not one version (generate, import, rotate,
/// delete).
fn resolve_name(keychain: &Keychain, target: &str) -> Result<(Resolved, KeyName)> {
    let resolved = keychain.resolve(target)?;
    if let Some(v) = resolved.key.version() {
        return Err(Error::invalid_input(format!(
            "`{target}` names version {v}; this command takes a key name without @VERSION"
        )));
    }
    let name = resolved.key.name().clone();
    Ok((resolved, name))
}

/// `backend:key` or `backend:key@N`, as the user can type it back.
fn target_of(resolved: &Resolved) -> String {
    format!("{}:{}", resolved.backend_name, resolved.key)
}
