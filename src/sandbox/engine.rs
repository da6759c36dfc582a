//! The process-wide wasmtime objects: one `Engine` (epoch interruption on), one `Linker` with WASI
//! preview 1 plus our own `poll_oneoff`, one `InstancePre` for the CPython module, and the ticker
//! thread that advances the epoch. Also owns the compiled-module cache: compiling CPython takes
//! seconds, loading the serialized module takes milliseconds.

use super::host::{self, GuestState};
use super::worker::{self, BootConfig};
use super::{ExecMode, Job, JobOutcome, JobReporter, SandboxError};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use wasmtime::{Config, Engine, InstancePre, Linker, Module, OptLevel};

/// How often the epoch advances; the granularity of every deadline.
pub(crate) const TICK: Duration = Duration::from_millis(5);

/// Describes the engine settings that shape compiled code; part of the module cache key (together
/// with wasmtime's own compatibility hash and the wasm file's hash).
pub const ENGINE_FINGERPRINT: &str = "codegym-engine-v1;epoch_interruption;opt=speed;max_wasm_stack=4MiB";

/// Guest frames run on the calling thread's stack: threads that run jobs are spawned with this much.
pub(crate) const WORKER_STACK_BYTES: usize = 32 << 20;

static TICKS: AtomicU64 = AtomicU64::new(0);

/// Ticks since the process started the ticker; deadlines are expressed in it.
pub(crate) fn now_tick() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// A loaded sandbox runtime, shared by all threads.
pub struct Sandbox {
    pub(crate) engine: Engine,
    pub(crate) pre: InstancePre<GuestState>,
    pub(crate) boot: BootConfig,
    module_path: PathBuf,
}

impl Sandbox {
    /// Loads the CPython module from `wasm`, using (or filling) the compiled-module cache in
    /// `cache_dir`. `wasm_sha256` is the file's hash, part of the cache key.
    pub fn load(wasm: &Path, wasm_sha256: &str, cache_dir: &Path) -> Result<Sandbox, SandboxError> {
        let engine = shared_engine()?;
        let module_path = Self::module_cache_path(wasm_sha256, cache_dir)?;
        let module = load_or_compile(&engine, wasm, &module_path)?;
        let mut linker: Linker<GuestState> = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |state: &mut GuestState| &mut state.wasi)
            .map_err(|e| SandboxError::Setup(format!("{e:#}")))?;
        host::add_poll_oneoff(&mut linker).map_err(|e| SandboxError::Setup(format!("{e:#}")))?;
        let pre = linker.instantiate_pre(&module).map_err(|e| SandboxError::Setup(format!("{e:#}")))?;
        Ok(Sandbox { engine, pre, boot: BootConfig::default(), module_path })
    }

    /// Where the compiled module of the runtime with hash `wasm_sha256` is (or would be) cached.
    pub fn module_cache_path(wasm_sha256: &str, cache_dir: &Path) -> Result<PathBuf, SandboxError> {
        let engine = shared_engine()?;
        Ok(cache_dir.join(format!("python-{}.cwasm", cache_key(&engine, wasm_sha256))))
    }

    /// Where the compiled module is cached.
    pub fn module_path(&self) -> &Path {
        &self.module_path
    }

    /// Runs one job in a fresh interpreter on the calling thread's pool of one.
    pub fn run(&self, job: Job) -> Result<JobOutcome, SandboxError> {
        let mut outcomes = self.run_jobs(vec![job], ExecMode::Fresh, 1, None)?;
        Ok(outcomes.remove(0))
    }

    /// Runs `jobs` on `threads` worker threads and returns their outcomes in job order.
    pub fn run_jobs(
        &self,
        jobs: Vec<Job>,
        mode: ExecMode,
        threads: usize,
        reporter: Option<&dyn JobReporter>,
    ) -> Result<Vec<JobOutcome>, SandboxError> {
        worker::run_jobs(self, jobs, mode, threads.max(1), reporter)
    }
}

/// The process-wide engine; the epoch ticker starts with it. One engine per process lets every
/// `Sandbox` share the ticker and the code memory of the loaded module.
fn shared_engine() -> Result<Engine, SandboxError> {
    static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();
    let engine = ENGINE.get_or_init(|| {
        let mut config = Config::new();
        config
            .epoch_interruption(true)
            .cranelift_opt_level(OptLevel::Speed)
            .async_stack_size(8 << 20)
            .max_wasm_stack(4 << 20)
            .parallel_compilation(true);
        let engine = Engine::new(&config).map_err(|e| format!("{e:#}"))?;
        start_ticker(&engine);
        Ok(engine)
    });
    engine.clone().map_err(SandboxError::Setup)
}

fn cache_key(engine: &Engine, wasm_sha256: &str) -> String {
    let mut compat = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut compat);
    let mut key = blake3::Hasher::new();
    key.update(wasm_sha256.as_bytes());
    key.update(ENGINE_FINGERPRINT.as_bytes());
    key.update(&compat.finish().to_le_bytes());
    key.finalize().to_hex()[..16].to_string()
}

/// Loads the serialized module, or compiles and serializes it. A file lock makes concurrent
/// processes (parallel tests, several builds) compile once between them.
fn load_or_compile(engine: &Engine, wasm: &Path, cached: &Path) -> Result<Module, SandboxError> {
    let io_err = |path: &Path| {
        let path = path.display().to_string();
        move |source| SandboxError::Io { path, source }
    };
    if let Some(module) = deserialize(engine, cached) {
        return Ok(module);
    }
    let dir = cached.parent().expect("cache path has a parent");
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let lock_path = cached.with_extension("lock");
    let lock = std::fs::File::create(&lock_path).map_err(io_err(&lock_path))?;
    lock.lock().map_err(io_err(&lock_path))?;
    if let Some(module) = deserialize(engine, cached) {
        return Ok(module);
    }
    let bytes = std::fs::read(wasm).map_err(io_err(wasm))?;
    let compile_err = |source| SandboxError::Compile { path: wasm.display().to_string(), source };
    let module = Module::new(engine, &bytes).map_err(compile_err)?;
    let serialized = module.serialize().map_err(compile_err)?;
    let tmp = cached.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, &serialized).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, cached).map_err(io_err(cached))?;
    Ok(module)
}

fn deserialize(engine: &Engine, cached: &Path) -> Option<Module> {
    if !cached.is_file() {
        return None;
    }
    // SAFETY: the file is one this code serialized itself into our private cache directory (written
    // to a temporary name, then renamed into place); wasmtime also checks that it was produced by a
    // compatible engine and rejects it otherwise, in which case we compile afresh.
    unsafe { Module::deserialize_file(engine, cached) }.ok()
}

fn start_ticker(engine: &Engine) {
    let engine = engine.clone();
    std::thread::Builder::new()
        .name("codegym-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(TICK);
                TICKS.fetch_add(1, Ordering::Relaxed);
                engine.increment_epoch();
            }
        })
        .expect("spawn the epoch ticker thread");
}
