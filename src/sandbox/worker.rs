//! Workers: an interpreter instance running the job-loop driver (`driver.py`), fed jobs through its
//! stdin and answering through its stdout. Owns the framing protocol, per-job deadlines and caps,
//! recycling, and the mapping from how a guest ended to a [`Verdict`].
//!
//! Threads: `run_jobs` spawns worker threads that pull jobs from one shared queue; the guest runs on
//! its worker thread (inside `_start`), and its stdin read is where the next job is handed over.
//! Outcomes flow back to the calling thread over a channel, so progress reporting stays there.

use super::engine::{Sandbox, TICK, WORKER_STACK_BYTES, now_tick};
use super::host::{GuestState, JobRandom, MemoryCap, MemoryLimitExceeded, VirtualClock};
use super::{ExecMode, Job, JobOutcome, JobReporter, Limits, Partial, RECYCLE_MEMORY_BYTES, SandboxError, Verdict};
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::cli::{IsTerminal, StdinStream, StdoutStream};
use wasmtime_wasi::p2::{InputStream, OutputStream, Pollable, StreamError};
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

const DRIVER: &str = include_str!("driver.py");
const GYMNASIUM: &str = include_str!("../harness/gymnasium.py");
const HARNESS: &str = include_str!("../harness/harness.py");

/// Standard-library modules a job-loop worker imports once at boot: what CodeGym environments and
/// reference solutions import, so jobs do not pay for it (imports are slow in the WASI build).
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
];

/// Budget for booting an interpreter (start-up plus preloading) and for the driver's reset between
/// jobs; generous because a loaded machine slows both.
const BOOT_BUDGET: Duration = Duration::from_secs(120);
const BETWEEN_JOBS_BUDGET: Duration = Duration::from_secs(30);
/// Results (harness return values) are bounded too, separately from the job's own output.
const MAX_RESULT_BYTES: usize = 64 << 20;
/// Memory cap while booting, before the first job sets its own.
const BOOT_MEMORY_CAP: usize = 512 << 20;
const BOOT_LOG_BYTES: usize = 64 << 10;

/// Modules installed into every interpreter before it runs jobs.
pub(crate) struct BootConfig {
    modules: Vec<(&'static str, &'static str)>,
}

impl Default for BootConfig {
    fn default() -> Self {
        BootConfig { modules: vec![("gymnasium", GYMNASIUM), ("codegym_harness", HARNESS)] }
    }
}

/// A job output stream went past its cap.
#[derive(Debug, thiserror::Error)]
#[error("output limit exceeded on {stream}")]
struct OutputLimitExceeded {
    stream: &'static str,
}

/// The job's deadline passed.
#[derive(Debug, thiserror::Error)]
#[error("time limit exceeded")]
struct TimeLimitExceeded;

/// The queue of a `run_jobs` call, shared by its worker threads.
struct Batch {
    queue: Mutex<VecDeque<(usize, Job)>>,
    jobs_per_worker: u32,
    preload: bool,
}

struct InFlight {
    index: usize,
    limits: Limits,
    started: Instant,
    /// When the current step began (the job's start, or its last partial result).
    step_started: Instant,
    step_timeouts: Vec<Duration>,
    partials: Vec<Partial>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// Where the search for the result marker resumes in `stdout`.
    scanned: usize,
}

struct WorkerState {
    pending_stdin: Bytes,
    boot_frame: Option<Bytes>,
    in_flight: Option<InFlight>,
    jobs_taken: u32,
    /// Set when a job failed: the worker takes no further jobs (a fresh one does).
    retire: bool,
    boot_memory: Option<usize>,
    boot_log: Vec<u8>,
    marker: Vec<u8>,
}

/// State shared by a worker's stdin, stdout, memory limiter and epoch callback.
pub(crate) struct Shared {
    state: Mutex<WorkerState>,
    batch: Arc<Batch>,
    outcomes: mpsc::Sender<(usize, JobOutcome)>,
    deadline_tick: AtomicU64,
    pub(crate) memory_cap: AtomicUsize,
    pub(crate) memory_now: AtomicUsize,
    pub(crate) clock: VirtualClock,
    random: JobRandom,
}

