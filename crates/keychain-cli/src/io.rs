//! Reading inputs and writing outputs, binary-safe, with `-` meaning stdin/stdout.
//!
//! Outputs never replace a file in place: they are written to a temporary file beside the
//! target, synced, and renamed over it only once complete, so a failed or interrupted command
//! leaves an existing target as it was.

use std::io::{IsTerminal as _, Read, Write as _};
use std::path::{Path, PathBuf};

use keychain::{Error, ErrorKind, Result};

/// The most `encrypt` takes, and the longest message an Ed25519 signature covers: both need the
/// whole input in memory at once (pure EdDSA hashes the message twice).
pub(crate) const MAX_WHOLE_INPUT: u64 = 64 * 1024 * 1024;

/// Prefix of the temporary files outputs are written to before their rename.
const TEMP_PREFIX: &str = ".keychain-";

/// Whether `path` means stdin/stdout.
fn is_stdio(path: Option<&Path>) -> bool {
    path.is_none_or(|p| p.as_os_str() == "-")
}

/// `n` bytes as the README writes limits (`64 MiB`).
pub(crate) fn mib(n: u64) -> String {
    format!("{} MiB", n / (1024 * 1024))
}

/// A file opened for reading.
fn open_file(path: &Path) -> Result<std::fs::File> {
    let file = std::fs::File::open(path).map_err(|e| file_error(e, "read", path))?;
    // Opening a directory succeeds on Unix; reading it fails with a less clear error.
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(is_a_directory(path));
    }
    Ok(file)
}

/// An input file or stdin, opened for reading.
fn open_input(path: Option<&Path>) -> Result<Box<dyn Read + Send>> {
    match path {
        Some(p) if !is_stdio(Some(p)) => Ok(Box::new(open_file(p)?)),
        _ => Ok(Box::new(std::io::stdin())),
    }
}

/// An input file or stdin for the library to read (a streamed `sign`/`verify`): its read errors
/// name the file (or stdin), keeping their kind, since the library does not know the name.
pub(crate) fn open_stream(path: Option<&Path>) -> Result<Box<dyn Read + Send>> {
    let name = match path {
        Some(p) if !is_stdio(Some(p)) => p.display().to_string(),
        _ => "stdin".to_owned(),
    };
    Ok(Box::new(Named {
        inner: open_input(path)?,
        name,
    }))
}

/// A reader whose errors carry its name, keeping their kind.
struct Named<R> {
    inner: R,
    name: String,
}

impl<R: Read> Read for Named<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner
            .read(buf)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", self.name)))
    }
}

fn read_error(e: std::io::Error, path: Option<&Path>) -> Error {
    match path {
        Some(p) if !is_stdio(Some(p)) => file_error(e, "read", p),
        _ => io_error(e).with_context("cannot read stdin"),
    }
}

/// Reads a whole file, or stdin for `None` / `-`.
///
/// # Errors
/// I/O errors by kind, naming the file.
pub(crate) fn read_input(path: Option<&Path>) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    open_input(path)?
        .read_to_end(&mut data)
        .map_err(|e| read_error(e, path))?;
    Ok(data)
}

/// Reads a whole file, or stdin, of at most `limit` bytes; `None` when it is longer. A file's
/// length is checked before anything is read; stdin is read up to one byte past the limit.
///
/// # Errors
/// As [`read_input`].
pub(crate) fn read_input_limited(path: Option<&Path>, limit: u64) -> Result<Option<Vec<u8>>> {
    if let Some(p) = path.filter(|p| !is_stdio(Some(p)))
        && std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.len() > limit)
    {
        return Ok(None);
    }
    let mut data = Vec::new();
    // The length checked above can change, and pipes and devices have none: the limit holds
    // whatever the file turns out to be.
    open_input(path)?
        .take(limit.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(|e| read_error(e, path))?;
    Ok((data.len() as u64 <= limit).then_some(data))
}

/// Reads a file that must be named (no stdin).
///
/// # Errors
/// As [`read_input`].
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    open_file(path)?
        .read_to_end(&mut data)
        .map_err(|e| file_error(e, "read", path))?;
    Ok(data)
}

