//! Interpreters and the jobs they run: one wasmtime store per interpreter, fed through its stdin
//! and answering through its stdout (see `driver.py`). Owns the framing protocol, per-step
//! deadlines and caps, and the mapping from how a guest ended to a [`Verdict`].
//!
//! An [`Interpreter`] is an instance of a booted image (`engine.rs`): the host calls the driver's
//! `run_one` once per job, so a job starts from the booted state and nothing else. [`run_jobs`]
//! runs a batch on worker threads, a new interpreter per job (or, in fresh mode, a whole new
//! process per job). Outcomes flow back to the calling thread over a channel, so progress reporting
//! stays there.

use super::engine::{Image, Sandbox, TICK, WORKER_STACK_BYTES, now_tick};
use super::host::{GuestState, JobRandom, MemoryCap, MemoryLimitExceeded, SnapshotPoint, VirtualClock};
use super::image;
use super::{ExecMode, Job, JobOutcome, JobReporter, Limits, Partial, SandboxError, Variant, Verdict};
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};
use wasmtime::{Store, TypedFunc, UpdateDeadline};
use wasmtime_wasi::cli::{IsTerminal, StdinStream, StdoutStream};
use wasmtime_wasi::p2::{InputStream, OutputStream, Pollable, StreamError};
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

pub(crate) const DRIVER: &str = include_str!("driver.py");

/// Budget for booting an interpreter (start-up plus preloading); generous because a loaded
/// machine slows it.
pub(crate) const BOOT_BUDGET: Duration = Duration::from_secs(120);
/// Results (harness return values) are bounded too, separately from the job's own output.
const MAX_RESULT_BYTES: usize = 64 << 20;
/// Memory cap while booting, before the first job sets its own.
pub(crate) const BOOT_MEMORY_CAP: usize = 512 << 20;
const BOOT_LOG_BYTES: usize = 64 << 10;

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

/// What an interpreter is booted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// Running jobs: past the frames it was given, the guest reads end of input (the driver stops
    /// in fresh mode; a job's own read of fd 0 sees EOF).
    Jobs,
    /// Being snapshotted: once the driver announces it is ready, its next clock reading traps.
    Snapshot,
}

struct InFlight {
    limits: Limits,
    started: Instant,
    /// When the current step began (the job's start, or its last partial result).
    step_started: Instant,
    step_timeouts: Vec<Duration>,
    partials: Vec<Partial>,
    /// The last result frame the job wrote.
    result: Option<Frame>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// Where the search for the result marker resumes in `stdout`.
    scanned: usize,
    /// The driver said the job failed: nothing after that makes it a success.
    failing: bool,
    marker: Vec<u8>,
}

/// A frame queued for the guest's stdin; a job frame starts its job when the guest reads it (in
/// fresh mode the boot runs first, under the boot's own budget).
struct Input {
    bytes: Bytes,
    starts: Option<Box<Pending>>,
}

/// A job waiting for the guest to read its frame.
struct Pending {
    job: InFlight,
    seed: u64,
    clock_start: u64,
    first_budget: Duration,
}

struct Io {
    stdin: VecDeque<Input>,
    job: Option<InFlight>,
    boot_log: Vec<u8>,
}

/// State shared by an interpreter's stdin, stdout, memory limiter and epoch callback.
pub(crate) struct Shared {
    io: Mutex<Io>,
    purpose: Purpose,
    armed: AtomicBool,
    deadline_tick: AtomicU64,
    pub(crate) memory_cap: AtomicUsize,
    pub(crate) memory_now: AtomicUsize,
    /// The interpreter's memory when its first job began ([`UNSET`] before): every job's cap is
    /// counted from it, so an interpreter that keeps memory between jobs (a served session) never
    /// holds more than one job's limit on top of what it booted with.
    memory_base: AtomicUsize,
    pub(crate) clock: VirtualClock,
    random: JobRandom,
    /// Answers the host calls of the job in flight (`{"call": value}` frames), when it takes any.
    calls: Mutex<Option<HostCalls>>,
    /// Whether each answered call restarts the job's time budget (a job that serves calls: the
    /// time it waits for the next one is not its own).
    calls_restart_budget: AtomicBool,
}