fn ticks(duration: Duration) -> u64 {
    (duration.as_millis() as u64).div_ceil(TICK.as_millis() as u64) + 1
}

impl Shared {
    fn set_budget(&self, budget: Duration) {
        self.deadline_tick.store(now_tick() + ticks(budget), Ordering::Relaxed);
    }

    /// Hands the next job to the guest, or `None` to end this worker (no jobs left, or time to
    /// recycle it).
    fn next_job(&self, state: &mut WorkerState) -> Option<Bytes> {
        let memory = self.memory_now.load(Ordering::Relaxed);
        let boot_memory = *state.boot_memory.get_or_insert(memory);
        if state.retire || state.jobs_taken >= self.batch.jobs_per_worker || memory > boot_memory + RECYCLE_MEMORY_BYTES {
            return None;
        }
        let (index, job) = self.batch.queue.lock().unwrap().pop_front()?;
        state.jobs_taken += 1;
        JOBS_RUN.fetch_add(1, Ordering::Relaxed);
        self.memory_cap.store(boot_memory.saturating_add(job.limits.memory_bytes), Ordering::Relaxed);
        self.clock.reset();
        self.random.reseed(job.seed);
        self.set_budget(job.step_timeouts.first().copied().unwrap_or(job.limits.timeout));
        let body = serde_json::to_vec(&job.task).expect("jobs serialize to JSON");
        state.in_flight = Some(InFlight {
            index,
            limits: job.limits,
            started: Instant::now(),
            step_started: Instant::now(),
            step_timeouts: job.step_timeouts,
            partials: Vec::new(),
            stdout: Vec::new(),
            stderr: Vec::new(),
            scanned: 0,
        });
        Some(frame(&body))
    }

    fn read_stdin(&self, size: usize) -> Result<Bytes, StreamError> {
        let mut state = self.state.lock().unwrap();
        if state.pending_stdin.is_empty() {
            let next = match state.boot_frame.take() {
                Some(boot) => Some(boot),
                // A job reading fd 0 itself gets end of input, never the next job.
                None if state.in_flight.is_some() => None,
                None => self.next_job(&mut state),
            };
            match next {
                Some(bytes) => state.pending_stdin = bytes,
                None => return Err(StreamError::Closed),
            }
        }
        let n = size.min(state.pending_stdin.len());
        Ok(state.pending_stdin.split_to(n))
    }

    fn write_output(&self, fd: u8, bytes: &[u8]) -> Result<(), StreamError> {
        let mut state = self.state.lock().unwrap();
        let WorkerState { in_flight, boot_log, marker, retire, .. } = &mut *state;
        let Some(job) = in_flight else {
            let room = BOOT_LOG_BYTES.saturating_sub(boot_log.len());
            boot_log.extend_from_slice(&bytes[..bytes.len().min(room)]);
            return Ok(());
        };
        let cap = job.limits.output_bytes;
        if fd == 2 {
            if job.stderr.len() + bytes.len() > cap {
                return Err(StreamError::Trap(OutputLimitExceeded { stream: "stderr" }.into()));
            }
            job.stderr.extend_from_slice(bytes);
            return Ok(());
        }
        job.stdout.extend_from_slice(bytes);
        loop {
            match scan_result(job, marker, cap) {
                Scan::Incomplete => return Ok(()),
                Scan::Overflow => return Err(StreamError::Trap(OutputLimitExceeded { stream: "stdout" }.into())),
                Scan::Complete { user_len, frame_end, body } => {
                    let frame: Frame = serde_json::from_slice(&body).unwrap_or(Frame::Unreadable);
                    if let Frame::Partial { partial } = frame {
                        // A step finished: keep its result, drop the frame bytes, restart the clock.
                        job.partials.push(Partial { value: partial, duration_ms: job.step_started.elapsed().as_millis() as u64 });
                        job.step_started = Instant::now();
                        job.stdout.drain(user_len..frame_end);
                        job.scanned = user_len;
                        self.set_budget(job.step_timeouts.get(job.partials.len()).copied().unwrap_or(job.limits.timeout));
                        continue;
                    }
                    let job = in_flight.take().expect("checked above");
                    let outcome = finished_outcome(job, user_len, frame);
                    *retire = outcome.1.verdict != Verdict::Ok;
                    self.set_budget(BETWEEN_JOBS_BUDGET);
                    let _ = self.outcomes.send(outcome);
                    return Ok(());
                }
            }
        }
    }

