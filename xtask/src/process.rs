//! Running commands: cargo in the workspace root, echoed or captured, with errors that name the
//! command.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::Result;

pub(crate) fn workspace_root() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
}

pub(crate) fn cargo(args: &[&str]) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.args(args).current_dir(workspace_root());
    cmd
}

pub(crate) fn show(cmd: &Command) -> String {
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
pub(crate) fn run(cmd: &mut Command) -> Result {
    println!("$ {}", show(cmd));
    run_quiet(cmd)
}

pub(crate) fn run_quiet(cmd: &mut Command) -> Result {
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run `{}`: {e}", show(cmd)))?;
    check_status(cmd, status)
}

/// Stdout of a command that must succeed; its stderr passes through.
pub(crate) fn stdout_of(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run `{}`: {e}", show(cmd)))?;
    check_status(cmd, out.status)?;
    String::from_utf8(out.stdout).map_err(|e| format!("`{}`: {e}", show(cmd)))
}

/// Runs with stdout and stderr merged into one pipe (so cargo's `Running` headers stay in order
/// with the results), echoing every line while keeping a copy. Returns (success, output).
pub(crate) fn run_captured(mut cmd: Command) -> Result<(bool, String)> {
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
