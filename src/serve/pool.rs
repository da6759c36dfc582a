//! The session pool: every open session, the sandbox interpreters that run their environments,
//! and the CPU threads those run on. Both protocols are thin layers over [`Pool`].
//!
//! A session holds at most one episode. Its environment lives in an interpreter of its own while
//! the session is active; after every call that leaves an environment behind, the pickled state
//! comes back to the host, so the host always holds the session's last good state. Live
//! interpreters are bounded (`max_live`): a session that needs one when all are taken evicts the
//! least recently used idle session's, and an interpreter idle for `interpreter_idle` is released
//! too. A session without an interpreter is its pickled state (a few KiB); its next step restores
//! it into a new interpreter (the module executed, the state unpickled). A step that times out,
//! traps or raises costs its interpreter and nothing else: the session keeps the state it had
//! before the step, and the client gets an error observation.
//!
//! Guest code runs on the calling thread's stack, so sandbox calls run on dedicated threads with
//! large stacks ([`super::workers`]: a prompt lane for sessions whose calls are quick and a slow
//! lane for the others, so a few sessions that run to the step timeout never hold the rest back);
//! the network side awaits their answers and never runs guest code. Within a session calls run
//! one at a time (a second call while one runs is refused, not queued); what `state`, `is_done`
//! and `reward` read is kept beside the session ([`Summary`]), so they never wait for a step.

use super::catalog::{Catalog, ConfigRef, ResolveError, ServedConfig, ServedEnv};
use super::record::{EpisodeRow, Recorder};
use super::workers::{Lane, SLOW_CALL, Task, Workers};
use crate::harness::seed_for;
use crate::sandbox::{Interpreter, Job, JobOutcome, Limits, Sandbox, SandboxError, Variant, Verdict, WORKER_STACK_BYTES};
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Limits of the pool, resolved from the command line.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub threads: usize,
    /// Open sessions at most (OpenEnv's capacity): past it, new sessions are refused.
    pub max_sessions: usize,
    /// Interpreters alive at once at most (an interpreter costs about 6 MiB).
    pub max_live: usize,
    /// Steps per episode (the method's `plugin_call_max_round`): past them the episode is done
    /// with reward 0.
    pub max_steps: u32,
    /// Per-step time, memory and output limits (restoring a session runs under them too).
    pub limits: Limits,
    /// Observations are cut at this many bytes (and say so).
    pub max_observation_bytes: usize,
    /// The most pickled state the host keeps for a session: a step that leaves more fails, and the
    /// session keeps its last good state.
    pub max_state_bytes: usize,
    /// An action longer than this is refused.
    pub max_action_bytes: usize,
    /// A session unused this long is closed.
    pub idle_timeout: Duration,
    /// A session unused this long gives its interpreter back (it keeps its state).
    pub interpreter_idle: Duration,
}

/// Which protocol a session speaks (recorded with its episodes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    OpenEnv,
    CodeGym,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::OpenEnv => "openenv",
            Protocol::CodeGym => "codegym",
        }
    }
}

/// Why a call was refused or could not run. None of these change the session.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("Server at capacity: {active}/{max} sessions active. Cannot accept new connections.")]
    Capacity { active: usize, max: usize },
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("this session has no configuration yet: start an episode with config_id or env_str first")]
    NoConfig,
    #[error("this session has no episode: start one first (OpenEnv `reset`, CodeGym `/start`)")]
    NoEpisode,
    #[error("the episode is over (done after {0} steps): reset to start another")]
    EpisodeDone(u32),
    #[error("another call on this session is still running: wait for its answer")]
    Busy,
    #[error("the action is {0} bytes, over the limit of {1} bytes")]
    ActionTooLarge(usize, usize),
    #[error("malformed action: {0}; expected {{\"name\": TOOL, \"parameters\": {{...}}}}")]
    MalformedAction(String),
    #[error("the environment failed to start: {0}")]
    StartFailed(String),
    #[error("the session's environment could not be restored: {0}")]
    RestoreFailed(String),
    #[error("the session is closed")]
    Closed,
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("the sandbox failed: {0}")]
    Sandbox(#[from] SandboxError),
}

/// An action as the environment gets it: the JSON text of `{"name", "parameters"}`, checked.
#[derive(Debug, Clone)]
pub struct Action {
    pub name: String,
    pub text: String,
}

