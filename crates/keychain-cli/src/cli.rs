//! The command line, as clap derive types. Algorithm, scheme, hash and usage spellings come from
//! `keychain-core` (`KeyAlgorithm::as_str`, `SignatureScheme::name`, ...), never from here.

use std::path::PathBuf;

use clap::builder::{PossibleValuesParser, TypedValueParser as _};
use clap::{Args, Parser, Subcommand, ValueEnum};
use keychain::{HashAlg, KeyAlgorithm, KeyUsage, KeyUsages, SignatureScheme};

/// One command over every place a private key lives.
#[derive(Debug, Parser)]
#[command(
    name = "keychain",
    version,
    about = "Keys, signatures and encryption on any configured keychain backend",
    long_about = "Keys, signatures and encryption on any configured keychain backend.\n\n\
        Try `keychain demo`: it needs no setup and leaves nothing behind.\n\n\
        Key targets: `backend:key`, `key` (default backend), `key@2` (one version), \
        or a key URI such as `pkcs8:name=signer`.",
    after_long_help = crate::exit::help(),
)]
pub(crate) struct Cli {
    /// Configuration file (TOML); default: $KEYCHAIN_CONFIG, else one software backend in ./.keychain.
    #[arg(long, global = true, env = "KEYCHAIN_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,