    /// The guest ended (exit, trap or limit): settles the job it was running, if any.
    fn settle(&self, ending: &Ending) {
        let Some(job) = self.state.lock().unwrap().in_flight.take() else {
            return;
        };
        let (verdict, exit_code, detail) = match ending {
            Ending::Exit(0) => (Verdict::Ok, Some(0), None),
            Ending::Exit(code) => (Verdict::Error, Some(*code), Some(format!("exited with status {code}"))),
            Ending::Timeout => {
                let budget = job.step_timeouts.get(job.partials.len()).copied().unwrap_or(job.limits.timeout);
                (Verdict::Timeout, None, Some(format!("exceeded the time limit of {} ms", budget.as_millis())))
            }
            Ending::Memory => {
                (Verdict::Memory, None, Some(format!("exceeded the memory limit of {} MiB", job.limits.memory_bytes >> 20)))
            }
            Ending::OutputLimit(stream) => {
                (Verdict::OutputLimit, None, Some(format!("wrote more than {} bytes to {stream}", job.limits.output_bytes)))
            }
            Ending::Crash(detail) => (Verdict::Error, None, Some(detail.clone())),
        };
        let stdout_len = job.stdout.len().min(job.limits.output_bytes);
        let outcome = JobOutcome {
            partials: job.partials,
            verdict,
            exit_code,
            stdout: String::from_utf8_lossy(&job.stdout[..stdout_len]).into_owned(),
            stderr: String::from_utf8_lossy(&job.stderr).into_owned(),
            result: None,
            detail,
            duration_ms: job.started.elapsed().as_millis() as u64,
        };
        let _ = self.outcomes.send((job.index, outcome));
    }
}

fn frame(body: &[u8]) -> Bytes {
    let mut framed = Vec::with_capacity(body.len() + 4);
    framed.extend_from_slice(&(body.len() as u32).to_le_bytes());
    framed.extend_from_slice(body);
    framed.into()
}

enum Scan {
    Incomplete,
    Overflow,
    Complete { user_len: usize, frame_end: usize, body: Vec<u8> },
}

/// Looks for the result frame (`marker`, 10 length digits, `:`, JSON body) in a job's stdout.
fn scan_result(job: &mut InFlight, marker: &[u8], cap: usize) -> Scan {
    let from = job.scanned.saturating_sub(marker.len());
    let found = job.stdout[from..].windows(marker.len()).position(|w| w == marker).map(|p| from + p);
    let Some(start) = found else {
        job.scanned = job.stdout.len();
        // Bytes that could still begin the marker are not counted as the job's output yet.
        let settled = job.stdout.len().saturating_sub(marker.len());
        return if settled > cap { Scan::Overflow } else { Scan::Incomplete };
    };
    job.scanned = start;
    if start > cap {
        return Scan::Overflow;
    }
    let header = start + marker.len();
    let Some(digits) = job.stdout.get(header..header + 11) else {
        return Scan::Incomplete;
    };
    let length = std::str::from_utf8(&digits[..10]).ok().and_then(|d| d.parse::<usize>().ok());
    let Some(length) = length.filter(|&n| n <= MAX_RESULT_BYTES && digits[10] == b':') else {
        return Scan::Overflow;
    };
    let frame_end = header + 11 + length;
    match job.stdout.get(header + 11..frame_end) {
        Some(body) => Scan::Complete { user_len: start, frame_end, body: body.to_vec() },
        None => Scan::Incomplete,
    }
}

