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
            eprint!("{}", render(&error));
            ExitCode::from(2)
        }
    }
}

/// `error: <message>`, then each cause that says something the lines before it did not (a wrapped
/// error often repeats its source's text: it is printed once).
fn render(error: &anyhow::Error) -> String {
    let mut out = format!("error: {error}\n");
    let mut said = error.to_string();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if said.contains(&text) {
            continue;
        }
        out.push_str(&format!("  Caused by: {text}\n"));
        said.push_str(&text);
    }
    out
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
}

#[cfg(test)]
mod tests {
    use super::render;

    #[derive(Debug, thiserror::Error)]
    #[error("column `nope` not found")]
    struct Inner;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Wrapper(#[source] Inner);

    #[test]
    fn a_cause_is_printed_once() {
        let error = anyhow::Error::new(Wrapper(Inner)).context("failed to run the query");
        assert_eq!(render(&error), "error: failed to run the query\n  Caused by: column `nope` not found\n");
    }
}