impl Action {
    /// Checks the JSON text of an action (as the CodeGym API carries it).
    pub fn from_text(text: String, max_bytes: usize) -> Result<Action, CallError> {
        if text.len() > max_bytes {
            return Err(CallError::ActionTooLarge(text.len(), max_bytes));
        }
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| CallError::MalformedAction(e.to_string()))?;
        let name = Action::checked_name(&value)?;
        Ok(Action { name, text })
    }

    /// An action given as a name and the raw JSON of its parameters (as OpenEnv and MCP carry
    /// it): the parameters go to the environment as the client wrote them (a big integer stays
    /// an integer).
    pub fn from_parts(name: &str, parameters: Option<&RawValue>, max_bytes: usize) -> Result<Action, CallError> {
        let parameters = parameters.map_or("{}", RawValue::get);
        if !parameters.trim_start().starts_with('{') {
            return Err(CallError::MalformedAction("`parameters` is not an object".into()));
        }
        let text = format!("{{\"name\": {}, \"parameters\": {parameters}}}", serde_json::Value::from(name));
        if text.len() > max_bytes {
            return Err(CallError::ActionTooLarge(text.len(), max_bytes));
        }
        Ok(Action { name: name.to_string(), text })
    }

    fn checked_name(value: &serde_json::Value) -> Result<String, CallError> {
        let name =
            value.get("name").and_then(|n| n.as_str()).ok_or_else(|| CallError::MalformedAction("no string `name`".into()))?;
        match value.get("parameters") {
            None | Some(serde_json::Value::Object(_)) => Ok(name.to_string()),
            Some(_) => Err(CallError::MalformedAction("`parameters` is not an object".into())),
        }
    }
}

/// Why a step did not run to completion: the sandbox's verdict, or a tool the environment does
/// not have. Its name is what clients see (OpenEnv's `error`) and what `episodes.verdict` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepError {
    Timeout,
    Memory,
    OutputLimit,
    /// The environment raised, or the call ended without a result.
    Error,
    UnknownTool,
    /// The step ran, but left a state larger than the server keeps for a session.
    StateTooLarge,
}

impl StepError {
    pub const ALL: [StepError; 6] = [
        StepError::Timeout,
        StepError::Memory,
        StepError::OutputLimit,
        StepError::Error,
        StepError::UnknownTool,
        StepError::StateTooLarge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepError::UnknownTool => "unknown_tool",
            StepError::StateTooLarge => "state_too_large",
            StepError::Timeout => Verdict::Timeout.as_str(),
            StepError::Memory => Verdict::Memory.as_str(),
            StepError::OutputLimit => Verdict::OutputLimit.as_str(),
            StepError::Error => Verdict::Error.as_str(),
        }
    }

    /// The error of a job that did not finish (one that ended `ok` without a result is an error).
    fn of(verdict: Verdict) -> StepError {
        match verdict {
            Verdict::Timeout => StepError::Timeout,
            Verdict::Memory => StepError::Memory,
            Verdict::OutputLimit => StepError::OutputLimit,
            Verdict::Ok | Verdict::Error => StepError::Error,
        }
    }
}

/// What a call answers: the observation text (the environment's, or an error observation), the
/// reward and whether the episode is over.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub observation: String,
    pub reward: f64,
    pub done: bool,
    /// Set when the step did not run to completion.
    pub error: Option<StepError>,
    /// Whether the observation was cut at the cap.
    pub truncated: bool,
    pub step_count: u32,
}

/// What can be read of a session without waiting for its running call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub episode_id: Option<String>,
    /// The episode id the client chose, when it chose one.
    pub label: Option<String>,
    pub config_id: Option<String>,
    pub env_name: Option<String>,
    pub step_count: u32,
    pub done: bool,
    pub reward: f64,
}

impl Summary {
    /// The episode id to report: the client's, or ours.
    pub fn reported_id(&self) -> Option<&str> {
        self.label.as_deref().or(self.episode_id.as_deref())
    }
}

/// Who may reach a session besides the call that opened it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Only the WebSocket connection that opened it: its id reaches it from nowhere else.
    Socket,
    /// Whoever holds its id, on the protocol that opened it: a REST instance, or an MCP session
    /// opened over HTTP. The id is the credential, so it is drawn from the operating system's
    /// secure random source.
    Id,
}