    /// How results (and errors) are printed.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    pub(crate) output: Format,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Human-readable tables.
    Table,
    /// One JSON document on stdout.
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Generate, sign, verify, encrypt, rotate and list keys in a throwaway store (no setup needed).
    Demo,
    /// Manage keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Sign a file or stdin; writes the signature (DER for ECDSA, raw for RSA and Ed25519).
    Sign(SignArgs),
    /// Verify a signature with a stored key or a public key file.
    Verify(VerifyArgs),
    /// Encrypt with a symmetric (AEAD) key; the ciphertext names the key version and nonce.
    Encrypt(CipherArgs),
    /// Decrypt a ciphertext made by `keychain encrypt`.
    Decrypt(CipherArgs),
    /// SmartCard-HSM DKEK shares: create a share file, show the KCV of the DKEK shares make.
    #[command(subcommand)]
    Dkek(DkekCommand),
    /// List the configured backends, their types and capabilities.
    Backends,
    /// Check every configured backend; exits non-zero if one is unhealthy or unreachable.
    Doctor,
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeyCommand {
    /// Create a key.
    Generate(GenerateArgs),
    /// List keys (of every backend, or one).
    List {
        /// Only this backend.
        #[arg(long)]
        backend: Option<String>,
    },
    /// Show a key's metadata, versions and public key fingerprints.
    Show {
        /// The key target.
        #[arg(value_name = "KEY")]
        key: String,
    },
    /// Add a new version; earlier versions still verify and decrypt.
    Rotate {
        /// The key target.
        #[arg(value_name = "KEY")]
        key: String,
    },
    /// Delete a key and all its versions.
    Delete {
        /// The key target.
        #[arg(value_name = "KEY")]
        key: String,
        /// Do not ask for confirmation (required when stdin is not a terminal).
        #[arg(long, short)]
        yes: bool,
    },
    /// Write a key's public key as PEM (SubjectPublicKeyInfo) or JWK.
    ExportPublic {
        /// The key target (`key@2` for an earlier version).
        #[arg(value_name = "KEY")]
        key: String,
        /// Encoding.
        #[arg(long, value_enum, default_value_t = PublicFormat::Pem)]
        format: PublicFormat,
        /// Write here instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Import a PKCS#8 private key (PEM or DER, encrypted or not).
    Import(ImportArgs),
    /// Back up a key (created exportable) as a SmartCard-HSM blob under the DKEK of the shares.
    Backup {
        /// The key (`backend:name`, `name`, `name@2`).
        key: String,
        /// The DKEK share files and their passwords.
        #[command(flatten)]
        shares: SharesArgs,
        /// Where the blob goes (binary).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Restore a SmartCard-HSM backup blob as a new key (in any backend that imports keys).
    Restore {
        /// The new key's name (`name` or `backend:name`).
        name: String,
        /// The blob (from a card's WRAP KEY or `keychain key backup`).
        #[arg(long = "sc-hsm-blob", visible_alias = "in", value_name = "FILE")]
        input: PathBuf,
        /// The DKEK share files and their passwords.
        #[command(flatten)]
        shares: SharesArgs,
        /// Allow the restored key to be exported again.
        #[arg(long)]
        exportable: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum DkekCommand {
    /// Create a DKEK share file: 32 random bytes under a password, in the 64-byte format of
    /// `sc-hsm-tool --create-dkek-share`. Prints the share's KCV (and the custodian sheets with
    /// --pwd-shares).
    CreateShare {
        /// The new share file (never overwritten).
        file: PathBuf,
        /// Protect the password with T-of-N password shares instead: a random password, split
        /// and printed as one sheet per custodian.
        #[arg(long, value_name = "T:N")]
        pwd_shares: Option<String>,
        /// Environment variable holding the share's password (prompted twice otherwise).
        #[arg(long, value_name = "VAR", conflicts_with = "pwd_shares")]
        password_env: Option<String>,
        /// File holding the share's password (one trailing newline is ignored).
        #[arg(long, value_name = "FILE", conflicts_with_all = ["pwd_shares", "password_env"])]
        password_file: Option<PathBuf>,
        /// Key-derivation rounds.
        #[command(flatten)]
        kdf: KdfArgs,
    },
    /// The key check value of the DKEK the given share files (their XOR) or custody shares
    /// make.
    Kcv {
        /// The share files and their passwords.
        #[command(flatten)]
        shares: SharesArgs,
    },
    /// Split the DKEK of the given shares M-of-N for custody: N files, one per administrator,
    /// any M of which rebuild the DKEK (`dkek reconstruct`, or `--custody` wherever a DKEK is
    /// needed). Unlike the card's shares, these never go into a card.
    Split {
        /// How many custody shares rebuild the DKEK (M, at least 2).
        #[arg(long, value_name = "M")]
        threshold: u8,
        /// How many custody shares to make (N, at most 255).
        #[arg(long = "shares", value_name = "N")]
        total: u8,
        /// Directory for the custody files `custody-ID-of-N.txt` (created 0700 if missing; a file
        /// there is never overwritten).
        #[arg(long, value_name = "DIR")]
        out_dir: PathBuf,
        /// The DKEK to split: its share files and their passwords.
        #[command(flatten)]
        shares: SharesArgs,
    },
    /// Rebuild a DKEK in memory from M custody shares and check it against the KCV they carry.
    /// Prints the KCV; the DKEK itself is never written anywhere.
    Reconstruct {
        /// A custody share file from `dkek split`; repeat for each.
        #[arg(long = "custody", value_name = "FILE", required = true)]
        custody: Vec<PathBuf>,
    },
}

/// Where a DKEK comes from: share files, each with its password, or custody shares.
///
/// Each `--password-env`, `--password-file` and `--pwd-shares-file` opens the next share in
/// `--share` order, taken in the order they are written; shares left without one are prompted
/// for.
#[derive(Debug, Args)]
pub(crate) struct SharesArgs {
    /// A DKEK share file; repeat for every share of the DKEK.
    #[arg(
        long = "share",
        value_name = "FILE",
        required_unless_present = "custody"
    )]
    pub(crate) shares: Vec<PathBuf>,
    /// A custody share file from `dkek split`, instead of share files: any threshold of them
    /// rebuild the DKEK in memory.
    #[arg(long = "custody", value_name = "FILE", conflicts_with_all = ["shares", "password_envs", "password_files", "pwd_shares_files"])]
    pub(crate) custody: Vec<PathBuf>,
    /// Environment variable holding the next share's password.
    #[arg(long = "password-env", value_name = "VAR")]
    pub(crate) password_envs: Vec<String>,
    /// File holding the next share's password (one trailing newline is ignored).
    #[arg(long = "password-file", value_name = "FILE")]
    pub(crate) password_files: Vec<PathBuf>,
    /// File holding the custodians' sheets (the format `dkek create-share --pwd-shares` and
    /// `sc-hsm-tool` print) that rebuild the next share's threshold-protected password.
    #[arg(long = "pwd-shares-file", value_name = "FILE")]
    pub(crate) pwd_shares_files: Vec<PathBuf>,
    /// The three sources above in command-line order (filled by [`parse`]).
    #[arg(skip)]
    pub(crate) sources: Vec<ShareSecret>,
    /// Key-derivation rounds.
    #[command(flatten)]
    pub(crate) kdf: KdfArgs,
}

/// Where one share file's password comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ShareSecret {
    /// An environment variable.
    Env(String),
    /// A file.
    File(PathBuf),
    /// A file of threshold password-share sheets.
    Sheets(PathBuf),
}

impl Command {
    /// The DKEK source of the commands that take one.
    fn shares_mut(&mut self) -> Option<&mut SharesArgs> {
        match self {
            Command::Dkek(DkekCommand::Kcv { shares } | DkekCommand::Split { shares, .. })
            | Command::Key(
                KeyCommand::Backup { shares, .. } | KeyCommand::Restore { shares, .. },
            ) => Some(shares),
            _ => None,
        }
    }
}

/// Parses the process arguments, exiting with clap's message on a usage error, or with a
/// JSON error when the command line asks for `--output json` (scripts parse one shape for
/// every failure). `--help` and `--version` print as usual.
pub(crate) fn parse() -> Cli {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    try_parse_from(&args).unwrap_or_else(|e| {
        if e.use_stderr() && asks_for_json(&args) {
            let message = match e.kind() {
                // clap's message for this is the whole help text.
                clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    "a subcommand is required; see `keychain --help`".to_owned()
                }
                _ => usage_message(&e.render().to_string()),
            };
            let code = u8::try_from(e.exit_code()).unwrap_or(crate::exit::USAGE);
            crate::output::usage_error_json(&message, code);
            std::process::exit(e.exit_code());
        }
        e.exit()
    })
}

/// Whether `--output json` (or `--output=json`) is among `args`, before any `--`: read from the
/// raw arguments, since a command line clap rejects has no parsed value.
fn asks_for_json(args: &[std::ffi::OsString]) -> bool {
    let args: Vec<&std::ffi::OsStr> = args
        .iter()
        .skip(1)
        .map(std::ffi::OsString::as_os_str)
        .take_while(|a| *a != "--")
        .collect();
    args.iter().any(|a| *a == "--output=json")
        || args
            .windows(2)
            .any(|pair| pair[0] == "--output" && pair[1] == "json")
}

/// clap's rendered error without its `error: ` prefix, usage line and `--help` hint, on one
/// line.
fn usage_message(rendered: &str) -> String {
    rendered
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more information")
        })
        .map(|l| l.strip_prefix("error: ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parses `args` like [`Cli::try_parse_from`], and also records the order of the share
/// password sources, which derive alone loses.
pub(crate) fn try_parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::{CommandFactory as _, FromArgMatches as _};
    let matches = Cli::command().try_get_matches_from(args)?;
    let mut cli = Cli::from_arg_matches(&matches)?;
    let mut leaf = &matches;
    while let Some((_, sub)) = leaf.subcommand() {
        leaf = sub;
    }
    if let Some(shares) = cli.command.shares_mut() {
        let mut all: Vec<(usize, ShareSecret)> = Vec::new();
        if let (Some(at), Some(values)) = (
            leaf.indices_of("password_envs"),
            leaf.get_many::<String>("password_envs"),
        ) {
            all.extend(at.zip(values.map(|v| ShareSecret::Env(v.clone()))));
        }
        for (id, make) in [
            (
                "password_files",
                ShareSecret::File as fn(PathBuf) -> ShareSecret,
            ),
            ("pwd_shares_files", ShareSecret::Sheets),
        ] {
            if let (Some(at), Some(values)) = (leaf.indices_of(id), leaf.get_many::<PathBuf>(id)) {
                all.extend(at.zip(values.map(|v| make(v.clone()))));
            }
        }
        all.sort_by_key(|(at, _)| *at);
        shares.sources = all.into_iter().map(|(_, source)| source).collect();
    }
    Ok(cli)
}

/// The share files' key derivation.
#[derive(Debug, Args)]
pub(crate) struct KdfArgs {
    /// Rounds of the share files' key derivation. The card's tool reads and writes only the
    /// default; other counts are for tests.
    #[arg(long, value_name = "N", default_value_t = keychain::dkek::DEFAULT_KDF_ROUNDS)]
    pub(crate) kdf_rounds: u32,
}

/// Public key encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum PublicFormat {
    /// `-----BEGIN PUBLIC KEY-----` (SubjectPublicKeyInfo).
    Pem,
    /// JSON Web Key.
    Jwk,
}

