#![doc = include_str!("../README.md")]

mod cli;
mod cmd;
mod config;
mod exit;
mod io;
mod output;
mod progress;
mod prompt;

use std::process::ExitCode;

use crate::output::Out;

fn main() -> ExitCode {
    let cli = cli::parse();
    let out = Out { format: cli.output };
    prompt::install();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| keychain::Error::from(e).with_context("cannot start the async runtime"))
        .and_then(|runtime| runtime.block_on(cmd::run(cli)));
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(error) => {
            let code = exit::code(error.kind());
            out.error(&error, code);
            ExitCode::from(code)
        }
    }
}
