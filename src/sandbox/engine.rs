//! The process-wide wasmtime objects: one `Engine` (epoch interruption on), one `Linker` with WASI
//! preview 1 plus our own `poll_oneoff`, the boot module (the CPython runtime with the exports the
//! host needs) and, built from it on first use, the images of a booted interpreter that jobs run
//! in (one per [`Variant`]). Also owns the compiled-module cache: compiling CPython takes seconds,
//! loading a serialized module takes milliseconds, so the boot module and every image are compiled
//! once per machine and cached, keyed by everything that shapes them.

use super::host::{self, GuestState};
use super::image::{self, Snapshot};
use super::worker;
use super::{ExecMode, Job, JobOutcome, JobReporter, SandboxError, Variant};
use bytes::Bytes;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use wasmtime::{Config, Engine, InstancePre, Linker, Module, OptLevel};

/// How often the epoch advances; the granularity of every deadline.
pub(crate) const TICK: Duration = Duration::from_millis(5);

/// Describes the engine settings that shape compiled code; part of every module cache key
/// (together with wasmtime's own compatibility hash and the wasm file's hash).
pub const ENGINE_FINGERPRINT: &str = "codegym-engine-v2;epoch_interruption;opt=speed;max_wasm_stack=4MiB;boot-exports-v1";

/// Bumped whenever the way an image is made changes (the driver and harness sources are part of
/// the key already).
const IMAGE_FORMAT: &str = "codegym-image-v1";

/// Guest frames run on the calling thread's stack: threads that run jobs are spawned with this much.
pub(crate) const WORKER_STACK_BYTES: usize = 32 << 20;

const GYMNASIUM: &str = include_str!("../harness/gymnasium.py");
/// The verification harness and the serve sessions share one episode path (`episode.py`, put in
/// front of each).
pub(crate) const HARNESS: &str = concat!(include_str!("../harness/episode.py"), include_str!("../harness/harness.py"));
const PREFLIGHT: &str = include_str!("../harness/preflight.py");
const SESSION: &str = concat!(include_str!("../harness/episode.py"), include_str!("../harness/session.py"));

/// Standard-library modules every image has imported already: what CodeGym environments,
/// reference solutions and the harness import, so jobs do not pay for it (imports are slow in the
/// WASI build, and free once they are part of the image).
const PRELOAD: &[&str] = &[
    "json",
    "ast",
    "random",
    "collections",
    "heapq",
    "math",
    "functools",
    "bisect",
    "itertools",
    "re",
    "copy",
    "string",
    "operator",
    "typing",
    "datetime",
    "traceback",
    "inspect",
    "dataclasses",
    "enum",
    "pickle",
    "fractions",
    "decimal",
    "statistics",
    "textwrap",
    "io",
    "abc",
    "numbers",
    "array",
    "unittest",
];

static TICKS: AtomicU64 = AtomicU64::new(0);

/// Ticks since the process started the ticker; deadlines are expressed in it.
pub(crate) fn now_tick() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// The seed of the guest's randomness while it boots: it decides the interpreter's string-hash
/// secret, so the two variants hash strings differently.
pub(crate) fn boot_seed(variant: Variant) -> u64 {
    match variant {
        Variant::Primary => 0,
        Variant::Alternate => 0x5eed_a17e_2a7e_0001,
    }
}

/// A booted interpreter's image, ready to instantiate.
pub(crate) struct Image {
    pub(crate) pre: InstancePre<GuestState>,
}

/// A loaded sandbox runtime, shared by all threads.
pub struct Sandbox {
    pub(crate) engine: Engine,
    linker: Linker<GuestState>,
    pub(crate) boot_pre: InstancePre<GuestState>,
    module_path: PathBuf,
    wasm: PathBuf,
    cache_dir: PathBuf,
    images: [OnceLock<Result<Arc<Image>, String>>; 2],
}