#[derive(Debug, Args)]
pub(crate) struct GenerateArgs {
    /// The new key's name (`name` or `backend:name`).
    #[arg(value_name = "NAME")]
    pub(crate) name: String,
    /// Key type and size.
    #[arg(long, short, value_parser = algorithm_parser())]
    pub(crate) algorithm: KeyAlgorithm,
    /// Allow the private key to be exported (wrapped) later.
    #[arg(long)]
    pub(crate) exportable: bool,
    /// Usages (repeat or comma-separate); default: sign for asymmetric keys, encrypt+decrypt for AES.
    #[arg(long = "usage", value_delimiter = ',', value_parser = usage_parser())]
    pub(crate) usages: Vec<KeyUsage>,
}

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// The new key's name (`name` or `backend:name`).
    #[arg(value_name = "NAME")]
    pub(crate) name: String,
    /// The PKCS#8 file (PEM or DER); `-` for stdin.
    #[arg(long = "in", value_name = "FILE")]
    pub(crate) input: PathBuf,
    /// Environment variable holding the password of an encrypted PKCS#8 (prompted otherwise).
    #[arg(long, value_name = "VAR")]
    pub(crate) password_env: Option<String>,
    /// Require this algorithm (checked against the material).
    #[arg(long, short, value_parser = algorithm_parser())]
    pub(crate) algorithm: Option<KeyAlgorithm>,
    /// Allow the key to be exported (wrapped) again.
    #[arg(long)]
    pub(crate) exportable: bool,
    /// Usages (repeat or comma-separate); default: the algorithm's defaults.
    #[arg(long = "usage", value_delimiter = ',', value_parser = usage_parser())]
    pub(crate) usages: Vec<KeyUsage>,
}