/// What answers a job's host calls: each call's value in, the reply out. It runs on the job's
/// thread while the guest waits for the reply (it may run jobs on other interpreters).
pub type HostCalls = Box<dyn FnMut(serde_json::Value) -> serde_json::Value + Send>;

/// `memory_base` before the first job.
const UNSET: usize = usize::MAX;

fn ticks(duration: Duration) -> u64 {
    (duration.as_millis() as u64).div_ceil(TICK.as_millis() as u64) + 1
}

impl Shared {
    fn new(purpose: Purpose) -> Arc<Shared> {
        Arc::new(Shared {
            io: Mutex::new(Io { stdin: VecDeque::new(), job: None, boot_log: Vec::new() }),
            purpose,
            armed: AtomicBool::new(false),
            deadline_tick: AtomicU64::new(0),
            memory_cap: AtomicUsize::new(BOOT_MEMORY_CAP),
            memory_now: AtomicUsize::new(0),
            memory_base: AtomicUsize::new(UNSET),
            clock: VirtualClock::default(),
            random: JobRandom::new(0),
            calls: Mutex::new(None),
            calls_restart_budget: AtomicBool::new(false),
        })
    }

    /// Whether the guest's next clock reading is the snapshot point.
    pub(crate) fn snapshot_armed(&self) -> bool {
        self.armed.load(Ordering::Relaxed)
    }

    fn set_budget(&self, budget: Duration) {
        self.deadline_tick.store(now_tick() + ticks(budget), Ordering::Relaxed);
    }

    /// Queues `job` for the guest's next read; its limits, seed and clock take effect when the guest
    /// reads its frame. The memory cap is the interpreter's memory when its first job began plus
    /// the job's own.
    fn begin(&self, job: &Job) {
        let nonce = job_nonce();
        let mut body = serde_json::to_value(&job.task).expect("jobs serialize to JSON");
        body["nonce"] = nonce.clone().into();
        let in_flight = InFlight {
            limits: job.limits,
            started: Instant::now(),
            step_started: Instant::now(),
            step_timeouts: job.step_timeouts.clone(),
            partials: Vec::new(),
            result: None,
            stdout: Vec::new(),
            stderr: Vec::new(),
            scanned: 0,
            failing: false,
            marker: marker(&nonce),
        };
        let pending = Pending {
            job: in_flight,
            seed: job.seed,
            clock_start: job.variant.clock_start_secs(),
            first_budget: job.step_timeouts.first().copied().unwrap_or(job.limits.timeout),
        };
        let bytes = frame(&serde_json::to_vec(&body).expect("JSON values serialize"));
        self.push_input(Input { bytes, starts: Some(Box::new(pending)) });
    }

    fn push_input(&self, input: Input) {
        self.io.lock().unwrap().stdin.push_back(input);
    }

    /// The guest reached a job's frame: the job's clock, seed, budget and memory cap start now.
    fn start(&self, io: &mut Io, pending: Pending) {
        let Pending { mut job, seed, clock_start, first_budget } = pending;
        let now = self.memory_now.load(Ordering::Relaxed);
        let base = match self.memory_base.compare_exchange(UNSET, now, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => now,
            Err(first) => first,
        };
        self.memory_cap.store(base.saturating_add(job.limits.memory_bytes), Ordering::Relaxed);
        self.clock.restart(clock_start);
        self.random.reseed(seed);
        self.set_budget(first_budget);
        job.started = Instant::now();
        job.step_started = job.started;
        io.job = Some(job);
    }