/// What the driver writes after the marker.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Frame {
    Partial { partial: serde_json::Value },
    Result { exit_code: i32, result: Option<serde_json::Value>, error: Option<String> },
    Unreadable,
}

fn finished_outcome(job: InFlight, user_len: usize, frame: Frame) -> (usize, JobOutcome) {
    let (exit_code, result, error) = match frame {
        Frame::Result { exit_code, result, error } => (exit_code, result, error),
        _ => (1, None, Some("unreadable result frame".to_string())),
    };
    let verdict = if exit_code == 0 { Verdict::Ok } else { Verdict::Error };
    let detail = match (verdict, error) {
        (_, Some(error)) => Some(error),
        (Verdict::Error, None) => Some(format!("exited with status {exit_code}")),
        _ => None,
    };
    let outcome = JobOutcome {
        verdict,
        exit_code: Some(exit_code),
        stdout: String::from_utf8_lossy(&job.stdout[..user_len]).into_owned(),
        stderr: String::from_utf8_lossy(&job.stderr).into_owned(),
        result,
        partials: job.partials,
        detail,
        duration_ms: job.started.elapsed().as_millis() as u64,
    };
    (job.index, outcome)
}

/// How an interpreter instance ended.
enum Ending {
    Exit(i32),
    Timeout,
    Memory,
    OutputLimit(&'static str),
    Crash(String),
}

fn classify(result: wasmtime::Result<()>) -> Ending {
    let Err(error) = result else {
        return Ending::Exit(0);
    };
    for cause in error.chain() {
        if let Some(exit) = cause.downcast_ref::<I32Exit>() {
            return Ending::Exit(exit.0);
        }
        if cause.downcast_ref::<TimeLimitExceeded>().is_some() {
            return Ending::Timeout;
        }
        if cause.downcast_ref::<MemoryLimitExceeded>().is_some() {
            return Ending::Memory;
        }
        if let Some(limit) = cause.downcast_ref::<OutputLimitExceeded>() {
            return Ending::OutputLimit(limit.stream);
        }
    }
    if let Some(wasmtime::Trap::Interrupt) = error.downcast_ref::<wasmtime::Trap>() {
        return Ending::Timeout;
    }
    let text = format!("{error:#}");
    Ending::Crash(format!("the interpreter crashed: {}", text.lines().next().unwrap_or("")))
}

struct StdinPipe(Arc<Shared>);
struct OutputPipe(Arc<Shared>, u8);

impl InputStream for StdinPipe {
    fn read(&mut self, size: usize) -> Result<Bytes, StreamError> {
        self.0.read_stdin(size)
    }
}

impl OutputStream for OutputPipe {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.0.write_output(self.1, &bytes)
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(1 << 20)
    }
}

#[async_trait::async_trait]
impl Pollable for StdinPipe {
    async fn ready(&mut self) {}
}

#[async_trait::async_trait]
impl Pollable for OutputPipe {
    async fn ready(&mut self) {}
}

/// Hands wasmtime-wasi a fresh stream object per descriptor, all backed by the worker's state.
struct Stdio(Arc<Shared>, u8);

