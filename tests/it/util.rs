//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `codegym` binary under test, with progress bars off.
pub fn codegym() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_codegym"));
    command.env("CODEGYM_NO_PROGRESS", "1");
    command
}

/// Runs `codegym args...`, asserting exit status 0; returns stdout.
pub fn run_ok(args: &[&str]) -> String {
    let output = codegym().args(args).output().expect("run codegym");
    assert_success(&output, args);
    String::from_utf8(output.stdout).expect("utf-8 stdout")
}

/// Runs `codegym args...`, asserting exit status 0 and an empty stdout (a verb that writes
/// tables prints no data); returns stderr, where its status and summary lines go.
pub fn run_ok_status(args: &[&str]) -> String {
    let output = codegym().args(args).output().expect("run codegym");
    assert_success(&output, args);
    assert!(
        output.stdout.is_empty(),
        "codegym {args:?} wrote to stdout, which is for data: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8(output.stderr).expect("utf-8 stderr")
}

pub fn assert_success(output: &Output, args: &[&str]) {
    assert!(
        output.status.success(),
        "codegym {args:?} failed with {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/fixtures/codegym-sample`, or `None` (with a note) where it is absent.
pub fn released_sample() -> Option<PathBuf> {
    let dir = repo().join("../shared/fixtures/codegym-sample");
    if dir.join("envs.parquet").is_file() {
        Some(dir)
    } else {
        eprintln!("skipped: {} is absent", dir.display());
        None
    }
}

/// Runs `codegym sql --data DIR --format json QUERY` and parses the JSON Lines.
pub fn sql_rows(data: &Path, query: &str) -> Vec<serde_json::Value> {
    let out = run_ok(&["sql", "--data", data.to_str().unwrap(), "--format", "json", query]);
    out.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).expect("JSON line")).collect()
}

/// The value of column `n` in the first row of a query.
pub fn count(data: &Path, query: &str) -> i64 {
    sql_rows(data, query)[0]["n"].as_i64().unwrap()
}

/// The bundled samples built once per test run with `codegym build` and no arguments (from the
/// repository root, as the README says), shared by the tests that only read the result.
pub fn sample_build() -> &'static Path {
    static BUILD: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILD.get_or_init(|| {
        let data = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sample-build");
        let _ = std::fs::remove_dir_all(&data);
        let output = codegym().current_dir(repo()).args(["build", "--data", data.to_str().unwrap()]).output().unwrap();
        assert_success(&output, &["build"]);
        assert!(output.stdout.is_empty(), "build prints its summary on stderr: {}", String::from_utf8_lossy(&output.stdout));
        data
    })
}

/// The sandbox, loaded in-process (for tests that drive several jobs through one worker).
pub fn sandbox() -> codegym::sandbox::Sandbox {
    codegym::runtime::ensure().expect("sandbox runtime").sandbox().expect("load sandbox")
}

/// `codegym import-codegym` of the release in `dir` (`envs.EXT` and `tasks.EXT`) into `data`.
pub fn import_release(dir: &Path, ext: &str, data: &Path) {
    import_files(&dir.join(format!("envs.{ext}")), &dir.join(format!("tasks.{ext}")), data);
}

/// `codegym import-codegym --envs ENVS --tasks TASKS --data DATA`.
pub fn import_files(envs: &Path, tasks: &Path, data: &Path) {
    run_ok(&import_args(envs, tasks, data));
}

/// The arguments of `codegym import-codegym --envs ENVS --tasks TASKS --data DATA`.
pub fn import_args<'a>(envs: &'a Path, tasks: &'a Path, data: &'a Path) -> [&'a str; 7] {
    let text = |path: &'a Path| path.to_str().unwrap();
    ["import-codegym", "--envs", text(envs), "--tasks", text(tasks), "--data", text(data)]
}

/// The dataset in the folder `data` (opened, or created with the default shard count).
pub fn dataset(data: &Path) -> codegym::dataset::Dataset {
    codegym::dataset::Dataset::open(data.to_str().unwrap(), None).expect("open the dataset")
}

