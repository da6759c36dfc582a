//! The WebAssembly Python sandbox: runs untrusted Python (LLM-written environments, oracles, reference
//! solutions) inside wasmtime + CPython-on-WASI, with a CPU deadline, a memory cap and bounded output
//! per job, and nothing of the host visible to the guest.
//!
//! Owns the wasmtime `Engine`/`Linker`/`InstancePre` ([`engine`]), the host functions and
//! determinism sources the guest sees ([`host`]: virtual clock, seeded randomness, `poll_oneoff`),
//! and the workers that run jobs ([`worker`]). It knows nothing about Parquet, the LLM or what a job
//! means: callers (the harness, preflight, `codegym sandbox run`) hand it [`Job`]s and get
//! [`JobOutcome`]s back.
//!
//! # Execution modes
//! - [`ExecMode::Image`] (the default): every job runs in its own interpreter, an instance of an
//!   image of a booted interpreter (the driver booted, its modules installed and preloaded, then
//!   baked into a module; see `image.rs`). wasmtime maps the image copy-on-write, so a new
//!   interpreter costs about as much as a `mmap`, and no state whatsoever carries from one job to
//!   another: not Python objects, not C-level state, not the harness's own.
//! - [`ExecMode::Fresh`]: a whole new interpreter process per job, booted from scratch (slower;
//!   the reference the images are checked against).
//!
//! Each job runs in one of two [`Variant`]s: the primary one, or an alternate one whose
//! interpreter hashes strings with another secret and whose clock starts on another date, so that
//! behaviour depending on either shows as a difference between the two.
//!
//! # Limits and verdicts
//! Each limit has its own verdict: `timeout` (epoch deadline, also ends busy loops in pure wasm),
//! `memory` (linear-memory cap; growth past it traps, so the guest cannot catch `MemoryError` and go
//! on), `output_limit` (stdout or stderr past the cap traps). `error` is the program failing on its
//! own; `ok` is exit status 0. A guest misbehaving is never a Rust `Err`: only a broken runtime is.
//!
//! # What the guest sees
//! No preopened directories (every path is ENOENT), no environment variables, no sockets or
//! processes (WASI preview 1 has none), a virtual clock that starts at the same instant for every
//! job and advances only when the guest sleeps (sleeping returns at once), and random bytes from a
//! per-job seed. Two runs of the same job print the same output.

mod engine;
mod host;
mod worker;

mod image;

/// Threads that run guest code need this much stack (guest frames run on the calling thread).
pub(crate) use engine::WORKER_STACK_BYTES;
pub use engine::{ENGINE_FINGERPRINT, Sandbox};
pub use image::ImageError;
pub use worker::{HostCalls, Interpreter};

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Resource limits of one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Wall-clock budget of the job, or of each step of a many-step job (every partial result
    /// restarts it); enforced with epoch interruption.
    pub timeout: Duration,
    /// Memory the job may use on top of the booted interpreter.
    pub memory_bytes: usize,
    /// Cap on each of stdout and stderr.
    pub output_bytes: usize,
}

impl Default for Limits {
    /// The method's per-cell limits: 3 s and 100 MiB; 1 MiB of output per stream.
    fn default() -> Self {
        Limits { timeout: Duration::from_secs(3), memory_bytes: 100 << 20, output_bytes: 1 << 20 }
    }
}

/// What a job runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Task {
    /// A Python program run as `__main__`, with `stdin` as its standard input.
    Script { code: String, filename: String, stdin: String },
    /// A function of the embedded harness (`src/harness/harness.py`) called with keyword `args`;
    /// its JSON return value comes back in [`JobOutcome::result`].
    Call { function: String, args: serde_json::Value },
}

/// One unit of work for the sandbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub task: Task,
    pub limits: Limits,
    /// Seeds the guest's randomness (hash-independent: `os.urandom`, unseeded `random.Random()`).
    pub seed: u64,
    /// For a many-step job: the time budget of each step in order (a step past the end of the
    /// list, or every step when it is empty, gets `limits.timeout`).
    pub step_timeouts: Vec<Duration>,
    /// The interpreter variant the job runs in.
    pub variant: Variant,
}