impl IsTerminal for Stdio {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdinStream for Stdio {
    fn p2_stream(&self) -> Box<dyn InputStream> {
        Box::new(StdinPipe(self.0.clone()))
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncRead + Send + Sync> {
        Box::new(tokio::io::empty())
    }
}

impl StdoutStream for Stdio {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(OutputPipe(self.0.clone(), self.1))
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(tokio::io::sink())
    }
}

static WORKERS_BOOTED: AtomicU64 = AtomicU64::new(0);
static GUEST_NANOS: AtomicU64 = AtomicU64::new(0);
static JOBS_RUN: AtomicU64 = AtomicU64::new(0);

pub(crate) fn counters() -> super::Counters {
    super::Counters {
        workers_booted: WORKERS_BOOTED.load(Ordering::Relaxed),
        jobs_run: JOBS_RUN.load(Ordering::Relaxed),
        guest_time: Duration::from_nanos(GUEST_NANOS.load(Ordering::Relaxed)),
    }
}

fn boot_frame(sandbox: &Sandbox, nonce: &str, batch: &Batch) -> Bytes {
    let modules: serde_json::Map<String, serde_json::Value> =
        sandbox.boot.modules.iter().map(|(name, source)| (name.to_string(), (*source).into())).collect();
    let preload: &[&str] = if batch.preload { PRELOAD } else { &[] };
    let reset = batch.jobs_per_worker > 1;
    let boot = serde_json::json!({ "nonce": nonce, "modules": modules, "preload": preload, "reset": reset });
    frame(&serde_json::to_vec(&boot).expect("boot frame serializes"))
}

/// Boots one interpreter and runs jobs from the batch until it ends. Returns how many jobs it took
/// and, if it died before taking any, what it printed (a boot failure).
fn run_worker(sandbox: &Sandbox, batch: &Arc<Batch>, outcomes: &mpsc::Sender<(usize, JobOutcome)>) -> Result<u32, SandboxError> {
    let serial = WORKERS_BOOTED.fetch_add(1, Ordering::Relaxed);
    let nonce =
        blake3::hash(format!("{}:{serial}:{:?}", std::process::id(), Instant::now()).as_bytes()).to_hex()[..16].to_string();
    let shared = Arc::new(Shared {
        state: Mutex::new(WorkerState {
            pending_stdin: Bytes::new(),
            boot_frame: Some(boot_frame(sandbox, &nonce, batch)),
            in_flight: None,
            jobs_taken: 0,
            retire: false,
            boot_memory: None,
            boot_log: Vec::new(),
            marker: format!("\x1e\x1ecodegym-frame:{nonce}:").into_bytes(),
        }),
        batch: batch.clone(),
        outcomes: outcomes.clone(),
        deadline_tick: AtomicU64::new(0),
        memory_cap: AtomicUsize::new(BOOT_MEMORY_CAP),
        memory_now: AtomicUsize::new(0),
        clock: VirtualClock::default(),
        random: JobRandom::new(0),
    });
    let wasi = WasiCtxBuilder::new()
        .args(&["python", "-I", "-S", "-c", DRIVER])
        .stdin(Stdio(shared.clone(), 0))
        .stdout(Stdio(shared.clone(), 1))
        .stderr(Stdio(shared.clone(), 2))
        .wall_clock(shared.clock.clone())
        .monotonic_clock(shared.clock.clone())
        .secure_random(shared.random.clone())
        .insecure_random(shared.random.clone())
        .insecure_random_seed(0)
        .build_p1();
    let state = GuestState { wasi, limiter: MemoryCap { shared: shared.clone() }, shared: shared.clone() };
    let mut store = Store::new(&sandbox.engine, state);
    store.limiter(|state| &mut state.limiter);
    shared.set_budget(BOOT_BUDGET);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|context| {
        if now_tick() >= context.data().shared.deadline_tick.load(Ordering::Relaxed) {
            Err(TimeLimitExceeded.into())
        } else {
            Ok(UpdateDeadline::Continue(1))
        }
    });
    let setup = |e: wasmtime::Error| SandboxError::Setup(format!("{e:#}"));
    let instance = sandbox.pre.instantiate(&mut store).map_err(setup)?;
    let start = instance.get_typed_func::<(), ()>(&mut store, "_start").map_err(setup)?;
    let entered = Instant::now();
    let ending = classify(start.call(&mut store, ()));
    GUEST_NANOS.fetch_add(entered.elapsed().as_nanos() as u64, Ordering::Relaxed);
    shared.settle(&ending);
    let state = shared.state.lock().unwrap();
    if state.jobs_taken == 0 && !batch.queue.lock().unwrap().is_empty() {
        let detail = match ending {
            Ending::Exit(code) => format!("exited with status {code}"),
            Ending::Timeout => "timed out".into(),
            Ending::Memory => "ran out of memory".into(),
            Ending::OutputLimit(stream) => format!("flooded {stream}"),
            Ending::Crash(detail) => detail,
        };
        let log = String::from_utf8_lossy(&state.boot_log);
        return Err(SandboxError::Boot { detail: format!("{detail}; output: {}", log.trim()) });
    }
    Ok(state.jobs_taken)
}