/// Checks a command's files before any is opened: no input or output is a directory, and no
/// output is the same file as an input (by device and inode, so hard links, symbolic links and
/// other spellings of one path count), which writing would destroy.
///
/// Each file comes with the option that named it, for the message. Stdin/stdout (`-`) and
/// files that do not exist yet pass.
///
/// # Errors
/// `InvalidInput` naming the file and option.
pub(crate) fn check_files(inputs: &[(&str, &Path)], outputs: &[(&str, &Path)]) -> Result<()> {
    let existing = |files: &[(&str, &Path)]| -> Result<Vec<(String, PathBuf, std::fs::Metadata)>> {
        let mut found = Vec::new();
        for (option, path) in files {
            if is_stdio(Some(path)) {
                continue;
            }
            if let Ok(meta) = std::fs::metadata(path) {
                if meta.is_dir() {
                    return Err(Error::invalid_input(format!(
                        "{option} {} is a directory, not a file",
                        path.display()
                    )));
                }
                found.push(((*option).to_owned(), path.to_path_buf(), meta));
            }
        }
        Ok(found)
    };
    let inputs = existing(inputs)?;
    for (out_option, out_path, out_meta) in existing(outputs)? {
        for (in_option, in_path, in_meta) in &inputs {
            if same_file(&out_path, &out_meta, in_path, in_meta) {
                return Err(Error::invalid_input(format!(
                    "{out_option} {} is the same file as {in_option} {}; refusing to overwrite \
                     an input (write to another file)",
                    out_path.display(),
                    in_path.display()
                )));
            }
        }
    }
    Ok(())
}

#[cfg(unix)]
fn same_file(_: &Path, a: &std::fs::Metadata, _: &Path, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(a: &Path, _: &std::fs::Metadata, b: &Path, _: &std::fs::Metadata) -> bool {
    matches!(
        (std::fs::canonicalize(a), std::fs::canonicalize(b)),
        (Ok(a), Ok(b)) if a == b
    )
}

/// Where a command's output went.
#[derive(Debug)]
pub(crate) enum Written {
    /// To this file.
    File(PathBuf),
    /// To stdout.
    Stdout,
}

impl Written {
    /// The file, if any, for JSON reports.
    pub(crate) fn path(&self) -> Option<String> {
        match self {
            Self::File(p) => Some(p.display().to_string()),
            Self::Stdout => None,
        }
    }
}

/// Who may read an output file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Secrecy {
    /// Signatures, public keys, ciphertexts: the mode the umask gives (typically 0644).
    Public,
    /// Plaintext, wrapped keys, backups, DKEK shares: 0600 whatever the umask.
    Secret,
}

/// Whether an existing target may be replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Existing {
    /// Replace it (once the new content is complete).
    Replace,
    /// Fail with `AlreadyExists` instead, even if it appears while the output is written.
    Keep,
}

/// Writes `data` to `out`, or to stdout for `None` / `-`. Binary `data` is not written to a
/// terminal (it would garble it); the error says how to get it.
///
/// # Errors
/// As [`write_file`]; `InvalidInput` for binary data headed for a terminal.
pub(crate) fn write_output(
    out: Option<&Path>,
    data: &[u8],
    binary: bool,
    secrecy: Secrecy,
) -> Result<Written> {
    match out {
        Some(p) if !is_stdio(Some(p)) => {
            write_file(p, data, secrecy, Existing::Replace)?;
            Ok(Written::File(p.to_owned()))
        }
        _ => {
            if binary {
                check_binary_destination(None)?;
            }
            crate::output::stdout_write(data)?;
            Ok(Written::Stdout)
        }
    }
}

/// Writes `data` to the file `path` all at once or not at all (see [`Staged`]).
///
/// # Errors
/// I/O errors by kind, naming the file; `InvalidInput` for a directory; `AlreadyExists` for an
/// existing file with [`Existing::Keep`].
pub(crate) fn write_file(
    path: &Path,
    data: &[u8],
    secrecy: Secrecy,
    existing: Existing,
) -> Result<()> {
    stage(path, data, secrecy, existing)?.commit()
}

/// An output written and synced to a temporary file beside its target, not yet in place.
/// Dropping it removes the temporary file.
#[derive(Debug)]
pub(crate) enum Staged {
    /// A regular file (or a new one): renamed over the target by [`Staged::commit`].
    Temp {
        file: tempfile::NamedTempFile,
        target: PathBuf,
        shown: PathBuf,
        existing: Existing,
    },
    /// Already written to a device or pipe (`/dev/stdout`, a FIFO), which a rename would
    /// replace rather than write to.
    Done,
}