/// One open session.
pub struct Session {
    pub id: String,
    pub protocol: Protocol,
    access: Access,
    work: Mutex<Work>,
    summary: Mutex<Summary>,
    /// Milliseconds since the pool started, at the last call.
    last_used: AtomicU64,
    /// The session's lease in milliseconds (0: none, the idle timeout alone applies): past it
    /// without a call or a renewal, the session is closed. A client that renews while its user
    /// lives (the verl tool while its rollout runs) gets its sessions back soon after it is gone.
    lease_ms: AtomicU64,
    /// Milliseconds since the pool started, at the last renewal of the lease.
    renewed: AtomicU64,
    has_interpreter: AtomicBool,
    closed: AtomicBool,
    /// Whether its last call ran past [`SLOW_CALL`]: its next call waits in the slow lane.
    slow: AtomicBool,
    /// Wakes the connection that owns the session when the pool closes it (idle, shutdown).
    pub closing: tokio::sync::Notify,
}

impl Session {
    pub fn summary(&self) -> Summary {
        self.summary.lock().unwrap().clone()
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Whether the lease ran out by `now` (milliseconds since the pool started). A renewal is
    /// kept apart from `last_used`, so a renewed session still gives its interpreter back when
    /// idle and stays first in line for eviction.
    fn lease_expired(&self, now: u64) -> bool {
        let lease = self.lease_ms.load(Ordering::Relaxed);
        let alive = self.last_used.load(Ordering::Relaxed).max(self.renewed.load(Ordering::Relaxed));
        lease > 0 && now.saturating_sub(alive) >= lease
    }
}

/// What a session's calls work on; locked by the thread running a call.
#[derive(Default)]
struct Work {
    episode: Option<Episode>,
    interpreter: Option<Held>,
    /// The configuration and seed of the last episode (a reset without a configuration restarts it).
    last: Option<(Arc<ServedConfig>, u64)>,
}

struct Episode {
    id: String,
    label: Option<String>,
    config: Arc<ServedConfig>,
    seed: u64,
    steps: u32,
    done: bool,
    reward: f64,
    /// The environment's last good state, pickled (base64).
    state: String,
}

/// An interpreter counted against `max_live` while it exists.
struct Held {
    interpreter: Interpreter,
    live: Arc<AtomicUsize>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What `session_start` and `session_step` return (see `session.py`).
#[derive(Deserialize)]
struct Report {
    observation: String,
    observation_chars: usize,
    reward: f64,
    done: bool,
    state: String,
}

/// The sessions and the threads that run them.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    sandbox: Arc<Sandbox>,
    catalog: Arc<Catalog>,
    settings: PoolSettings,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    live: Arc<AtomicUsize>,
    workers: Workers,
    recorder: Option<Recorder>,
    started: Instant,
}

impl Pool {
    /// Starts the pool's threads.
    pub fn new(sandbox: Arc<Sandbox>, catalog: Arc<Catalog>, settings: PoolSettings, recorder: Option<Recorder>) -> Pool {
        let workers = Workers::new(settings.threads, WORKER_STACK_BYTES);
        let inner = Inner {
            sandbox,
            catalog,
            settings,
            sessions: Mutex::new(HashMap::new()),
            live: Arc::new(AtomicUsize::new(0)),
            workers,
            recorder,
            started: Instant::now(),
        };
        Pool { inner: Arc::new(inner) }
    }

    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    pub fn settings(&self) -> &PoolSettings {
        &self.inner.settings
    }

    pub fn recorder(&self) -> Option<&Recorder> {
        self.inner.recorder.as_ref()
    }

    /// Open sessions and live interpreters.
    pub fn counts(&self) -> (usize, usize) {
        (self.inner.sessions.lock().unwrap().len(), self.inner.live.load(Ordering::Relaxed))
    }

    /// Opens a session, unless the pool is at capacity.
    pub fn open(&self, protocol: Protocol, access: Access) -> Result<Arc<Session>, CallError> {
        let mut sessions = self.inner.sessions.lock().unwrap();
        let max = self.inner.settings.max_sessions;
        if sessions.len() >= max {
            return Err(CallError::Capacity { active: sessions.len(), max });
        }
        let session = Arc::new(Session {
            id: secret_id(),
            protocol,
            access,
            work: Mutex::new(Work::default()),
            summary: Mutex::new(Summary::default()),
            last_used: AtomicU64::new(self.inner.now_ms()),
            lease_ms: AtomicU64::new(0),
            renewed: AtomicU64::new(0),
            has_interpreter: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            slow: AtomicBool::new(false),
            closing: tokio::sync::Notify::new(),
        });
        sessions.insert(session.id.clone(), session.clone());
        Ok(session)
    }

