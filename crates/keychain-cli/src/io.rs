//! Reading inputs and writing outputs, binary-safe, with `-` meaning stdin/stdout.

use std::io::{IsTerminal as _, Read};
use std::path::{Path, PathBuf};

use keychain::{Error, ErrorKind, Result};

/// Whether `path` means stdin/stdout.
fn is_stdio(path: Option<&Path>) -> bool {
    path.is_none_or(|p| p.as_os_str() == "-")
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
fn open_input(path: Option<&Path>) -> Result<Box<dyn Read>> {
    match path {
        Some(p) if !is_stdio(Some(p)) => Ok(Box::new(open_file(p)?)),
        _ => Ok(Box::new(std::io::stdin().lock())),
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

/// Writes `data` to `out`, or to stdout for `None` / `-`. Binary `data` is not written to a
/// terminal (it would garble it); the error says how to get it.
///
/// # Errors
/// I/O errors by kind; `InvalidInput` for binary data headed for a terminal.
pub(crate) fn write_output(out: Option<&Path>, data: &[u8], binary: bool) -> Result<Written> {
    match out {
        Some(p) if !is_stdio(Some(p)) => {
            std::fs::write(p, data).map_err(|e| file_error(e, "write", p))?;
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
