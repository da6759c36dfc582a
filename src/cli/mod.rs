//! The command line: parses arguments, resolves them into stage settings, runs the command, and
//! renders errors (`error:` / `Caused by:` lines) and exit codes. Exit status is 0 when the run
//! finished (even with rejects), 2 for fatal errors; a closed stdout (`codegym sql ... | head`) is
//! not an error.

mod args;
mod commands;

pub use args::Cli;
use clap::Parser;
use std::process::ExitCode;

/// Entry point of the `codegym` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  Caused by: {cause}");
            }
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
}