fn worker_thread(sandbox: &Sandbox, batch: &Arc<Batch>, outcomes: mpsc::Sender<(usize, JobOutcome)>) -> Result<(), SandboxError> {
    while !batch.queue.lock().unwrap().is_empty() {
        run_worker(sandbox, batch, &outcomes)?;
    }
    Ok(())
}

pub(crate) fn run_jobs(
    sandbox: &Sandbox,
    jobs: Vec<Job>,
    mode: ExecMode,
    threads: usize,
    reporter: Option<&dyn JobReporter>,
) -> Result<Vec<JobOutcome>, SandboxError> {
    let total = jobs.len();
    let (jobs_per_worker, preload) = match mode {
        ExecMode::JobLoop { jobs_per_worker } => (jobs_per_worker.max(1), true),
        ExecMode::Fresh => (1, false),
    };
    let batch = Arc::new(Batch { queue: Mutex::new(jobs.into_iter().enumerate().collect()), jobs_per_worker, preload });
    let mut outcomes: Vec<Option<JobOutcome>> = vec![None; total];
    let (sender, receiver) = mpsc::channel();
    let failures = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.min(total))
            .map(|i| {
                let (batch, sender) = (&batch, sender.clone());
                std::thread::Builder::new()
                    .name(format!("codegym-sandbox-{i}"))
                    .stack_size(WORKER_STACK_BYTES)
                    .spawn_scoped(scope, move || worker_thread(sandbox, batch, sender))
                    .expect("spawn a sandbox worker thread")
            })
            .collect();
        drop(sender);
        for (index, outcome) in receiver {
            if let Some(reporter) = reporter {
                reporter.on_job_done(index, &outcome);
            }
            outcomes[index] = Some(outcome);
        }
        workers.into_iter().filter_map(|w| w.join().expect("sandbox worker panicked").err()).collect::<Vec<_>>()
    });
    if let Some(failure) = failures.into_iter().next() {
        return Err(failure);
    }
    outcomes
        .into_iter()
        .map(|o| o.ok_or_else(|| SandboxError::Setup("a job produced no outcome; this is a bug in codegym".into())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_flight(stdout: &[u8]) -> InFlight {
        let now = Instant::now();
        InFlight {
            index: 0,
            limits: Limits::default(),
            started: now,
            step_started: now,
            step_timeouts: vec![],
            partials: vec![],
            stdout: stdout.to_vec(),
            stderr: vec![],
            scanned: 0,
        }
    }

    #[test]
    fn finds_a_result_frame_after_the_jobs_own_output() {
        let marker = b"\x1e\x1ecodegym-frame:abc:";
        let mut bytes = b"hello\n".to_vec();
        bytes.extend_from_slice(marker);
        bytes.extend_from_slice(b"0000000002:{}");
        match scan_result(&mut in_flight(&bytes), marker, 100) {
            Scan::Complete { user_len, body, .. } => {
                assert_eq!(user_len, 6);
                assert_eq!(body, b"{}");
            }
            _ => panic!("frame not found"),
        }
    }

    #[test]
    fn a_partial_frame_waits_and_output_past_the_cap_overflows() {
        let marker = b"\x1e\x1ecodegym-frame:abc:";
        let mut partial = b"x".to_vec();
        partial.extend_from_slice(&marker[..5]);
        assert!(matches!(scan_result(&mut in_flight(&partial), marker, 100), Scan::Incomplete));
        assert!(matches!(scan_result(&mut in_flight(&[b'y'; 500]), marker, 100), Scan::Overflow));
    }
}
