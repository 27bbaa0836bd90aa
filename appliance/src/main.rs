//! The `creditgate` binary: parses the command line and hands it to
//! [`cli::run`]. The only place `anyhow` and process exit codes live.

mod cli;
mod http;
mod logging;
mod providers;
mod render;
mod serve;
#[cfg(test)]
mod tidy;

use std::process::ExitCode;

fn main() -> ExitCode {
    logging::install();
    match cli::run(std::env::args_os()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("creditgate: {err:#}");
            ExitCode::from(2)
        }
    }
}
