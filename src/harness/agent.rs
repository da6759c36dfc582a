//! Oracles as agents: a solver's `solve` runs in an interpreter of its own, where no environment
//! was ever built, and each call it makes comes to the host (`host_call` in the sandbox driver).
//! The host counts it, refuses a name that is not a documented tool (it counts, and never reaches
//! the environment, as `codegym serve` refuses it), and relays the rest to the environment held
//! in a second interpreter. No frame, `gc` referent, module global, closure or class attribute
//! leads from the solver to the environment, and the call counts curation uses are the host's.

use super::{EnvSource, OracleRun, TRAJECTORY_LIMIT};
use crate::sandbox::{
    HostCalls, Interpreter, Job, JobOutcome, Limits, Sandbox, SandboxError, Variant, Verdict, WORKER_STACK_BYTES,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, mpsc};

/// One oracle cell played as an agent.
#[derive(Debug, Clone)]
pub struct AgentCell<'a> {
    pub env: EnvSource<'a>,
    pub config: &'a str,
    /// A candidate's `def solve(self)` source; `None` runs the environment's own `solve`.
    pub solver: Option<&'a str>,
    /// The documented tools; `None` takes the environment's `func_mapping` as it was built.
    pub tools: Option<&'a [String]>,
    pub seed: u64,
    pub variant: Variant,
}

/// How one agent cell ended.
#[derive(Debug, Clone)]
pub struct AgentResult {
    /// The run, or why there is none (the limit that ended it, the environment failing).
    pub run: Result<OracleRun, String>,
    pub verdict: Verdict,
    pub duration_ms: u64,
}

/// What the host saw of the calls an agent made.
#[derive(Default)]
struct Trace {
    calls: i64,
    tool_calls: BTreeMap<String, i64>,
    trajectory: Vec<(String, String)>,
    last: Option<(String, String)>,
    refused: Vec<String>,
    reward: f64,
    env_calls: Option<i64>,
    /// The environment's call that failed (its verdict and why): later calls get an error.
    failure: Option<(Verdict, String)>,
}

impl Trace {
    fn record(&mut self, action: &str, observation: &str) {
        let pair = (action.to_string(), observation.to_string());
        if self.trajectory.len() < TRAJECTORY_LIMIT {
            self.trajectory.push(pair.clone());
        }
        self.last = Some(pair);
    }

    fn into_run(mut self, message: String, error: Option<String>) -> OracleRun {
        if let Some(last) = self.last.take()
            && self.trajectory.last() != Some(&last)
        {
            self.trajectory.push(last);
        }
        OracleRun {
            passed: error.is_none() && message.contains("reward=1"),
            message,
            oracle_calls: self.calls,
            traced_calls: self.calls,
            env_calls: self.env_calls,
            reward: Some(self.reward),
            refused: self.refused,
            error,
            tool_calls: self.tool_calls,
            trajectory: self.trajectory,
        }
    }
}

fn failure(outcome: &JobOutcome) -> String {
    outcome.detail.clone().unwrap_or_else(|| format!("ended with the verdict {}", outcome.verdict.as_str()))
}

/// What the environment's thread tells the solver's side.
enum FromEnv {
    /// The environment is built: its tools (`func_mapping`).
    Ready(Vec<String>),
    /// The answer to one relayed call.
    Answer(Value),
    /// The environment's job ended (it failed to build, a call hit a limit, or it was told to stop).
    Ended(JobOutcome),
}