    fn read_stdin(&self, size: usize) -> Result<Bytes, StreamError> {
        let mut io = self.io.lock().unwrap();
        let Some(front) = io.stdin.front_mut() else {
            return Err(StreamError::Closed);
        };
        let starts = front.starts.take();
        let chunk = front.bytes.split_to(size.min(front.bytes.len()));
        if front.bytes.is_empty() {
            io.stdin.pop_front();
        }
        if let Some(pending) = starts {
            self.start(&mut io, *pending);
        }
        Ok(chunk)
    }

    fn write_output(&self, fd: u8, bytes: &[u8]) -> Result<(), StreamError> {
        let mut calls = Vec::new();
        self.scan_output(fd, bytes, &mut calls)?;
        for call in calls {
            self.answer(call);
        }
        Ok(())
    }

    /// A host call of the job: the reply goes to the guest's input, where it waits for it. Made
    /// with no lock held, since answering may take a while.
    fn answer(&self, call: serde_json::Value) {
        let reply = match self.calls.lock().unwrap().as_mut() {
            Some(answer) => answer(call),
            None => serde_json::json!({"error": "this job takes no host calls"}),
        };
        let body = serde_json::to_vec(&serde_json::json!({ "reply": reply })).expect("JSON values serialize");
        self.push_input(Input { bytes: frame(&body), starts: None });
        if self.calls_restart_budget.load(Ordering::Relaxed) {
            let budget = self.io.lock().unwrap().job.as_ref().map(|job| job.limits.timeout);
            if let Some(budget) = budget {
                self.set_budget(budget);
            }
        }
    }

    fn scan_output(&self, fd: u8, bytes: &[u8], calls: &mut Vec<serde_json::Value>) -> Result<(), StreamError> {
        let mut io = self.io.lock().unwrap();
        let Io { job, boot_log, .. } = &mut *io;
        let Some(job) = job else {
            let room = BOOT_LOG_BYTES.saturating_sub(boot_log.len());
            boot_log.extend_from_slice(&bytes[..bytes.len().min(room)]);
            if self.purpose == Purpose::Snapshot && ready(boot_log).is_some() {
                self.armed.store(true, Ordering::Relaxed);
            }
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
            match scan_frame(job, cap) {
                Scan::Incomplete => return Ok(()),
                Scan::Overflow => return Err(StreamError::Trap(OutputLimitExceeded { stream: "stdout" }.into())),
                Scan::Complete { user_len, frame_end, body } => {
                    // Frames are the protocol's, not the job's output: drop their bytes.
                    job.stdout.drain(user_len..frame_end);
                    job.scanned = user_len;
                    match serde_json::from_slice(&body).unwrap_or(Frame::Unreadable) {
                        // Partial results come before the one result, never after it.
                        Frame::Partial { .. } | Frame::Result { .. } if job.result.is_some() => {
                            job.result = Some(Frame::Forged("a frame after the job's result".into()));
                        }
                        Frame::Partial { partial } => {
                            // A step finished: keep its result, restart the clock and the output
                            // budget (each step of a many-step job has its own).
                            let duration_ms = job.step_started.elapsed().as_millis() as u64;
                            job.partials.push(Partial { value: partial, duration_ms });
                            job.step_started = Instant::now();
                            let next = job.step_timeouts.get(job.partials.len()).copied().unwrap_or(job.limits.timeout);
                            self.set_budget(next);
                            job.stdout.drain(..job.scanned);
                            job.stderr.clear();
                            job.scanned = 0;
                        }
                        Frame::Failing { .. } => job.failing = true,
                        Frame::Call { call } => calls.push(call),
                        other => job.result = Some(other),
                    }
                }
            }
        }
    }