#[derive(Debug, Args)]
pub(crate) struct SignArgs {
    /// The signing key target.
    #[arg(long, value_name = "KEY")]
    pub(crate) key: String,
    /// The message; `-` (default) for stdin.
    #[arg(long = "in", value_name = "FILE", conflicts_with = "digest_hex")]
    pub(crate) input: Option<PathBuf>,
    /// Write the signature here instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
    /// Signature scheme; default: the key's (ECDSA with its curve's hash, RSA PKCS#1 v1.5 SHA-256, Ed25519).
    #[arg(long, value_parser = scheme_parser())]
    pub(crate) scheme: Option<SignatureScheme>,
    /// Sign this precomputed digest (hex) instead of a message.
    #[arg(long, value_name = "HEX")]
    pub(crate) digest_hex: Option<String>,
    /// The hash that made --digest-hex; default: the scheme's.
    #[arg(long, value_parser = hash_parser(), requires = "digest_hex")]
    pub(crate) hash: Option<HashAlg>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("verifier").required(true).args(["key", "public_key"])))]
pub(crate) struct VerifyArgs {
    /// A stored key (`key@2` checks only that version; otherwise every version is tried).
    #[arg(long, value_name = "KEY")]
    pub(crate) key: Option<String>,
    /// A public key file: PEM, DER (SubjectPublicKeyInfo) or JWK.
    #[arg(long, value_name = "FILE")]
    pub(crate) public_key: Option<PathBuf>,
    /// The signature file.
    #[arg(long, value_name = "FILE")]
    pub(crate) signature: PathBuf,
    /// The message; `-` (default) for stdin.
    #[arg(long = "in", value_name = "FILE", conflicts_with = "digest_hex")]
    pub(crate) input: Option<PathBuf>,
    /// Signature scheme; default: the key's.
    #[arg(long, value_parser = scheme_parser())]
    pub(crate) scheme: Option<SignatureScheme>,
    /// Verify over this precomputed digest (hex) instead of a message.
    #[arg(long, value_name = "HEX")]
    pub(crate) digest_hex: Option<String>,
    /// The hash that made --digest-hex; default: the scheme's.
    #[arg(long, value_parser = hash_parser(), requires = "digest_hex")]
    pub(crate) hash: Option<HashAlg>,
}

#[derive(Debug, Args)]
pub(crate) struct CipherArgs {
    /// The AEAD key target.
    #[arg(long, value_name = "KEY")]
    pub(crate) key: String,
    /// Associated data: authenticated, not encrypted; decrypt needs the same.
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub(crate) aad: String,
    /// Input; `-` (default) for stdin.
    #[arg(long = "in", value_name = "FILE")]
    pub(crate) input: Option<PathBuf>,
    /// Write here instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
}