/// Every file of `table` in the dataset folder `data`, concatenated in name order: what a
/// byte-identical rebuild must reproduce.
pub fn table_bytes(data: &Path, table: &str) -> Vec<u8> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data.join(table))
        .map(|entries| entries.map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "parquet")).collect())
        .unwrap_or_default();
    files.sort();
    files.iter().flat_map(|f| std::fs::read(f).unwrap()).collect()
}

/// The Python environments `.ci/run` builds, one per requirements file (their packages cannot
/// share one: see tests/requirements-openenv-legacy.txt and tests/requirements-verifiers.txt).
#[derive(Debug, Clone, Copy)]
pub enum Venv {
    /// tests/requirements.txt and tests/requirements-trainers.txt: the export tests' consumers,
    /// the current `openenv`, verl and TRL.
    Tests,
    /// tests/requirements-openenv-legacy.txt: the legacy `openenv-core`.
    OpenEnvLegacy,
    /// tests/requirements-verifiers.txt: verifiers with its OpenEnv extra.
    Verifiers,
}

impl Venv {
    /// The variable that names its interpreter, and where `.ci/run` builds it.
    fn location(self) -> (&'static str, &'static str) {
        match self {
            Venv::Tests => ("CODEGYM_TEST_PYTHON", "target/test-venv"),
            Venv::OpenEnvLegacy => ("CODEGYM_TEST_OPENENV_LEGACY_PYTHON", "target/test-venv-openenv-legacy"),
            Venv::Verifiers => ("CODEGYM_TEST_VERIFIERS_PYTHON", "target/test-venv-verifiers"),
        }
    }
}

/// The Python that has the export tests' consumers (`CODEGYM_TEST_PYTHON`, which `.ci/run` points
/// at its virtual environment, else `python3`), when it can import every one of `modules`. When it
/// cannot, the test fails under CI (`CI` set) and is skipped, with a note, elsewhere.
pub fn test_python(modules: &[&str]) -> Option<String> {
    venv_python(Venv::Tests, modules)
}

/// The interpreter of `venv` (its variable, else where `.ci/run` builds it, else `python3` for
/// [`Venv::Tests`]), when it can import every one of `modules`; as [`test_python`] otherwise.
pub fn venv_python(venv: Venv, modules: &[&str]) -> Option<String> {
    let (var, dir) = venv.location();
    let built = repo().join(dir).join("bin/python");
    let fallback = match venv {
        Venv::Tests => "python3".to_string(),
        _ => built.to_string_lossy().into_owned(),
    };
    let python = std::env::var(var).unwrap_or(fallback);
    let probe = Command::new(&python).arg("-c").arg(format!("import {}", modules.join(", "))).output();
    let missing = match probe {
        Ok(output) if output.status.success() => return Some(python),
        Ok(output) => String::from_utf8_lossy(&output.stderr).lines().last().unwrap_or("").to_string(),
        Err(e) => e.to_string(),
    };
    not_installed(format!("`{python}` cannot import {modules:?} ({missing}); run .ci/run, or set {var}"))
}

/// The Azure Blob Storage emulator (Azurite) that `.ci/run` installs with npm under
/// `target/test-node`, when it is there. When it is not, the test fails under CI (`CI` set) and is
/// skipped, with a note, elsewhere.
pub fn azurite_blob() -> Option<PathBuf> {
    let bin = repo().join("target/test-node/node_modules/.bin/azurite-blob");
    if bin.is_file() {
        return Some(bin);
    }
    not_installed(format!("{} is absent; run .ci/run", bin.display()))
}

/// A tool a test needs is not installed: fails under CI, else skips the test with `note`.
fn not_installed<T>(note: String) -> Option<T> {
    assert!(std::env::var_os("CI").is_none(), "{note}");
    eprintln!("skipped: {note}");
    None
}