    /// The open session `id`, if its id reaches it over `protocol` (never a WebSocket's session:
    /// it answers as if there were none, so ids of others' sessions tell nothing).
    pub fn by_id(&self, id: &str, protocol: Protocol) -> Option<Arc<Session>> {
        let session = self.inner.sessions.lock().unwrap().get(id).cloned()?;
        (session.access == Access::Id && session.protocol == protocol).then_some(session)
    }

    /// Gives `session` a lease (see [`Session`]) of at least a second and at most the idle
    /// timeout; returns the lease granted.
    pub fn lease(&self, session: &Session, lease: Duration) -> Duration {
        let lease = lease.clamp(Duration::from_secs(1), self.inner.settings.idle_timeout.max(Duration::from_secs(1)));
        session.lease_ms.store(lease.as_millis() as u64, Ordering::Relaxed);
        self.renew(session);
        lease
    }

    /// Renews the session's lease.
    pub fn renew(&self, session: &Session) {
        session.renewed.store(self.inner.now_ms(), Ordering::Relaxed);
    }

    /// Closes a session: it leaves the pool at once; its interpreter is released by a pool
    /// thread (or, when a call is running, by that call as it ends).
    pub fn close(&self, session: &Arc<Session>) {
        self.inner.sessions.lock().unwrap().remove(&session.id);
        session.closed.store(true, Ordering::Relaxed);
        session.closing.notify_one();
        let session = session.clone();
        self.inner.spawn(Box::new(move || release_interpreter(&session)));
    }

    /// Starts an episode of the configuration `reference` names (or, without one, of the
    /// session's last configuration) in a new interpreter.
    pub async fn start(
        &self,
        session: &Arc<Session>,
        reference: Option<ConfigRef>,
        seed: Option<u64>,
        label: Option<String>,
    ) -> Result<Reply, CallError> {
        let config = match &reference {
            Some(reference) => Some(self.inner.catalog.resolve(reference)?),
            None => None,
        };
        let (inner, moved) = (self.inner.clone(), session.clone());
        self.inner.call(session, move || inner.start(&moved, config, seed, label)).await
    }

    /// Runs one action of the session's episode.
    pub async fn step(&self, session: &Arc<Session>, action: Action) -> Result<Reply, CallError> {
        let (inner, moved) = (self.inner.clone(), session.clone());
        self.inner.call(session, move || inner.step(&moved, action)).await
    }

    /// Ends the session's episode (it keeps its configuration for a later reset).
    pub async fn stop(&self, session: &Arc<Session>) -> Result<(), CallError> {
        let (inner, moved) = (self.inner.clone(), session.clone());
        self.inner
            .call(session, move || {
                let mut work = inner.lock(&moved)?;
                (work.episode, work.interpreter) = (None, None);
                inner.settle(&moved, &mut work);
                Ok(())
            })
            .await
    }

    /// Closes sessions unused for `idle_timeout` or past their lease, and releases the
    /// interpreters of sessions unused for `interpreter_idle` (a session whose call is running is
    /// in use). Returns how many sessions it closed.
    pub fn reap(&self) -> usize {
        let now = self.inner.now_ms();
        let (idle, interpreter_idle) =
            (self.inner.settings.idle_timeout.as_millis() as u64, self.inner.settings.interpreter_idle.as_millis() as u64);
        let sessions: Vec<Arc<Session>> = self.inner.sessions.lock().unwrap().values().cloned().collect();
        let mut closed = 0;
        for session in sessions {
            let unused = now.saturating_sub(session.last_used.load(Ordering::Relaxed));
            if matches!(session.work.try_lock(), Err(TryLockError::WouldBlock)) {
                continue;
            }
            if unused >= idle || session.lease_expired(now) {
                self.close(&session);
                closed += 1;
            } else if unused >= interpreter_idle && session.has_interpreter.load(Ordering::Relaxed) {
                self.inner.spawn(Box::new(move || release_interpreter(&session)));
            }
        }
        closed
    }

    /// Closes every session, lets the threads finish what they run and stops them.
    pub fn shutdown(&self) {
        let sessions: Vec<Arc<Session>> = self.inner.sessions.lock().unwrap().values().cloned().collect();
        for session in &sessions {
            self.close(session);
        }
        self.inner.workers.shutdown();
    }
}

/// Drops a session's interpreter if no call is running (a running call drops it as it ends).
fn release_interpreter(session: &Session) {
    if let Ok(mut work) = session.work.try_lock() {
        work.interpreter = None;
        session.has_interpreter.store(false, Ordering::Relaxed);
    }
}

impl Inner {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Runs a quick task (giving an interpreter back) on a pool thread.
    fn spawn(&self, task: Task) {
        self.workers.submit(Lane::Prompt, task);
    }

