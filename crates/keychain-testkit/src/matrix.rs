//! The backend × capability matrix of a README, read back and compared with what a backend
//! declares, so the table people read and the [`Capabilities`] the suite tests from cannot drift
//! apart.
//!
//! The matrix is a Markdown table whose first column is `backend` and whose capability columns
//! are the ones of [`Column`]; other columns (`verified against`) are free text. A capability
//! cell starts with `✔` (declared), `–` (not declared) or `opt-in` (declared only when a feature
//! opts in, so either is accepted); the rest of the cell is for people.
//!
//! ```
//! use keychain_core::{Capabilities, KeyAlgorithm, Protection, SignatureScheme};
//! use keychain_testkit::matrix;
//!
//! let readme = "\
//! | backend | verified against | EC P-256/384/521 | Ed25519 | RSA sign | RSA-OAEP decrypt | AEAD | rotate | import | export/import wrapped | random | attest |
//! |---|---|---|---|---|---|---|---|---|---|---|---|
//! | `mykms` | a test server | ✔ P-256 only | – | – | – | – | ✔ | – | – | – | – |
//! ";
//! let mut caps = Capabilities::new("mykms", Protection::CloudHsm);
//! caps.algorithms = vec![KeyAlgorithm::EcP256];
//! caps.signature_schemes = vec![SignatureScheme::Ecdsa(keychain_core::HashAlg::Sha256)];
//! caps.rotate = true;
//! assert_eq!(matrix::check_row(readme, "`mykms`", &caps), Ok(()));
//!
//! caps.random = true;
//! let e = matrix::check_row(readme, "`mykms`", &caps).unwrap_err();
//! assert!(e.contains("random"), "{e}");
//! ```

use std::fmt;

use keychain_core::{Capabilities, KeyAlgorithm};

/// A capability column of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Column {
    /// `EC P-256/384/521`: an ECDSA curve with a fitting scheme.
    Ec,
    /// `Ed25519`: Ed25519 keys with the Ed25519 scheme.
    Ed25519,
    /// `RSA 2048–4096 sign`: an RSA size with a fitting scheme (PKCS#1 v1.5 or PSS).
    RsaSign,
    /// `RSA-OAEP decrypt`: at least one OAEP hash.
    RsaOaep,
    /// `AEAD with AAD`: `aead` and a symmetric algorithm.
    Aead,
    /// `rotate`.
    Rotate,
    /// `import` (`import_key`).
    Import,
    /// `export/import wrapped`: both `export_wrapped` and `import_wrapped`.
    Wrapped,
    /// `random`.
    Random,
    /// `attest`.
    Attest,
}

impl Column {
    /// Every capability column, in the matrix's order.
    pub const ALL: [Column; 10] = [
        Self::Ec,
        Self::Ed25519,
        Self::RsaSign,
        Self::RsaOaep,
        Self::Aead,
        Self::Rotate,
        Self::Import,
        Self::Wrapped,
        Self::Random,
        Self::Attest,
    ];

    /// How the column's header starts.
    const fn header(self) -> &'static str {
        match self {
            Self::Ec => "EC P-",
            Self::Ed25519 => "Ed25519",
            Self::RsaSign => "RSA ",
            Self::RsaOaep => "RSA-OAEP",
            Self::Aead => "AEAD",
            Self::Rotate => "rotate",
            Self::Import => "import",
            Self::Wrapped => "export/import wrapped",
            Self::Random => "random",
            Self::Attest => "attest",
        }
    }

    fn of_header(header: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|c| header.starts_with(c.header()))
    }

    /// Whether `caps` declare what the column stands for. `Err` when they declare half of it
    /// (`export_wrapped` without `import_wrapped`, or the reverse), which one cell cannot say.
    pub fn declared(self, caps: &Capabilities) -> Result<bool, String> {
        let signs = |alg: KeyAlgorithm| {
            caps.supports_algorithm(alg) && caps.signature_schemes.iter().any(|s| s.fits(alg))
        };
        Ok(match self {
            Self::Ec => [
                KeyAlgorithm::EcP256,
                KeyAlgorithm::EcP384,
                KeyAlgorithm::EcP521,
            ]
            .into_iter()
            .any(signs),
            Self::Ed25519 => signs(KeyAlgorithm::Ed25519),
            Self::RsaSign => caps.algorithms.iter().any(|a| a.is_rsa() && signs(*a)),
            Self::RsaOaep => !caps.oaep_hashes.is_empty(),
            Self::Aead => caps.aead && caps.algorithms.iter().any(|a| a.is_symmetric()),
            Self::Rotate => caps.rotate,
            Self::Import => caps.import,
            Self::Wrapped => match (caps.export_wrapped, caps.import_wrapped) {
                (e, i) if e == i => e,
                (e, i) => {
                    return Err(format!(
                        "export_wrapped is {e} and import_wrapped is {i}; the matrix column \
                         `export/import wrapped` says both or neither"
                    ));
                }
            },
            Self::Random => caps.random,
            Self::Attest => caps.attest,
        })
    }
}

