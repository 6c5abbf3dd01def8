//! Printing results as tables or JSON, errors as `error: ...` or JSON, and key metadata.

use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use keychain::{Error, ErrorKind, KeyInfo, PublicKey};
use serde_json::{Value, json};

use crate::cli::{Format, usage_names};

/// Where results go, and in which format.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Out {
    pub(crate) format: Format,
}

impl Out {
    /// Whether JSON was asked for.
    pub(crate) fn json(self) -> bool {
        self.format == Format::Json
    }

    /// Prints a result: `json` in JSON mode, `text()` otherwise.
    pub(crate) fn report(
        self,
        json: &Value,
        text: impl FnOnce() -> String,
    ) -> keychain::Result<()> {
        let mut rendered = if self.json() {
            serde_json::to_string_pretty(json).map_err(|e| {
                Error::new(ErrorKind::Unexpected, format!("cannot encode JSON: {e}"))
            })?
        } else {
            text()
        };
        if !rendered.ends_with('\n') {
            rendered.push('\n');
        }
        stdout_write(rendered.as_bytes())
    }

    /// Prints an error on stderr. `Error`'s `Display` never contains a secret.
    pub(crate) fn error(self, error: &Error, code: u8) {
        let mut stderr = std::io::stderr().lock();
        // Nothing sensible is left to do if stderr itself is gone.
        let _ = if self.json() {
            let doc = json!({ "error": error_json(error, code) });
            writeln!(stderr, "{doc}")
        } else {
            writeln!(stderr, "error: {error}")
        };
    }
}

/// Prints a command-line usage error (clap's) on stderr as JSON, in the shape of
/// [`Out::error`]: the kind is `usage`, not an `ErrorKind`, since no command ran.
pub(crate) fn usage_error_json(message: &str, code: u8) {
    let doc = json!({ "error": {
        "kind": "usage",
        "exit_code": code,
        "message": message,
        "backend": null,
        "operation": null,
        "key": null,
        "retryable": false,
        "provider_code": null,
    }});
    // Nothing sensible is left to do if stderr itself is gone.
    let _ = writeln!(std::io::stderr().lock(), "{doc}");
}

/// Writes bytes to stdout as they are (binary-safe), flushing at the end.
pub(crate) fn stdout_write(bytes: &[u8]) -> keychain::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        // The reader went away (`keychain key list | head -1`): nothing left to tell anyone.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(Error::from(e).with_context("cannot write to stdout")),
    }
}

/// An error as JSON: kind, exit code, message and context (never a secret).
pub(crate) fn error_json(error: &Error, code: u8) -> Value {
    json!({
        "kind": error.kind().as_str(),
        "exit_code": code,
        "message": error.to_string(),
        "backend": error.backend(),
        "operation": error.operation().map(|o| o.as_str()),
        "key": error.key().map(|k| k.as_str()),
        "retryable": error.retryable(),
        "provider_code": error.provider_code().map(ToString::to_string),
    })
}

/// `YYYY-MM-DDTHH:MM:SSZ` (UTC).
pub(crate) fn timestamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The SHA-256 of a public key's SubjectPublicKeyInfo DER, hex (as
/// `openssl pkey -pubin -outform DER | sha256sum` prints it).
pub(crate) fn fingerprint(public: &PublicKey) -> String {
    hex::encode(keychain::HashAlg::Sha256.digest(public.der()))
}

/// A key as JSON. `details` adds each version's public key PEM.
pub(crate) fn key_json(backend: &str, info: &KeyInfo, details: bool) -> Value {
    let versions: Vec<Value> = info
        .versions
        .iter()
        .map(|v| {
            let mut doc = json!({
                "version": v.version,
                "created": v.created.map(timestamp),
                "public_key_sha256": v.public_key.as_ref().map(fingerprint),
            });
            if details && let Some(pk) = &v.public_key {
                doc["public_key_pem"] = Value::String(pk.to_pem());
            }
            doc
        })
        .collect();
    json!({
        "backend": backend,
        "name": info.name.as_str(),
        "target": format!("{backend}:{}", info.name),
        "algorithm": info.algorithm.as_str(),
        "usages": usage_names(info.usages),
        "protection": protection_name(info.protection),
        "exportable": info.exportable,
        "version": info.version,
        "created": info.created().map(timestamp),
        "versions": versions,
    })
}

/// `software`, `hardware`, `cloud-hsm` (the serde spelling).
pub(crate) fn protection_name(p: keychain::Protection) -> String {
    serde_json::to_value(p)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{p:?}"))
}

/// A plain text table: a header row and left-aligned columns two spaces apart.
#[derive(Debug, Default)]
pub(crate) struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub(crate) fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Whether no row was added.
    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, one line per row.
    pub(crate) fn render(&self) -> String {
        let columns = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate().take(columns) {
                if i + 1 < columns {
                    line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
                } else {
                    line.push_str(cell);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `key: value` lines with aligned values.
pub(crate) fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    pairs
        .iter()
        .map(|(k, v)| format!("{k:<width$}  {v}\n", k = format!("{k}:"), width = width + 1))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_utc_rfc3339() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            timestamp(UNIX_EPOCH + Duration::from_secs(1_709_210_096)),
            "2024-02-29T12:34:56Z"
        );
        assert_eq!(
            timestamp(UNIX_EPOCH + Duration::from_secs(4_102_444_799)),
            "2099-12-31T23:59:59Z"
        );
    }

    #[test]
    fn tables_align() {
        let mut t = Table::new(&["NAME", "ALGORITHM"]);
        t.row(vec!["a".into(), "ec-p256".into()]);
        t.row(vec!["longer-name".into(), "ed25519".into()]);
        assert_eq!(
            t.render(),
            "NAME         ALGORITHM\na            ec-p256\nlonger-name  ed25519\n"
        );
    }
}