    /// Runs `f`, a call of `session`, on a pool thread in the session's lane and awaits its
    /// answer; how long it ran decides the lane of the session's next call.
    async fn call<T: Send + 'static>(
        &self,
        session: &Arc<Session>,
        f: impl FnOnce() -> Result<T, CallError> + Send + 'static,
    ) -> Result<T, CallError> {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let lane = if session.slow.load(Ordering::Relaxed) { Lane::Slow } else { Lane::Prompt };
        let timed = session.clone();
        let task: Task = Box::new(move || {
            let started = Instant::now();
            let answer = f();
            timed.slow.store(started.elapsed() > SLOW_CALL, Ordering::Relaxed);
            drop(sender.send(answer));
        });
        if !self.workers.submit(lane, task) {
            return Err(CallError::ShuttingDown);
        }
        receiver.await.map_err(|_| CallError::ShuttingDown)?
    }

    /// Locks the session for one call, refusing when another call holds it.
    fn lock<'a>(&self, session: &'a Session) -> Result<MutexGuard<'a, Work>, CallError> {
        if session.is_closed() {
            return Err(CallError::Closed);
        }
        session.last_used.store(self.now_ms(), Ordering::Relaxed);
        match session.work.try_lock() {
            Ok(work) => Ok(work),
            Err(TryLockError::WouldBlock) => Err(CallError::Busy),
            Err(TryLockError::Poisoned(poisoned)) => Ok(poisoned.into_inner()),
        }
    }

    /// Leaves the session as the call left it: the interpreter flag, the summary, the time of
    /// use; a session closed meanwhile gives its interpreter back.
    fn settle(&self, session: &Session, work: &mut Work) {
        if session.is_closed() {
            work.interpreter = None;
        }
        session.has_interpreter.store(work.interpreter.is_some(), Ordering::Relaxed);
        session.last_used.store(self.now_ms(), Ordering::Relaxed);
        *session.summary.lock().unwrap() = match &work.episode {
            None => Summary::default(),
            Some(episode) => Summary {
                episode_id: Some(episode.id.clone()),
                label: episode.label.clone(),
                config_id: Some(episode.config.config_id.clone()),
                env_name: Some(episode.config.env.env_name.clone()),
                step_count: episode.steps,
                done: episode.done,
                reward: episode.reward,
            },
        };
    }

    fn start(
        &self,
        session: &Session,
        config: Option<Arc<ServedConfig>>,
        seed: Option<u64>,
        label: Option<String>,
    ) -> Result<Reply, CallError> {
        let mut work = self.lock(session)?;
        let (config, last_seed) = match (config, &work.last) {
            (Some(config), _) => (config, None),
            (None, Some((config, seed))) => (config.clone(), Some(*seed)),
            (None, None) => return Err(CallError::NoConfig),
        };
        let seed = seed.or(last_seed).unwrap_or(config.seed);
        // A new episode never shares an interpreter with the one before it.
        work.episode = None;
        work.interpreter = None;
        let started = Instant::now();
        let outcome = self.start_in_new_interpreter(session, &config, seed).map(|(held, report)| {
            let (observation, truncated) = self.cut(&report);
            let episode = Episode {
                id: secret_id(),
                label,
                config: config.clone(),
                seed,
                steps: 0,
                done: report.done,
                reward: report.reward,
                state: report.state,
            };
            let reply = Reply { observation, reward: episode.reward, done: episode.done, error: None, truncated, step_count: 0 };
            self.record(session, &episode, None, &reply, None, started);
            (work.episode, work.interpreter) = (Some(episode), held);
            reply
        });
        work.last = Some((config, seed));
        self.settle(session, &mut work);
        outcome
    }

    fn start_in_new_interpreter(
        &self,
        session: &Session,
        config: &ServedConfig,
        seed: u64,
    ) -> Result<(Option<Held>, Report), CallError> {
        let mut held = self.interpreter(session)?;
        let args = json!({
            "code": self.bytecode(&config.env, &mut held).map_err(CallError::StartFailed)?,
            "env_name": config.env.env_name,
            "config": config.config,
            "max_observation": self.settings.max_observation_bytes,
        });
        let outcome = held.interpreter.run(&Job { seed, ..Job::call("session_start", args, self.settings.limits) });
        let report = report(&outcome).and_then(|r| self.state_kept(r)).map_err(|e| CallError::StartFailed(e.to_string()))?;
        Ok((held.interpreter.usable().then_some(held), report))
    }

    fn step(&self, session: &Session, action: Action) -> Result<Reply, CallError> {
        let mut work = self.lock(session)?;
        let result = self.step_locked(session, &mut work, &action);
        self.settle(session, &mut work);
        result
    }

    fn step_locked(&self, session: &Session, work: &mut Work, action: &Action) -> Result<Reply, CallError> {
        let Work { episode, interpreter, .. } = work;
        let episode = episode.as_mut().ok_or(CallError::NoEpisode)?;
        if episode.done {
            return Err(CallError::EpisodeDone(episode.steps));
        }
        let started = Instant::now();
        let env = &episode.config.env;
        let (mut reply, detail) = if !env.has_tool(&action.name) {
            let message = crate::harness::unknown_tool(&action.name, &env.tool_names());
            (self.failed(episode, message, StepError::UnknownTool), None)
        } else {
            if interpreter.is_none() {
                *interpreter = Some(self.restore(session, episode)?);
            }
            let held = interpreter.as_mut().expect("restored above");
            let args = json!({ "action": action.text, "max_observation": self.settings.max_observation_bytes });
            let seed = seed_for(&format!("{}:{}", episode.seed, episode.steps + 1));
            let outcome = held.interpreter.run(&Job { seed, ..Job::call("session_step", args, self.settings.limits) });
            match report(&outcome).and_then(|r| self.state_kept(r)) {
                Ok(report) => {
                    let (observation, truncated) = self.cut(&report);
                    (episode.done, episode.reward, episode.state) = (report.done, report.reward, report.state);
                    let reply =
                        Reply { observation, reward: episode.reward, done: episode.done, error: None, truncated, step_count: 0 };
                    (reply, None)
                }
                Err(detail) => {
                    // Only a step that ran to completion, with a state the host keeps, keeps its
                    // interpreter: the state it may have changed is gone with it, and the host's
                    // copy stands.
                    *interpreter = None;
                    let (why, error) = match detail {
                        Failure::StateTooLarge(ref why) => (why.clone(), StepError::StateTooLarge),
                        Failure::Job(_) => (failure(&outcome, &self.settings.limits), StepError::of(outcome.verdict)),
                    };
                    let message = format!("Error: {why}. The environment is as it was before this call.");
                    (self.failed(episode, message, error), Some(detail.to_string()))
                }
            }
        };
        episode.steps += 1;
        reply.step_count = episode.steps;
        let detail = detail.or_else(|| self.enforce_step_limit(episode, &mut reply));
        self.record(session, episode, Some(&action.text), &reply, detail, started);
        Ok(reply)
    }

    /// The reply of a step that did not run to completion: an error observation, the reward and
    /// done flag of the state it left alone.
    fn failed(&self, episode: &Episode, message: String, error: StepError) -> Reply {
        Reply { observation: message, reward: episode.reward, done: false, error: Some(error), truncated: false, step_count: 0 }
    }

    /// Past `max_steps` the episode is over with reward 0.
    fn enforce_step_limit(&self, episode: &mut Episode, reply: &mut Reply) -> Option<String> {
        if episode.done || episode.steps < self.settings.max_steps {
            return None;
        }
        let note = format!("the episode reached its limit of {} steps: it is over with reward 0", self.settings.max_steps);
        (episode.done, episode.reward) = (true, 0.0);
        (reply.done, reply.reward) = (true, 0.0);
        reply.observation.push_str(&format!("\n[codegym: {note}]"));
        Some(note)
    }

    /// `report`, if the host keeps a state of its size.
    fn state_kept(&self, report: Report) -> Result<Report, Failure> {
        let max = self.settings.max_state_bytes;
        if report.state.len() <= max {
            return Ok(report);
        }
        Err(Failure::StateTooLarge(format!(
            "the environment's state grew to {} KiB, past the {} KiB this server keeps for a session",
            report.state.len() >> 10,
            max >> 10
        )))
    }

    /// A new interpreter with the session's state restored in it.
    fn restore(&self, session: &Session, episode: &Episode) -> Result<Held, CallError> {
        let mut held = self.interpreter(session)?;
        let env = &episode.config.env;
        let code = self.bytecode(env, &mut held).map_err(CallError::RestoreFailed)?;
        let args = json!({ "code": code, "env_name": env.env_name, "state": episode.state });
        let outcome =
            held.interpreter.run(&Job { seed: episode.seed, ..Job::call("session_restore", args, self.settings.limits) });
        match (outcome.verdict, &outcome.result) {
            (Verdict::Ok, Some(_)) => Ok(held),
            _ => Err(CallError::RestoreFailed(failure(&outcome, &self.settings.limits))),
        }
    }

    /// The environment module's bytecode: cached, or compiled in `held`, a new interpreter no
    /// environment code has run in (so the bytecode is the source's, whatever the module does).
    fn bytecode(&self, env: &ServedEnv, held: &mut Held) -> Result<Arc<str>, String> {
        if let Some(code) = env.bytecode.get() {
            return Ok(code.clone());
        }
        let args = json!({ "source": env.source, "env_name": env.env_name });
        let outcome = held.interpreter.run(&Job::call("session_compile", args, self.settings.limits));
        match (outcome.verdict, &outcome.result) {
            (Verdict::Ok, Some(serde_json::Value::String(code))) => Ok(env.bytecode.get_or_init(|| code.as_str().into()).clone()),
            _ => Err(failure(&outcome, &self.settings.limits)),
        }
    }

    /// A new interpreter for `session`, evicting the least recently used idle session's when
    /// `max_live` are alive.
    fn interpreter(&self, session: &Session) -> Result<Held, CallError> {
        while self.live.load(Ordering::Relaxed) >= self.settings.max_live && self.evict_one(session) {}
        self.live.fetch_add(1, Ordering::Relaxed);
        let live = self.live.clone();
        match self.sandbox.interpreter(Variant::Primary) {
            Ok(interpreter) => Ok(Held { interpreter, live }),
            Err(error) => {
                live.fetch_sub(1, Ordering::Relaxed);
                Err(error.into())
            }
        }
    }

    /// Releases the interpreter of the least recently used session that holds one and runs no
    /// call; false when there is none.
    fn evict_one(&self, except: &Session) -> bool {
        let mut holders: Vec<(u64, Arc<Session>)> = self
            .sessions
            .lock()
            .unwrap()
            .values()
            .filter(|s| s.has_interpreter.load(Ordering::Relaxed) && s.id != except.id)
            .map(|s| (s.last_used.load(Ordering::Relaxed), s.clone()))
            .collect();
        holders.sort_by_key(|(used, _)| *used);
        holders.into_iter().any(|(_, victim)| match victim.work.try_lock() {
            Ok(mut work) if work.interpreter.is_some() => {
                work.interpreter = None;
                victim.has_interpreter.store(false, Ordering::Relaxed);
                true
            }
            _ => false,
        })
    }

    /// The observation of a report, cut at the byte cap (on a character boundary), saying so.
    fn cut(&self, report: &Report) -> (String, bool) {
        let cap = self.settings.max_observation_bytes;
        let text = &report.observation;
        if text.len() <= cap && report.observation_chars == text.chars().count() {
            return (text.clone(), false);
        }
        let end = (0..=cap.min(text.len())).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
        let note = format!("\n[codegym: observation cut to its first {end} bytes of {} characters]", report.observation_chars);
        (format!("{}{note}", &text[..end]), true)
    }

    fn record(
        &self,
        session: &Session,
        episode: &Episode,
        action: Option<&str>,
        reply: &Reply,
        detail: Option<String>,
        started: Instant,
    ) {
        let Some(recorder) = &self.recorder else { return };
        recorder.push(EpisodeRow {
            episode_id: episode.id.clone(),
            step: episode.steps as i32,
            label: episode.label.clone(),
            protocol: session.protocol.as_str().into(),
            config_id: episode.config.config_id.clone(),
            env_id: episode.config.env.env_id.clone(),
            env_name: episode.config.env.env_name.clone(),
            seed: episode.seed as i64,
            action: action.map(String::from),
            observation: reply.observation.clone(),
            verdict: reply.error.map_or(Verdict::Ok.as_str(), StepError::as_str).into(),
            detail,
            reward: reply.reward,
            done: reply.done,
            duration_ms: started.elapsed().as_millis() as i64,
            at_ms: SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64,
        });
    }
}