impl fmt::Display for Column {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.header().trim_end())
    }
}

/// What a capability cell says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// `✔`: offered (and verified by the suite).
    Offered,
    /// `–`: not offered.
    NotOffered,
    /// `opt-in ...`: offered only behind an explicit opt-in feature.
    OptIn,
}

impl Mark {
    fn parse(cell: &str) -> Option<Self> {
        let cell = cell.trim();
        if cell.starts_with('✔') {
            Some(Self::Offered)
        } else if cell.starts_with('–') || cell.starts_with('-') {
            Some(Self::NotOffered)
        } else if cell.starts_with("opt-in") {
            Some(Self::OptIn)
        } else {
            None
        }
    }

    /// Whether a backend that declares the capability (`declared`) agrees with this mark.
    pub fn agrees(self, declared: bool) -> bool {
        match self {
            Self::Offered => declared,
            Self::NotOffered => !declared,
            Self::OptIn => true,
        }
    }
}

/// One backend's row: its capability cells by column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The first cell, as written (`` `keychain-pkcs8` (aws-lc-rs) ``).
    pub backend: String,
    /// Each capability column and what its cell says, in [`Column::ALL`] order.
    pub marks: Vec<(Column, Mark)>,
}

fn cells(line: &str) -> Vec<&str> {
    let line = line.trim();
    let inner = line.strip_prefix('|').unwrap_or(line);
    let inner = inner.strip_suffix('|').unwrap_or(inner);
    inner.split('|').map(str::trim).collect()
}

/// Reads the matrix in `markdown`: the table whose header starts with `| backend |`.
///
/// # Errors
/// When there is no such table, a header is neither a known capability column nor
/// `backend`/`verified against`, a capability column is missing, or a capability cell is
/// neither `✔`, `–` nor `opt-in`.
pub fn parse(markdown: &str) -> Result<Vec<Row>, String> {
    let mut lines = markdown.lines().skip_while(|l| {
        cells(l)
            .first()
            .is_none_or(|first| *first != "backend" || !l.trim_start().starts_with('|'))
    });
    let header = lines
        .next()
        .ok_or("no table whose first column is `backend`")?;
    let mut columns = Vec::new();
    for (i, h) in cells(header).into_iter().enumerate() {
        match Column::of_header(h) {
            Some(c) if columns.iter().any(|(_, seen)| *seen == c) => {
                return Err(format!("two columns are `{c}`"));
            }
            Some(c) => columns.push((i, c)),
            None if h == "backend" || h == "verified against" => {}
            None => return Err(format!("unknown column `{h}` in the matrix")),
        }
    }
    if let Some(missing) = Column::ALL
        .into_iter()
        .find(|c| columns.iter().all(|(_, seen)| seen != c))
    {
        return Err(format!("the matrix has no `{missing}` column"));
    }
    columns.sort_by_key(|(_, c)| Column::ALL.iter().position(|a| a == c));
    let mut rows = Vec::new();
    // The separator line, then one row per line until the table ends.
    for line in lines
        .skip(1)
        .take_while(|l| l.trim_start().starts_with('|'))
    {
        let cells = cells(line);
        let backend = cells.first().copied().unwrap_or_default().to_owned();
        let mut marks = Vec::with_capacity(columns.len());
        for (i, column) in &columns {
            let cell = cells.get(*i).copied().unwrap_or_default();
            let mark = Mark::parse(cell).ok_or_else(|| {
                format!(
                    "row {backend}, column `{column}`: {cell:?} starts with neither ✔, – nor \
                     `opt-in`"
                )
            })?;
            marks.push((*column, mark));
        }
        rows.push(Row { backend, marks });
    }
    Ok(rows)
}