impl Sandbox {
    /// Loads the CPython module from `wasm`, using (or filling) the compiled-module cache in
    /// `cache_dir`. `wasm_sha256` is the file's hash, part of the cache key.
    pub fn load(wasm: &Path, wasm_sha256: &str, cache_dir: &Path) -> Result<Sandbox, SandboxError> {
        let engine = shared_engine()?;
        let module_path = Self::module_cache_path(wasm_sha256, cache_dir)?;
        let module = load_or_compile(&engine, &module_path, || {
            let bytes = std::fs::read(wasm).map_err(|source| SandboxError::Io { path: wasm.display().to_string(), source })?;
            image::boot_module(&bytes).map_err(|e| SandboxError::Setup(e.to_string()))
        })?;
        let mut linker: Linker<GuestState> = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |state: &mut GuestState| &mut state.wasi)
            .map_err(|e| SandboxError::Setup(format!("{e:#}")))?;
        host::add_poll_oneoff(&mut linker).map_err(|e| SandboxError::Setup(format!("{e:#}")))?;
        host::add_clock_time_get(&mut linker).map_err(|e| SandboxError::Setup(format!("{e:#}")))?;
        let boot_pre = linker.instantiate_pre(&module).map_err(|e| SandboxError::Setup(format!("{e:#}")))?;
        Ok(Sandbox {
            engine,
            linker,
            boot_pre,
            module_path,
            wasm: wasm.to_path_buf(),
            cache_dir: cache_dir.to_path_buf(),
            images: Default::default(),
        })
    }

    /// Where the compiled boot module of the runtime with hash `wasm_sha256` is (or would be)
    /// cached.
    pub fn module_cache_path(wasm_sha256: &str, cache_dir: &Path) -> Result<PathBuf, SandboxError> {
        let engine = shared_engine()?;
        Ok(cache_dir.join(format!("python-{}.cwasm", cache_key(&engine, wasm_sha256))))
    }

    /// Where the compiled boot module is cached.
    pub fn module_path(&self) -> &Path {
        &self.module_path
    }

    /// Builds (or loads) the images of both variants now rather than on first use, and returns
    /// where they are cached.
    pub fn prepare_images(&self) -> Result<Vec<PathBuf>, SandboxError> {
        [Variant::Primary, Variant::Alternate]
            .into_iter()
            .map(|variant| self.image(variant).map(|_| self.image_path(variant)))
            .collect()
    }

    /// The boot frame of the driver: the modules it installs and what it preloads, and, for the
    /// alternate variant, that it presents as a native Linux CPython. The same bytes for every
    /// interpreter of a variant, so every image of a variant is the same.
    pub(crate) fn boot_frame(&self, variant: Variant) -> Bytes {
        let modules = serde_json::json!({
            "gymnasium": GYMNASIUM,
            "codegym_harness": HARNESS,
            "codegym_preflight": PREFLIGHT,
            "codegym_session": SESSION,
        });
        let boot = serde_json::json!({
            "nonce": "boot",
            "modules": modules,
            "public": ["gymnasium"],
            "preload": PRELOAD,
            "native": variant == Variant::Alternate,
        });
        let body = serde_json::to_vec(&boot).expect("boot frame serializes");
        let mut framed = (body.len() as u32).to_le_bytes().to_vec();
        framed.extend_from_slice(&body);
        framed.into()
    }

    fn image_path(&self, variant: Variant) -> PathBuf {
        let mut key = blake3::Hasher::new();
        key.update(self.module_path.file_name().map_or(&[][..], |n| n.as_encoded_bytes()));
        key.update(IMAGE_FORMAT.as_bytes());
        key.update(worker::DRIVER.as_bytes());
        key.update(&self.boot_frame(variant));
        key.update(&boot_seed(variant).to_le_bytes());
        let name = match variant {
            Variant::Primary => "primary",
            Variant::Alternate => "alternate",
        };
        self.cache_dir.join(format!("image-{name}-{}.cwasm", &key.finalize().to_hex()[..16]))
    }

    /// The image jobs of `variant` run in: loaded from the cache, or made by booting the driver
    /// and baking the booted interpreter into a module (once per process and variant).
    pub(crate) fn image(&self, variant: Variant) -> Result<Arc<Image>, SandboxError> {
        let slot = &self.images[variant as usize];
        let image = slot.get_or_init(|| {
            let path = self.image_path(variant);
            let module = load_or_compile(&self.engine, &path, || self.bake(variant)).map_err(|e| e.to_string())?;
            let pre = self.linker.instantiate_pre(&module).map_err(|e| format!("{e:#}"))?;
            Ok(Arc::new(Image { pre }))
        });
        image.clone().map_err(SandboxError::Setup)
    }

    /// Boots the driver, stops it where it announces it is ready and bakes its state into a module.
    fn bake(&self, variant: Variant) -> Result<Vec<u8>, SandboxError> {
        let mut booted = worker::boot_for_snapshot(self, self.boot_frame(variant), boot_seed(variant))?;
        let setup = |message: &str| SandboxError::Setup(format!("cannot snapshot the booted interpreter: {message}"));
        let memory = booted.instance.get_memory(&mut booted.store, "memory").ok_or_else(|| setup("no memory"))?;
        let stack_pointer = booted
            .instance
            .get_global(&mut booted.store, image::STACK_POINTER)
            .and_then(|g| g.get(&mut booted.store).i32())
            .ok_or_else(|| setup("no stack pointer"))?;
        let data = memory.data(&booted.store);
        let call = tp_call(data, &booted.ready).ok_or_else(|| setup("run_one is not where the driver said"))?;
        let bytes =
            std::fs::read(&self.wasm).map_err(|source| SandboxError::Io { path: self.wasm.display().to_string(), source })?;
        let boot = image::boot_module(&bytes).map_err(|e| SandboxError::Setup(e.to_string()))?;
        let snapshot = Snapshot { memory: data, stack_pointer, run_one: booted.ready.ready, no_args: booted.ready.args, call };
        image::image_module(&boot, &snapshot).map_err(|e| SandboxError::Setup(e.to_string()))
    }

    /// Runs one job in a new interpreter on the calling thread's pool of one.
    pub fn run(&self, job: Job) -> Result<JobOutcome, SandboxError> {
        let mut outcomes = self.run_jobs(vec![job], ExecMode::default(), 1, None)?;
        Ok(outcomes.remove(0))
    }

    /// A new interpreter of `variant`'s image, for callers that run several jobs on one
    /// interpreter (a served session).
    pub fn interpreter(&self, variant: Variant) -> Result<worker::Interpreter, SandboxError> {
        worker::Interpreter::new(self, &*self.image(variant)?)
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

/// The `tp_call` slot of `run_one`'s type (CPython's `PyVectorcall_Call` for a function): the table
/// index the host calls `run_one` through. Read from the booted memory with the layout of CPython
/// 3.12 on wasm32 (`ob_type` at offset 4 of an object, `tp_call` at offset 64 of a type), and
/// checked against the type the driver named.
fn tp_call(memory: &[u8], ready: &worker::Ready) -> Option<i32> {
    const OB_TYPE: usize = 4;
    const TP_CALL: usize = 64;
    let load = |at: usize| memory.get(at..at + 4).map(|b| i32::from_le_bytes(b.try_into().expect("4 bytes")));
    let kind = load(ready.ready as u32 as usize + OB_TYPE)?;
    if kind != ready.kind {
        return None;
    }
    load(kind as u32 as usize + TP_CALL).filter(|&index| index > 0)
}

/// The process-wide engine; the epoch ticker starts with it. One engine per process lets every
/// `Sandbox` share the ticker and the code memory of the loaded modules.
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

/// Loads the serialized module at `cached`, or compiles the bytes `make` returns and serializes
/// them there. A file lock makes concurrent processes (parallel tests, several builds) make it
/// once between them.
fn load_or_compile(
    engine: &Engine,
    cached: &Path,
    make: impl FnOnce() -> Result<Vec<u8>, SandboxError>,
) -> Result<Module, SandboxError> {
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
    let bytes = make()?;
    let compile_err = |source| SandboxError::Compile { path: cached.display().to_string(), source };
    let module = Module::new(engine, &bytes).map_err(compile_err)?;
    let serialized = module.serialize().map_err(compile_err)?;
    let tmp = cached.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, &serialized).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, cached).map_err(io_err(cached))?;
    // The deserialized module maps the cache file, so its memory image is shared copy-on-write
    // by every instance instead of living in this process's heap.
    deserialize(engine, cached).ok_or_else(|| SandboxError::Setup(format!("cannot load {} just written", cached.display())))
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