    /// The outcome of the job in flight, now that the guest call ended as `ending`.
    fn finish(&self, ending: &Ending) -> Option<JobOutcome> {
        let job = self.io.lock().unwrap().job.take()?;
        let (verdict, exit_code, detail) = match (ending, &job.result) {
            // The call returned: the job's verdict is in the last result frame it wrote.
            (Ending::Returned, Some(Frame::Result { exit_code, error, .. })) => {
                let verdict = if *exit_code == 0 { Verdict::Ok } else { Verdict::Error };
                let detail = error.clone().or_else(|| (*exit_code != 0).then(|| format!("exited with status {exit_code}")));
                (verdict, Some(*exit_code), detail)
            }
            (Ending::Returned, Some(Frame::Forged(what))) => {
                (Verdict::Error, None, Some(format!("the job's output is not to be believed: {what}")))
            }
            (Ending::Returned, _) => (Verdict::Error, None, Some("the job wrote no readable result".to_string())),
            // The process exited: its status is the job's, whatever frames it printed.
            (Ending::Exit(0), _) => (Verdict::Ok, Some(0), None),
            (Ending::Exit(code), _) => (Verdict::Error, Some(*code), Some(format!("exited with status {code}"))),
            (Ending::Timeout, _) => {
                let budget = job.step_timeouts.get(job.partials.len()).copied().unwrap_or(job.limits.timeout);
                (Verdict::Timeout, None, Some(format!("exceeded the time limit of {} ms", budget.as_millis())))
            }
            (Ending::Memory, _) => {
                (Verdict::Memory, None, Some(format!("exceeded the memory limit of {} MiB", job.limits.memory_bytes >> 20)))
            }
            (Ending::OutputLimit(stream), _) => {
                (Verdict::OutputLimit, None, Some(format!("wrote more than {} bytes to {stream}", job.limits.output_bytes)))
            }
            (Ending::Snapshot, _) => (Verdict::Error, None, Some("the job read past its input".to_string())),
            (Ending::Crash(detail), _) => (Verdict::Error, None, Some(detail.clone())),
        };
        let (verdict, detail) = match verdict {
            Verdict::Ok if job.failing => (Verdict::Error, Some("the job failed, then ended as if it had not".to_string())),
            _ => (verdict, detail),
        };
        let result = match (ending, job.result) {
            (Ending::Returned, Some(Frame::Result { result, .. })) => result,
            _ => None,
        };
        let stdout_len = job.stdout.len().min(job.limits.output_bytes);
        Some(JobOutcome {
            verdict,
            exit_code,
            stdout: String::from_utf8_lossy(&job.stdout[..stdout_len]).into_owned(),
            stderr: String::from_utf8_lossy(&job.stderr).into_owned(),
            result,
            partials: job.partials,
            detail,
            duration_ms: job.started.elapsed().as_millis() as u64,
        })
    }
}

fn frame(body: &[u8]) -> Bytes {
    let mut framed = Vec::with_capacity(body.len() + 4);
    framed.extend_from_slice(&(body.len() as u32).to_le_bytes());
    framed.extend_from_slice(body);
    framed.into()
}

fn marker(nonce: &str) -> Vec<u8> {
    format!("\x1e\x1ecodegym-frame:{nonce}:").into_bytes()
}

/// A fresh nonce per job: frames carry it, so a job's own output cannot pass for another job's.
fn job_nonce() -> String {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
    blake3::hash(format!("{}:{serial}:{:?}", std::process::id(), Instant::now()).as_bytes()).to_hex()[..16].to_string()
}

enum Scan {
    Incomplete,
    Overflow,
    Complete { user_len: usize, frame_end: usize, body: Vec<u8> },
}