/// Compares `caps` with the matrix row of `backend` (its first cell, as written) in `markdown`,
/// column by column.
///
/// # Errors
/// A sentence per disagreement (or why the matrix cannot be read): which column, what the row
/// says and what the capabilities declare.
pub fn check_row(markdown: &str, backend: &str, caps: &Capabilities) -> Result<(), String> {
    let rows = parse(markdown)?;
    let row = rows.iter().find(|r| r.backend == backend).ok_or_else(|| {
        let names: Vec<&str> = rows.iter().map(|r| r.backend.as_str()).collect();
        format!(
            "the matrix has no row {backend} (rows: {})",
            names.join(", ")
        )
    })?;
    let mut problems = Vec::new();
    for (column, mark) in &row.marks {
        match column.declared(caps) {
            Ok(declared) if mark.agrees(declared) => {}
            Ok(declared) => problems.push(format!(
                "column `{column}`: the matrix says {}, the capabilities of {} {}",
                match mark {
                    Mark::Offered => "✔",
                    Mark::NotOffered => "–",
                    Mark::OptIn => "opt-in",
                },
                caps.backend,
                if declared {
                    "declare it"
                } else {
                    "do not declare it"
                }
            )),
            Err(e) => problems.push(format!("column `{column}`: {e}")),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the matrix row {backend} disagrees with the declared capabilities:\n  {}",
            problems.join("\n  ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keychain_core::{HashAlg, Protection, SignatureScheme};

    const TABLE: &str = "\
Text before.

| backend | verified against | EC P-256/384/521 | Ed25519 | RSA 2048–4096 sign (PKCS#1, PSS) | RSA-OAEP decrypt | AEAD with AAD | rotate | import | export/import wrapped | random | attest |
|---|---|---|---|---|---|---|---|---|---|---|---|
| `a` | x | ✔ | ✔ | opt-in only¹ | – on this one | ✔ AES-256 | ✔ | – | – (not exportable) | ✔ | – |
| `b` | y | – | – | – | – | – | – | – | – | – | ✔ TPM2_Certify |

¹ a footnote
";

    fn caps_a() -> Capabilities {
        let mut caps = Capabilities::new("a", Protection::Software);
        caps.algorithms = vec![
            KeyAlgorithm::EcP384,
            KeyAlgorithm::Ed25519,
            KeyAlgorithm::Aes256Gcm,
        ];
        caps.signature_schemes = vec![
            SignatureScheme::Ecdsa(HashAlg::Sha384),
            SignatureScheme::Ed25519,
        ];
        caps.aead = true;
        caps.rotate = true;
        caps.random = true;
        caps
    }

    #[test]
    fn reads_every_row_and_column() {
        let rows = parse(TABLE).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].backend, "`a`");
        assert_eq!(rows[0].marks.len(), Column::ALL.len());
        assert_eq!(rows[0].marks[2], (Column::RsaSign, Mark::OptIn));
        assert_eq!(rows[0].marks[3], (Column::RsaOaep, Mark::NotOffered));
        assert_eq!(rows[1].marks[9], (Column::Attest, Mark::Offered));
    }

    #[test]
    fn agreeing_capabilities_pass_and_opt_in_accepts_both() {
        let mut caps = caps_a();
        assert_eq!(check_row(TABLE, "`a`", &caps), Ok(()));
        caps.algorithms.push(KeyAlgorithm::Rsa2048);
        caps.signature_schemes
            .push(SignatureScheme::RsaPss(HashAlg::Sha256));
        assert_eq!(check_row(TABLE, "`a`", &caps), Ok(()));
    }

    #[test]
    fn every_disagreement_is_named() {
        let mut caps = caps_a();
        caps.rotate = false;
        caps.attest = true;
        // An algorithm without a fitting scheme does not sign.
        caps.signature_schemes
            .retain(|s| *s != SignatureScheme::Ed25519);
        let e = check_row(TABLE, "`a`", &caps).unwrap_err();
        assert!(
            e.contains("column `rotate`: the matrix says ✔, the capabilities of a do not"),
            "{e}"
        );
        assert!(e.contains("column `attest`: the matrix says –"), "{e}");
        assert!(e.contains("column `Ed25519`"), "{e}");
        assert_eq!(e.lines().count(), 4, "{e}");
    }

    #[test]
    fn declaring_nothing_disagrees_with_every_tick() {
        let nothing = Capabilities::new("a", Protection::Software);
        let e = check_row(TABLE, "`a`", &nothing).unwrap_err();
        // ✔ in EC, Ed25519, AEAD, rotate, random.
        assert_eq!(e.lines().count(), 6, "{e}");
    }

    #[test]
    fn half_declared_wrapping_is_an_error() {
        let mut caps = caps_a();
        caps.export_wrapped = true;
        let e = check_row(TABLE, "`a`", &caps).unwrap_err();
        assert!(e.contains("import_wrapped is false"), "{e}");
    }

    #[test]
    fn unreadable_matrices_say_why() {
        assert!(check_row(TABLE, "`c`", &caps_a()).is_err_and(|e| e.contains("rows: `a`, `b`")));
        let unknown = TABLE.replace("| attest |\n", "| attest | colour |\n");
        assert!(parse(&unknown).is_err_and(|e| e.contains("unknown column `colour`")));
        let missing = TABLE.replace("| random | attest |\n", "| attest |\n");
        assert!(parse(&missing).is_err_and(|e| e.contains("no `random` column")));
        let bad = TABLE.replace("| ✔ TPM2_Certify |", "| yes |");
        assert!(parse(&bad).is_err_and(|e| e.contains("row `b`, column `attest`")));
        assert!(parse("no table here").is_err());
    }

    /// The workspace README's matrix, the one the backends' `tests/*matrix.rs` compare with.
    #[test]
    fn the_workspace_readme_matrix_reads() {
        let readme = include_str!("../../../README.md");
        let rows = parse(readme).unwrap();
        let backends: Vec<&str> = rows.iter().map(|r| r.backend.as_str()).collect();
        assert!(
            backends.contains(&"`keychain-pkcs8` (aws-lc-rs)")
                && backends.contains(&"`keychain-tpm2`"),
            "{backends:?}"
        );
    }
}