/// Runs the environment of one cell on a thread of its own (the solver's calls arrive inside one
/// of its WASI writes, where another interpreter cannot be entered on the same thread): one job,
/// `episode_serve`, that asks the host for each call. Returns where its messages arrive and where
/// the calls go; dropping the latter stops the job.
fn serve_environment<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    env: &'scope mut Interpreter,
    job: Job,
) -> (mpsc::Receiver<FromEnv>, mpsc::Sender<String>) {
    let (to_solver, from_env) = mpsc::channel::<FromEnv>();
    let (to_env, actions) = mpsc::channel::<String>();
    let answers = to_solver.clone();
    let calls: HostCalls = Box::new(move |call: Value| {
        let message = match call.get("tools") {
            Some(tools) => FromEnv::Ready(serde_json::from_value(tools.clone()).unwrap_or_default()),
            None => FromEnv::Answer(call),
        };
        if answers.send(message).is_err() {
            return json!({ "stop": true });
        }
        actions.recv().map_or_else(|_| json!({ "stop": true }), |action| json!({ "action": action }))
    });
    std::thread::Builder::new()
        .name("codegym-agent-env".into())
        .stack_size(WORKER_STACK_BYTES)
        .spawn_scoped(scope, move || {
            let outcome = env.serve_calls(&job, calls);
            let _ = to_solver.send(FromEnv::Ended(outcome));
        })
        .expect("spawn an agent's environment thread");
    (from_env, to_env)
}

/// The solver's side of one cell: counts each call, refuses what `codegym serve` refuses (a
/// malformed action, a name that is not a tool), and hands the rest to the environment's thread.
fn relay(
    tools: Vec<String>,
    trace: Arc<Mutex<Trace>>,
    from_env: mpsc::Receiver<FromEnv>,
    to_env: mpsc::Sender<String>,
) -> HostCalls {
    Box::new(move |call: Value| {
        let action = call.get("action").and_then(Value::as_str).unwrap_or("").to_string();
        let mut trace = trace.lock().unwrap();
        trace.calls += 1;
        let name = super::action_tool(&action);
        *trace.tool_calls.entry(name.clone().unwrap_or_else(|| "<malformed>".into())).or_default() += 1;
        if let Some((_, why)) = &trace.failure {
            return json!({ "error": why });
        }
        if let Some(observation) = super::refusal(&action, &tools) {
            trace.refused.push(name.unwrap_or_else(|| "<malformed>".into()));
            trace.record(&action, &observation);
            return json!({ "observation": observation, "flag": false });
        }
        let answer = match to_env.send(action.clone()) {
            Ok(()) => from_env.recv().ok(),
            Err(_) => None,
        };
        let failed = |verdict: Verdict, why: String, trace: &mut Trace| {
            trace.failure = Some((verdict, why.clone()));
            json!({ "error": why })
        };
        match answer {
            Some(FromEnv::Answer(reply)) if reply.get("raised").is_some() => {
                let why = reply["raised"].as_str().unwrap_or("the environment raised").to_string();
                failed(Verdict::Error, why, &mut trace)
            }
            Some(FromEnv::Answer(reply)) => {
                let observation = reply.get("observation").and_then(Value::as_str).unwrap_or("").to_string();
                trace.reward = reply.get("reward").and_then(Value::as_f64).unwrap_or(0.0);
                trace.env_calls = reply.get("env_calls").and_then(Value::as_i64);
                trace.record(&action, &observation);
                reply
            }
            Some(FromEnv::Ended(outcome)) => failed(outcome.verdict, failure(&outcome), &mut trace),
            Some(FromEnv::Ready(_)) | None => failed(Verdict::Error, "the environment's interpreter is gone".into(), &mut trace),
        }
    })
}

/// The two interpreters of a run of cells: one holds the environment, the other runs the solver.
/// The cells of one environment, solver and variant share them (each cell builds its environment
/// and executes its solver's module anew); a cell that costs one its interpreter gets a new one.
struct Pair {
    env: Option<Interpreter>,
    solver: Option<Interpreter>,
}

fn usable<'s>(
    slot: &'s mut Option<Interpreter>,
    sandbox: &Sandbox,
    variant: Variant,
) -> Result<&'s mut Interpreter, SandboxError> {
    if slot.as_ref().is_none_or(|i| !i.usable()) {
        *slot = Some(sandbox.interpreter(variant)?);
    }
    Ok(slot.as_mut().expect("set above"))
}