/// The report of a `session_start` or `session_step` job, or why there is none.
/// Why a session job's report cannot be used.
enum Failure {
    /// The job did not finish with a report.
    Job(String),
    /// It did, with a state past `max_state_bytes`.
    StateTooLarge(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Job(detail) | Failure::StateTooLarge(detail) => f.write_str(detail),
        }
    }
}

fn report(outcome: &JobOutcome) -> Result<Report, Failure> {
    match (outcome.verdict, &outcome.result) {
        (Verdict::Ok, Some(result)) => {
            Report::deserialize(result).map_err(|e| Failure::Job(format!("unexpected session result: {e}")))
        }
        _ => Err(Failure::Job(format!("{}: {}", outcome.verdict.as_str(), outcome.detail.as_deref().unwrap_or("no result")))),
    }
}

/// What ended a job that did not finish, in words for the agent.
fn failure(outcome: &JobOutcome, limits: &Limits) -> String {
    match outcome.verdict {
        Verdict::Timeout => format!("the call ran past its time limit of {} ms and was stopped", limits.timeout.as_millis()),
        Verdict::Memory => format!("the call went past its memory limit of {} MiB and was stopped", limits.memory_bytes >> 20),
        Verdict::OutputLimit => format!("the call printed more than {} bytes and was stopped", limits.output_bytes),
        Verdict::Ok | Verdict::Error => {
            format!("the call failed: {}", outcome.detail.as_deref().unwrap_or("it returned no result"))
        }
    }
}