/// Which interpreter a job runs in: the two differ in their string-hash secret and in the date
/// their clock starts on (2024-01-01 for the primary one), so that a rerun in the other one shows
/// behaviour that depends on set order or on the date.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Variant {
    #[default]
    Primary = 0,
    Alternate = 1,
}

impl Job {
    pub fn script(code: impl Into<String>, filename: impl Into<String>, limits: Limits) -> Job {
        let task = Task::Script { code: code.into(), filename: filename.into(), stdin: String::new() };
        Job { task, limits, seed: 0, step_timeouts: Vec::new(), variant: Variant::Primary }
    }

    /// The same job running `task` instead.
    pub fn with_task(self, task: Task) -> Job {
        Job { task, ..self }
    }

    pub fn call(function: &str, args: serde_json::Value, limits: Limits) -> Job {
        let task = Task::Call { function: function.to_string(), args };
        Job { task, limits, seed: 0, step_timeouts: Vec::new(), variant: Variant::Primary }
    }
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Ok,
    Error,
    Timeout,
    Memory,
    OutputLimit,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Error => "error",
            Verdict::Timeout => "timeout",
            Verdict::Memory => "memory",
            Verdict::OutputLimit => "output_limit",
        }
    }
}

/// The result of one job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobOutcome {
    pub verdict: Verdict,
    /// The program's exit status; `None` when a limit ended it.
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// The harness function's return value (for [`Task::Call`] jobs that finished).
    pub result: Option<serde_json::Value>,
    /// Results a many-step job handed over as it went (`emit_partial` in the harness), in order;
    /// kept when a limit ends the job part way.
    pub partials: Vec<Partial>,
    /// One line saying why the job did not end `ok` (the exception, the limit hit).
    pub detail: Option<String>,
    pub duration_ms: u64,
}

impl JobOutcome {
    /// The outcome of a job that never ran (`detail` says why).
    pub fn not_run(detail: impl Into<String>) -> JobOutcome {
        JobOutcome {
            verdict: Verdict::Error,
            exit_code: None,
            stdout: String::new(),
            stderr: String::new(),
            result: None,
            partials: Vec::new(),
            detail: Some(detail.into()),
            duration_ms: 0,
        }
    }
}

/// One step's result of a many-step job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Partial {
    pub value: serde_json::Value,
    /// Time from the previous partial result (or the job's start) to this one.
    pub duration_ms: u64,
}

/// How jobs are mapped onto interpreters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ExecMode {
    /// A new instance of the booted image per job.
    #[default]
    Image,
    /// A new interpreter process per job, booted from scratch.
    Fresh,
}

/// Progress callback of a stage that runs jobs, counting the items its total counts.
pub trait JobReporter: Send + Sync {
    /// Called once per finished job, from worker threads.
    fn on_job_done(&self, index: usize, outcome: &JobOutcome);

    /// Called for `count` items of the total that need no job (a problem preflighted already, an
    /// environment verified already), so that a total counted in advance is reached exactly.
    fn on_skipped(&self, count: usize) {
        let _ = count;
    }
}

/// A runtime that cannot be used at all (as opposed to a guest that misbehaves).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("failed to compile the Python runtime module {path}")]
    Compile {
        path: String,
        #[source]
        source: wasmtime::Error,
    },
    #[error("failed to prepare the sandbox: {0}")]
    Setup(String),
    #[error("the sandbox interpreter failed to boot: {detail}")]
    Boot { detail: String },
    #[error("I/O error on {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Process-wide sandbox counters (for benchmarks and run summaries).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Interpreters started (image instances and booted processes).
    pub instances: u64,
    /// Jobs handed to interpreters.
    pub jobs_run: u64,
    /// Time worker threads spent inside the guest (`_start`), host calls included.
    pub guest_time: Duration,
}

/// The counters so far.
pub fn counters() -> Counters {
    worker::counters()
}