/// Plays one cell: the environment served from one interpreter, the solver run in another.
fn play(sandbox: &Sandbox, pair: &mut Pair, cell: &AgentCell, limits: Limits) -> Result<AgentResult, SandboxError> {
    let started = std::time::Instant::now();
    let elapsed = || started.elapsed().as_millis() as u64;
    let job = |function: &str, args: Value| Job { seed: cell.seed, variant: cell.variant, ..Job::call(function, args, limits) };
    let serve = job(
        "episode_serve",
        json!({ "source": cell.env.code, "env_name": cell.env.name, "config": cell.config, "pace": cell.variant.pace_secs() }),
    );
    let solve = job("agent_solve", json!({ "source": cell.env.code, "env_name": cell.env.name, "solver": cell.solver }));
    let trace = Arc::new(Mutex::new(Trace::default()));
    let env = usable(&mut pair.env, sandbox, cell.variant)?;
    let solver = usable(&mut pair.solver, sandbox, cell.variant)?;
    let solved = std::thread::scope(|scope| {
        let (from_env, to_env) = serve_environment(scope, env, serve);
        let tools = match from_env.recv() {
            Ok(FromEnv::Ready(built)) => cell.tools.map_or(built, <[String]>::to_vec),
            Ok(FromEnv::Ended(outcome)) => return Err(Box::new(outcome)),
            _ => return Err(Box::new(JobOutcome::not_run("the environment's interpreter is gone"))),
        };
        Ok(solver.run_with_calls(&solve, relay(tools, trace.clone(), from_env, to_env)))
    });
    let solved = match solved {
        Ok(solved) => solved,
        Err(built) => return Ok(AgentResult { run: Err(failure(&built)), verdict: built.verdict, duration_ms: elapsed() }),
    };
    let trace = std::mem::take(&mut *trace.lock().unwrap());
    let (run, verdict) = match (&trace.failure, solved.verdict) {
        (Some((verdict, why)), _) if *verdict != Verdict::Ok && *verdict != Verdict::Error => (Err(why.clone()), *verdict),
        (_, Verdict::Ok) => {
            let message = solved.result.as_ref().and_then(|r| r["message"].as_str()).unwrap_or("").to_string();
            (Ok(trace.into_run(message, None)), Verdict::Ok)
        }
        (_, Verdict::Error) => (Ok(trace.into_run(String::new(), Some(failure(&solved)))), Verdict::Ok),
        (_, verdict) => (Err(failure(&solved)), verdict),
    };
    Ok(AgentResult { run, verdict, duration_ms: elapsed() })
}

/// Whether two cells share interpreters: the same environment, solver and variant.
fn same_run(a: &AgentCell, b: &AgentCell) -> bool {
    std::ptr::eq(a.env.code, b.env.code) && a.solver == b.solver && a.variant == b.variant
}

/// Plays every cell, on `threads` worker threads; results in cell order. Consecutive cells of
/// one environment, solver and variant run on one pair of interpreters.
pub fn run_agent_oracles(
    sandbox: &Sandbox,
    cells: &[AgentCell],
    limits: Limits,
    threads: usize,
) -> Result<Vec<AgentResult>, SandboxError> {
    let mut runs: Vec<std::ops::Range<usize>> = Vec::new();
    for (i, cell) in cells.iter().enumerate() {
        match runs.last_mut() {
            Some(run) if same_run(&cells[run.start], cell) => run.end = i + 1,
            _ => runs.push(i..i + 1),
        }
    }
    // The cells of a run in a row on one pair of interpreters; runs in cell order, so the
    // results are too.
    let played = super::on_workers(runs, threads, "codegym-agent", |run: std::ops::Range<usize>| {
        let mut pair = Pair { env: None, solver: None };
        run.map(|index| play(sandbox, &mut pair, &cells[index], limits)).collect::<Result<Vec<_>, _>>()
    })?;
    Ok(played.into_iter().flatten().collect())
}