/// A new id of 128 bits from the operating system's secure random source: unique across
/// processes, and not to be guessed from another (session ids are credentials).
fn secret_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_errors_have_one_name_each_and_an_ok_without_result_is_an_error() {
        let names: std::collections::HashSet<&str> = StepError::ALL.iter().map(|e| e.as_str()).collect();
        assert_eq!(names.len(), StepError::ALL.len());
        assert!(!names.contains(Verdict::Ok.as_str()), "`ok` is the verdict of a step that ran");
        assert_eq!(StepError::of(Verdict::Ok), StepError::Error);
        assert_eq!(StepError::of(Verdict::OutputLimit).as_str(), "output_limit");
    }

    #[test]
    fn a_lease_runs_from_the_last_call_or_renewal_and_no_lease_never_runs_out() {
        let session = Session {
            id: "s".into(),
            protocol: Protocol::CodeGym,
            access: Access::Id,
            work: Mutex::new(Work::default()),
            summary: Mutex::new(Summary::default()),
            last_used: AtomicU64::new(1_000),
            lease_ms: AtomicU64::new(0),
            renewed: AtomicU64::new(0),
            has_interpreter: AtomicBool::new(false),
            slow: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            closing: tokio::sync::Notify::new(),
        };
        assert!(!session.lease_expired(u64::MAX), "without a lease only the idle timeout applies");
        session.lease_ms.store(500, Ordering::Relaxed);
        assert!(!session.lease_expired(1_499));
        assert!(session.lease_expired(1_500), "a lease after the last call");
        session.renewed.store(2_000, Ordering::Relaxed);
        assert!(!session.lease_expired(2_499), "a renewal starts it again");
        assert!(session.lease_expired(2_500));
    }

    #[test]
    fn actions_are_checked_before_they_reach_an_environment() {
        let action = Action::from_text(r#"{"name": "Observe", "parameters": {}}"#.into(), 100).unwrap();
        assert_eq!(action.name, "Observe");
        let error = |text: &str| Action::from_text(text.into(), 100).unwrap_err().to_string();
        assert!(error("not json").contains("malformed action"));
        assert!(error(r#"{"parameters": {}}"#).contains("no string `name`"));
        assert!(error(r#"{"name": "A", "parameters": [1]}"#).contains("not an object"));
        assert!(error(&format!(r#"{{"name": "{}"}}"#, "x".repeat(200))).contains("over the limit of 100 bytes"));
        let big = RawValue::from_string(r#"{"answer": 37252902984619140625}"#.into()).unwrap();
        let action = Action::from_parts("Done", Some(&big), 100).unwrap();
        assert_eq!(action.text, r#"{"name": "Done", "parameters": {"answer": 37252902984619140625}}"#, "as the client wrote it");
        assert_eq!(Action::from_parts("Observe", None, 100).unwrap().text, r#"{"name": "Observe", "parameters": {}}"#);
        let list = RawValue::from_string("[1]".into()).unwrap();
        assert!(Action::from_parts("Done", Some(&list), 100).is_err());
    }
}