fn algorithm_parser() -> impl clap::builder::TypedValueParser<Value = KeyAlgorithm> {
    PossibleValuesParser::new(KeyAlgorithm::ALL.map(KeyAlgorithm::as_str))
        .try_map(|s| s.parse::<KeyAlgorithm>())
}

/// Every scheme `SignatureScheme::from_str` accepts, by its `name()`.
pub(crate) fn all_schemes() -> Vec<SignatureScheme> {
    let mut schemes: Vec<SignatureScheme> = HashAlg::ALL
        .into_iter()
        .flat_map(|h| {
            [
                SignatureScheme::Ecdsa(h),
                SignatureScheme::RsaPss(h),
                SignatureScheme::RsaPkcs1v15(h),
            ]
        })
        .collect();
    schemes.push(SignatureScheme::Ed25519);
    schemes
}

fn scheme_parser() -> impl clap::builder::TypedValueParser<Value = SignatureScheme> {
    PossibleValuesParser::new(all_schemes().into_iter().map(SignatureScheme::name))
        .try_map(|s| s.parse::<SignatureScheme>())
}

fn hash_parser() -> impl clap::builder::TypedValueParser<Value = HashAlg> {
    PossibleValuesParser::new(HashAlg::ALL.map(HashAlg::as_str)).try_map(|s| {
        HashAlg::ALL
            .into_iter()
            .find(|h| h.as_str() == s)
            .ok_or_else(|| format!("unknown hash {s:?}"))
    })
}

/// Usage names as `KeyUsage` serializes them (`sign`, `decrypt`, `encrypt`, `wrap`).
fn usage_name(usage: KeyUsage) -> String {
    serde_json::to_value(usage)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn all_usages() -> impl Iterator<Item = KeyUsage> {
    (KeyUsages::SIGN | KeyUsages::DECRYPT | KeyUsages::ENCRYPT | KeyUsages::WRAP).iter()
}

fn usage_parser() -> impl clap::builder::TypedValueParser<Value = KeyUsage> {
    PossibleValuesParser::new(all_usages().map(usage_name)).try_map(|s| {
        all_usages()
            .find(|u| usage_name(*u) == s)
            .ok_or_else(|| format!("unknown usage {s:?}"))
    })
}

/// The names of a usage set, for output.
pub(crate) fn usage_names(usages: KeyUsages) -> Vec<String> {
    usages.iter().map(usage_name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn json_is_found_in_raw_arguments() {
        let asks = |args: &[&str]| {
            let args: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
            asks_for_json(&args)
        };
        assert!(asks(&["keychain", "--output", "json", "sign"]));
        assert!(asks(&["keychain", "sign", "--output=json", "--bogus"]));
        assert!(!asks(&["keychain", "sign", "--output", "table"]));
        assert!(!asks(&["keychain", "sign", "--", "--output", "json"]));
        // The program name is not an argument.
        assert!(!asks(&["--output=json"]));
    }

    #[test]
    fn usage_messages_are_one_line() {
        let rendered = "error: invalid value 'dsa' for '--algorithm <ALGORITHM>'\n  \
                        [possible values: ec-p256, ed25519]\n\nUsage: keychain key generate \
                        --algorithm <ALGORITHM> <NAME>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            usage_message(rendered),
            "invalid value 'dsa' for '--algorithm <ALGORITHM>' [possible values: ec-p256, ed25519]"
        );
    }

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn spellings_come_from_core() {
        let cli = Cli::try_parse_from([
            "keychain",
            "sign",
            "--key",
            "k",
            "--scheme",
            "rsa-pss-sha256",
        ])
        .unwrap();
        let Command::Sign(args) = cli.command else {
            panic!("not sign")
        };
        assert_eq!(args.scheme, Some(SignatureScheme::RsaPss(HashAlg::Sha256)));
        let cli = Cli::try_parse_from([
            "keychain",
            "key",
            "generate",
            "k",
            "--algorithm",
            "ec-p256",
            "--usage",
            "sign",
        ])
        .unwrap();
        let Command::Key(KeyCommand::Generate(args)) = cli.command else {
            panic!("not generate")
        };
        assert_eq!(args.algorithm, KeyAlgorithm::EcP256);
        assert_eq!(args.usages, [KeyUsage::Sign]);
        assert!(
            Cli::try_parse_from(["keychain", "key", "generate", "k", "--algorithm", "dsa"])
                .is_err()
        );
    }
}