/// Writes `data` into a temporary file in the target's directory (so the rename stays on one
/// filesystem), with the mode `secrecy` asks for, and syncs it.
///
/// # Errors
/// As [`write_file`].
pub(crate) fn stage(
    path: &Path,
    data: &[u8],
    secrecy: Secrecy,
    existing: Existing,
) -> Result<Staged> {
    let write_error = |e| file_error(e, "write", path);
    let target = match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => return Err(is_a_directory(path)),
        Ok(_) if existing == Existing::Keep => return Err(already_exists(path)),
        Ok(meta) if !meta.is_file() => {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(write_error)?;
            file.write_all(data)
                .and_then(|()| file.flush())
                .map_err(write_error)?;
            return Ok(Staged::Done);
        }
        // A symbolic link stays a link; the file it points to gets the content.
        Ok(_) => std::fs::canonicalize(path).map_err(write_error)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => path.to_path_buf(),
        Err(e) => return Err(write_error(e)),
    };
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(TEMP_PREFIX);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = match secrecy {
            Secrecy::Public => 0o666,
            Secrecy::Secret => 0o600,
        };
        builder.permissions(std::fs::Permissions::from_mode(mode));
    }
    let mut file = builder.tempfile_in(dir).map_err(write_error)?;
    #[cfg(unix)]
    if secrecy == Secrecy::Secret {
        // The creation mode is masked by the umask, which could also take the owner's bits.
        use std::os::unix::fs::PermissionsExt as _;
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(write_error)?;
    }
    #[cfg(not(unix))]
    let _ = secrecy;
    file.write_all(data)
        .and_then(|()| file.as_file().sync_all())
        .map_err(write_error)?;
    Ok(Staged::Temp {
        file,
        target,
        shown: path.to_path_buf(),
        existing,
    })
}

impl Staged {
    /// Renames the temporary file over the target, then syncs the directory so the rename
    /// survives a crash.
    ///
    /// # Errors
    /// I/O errors by kind; `AlreadyExists` when the target appeared meanwhile and was staged
    /// with [`Existing::Keep`]. The temporary file is removed on failure.
    pub(crate) fn commit(self) -> Result<()> {
        let Self::Temp {
            file,
            target,
            shown,
            existing,
        } = self
        else {
            return Ok(());
        };
        let persisted = match existing {
            Existing::Replace => file.persist(&target),
            Existing::Keep => file.persist_noclobber(&target),
        };
        persisted.map_err(|e| match e.error.kind() {
            std::io::ErrorKind::AlreadyExists => already_exists(&shown),
            _ => file_error(e.error, "write", &shown),
        })?;
        if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
            // The file is complete and in place; a directory that cannot be synced (some
            // filesystems refuse) only makes the rename less durable, which is no reason to
            // report a written file as a failure.
            let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(())
    }
}

/// Fails early (before the key is used) when binary output would go to a terminal.
///
/// # Errors
/// `InvalidInput` when `out` is stdout and stdout is a terminal.
pub(crate) fn check_binary_destination(out: Option<&Path>) -> Result<()> {
    if is_stdio(out) && std::io::stdout().is_terminal() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "refusing to write binary output to a terminal; use --out FILE, \
             redirect stdout, or --output json (base64)",
        ));
    }
    Ok(())
}

fn already_exists(path: &Path) -> Error {
    Error::new(
        ErrorKind::AlreadyExists,
        format!("{} exists and is never overwritten", path.display()),
    )
}

fn is_a_directory(path: &Path) -> Error {
    Error::invalid_input(format!("{} is a directory, not a file", path.display()))
}

/// An I/O error as a typed error: the kinds `keychain::Error`'s own conversion leaves as
/// `Unexpected` (exit 1, which means a bug) but that are the user's to fix get their kind here.
pub(crate) fn io_error(e: std::io::Error) -> Error {
    use std::io::ErrorKind as Io;
    let kind = match e.kind() {
        Io::IsADirectory
        | Io::NotADirectory
        | Io::InvalidFilename
        | Io::NotSeekable
        | Io::UnexpectedEof => Some(ErrorKind::InvalidInput),
        Io::ReadOnlyFilesystem => Some(ErrorKind::PermissionDenied),
        Io::FileTooLarge | Io::TooManyLinks | Io::OutOfMemory => Some(ErrorKind::CapacityExceeded),
        Io::ResourceBusy
        | Io::ExecutableFileBusy
        | Io::StaleNetworkFileHandle
        | Io::Interrupted
        | Io::WouldBlock => Some(ErrorKind::Unavailable),
        // What is left (a failing disk's EIO among them) has no better kind than Unexpected.
        _ => None,
    };
    let error = Error::from(e);
    match kind {
        Some(kind) => Error::new(kind, error.message().to_owned()),
        None => error,
    }
}

/// An I/O error on `path`, typed as [`io_error`] does, naming the file.
pub(crate) fn file_error(e: std::io::Error, verb: &str, path: &Path) -> Error {
    let error = io_error(e);
    Error::new(
        error.kind(),
        format!("cannot {verb} {}: {}", path.display(), error.message()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Failing;

    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied))
        }
    }

    #[test]
    fn a_named_stream_says_which_input_failed_and_keeps_the_kind() {
        let mut named = Named {
            inner: Failing,
            name: "release.tar".to_owned(),
        };
        let e = named.read(&mut [0u8; 8]).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied);
        assert!(e.to_string().starts_with("release.tar: "), "{e}");
        let e = Error::from(e);
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert!(e.to_string().contains("release.tar"), "{e}");
    }
}
