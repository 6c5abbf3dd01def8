//! Reading inputs and writing outputs, binary-safe, with `-` meaning stdin/stdout.

use std::io::{IsTerminal as _, Read as _};
use std::path::{Path, PathBuf};

use keychain::{Error, ErrorKind, Result};

/// Whether `path` means stdin/stdout.
fn is_stdio(path: Option<&Path>) -> bool {
    path.is_none_or(|p| p.as_os_str() == "-")
}

/// Reads a whole file, or stdin for `None` / `-`.
///
/// # Errors
/// I/O errors by kind, naming the file.
pub(crate) fn read_input(path: Option<&Path>) -> Result<Vec<u8>> {
    match path {
        Some(p) if !is_stdio(Some(p)) => std::fs::read(p).map_err(|e| file_error(e, "read", p)),
        _ => {
            let mut data = Vec::new();
            std::io::stdin()
                .lock()
                .read_to_end(&mut data)
                .map_err(|e| Error::from(e).with_context("cannot read stdin"))?;
            Ok(data)
        }
    }
}

/// Reads a file that must be named (no stdin).
///
/// # Errors
/// As [`read_input`].
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| file_error(e, "read", path))
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

fn file_error(e: std::io::Error, verb: &str, path: &Path) -> Error {
    let kind = Error::from(e);
    Error::new(
        kind.kind(),
        format!("cannot {verb} {}: {}", path.display(), kind.message()),
    )
}
