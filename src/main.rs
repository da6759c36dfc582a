//! The `codegym` binary: parse, run, map the result to an exit code. Everything else lives in the
//! library.

fn main() -> std::process::ExitCode {
    codegym::cli::main()
}