/// Looks for a frame (`marker`, 10 length digits, `:`, JSON body) in a job's stdout.
fn scan_frame(job: &mut InFlight, cap: usize) -> Scan {
    let marker = &job.marker;
    let from = job.scanned.saturating_sub(marker.len());
    let found = job.stdout[from..].windows(marker.len()).position(|w| w == marker.as_slice()).map(|p| from + p);
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
#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
enum Frame {
    Partial {
        partial: serde_json::Value,
    },
    Result {
        exit_code: i32,
        result: Option<serde_json::Value>,
        error: Option<String>,
    },
    Failing {
        #[serde(rename = "failing")]
        _failing: bool,
    },
    Call {
        call: serde_json::Value,
    },
    Ready(Ready),
    Unreadable,
    /// Not read from the guest: the protocol was broken (a second result, a partial after it).
    #[serde(skip)]
    Forged(String),
}

/// What the driver announces when it is booted: the addresses the host calls it with.
#[derive(Debug, Clone, Copy, serde::Deserialize)]
pub(crate) struct Ready {
    /// `id(run_one)`.
    pub(crate) ready: i32,
    /// `id(())`, the arguments `run_one` is called with.
    pub(crate) args: i32,
    /// `id(type(run_one))`.
    #[serde(rename = "type")]
    pub(crate) kind: i32,
}

/// How a call into the guest ended.
pub(crate) enum Ending {
    /// `run_one` returned to the host.
    Returned,
    Exit(i32),
    Timeout,
    Memory,
    OutputLimit(&'static str),
    Snapshot,
    Crash(String),
}

impl Ending {
    pub(crate) fn describe(&self) -> String {
        match self {
            Ending::Returned => "returned".into(),
            Ending::Exit(code) => format!("exited with status {code}"),
            Ending::Timeout => "timed out".into(),
            Ending::Memory => "ran out of memory".into(),
            Ending::OutputLimit(stream) => format!("flooded {stream}"),
            Ending::Snapshot => "stopped to be snapshotted".into(),
            Ending::Crash(detail) => detail.clone(),
        }
    }
}

fn classify<T>(result: wasmtime::Result<T>) -> Ending {
    let Err(error) = result else {
        return Ending::Returned;
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
        if cause.downcast_ref::<SnapshotPoint>().is_some() {
            return Ending::Snapshot;
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

/// Hands wasmtime-wasi a fresh stream object per descriptor, all backed by the shared state.
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

static INSTANCES: AtomicU64 = AtomicU64::new(0);
static GUEST_NANOS: AtomicU64 = AtomicU64::new(0);
static JOBS_RUN: AtomicU64 = AtomicU64::new(0);

pub(crate) fn counters() -> super::Counters {
    super::Counters {
        instances: INSTANCES.load(Ordering::Relaxed),
        jobs_run: JOBS_RUN.load(Ordering::Relaxed),
        guest_time: Duration::from_nanos(GUEST_NANOS.load(Ordering::Relaxed)),
    }
}

/// A store wired to `shared`: WASI with our stdio, clocks and randomness, the memory cap and the
/// epoch deadline.
pub(crate) fn new_store(sandbox: &Sandbox, shared: &Arc<Shared>, argv: &[&str]) -> Store<GuestState> {
    INSTANCES.fetch_add(1, Ordering::Relaxed);
    let wasi = WasiCtxBuilder::new()
        .args(argv)
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
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|context| {
        if now_tick() >= context.data().shared.deadline_tick.load(Ordering::Relaxed) {
            Err(TimeLimitExceeded.into())
        } else {
            Ok(UpdateDeadline::Continue(1))
        }
    });
    store
}

/// Runs `f` with the time it spends in the guest counted.
fn in_guest<T>(f: impl FnOnce() -> T) -> T {
    let entered = Instant::now();
    let value = f();
    GUEST_NANOS.fetch_add(entered.elapsed().as_nanos() as u64, Ordering::Relaxed);
    value
}

/// An interpreter booted until it announced it is ready, stopped there.
pub(crate) struct Booted {
    pub(crate) store: Store<GuestState>,
    pub(crate) instance: wasmtime::Instance,
    pub(crate) ready: Ready,
}

/// Boots the driver (`_start`) with `boot_frame` and stops it right after it announces it is ready.
pub(crate) fn boot_for_snapshot(sandbox: &Sandbox, boot_frame: Bytes, seed: u64) -> Result<Booted, SandboxError> {
    let shared = Shared::new(Purpose::Snapshot);
    shared.random.reseed(seed);
    shared.push_input(Input { bytes: boot_frame, starts: None });
    let (store, instance, ending, log) = start_driver(sandbox, &shared)?;
    match (ending, ready(&log)) {
        (Ending::Snapshot, Some(ready)) => Ok(Booted { store, instance, ready }),
        (ending, _) => Err(boot_failed(&ending, &log)),
    }
}

/// A new instance of the driver, run from `_start` under the boot budget with the input already
/// queued in `shared`, until it stops: how it ended, and what it printed on the way.
fn start_driver(
    sandbox: &Sandbox,
    shared: &Arc<Shared>,
) -> Result<(Store<GuestState>, wasmtime::Instance, Ending, Vec<u8>), SandboxError> {
    shared.set_budget(BOOT_BUDGET);
    let mut store = new_store(sandbox, shared, &driver_argv());
    let setup = |e: wasmtime::Error| SandboxError::Setup(format!("{e:#}"));
    let instance = sandbox.boot_pre.instantiate(&mut store).map_err(setup)?;
    let start = instance.get_typed_func::<(), ()>(&mut store, "_start").map_err(setup)?;
    let ending = in_guest(|| classify(start.call(&mut store, ())));
    let log = std::mem::take(&mut shared.io.lock().unwrap().boot_log);
    Ok((store, instance, ending, log))
}

fn boot_failed(ending: &Ending, log: &[u8]) -> SandboxError {
    SandboxError::Boot { detail: format!("{}; output: {}", ending.describe(), String::from_utf8_lossy(log).trim()) }
}

pub(crate) fn driver_argv() -> [&'static str; 5] {
    ["python", "-I", "-S", "-c", DRIVER]
}

/// The driver's ready frame in what it printed while booting.
fn ready(log: &[u8]) -> Option<Ready> {
    let header = b"\x1e\x1ecodegym-frame:";
    let start = log.windows(header.len()).position(|w| w == header)?;
    let body = &log[start..];
    let colon = body[header.len()..].iter().position(|&b| b == b':')? + header.len() + 1;
    let length: usize = std::str::from_utf8(body.get(colon..colon + 10)?).ok()?.parse().ok()?;
    let json = body.get(colon + 11..colon + 11 + length)?;
    match serde_json::from_slice::<Frame>(json).ok()? {
        Frame::Ready(ready) => Some(ready),
        _ => None,
    }
}

/// A booted interpreter, an instance of an image: runs jobs one call at a time. A job that ends in
/// a trap (a limit, an exit) leaves it unusable ([`Interpreter::usable`]).
pub struct Interpreter {
    store: Store<GuestState>,
    shared: Arc<Shared>,
    /// CPython's `PyVectorcall_Call(callable, args, kwargs)`, reached through the function table.
    call: TypedFunc<(i32, i32, i32), i32>,
    run_one: i32,
    no_args: i32,
    usable: bool,
}

impl Interpreter {
    pub(crate) fn new(sandbox: &Sandbox, image: &Image) -> Result<Interpreter, SandboxError> {
        let shared = Shared::new(Purpose::Jobs);
        shared.set_budget(BOOT_BUDGET);
        let mut store = new_store(sandbox, &shared, &driver_argv());
        let setup = |e: wasmtime::Error| SandboxError::Setup(format!("{e:#}"));
        let instance = image.pre.instantiate(&mut store).map_err(setup)?;
        let mut constant = |name: &str| {
            instance
                .get_global(&mut store, name)
                .and_then(|g| g.get(&mut store).i32())
                .ok_or_else(|| SandboxError::Setup(format!("the image exports no {name}")))
        };
        let (run_one, no_args, index) = (constant(image::RUN_ONE)?, constant(image::NO_ARGS)?, constant(image::CALL)?);
        let table = instance
            .get_table(&mut store, image::TABLE)
            .ok_or_else(|| SandboxError::Setup("the image exports no table".into()))?;
        let call = table
            .get(&mut store, index as u32 as u64)
            .and_then(|entry| entry.as_func().flatten().copied())
            .ok_or_else(|| SandboxError::Setup(format!("no function at table index {index}")))?
            .typed::<(i32, i32, i32), i32>(&store)
            .map_err(setup)?;
        Ok(Interpreter { store, shared, call, run_one, no_args, usable: true })
    }

    /// Whether the interpreter can run another job (no job of it ended in a trap).
    pub fn usable(&self) -> bool {
        self.usable
    }

    /// Runs one job on this interpreter, its host calls answered by `calls`; the job's time
    /// budget covers the whole job, the calls' answers included.
    pub fn run_with_calls(&mut self, job: &Job, calls: HostCalls) -> JobOutcome {
        self.run_answering(job, calls, false)
    }

    /// Runs a job that serves calls (it asks the host for each one): every answer restarts the
    /// job's time budget, so it bounds each call, not the time spent waiting for the next.
    pub fn serve_calls(&mut self, job: &Job, calls: HostCalls) -> JobOutcome {
        self.run_answering(job, calls, true)
    }

    fn run_answering(&mut self, job: &Job, calls: HostCalls, restart_budget: bool) -> JobOutcome {
        *self.shared.calls.lock().unwrap() = Some(calls);
        self.shared.calls_restart_budget.store(restart_budget, Ordering::Relaxed);
        let outcome = self.run(job);
        self.shared.calls.lock().unwrap().take();
        self.shared.calls_restart_budget.store(false, Ordering::Relaxed);
        outcome
    }

    /// Runs one job on this interpreter.
    pub fn run(&mut self, job: &Job) -> JobOutcome {
        JOBS_RUN.fetch_add(1, Ordering::Relaxed);
        self.shared.begin(job);
        // The previous job's deadline may have passed while the interpreter sat idle (a served
        // session between two steps): the way to this job's frame runs under its own budget.
        self.shared.set_budget(job.step_timeouts.first().copied().unwrap_or(job.limits.timeout));
        let ending = if self.usable {
            let args = (self.run_one, self.no_args, 0);
            in_guest(|| classify(self.call.call(&mut self.store, args)))
        } else {
            Ending::Crash("the interpreter was lost to an earlier job".into())
        };
        self.usable &= matches!(ending, Ending::Returned);
        self.shared.finish(&ending).unwrap_or_else(|| unread_job(&ending))
    }
}

/// The outcome of a job whose frame the guest never read (its interpreter was already lost).
fn unread_job(ending: &Ending) -> JobOutcome {
    JobOutcome::not_run(format!("the job never started: the interpreter {}", ending.describe()))
}

/// Runs `job` in a whole new interpreter process: the driver boots from scratch, runs the job and
/// exits (the reference the images are compared with).
fn run_fresh(sandbox: &Sandbox, job: &Job) -> Result<JobOutcome, SandboxError> {
    JOBS_RUN.fetch_add(1, Ordering::Relaxed);
    let shared = Shared::new(Purpose::Jobs);
    shared.random.reseed(super::engine::boot_seed(job.variant));
    shared.push_input(Input { bytes: sandbox.boot_frame(job.variant), starts: None });
    shared.begin(job);
    // The driver runs the job, then returns from `_start` at the end of its input.
    let (_, _, ending, log) = start_driver(sandbox, &shared)?;
    shared.finish(&ending).ok_or_else(|| boot_failed(&ending, &log))
}

fn worker_thread(
    sandbox: &Sandbox,
    queue: &Mutex<VecDeque<(usize, Job)>>,
    mode: ExecMode,
    outcomes: mpsc::Sender<(usize, JobOutcome)>,
) -> Result<(), SandboxError> {
    loop {
        let Some((index, job)) = queue.lock().unwrap().pop_front() else { return Ok(()) };
        let outcome = match mode {
            ExecMode::Image => Interpreter::new(sandbox, &*sandbox.image(job.variant)?)?.run(&job),
            ExecMode::Fresh => run_fresh(sandbox, &job)?,
        };
        let _ = outcomes.send((index, outcome));
    }
}

pub(crate) fn run_jobs(
    sandbox: &Sandbox,
    jobs: Vec<Job>,
    mode: ExecMode,
    threads: usize,
    reporter: Option<&dyn JobReporter>,
) -> Result<Vec<JobOutcome>, SandboxError> {
    let total = jobs.len();
    let queue = Mutex::new(jobs.into_iter().enumerate().collect::<VecDeque<_>>());
    let mut outcomes: Vec<Option<JobOutcome>> = vec![None; total];
    let (sender, receiver) = mpsc::channel();
    let failures = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.min(total))
            .map(|i| {
                let (queue, sender) = (&queue, sender.clone());
                std::thread::Builder::new()
                    .name(format!("codegym-sandbox-{i}"))
                    .stack_size(WORKER_STACK_BYTES)
                    .spawn_scoped(scope, move || worker_thread(sandbox, queue, mode, sender))
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

/// The variant's images are what jobs of that variant run in.
impl Variant {
    pub(crate) fn clock_start_secs(self) -> u64 {
        match self {
            // 2024-01-01T00:00:00Z
            Variant::Primary => 1_704_067_200,
            // 2026-10-14T15:27:41Z: a plausible date, far from the primary one, so a date check
            // shows in the rerun.
            Variant::Alternate => 1_791_991_661,
        }
    }

    /// Seconds the harness lets pass before each call it makes into an environment: none in the
    /// primary variant; in the alternate one about what an agent takes to think, so behaviour that
    /// depends on the clock moving (data redrawn after a while) shows in the rerun.
    pub fn pace_secs(self) -> f64 {
        match self {
            Variant::Primary => 0.0,
            Variant::Alternate => 2.5,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_flight(stdout: &[u8], nonce: &str) -> InFlight {
        let now = Instant::now();
        InFlight {
            limits: Limits::default(),
            started: now,
            step_started: now,
            step_timeouts: vec![],
            partials: vec![],
            result: None,
            stdout: stdout.to_vec(),
            stderr: vec![],
            scanned: 0,
            failing: false,
            marker: marker(nonce),
        }
    }

    #[test]
    fn finds_a_frame_after_the_jobs_own_output() {
        let mut bytes = b"hello\n".to_vec();
        bytes.extend_from_slice(&marker("abc"));
        bytes.extend_from_slice(b"0000000002:{}");
        match scan_frame(&mut in_flight(&bytes, "abc"), 100) {
            Scan::Complete { user_len, body, .. } => {
                assert_eq!(user_len, 6);
                assert_eq!(body, b"{}");
            }
            _ => panic!("frame not found"),
        }
    }

    #[test]
    fn a_partial_frame_waits_and_output_past_the_cap_overflows() {
        let mut partial = b"x".to_vec();
        partial.extend_from_slice(&marker("abc")[..5]);
        assert!(matches!(scan_frame(&mut in_flight(&partial, "abc"), 100), Scan::Incomplete));
        assert!(matches!(scan_frame(&mut in_flight(&[b'y'; 500], "abc"), 100), Scan::Overflow));
    }

    #[test]
    fn the_ready_frame_gives_the_addresses_the_host_calls_with() {
        let mut log = b"boot noise\n".to_vec();
        let body = br#"{"ready": 12345, "args": 8, "type": 99}"#;
        log.extend_from_slice(&marker("boot"));
        log.extend_from_slice(format!("{:010}:", body.len()).as_bytes());
        log.extend_from_slice(body);
        let found = ready(&log).unwrap();
        assert_eq!((found.ready, found.args, found.kind), (12345, 8, 99));
        assert!(ready(b"nothing").is_none());
    }
}
