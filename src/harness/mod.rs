//! The environment harness: typed jobs over the Python harness that runs inside the sandbox
//! (`harness.py`, a private module of the sandbox driver, with the `gymnasium` stand-in beside it).
//! Builds many-step jobs on one environment (the module-wide checks, reference answers, oracles and
//! candidate solvers, the probes' evidence), runs them to completion across limits
//! ([`run_steps`]), and parses their JSON results, checking what it can of them against each other
//! (a pass must show in the trajectory it came with). Oracles play as agents ([`agent`]) and
//! served episodes are played from the host as `codegym serve` plays a session ([`served`]).
//! Knows the CodeGym environment contract; knows nothing of tables or the LLM.

mod agent;
mod served;

pub use agent::{AgentCell, AgentResult, run_agent_oracles};
use served::{Restore, ServedEpisode, ServedWork};

use crate::reasons::Reason;
use crate::sandbox::{ExecMode, Job, JobOutcome, JobReporter, Limits, Sandbox, SandboxError, Variant, Verdict};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

/// Trajectories keep this many (action, observation) pairs, plus always the last one (as
/// `harness.py`'s `TRAJECTORY_LIMIT`).
pub const TRAJECTORY_LIMIT: usize = 4096;

/// The battery's evidence cuts observations at this many characters (as `harness.py`'s
/// `OBSERVATION_LIMIT`).
pub const OBSERVATION_LIMIT: usize = 2000;

/// The tool an action (the JSON text of `{"name", "parameters"}`) calls, when it names one.
pub fn action_tool(action: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(action).ok()?.get("name")?.as_str().map(String::from)
}

/// What a call to a name that is not one of `tools` shows: the call counts and never reaches the
/// environment (the same text as `episode.py`'s `unknown_tool`, which the guest side shows).
pub fn unknown_tool<S: AsRef<str>>(name: &str, tools: &[S]) -> String {
    let tools: Vec<&str> = tools.iter().map(AsRef::as_ref).collect();
    format!("Error: unknown tool `{name}`. The tools are: {}.", tools.join(", "))
}

/// What a malformed action shows (the same text as `episode.py`'s `MALFORMED`).
pub const MALFORMED: &str = r#"Error: malformed action; expected {"name": TOOL, "parameters": {...}}."#;

/// What `codegym serve` answers in the environment's place, or `None` when the action reaches it:
/// JSON that is not an object with a string `name` (and object `parameters`, when it has any) is
/// malformed; a name that is not one of `tools` is unknown (as `episode.py`'s `refusal`). A text
/// that is not strict JSON (`Infinity` in an argument, which Python's `json` reads) is left to the
/// environment's own parser.
pub fn refusal<S: AsRef<str>>(action: &str, tools: &[S]) -> Option<String> {
    let call = serde_json::from_str::<serde_json::Value>(action).ok()?;
    if !call.is_object() {
        return Some(MALFORMED.to_string());
    }
    let name = call.get("name").and_then(serde_json::Value::as_str);
    let parameters_ok = call.get("parameters").is_none_or(serde_json::Value::is_object);
    match name {
        Some(name) if parameters_ok => (!tools.iter().any(|t| t.as_ref() == name)).then(|| unknown_tool(name, tools)),
        _ => Some(MALFORMED.to_string()),
    }
}

/// An environment's source and class name.
#[derive(Debug, Clone, Copy)]
pub struct EnvSource<'a> {
    pub code: &'a str,
    pub name: &'a str,
}

/// The reference answer of one configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct RefAnswer {
    /// `str(answer)`: what the method's length rule (<= 100 characters) applies to.
    pub answer: String,
    pub answer_repr: String,
    /// The answer as JSON, when it is representable (an agent can only send JSON).
    pub answer_json: Option<String>,
}

/// One oracle run on one configuration.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct OracleRun {
    /// Whether the message `solve()` returned contains `reward=1`.
    pub passed: bool,
    pub message: String,
    /// The `step()` calls the harness counted (malformed and refused ones too): the count curation
    /// uses, never the environment's own.
    pub oracle_calls: i64,
    /// The `step()` calls the harness saw.
    #[serde(default)]
    pub traced_calls: i64,
    /// The environment's own `step_count` afterwards, when it keeps one (recorded when it disagrees).
    #[serde(default)]
    pub env_calls: Option<i64>,
    /// The reward after the last call, read as `codegym serve` reads it.
    #[serde(default)]
    pub reward: Option<f64>,
    /// Names the oracle called that are not tools: refused, as `codegym serve` refuses them.
    #[serde(default)]
    pub refused: Vec<String>,
    /// The exception the solver raised, when it did (the calls before it still count).
    #[serde(default)]
    pub error: Option<String>,
    /// Calls per tool name (`<malformed>` for actions that are not JSON with a string `name`).
    pub tool_calls: BTreeMap<String, i64>,
    /// The (action, observation) pairs, in order (the first 4096, and always the last).
    pub trajectory: Vec<(String, String)>,
}

impl OracleRun {
    /// Why this run's verdict cannot be believed, if it cannot: a pass whose trajectory does not end
    /// in a rewarded `Done`, or a verdict that disagrees with the message it came with.
    pub fn contradiction(&self) -> Option<String> {
        if self.passed != self.message.contains("reward=1") {
            return Some(format!("the harness reported passed={} for the message {:?}", self.passed, cut(&self.message)));
        }
        if !self.passed {
            return None;
        }
        match self.trajectory.last() {
            None => Some("a pass with no step in its trajectory".into()),
            Some((_, observation)) if !observation.contains("reward=1") => {
                Some(format!("a pass whose last observation does not show the reward: {:?}", cut(observation)))
            }
            Some(_) if self.traced_calls > 0 && self.tool_calls.values().sum::<i64>() != self.traced_calls => {
                Some("the per-tool counts do not add up to the calls made".into())
            }
            _ => None,
        }
    }
}

fn cut(text: &str) -> &str {
    &text[..text.char_indices().nth(200).map_or(text.len(), |(i, _)| i)]
}

/// The agent-facing description of an environment's tools.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ToolDescription {
    /// Tool names in `func_mapping` order.
    pub tools: Vec<String>,
    /// `def Name(params):` plus docstring per tool, `self` removed, Example Output cut.
    pub tool_docs: String,
}

/// What the module's own `__main__` block did.
///
/// As a smoke test of an oracle candidate it passes when the block exits 0, prints `reward=1`
/// at least twice and `reward=0` never ([`SelfTest::smoke_passed`]).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct SelfTest {
    /// 0 when the block ran to its end (or exited 0).
    pub exit_code: i32,
    /// The exception that ended it, if any.
    pub error: Option<String>,
    /// How often it printed `reward=1` and `reward=0`.
    pub reward_1: usize,
    pub reward_0: usize,
    pub stdout: String,
    /// Modules the module imports that the sandbox's WASI build lacks (asyncio, threading, ...),
    /// when the block failed.
    #[serde(default)]
    pub unsupported: Vec<String>,
}

impl SelfTest {
    /// The method's smoke test: exit 0, `reward=1` at least twice, `reward=0` never.
    pub fn smoke_passed(&self) -> bool {
        self.exit_code == 0 && self.reward_1 >= 2 && self.reward_0 == 0
    }
}

/// What [`Step::Module`] returns: the three module-wide checks from one execution of the module.
#[derive(Debug, Clone, Deserialize)]
struct ModuleFacts {
    self_test: SelfTest,
    contract: Option<ContractCheck>,
    description: Option<ToolDescription>,
    contract_error: Option<String>,
    description_error: Option<String>,
}

/// What the module-wide checks found about one environment: stage 2 of the method.
#[derive(Debug, Clone)]
pub struct ModuleChecks {
    pub contract: Result<ContractCheck, String>,
    pub self_test: Result<SelfTest, String>,
    pub description: Result<ToolDescription, String>,
}

impl ModuleChecks {
    /// The checks from the result of a [`Step::Module`].
    pub fn from_result(result: &StepResult) -> ModuleChecks {
        match result.parse::<ModuleFacts>() {
            Err(detail) => {
                ModuleChecks { contract: Err(detail.clone()), self_test: Err(detail.clone()), description: Err(detail) }
            }
            Ok(facts) => {
                let missing = || "the module did not get that far".to_string();
                ModuleChecks {
                    contract: facts.contract.ok_or_else(|| facts.contract_error.clone().unwrap_or_else(missing)),
                    self_test: Ok(facts.self_test),
                    description: facts.description.ok_or_else(|| facts.description_error.unwrap_or_else(missing)),
                }
            }
        }
    }

    /// Why the module breaks the contract, if it does: code the sandbox cannot run, the contract
    /// check, then its own self-tests (exit 0 within the module budget, at least two of them run).
    pub fn failure(&self) -> Option<(Reason, String)> {
        if let Ok(run) = &self.self_test
            && run.exit_code != 0
            && !run.unsupported.is_empty()
        {
            let detail = format!(
                "the module needs {}, which the sandbox's WASI build lacks (no threads, processes, sockets or event loop): {}",
                run.unsupported.join(", "),
                run.error.as_deref().unwrap_or("its self-tests failed")
            );
            return Some((Reason::UnsupportedInSandbox, detail));
        }
        match (&self.contract, &self.self_test) {
            (Err(detail), _) => Some((Reason::ContractFailed, detail.clone())),
            (Ok(check), _) if !check.problems.is_empty() => Some((Reason::ContractFailed, check.problems.join("; "))),
            (_, Err(detail)) => Some((Reason::SelfTestFailed, detail.clone())),
            (_, Ok(run)) if run.exit_code != 0 => Some((
                Reason::SelfTestFailed,
                format!("the __main__ block exited with status {}: {}", run.exit_code, run.error.as_deref().unwrap_or("")),
            )),
            (_, Ok(run)) if run.reward_1 + run.reward_0 < 2 => Some((
                Reason::SelfTestFailed,
                format!("the __main__ block ran {} self-tests, at least 2 are required", run.reward_1 + run.reward_0),
            )),
            _ => None,
        }
    }
}

/// A deterministic per-job seed from the job's identity.
pub fn seed_for(key: &str) -> u64 {
    let hash = blake3::hash(key.as_bytes());
    u64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("8 bytes"))
}

/// One step of a many-step job on one environment. Configurations and solvers are named by their
/// index in the job's [`EnvWork::configs`] and [`EnvWork::solvers`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Step {
    /// The module-wide checks from one execution of the module ([`ModuleChecks`]): its own
    /// self-tests as `__main__`, the contract, the tools and their agent-facing documentation.
    Module,
    /// The classes, found by parsing the module, that define `from_env_str` (a list of names).
    Classes,
    /// The reference answer of a configuration ([`RefAnswer`]).
    RefAnswer { config: usize },
    /// The module's self-tests with a candidate `solve` spliced in ([`SelfTest`]): the smoke test
    /// of an oracle candidate.
    SmokeTest { solver: usize },
    /// The evidence of the anti-gaming probes on a configuration ([`ProbeEvidence`]).
    Probe { config: usize },
    /// One episode of the exploit battery ([`Played`]): the state after the first `prefix.1`
    /// actions of trajectory `prefix.0`, then `actions`, played as `codegym serve` plays them;
    /// or, as `serve` says, from reset as `codegym serve` plays a session, from the host
    /// ([`run_steps_and_sessions`]).
    Episode { config: usize, prefix: (usize, usize), actions: Vec<String>, serve: Serving },
    /// An agent's calls played again from reset, after its answer too ([`Played`]): the rerun of
    /// the determinism check.
    Replay { config: usize, trajectory: usize },
    /// Calls played in a row from reset (one call many times, or a tool swept over its
    /// arguments), with `answer` submitted on a copy of the state after each number of calls in
    /// `at` ([`Repeated`]): one episode for many "so many calls, then a wrong answer" policies.
    Repeated { config: usize, calls: Vec<String>, answer: String, at: Vec<usize> },
    /// What Observe shows after every prefix of a trajectory ([`Observed`]).
    ObservePrefixes { config: usize, trajectory: usize },
    /// A trajectory replayed with a pickle round trip (and the module executed again) before every
    /// call, as a served session held idle between calls ([`Replayed`]); with `spaced`, only
    /// after 1, 3, 6, 10, ... calls (ever longer runs between restores, as sessions are evicted).
    /// Played from the host, as `codegym serve` plays a session ([`run_steps_and_sessions`]).
    ServeReplay { config: usize, trajectory: usize, spaced: bool },
    /// A trajectory played fresh, and again after another episode (`first`: its configuration and
    /// trajectory) in the same loaded module ([`TwoPlayed`]).
    TwoEpisodes { first: (usize, usize), config: usize, trajectory: usize },
    /// Builds the environment the timed calls after it go to.
    TimingBuild { config: usize },
    /// One call, alone in its step so that the host times it ([`Played`]).
    TimingCall { action: String },
}

impl Step {
    /// The step's name, as in `harness.py` (`module`, `oracle`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Module => "module",
            Step::Classes => "classes",
            Step::RefAnswer { .. } => "ref_answer",
            Step::SmokeTest { .. } => "smoke_test",
            Step::Probe { .. } => "probe",
            Step::Episode { .. } => "episode",
            Step::Replay { .. } => "replay",
            Step::Repeated { .. } => "repeated",
            Step::ObservePrefixes { .. } => "observe_prefixes",
            Step::ServeReplay { .. } => "serve_replay",
            Step::TwoEpisodes { .. } => "two_episodes",
            Step::TimingBuild { .. } => "timing_build",
            Step::TimingCall { .. } => "timing_call",
        }
    }

    /// The episode this step plays as `codegym serve` plays a session, from the host ([`served`]),
    /// when it is one: a served episode, a serving replay.
    fn as_served<'a>(&'a self, work: &'a EnvWork<'a>) -> Option<ServedEpisode<'a>> {
        let (config, actions, restore) = match self {
            Step::Episode { serve: Serving::Forked, .. } => return None,
            Step::Episode { config, actions, serve, .. } => {
                (*config, actions.as_slice(), if *serve == Serving::Live { Restore::Never } else { Restore::Every })
            }
            Step::ServeReplay { config, trajectory, spaced } => {
                let actions = work.trajectories[*trajectory].as_slice();
                (*config, actions, if *spaced { Restore::At(spaced_restores(actions.len())) } else { Restore::Every })
            }
            _ => return None,
        };
        Some(ServedEpisode { config: work.configs[config], actions, restore })
    }

    fn budget(&self, budgets: &Budgets) -> Duration {
        match self {
            Step::Module | Step::Classes | Step::SmokeTest { .. } => budgets.module,
            // A serving replay is played from the host, each call within the cell limits.
            Step::Probe { .. }
            | Step::Replay { .. }
            | Step::ObservePrefixes { .. }
            | Step::ServeReplay { .. }
            | Step::TwoEpisodes { .. } => budgets.probe,
            // An episode of the battery has an oracle cell's budget: it plays one episode too (its
            // calls are judged, not the time they take, so one that runs out gives no evidence).
            Step::RefAnswer { .. }
            | Step::Episode { .. }
            | Step::Repeated { .. }
            | Step::TimingBuild { .. }
            | Step::TimingCall { .. } => budgets.cell.timeout,
        }
    }
}

/// How a battery episode reaches the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Serving {
    /// Forked from a pickled state in the job's interpreter, by the harness's own episode path.
    Forked,
    /// Through `codegym serve`'s session functions, every call a job of its own: the state
    /// restored before it (the module executed again, as after an eviction) and pickled after.
    Restored,
    /// Through `codegym serve`'s session functions in a session held live: no restore between
    /// calls, as most of a trainer's served calls run.
    Live,
}

/// Where a spaced serving replay restores its session: before calls 1, 3, 6, 10, ... (ever longer
/// runs between restores, as sessions are evicted).
fn spaced_restores(calls: usize) -> Vec<usize> {
    let (mut at, mut gap, mut restores) = (1, 2, Vec::new());
    while at < calls {
        restores.push(at);
        (at, gap) = (at + gap, gap + 1);
    }
    restores
}

/// The limits of the steps of a job: each step kind has its own time budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budgets {
    /// A reference answer or an oracle cell (the method's 3 s and 100 MiB); the memory and output
    /// caps apply to every step.
    pub cell: Limits,
    /// A step that runs the whole module: the module checks, a smoke test (the method's 5 s).
    pub module: Duration,
    /// A probe: an oracle run and a few submissions besides, so a sound environment within the
    /// cell limit is always probed to the end.
    pub probe: Duration,
}

impl Budgets {
    /// The method's budgets for `cell`: 5 s per module step; a probe gets two cells.
    pub fn method(cell: Limits) -> Budgets {
        Budgets { cell, module: Duration::from_secs(5), probe: cell.timeout * 2 + Duration::from_secs(1) }
    }
}

/// The evidence of the anti-gaming probes on one configuration (the host draws the findings).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct ProbeEvidence {
    /// The reference answer as JSON.
    #[serde(default)]
    pub right: Option<String>,
    /// `Done(wrong)` right after reset, per wrong answer.
    pub reset: Vec<Submission>,
    /// `Done(wrong)` in the state where the oracle submitted its answer, per wrong answer.
    #[serde(rename = "final")]
    pub final_: Vec<Submission>,
    /// `Done(right)` in that state: it must earn 1, or that state was not reached.
    pub final_right: Option<Submission>,
    /// What Observe shows right after reset.
    pub observe: Option<String>,
    /// Attributes of `self` other than `step` that the environment's own solve read.
    pub reads: Vec<String>,
    /// How the environment's own solve ended, when it raised.
    pub solve_error: Option<String>,
    /// How the state before `Done` was reached for the final submissions: `deepcopy`, `replay`
    /// or `none` (the oracle never called Done).
    pub copy: String,
    /// Why the environment's state does not survive a pickle round trip (after reset, or where the
    /// oracle answered); `None` when it does.
    #[serde(default)]
    pub pickle: Option<String>,
}

/// One `Done(answer)` and what it got.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Submission {
    /// The answer as JSON.
    pub answer: Option<String>,
    pub message: String,
    /// The environment's `_reward` afterwards, when it has one.
    pub reward: Option<f64>,
}

impl Submission {
    /// Whether the environment rewarded it: the message says `reward=1`, or its reward is 1.
    pub fn rewarded(&self) -> bool {
        self.message.contains("reward=1") || self.reward == Some(1.0)
    }
}

/// One call of an episode played as `codegym serve` plays it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct PlayedStep {
    /// The action as sent (the host checks it is the one it planned).
    pub action: String,
    /// What the call showed, cut at 2000 characters.
    pub observation: String,
    /// The reward and done flag after the call, as `codegym serve` reads them.
    pub reward: f64,
    pub done: bool,
    /// The name is not a tool: the call never reached the environment.
    pub refused: bool,
}

/// The calls of one episode ([`Step::Episode`], [`Step::TimingCall`]); an episode stops once done.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Played {
    pub steps: Vec<PlayedStep>,
}

/// What Observe showed after every prefix of a trajectory, the empty one first.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Observed {
    pub observations: Vec<String>,
}

/// A call repeated from reset, with an answer at checkpoints ([`Step::Repeated`]).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Repeated {
    /// The repeated calls (observations cut at 200 characters); fewer when the episode ended.
    pub steps: Vec<PlayedStep>,
    pub answers: Vec<Checkpoint>,
    /// The pickled state after the last call.
    pub state_bytes: u64,
}

/// The answer submitted on a copy of the state after `at` repeated calls.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Checkpoint {
    pub at: usize,
    pub steps: Vec<PlayedStep>,
}

/// A trajectory replayed through pickle round trips ([`Step::ServeReplay`]).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Replayed {
    pub steps: Vec<PlayedStep>,
    /// The largest pickled state along the way.
    pub state_bytes: u64,
}

/// An episode played fresh and again after another one in the same module ([`Step::TwoEpisodes`]).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct TwoPlayed {
    pub fresh: Vec<PlayedStep>,
    pub second: Vec<PlayedStep>,
}

/// The static half of the environment contract.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ContractCheck {
    /// Classes defining `from_env_str`, found by parsing the module.
    pub classes: Vec<String>,
    /// What breaks the contract; empty when it holds.
    pub problems: Vec<String>,
}

/// How one step ended.
#[derive(Debug, Clone, PartialEq)]
pub struct StepResult {
    /// The step's JSON result, or why there is none (its exception, or the limit that ended it).
    pub value: Result<serde_json::Value, String>,
    /// `Ok` when the step ran to completion (even if it raised); otherwise the limit hit.
    pub verdict: Verdict,
    pub duration_ms: u64,
}

impl StepResult {
    /// The typed result, or why there is none.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        let value = self.value.as_ref().map_err(Clone::clone)?;
        T::deserialize(value).map_err(|e| format!("unexpected harness result: {e}"))
    }

    /// Why the step has no result, with the verdict that ended it (`timeout: exceeded ...`).
    pub fn failure(&self) -> Option<String> {
        let error = self.value.as_ref().err()?;
        Some(match self.verdict {
            Verdict::Ok => error.clone(),
            verdict => format!("{}: {error}", verdict.as_str()),
        })
    }
}

/// Steps to run on one environment, and the configurations and solvers they name.
#[derive(Debug, Clone)]
pub struct EnvWork<'a> {
    pub env: EnvSource<'a>,
    pub steps: Vec<Step>,
    pub configs: Vec<&'a str>,
    pub solvers: Vec<&'a str>,
    /// Action lists the battery's steps name by index.
    pub trajectories: Vec<Vec<String>>,
    /// The documented tools: a call to any other name is refused, as `codegym serve` refuses it.
    pub tools: Vec<String>,
    pub seed: u64,
    pub variant: Variant,
}

impl<'a> EnvWork<'a> {
    /// Work on `env` with nothing to do yet, in the primary variant.
    pub fn new(env: EnvSource<'a>, seed: u64) -> EnvWork<'a> {
        EnvWork {
            env,
            steps: Vec::new(),
            configs: Vec::new(),
            solvers: Vec::new(),
            trajectories: Vec::new(),
            tools: Vec::new(),
            seed,
            variant: Variant::Primary,
        }
    }
}

/// Job: run `steps` of `work` in one interpreter. Each step's result comes back as a partial
/// result; each step kind has its budget; a failing step does not stop the others.
fn steps_job(work: &EnvWork, steps: &[Step], budgets: &Budgets) -> Job {
    let args = json!({
        "source": work.env.code,
        "env_name": work.env.name,
        "steps": steps,
        "configs": work.configs,
        "solvers": work.solvers,
        "trajectories": work.trajectories,
        "tools": work.tools,
        "pace": work.variant.pace_secs(),
    });
    let step_timeouts = steps.iter().map(|s| s.budget(budgets)).collect();
    Job { seed: work.seed, step_timeouts, variant: work.variant, ..Job::call("run_steps", args, budgets.cell) }
}

/// The results of the steps a job finished, and, when it ended early, the result of the step it
/// was running (its limit verdict). Steps after that one did not run. A job that handed over more
/// results than it had steps is not believed at all: every step gets an error.
pub fn step_results(outcome: &JobOutcome, steps: usize) -> Vec<StepResult> {
    if outcome.partials.len() > steps {
        let detail = format!("the job handed over {} results for {steps} steps", outcome.partials.len());
        return (0..steps).map(|_| StepResult { value: Err(detail.clone()), verdict: Verdict::Error, duration_ms: 0 }).collect();
    }
    let mut results: Vec<StepResult> = outcome
        .partials
        .iter()
        .map(|partial| {
            let value = match (partial.value.get("ok"), partial.value.get("error")) {
                (Some(ok), _) => Ok(ok.clone()),
                (None, Some(error)) => Err(error.as_str().unwrap_or("step failed").to_string()),
                _ => Err("unreadable step result".to_string()),
            };
            StepResult { value, verdict: Verdict::Ok, duration_ms: partial.duration_ms }
        })
        .collect();
    if results.len() < steps {
        let spent: u64 = outcome.partials.iter().map(|p| p.duration_ms).sum();
        let detail = outcome.detail.clone().unwrap_or_else(|| "the job ended before this step finished".to_string());
        let verdict = if outcome.verdict == Verdict::Ok { Verdict::Error } else { outcome.verdict };
        results.push(StepResult { value: Err(detail), verdict, duration_ms: outcome.duration_ms.saturating_sub(spent) });
    }
    results
}

/// Passes a job's completion on, as that of its work item (`index` into `work`), only when the job
/// gave the item the result of its last step: a job that a limit ended part way is followed by
/// another, so reporting every job would count one item several times and run a bar past its
/// total.
struct WorkDone<'a> {
    reporter: &'a dyn JobReporter,
    /// Per job: its work item, and how many steps the job was given.
    given: Vec<(usize, usize)>,
}

impl JobReporter for WorkDone<'_> {
    fn on_job_done(&self, index: usize, outcome: &JobOutcome) {
        let (item, steps) = self.given[index];
        // As `step_results` counts: every handed-over result, plus one for the step a limit ended.
        if outcome.partials.len() + 1 >= steps {
            self.reporter.on_job_done(item, outcome);
        }
    }
}

/// Runs every environment's steps (one job per environment), resuming after a step that a limit
/// ended with a new job for the steps after it, until every step has a result. Returns the results
/// per environment, one per step, in step order. `reporter` hears of each work item once (with
/// its index into `work`), when its last step has a result.
pub fn run_steps(
    sandbox: &Sandbox,
    work: &[EnvWork],
    budgets: &Budgets,
    mode: ExecMode,
    threads: usize,
    reporter: Option<&dyn JobReporter>,
) -> Result<Vec<Vec<StepResult>>, SandboxError> {
    let mut results: Vec<Vec<StepResult>> = work.iter().map(|w| Vec::with_capacity(w.steps.len())).collect();
    let mut pending: Vec<usize> = (0..work.len()).filter(|&i| !work[i].steps.is_empty()).collect();
    if let Some(reporter) = reporter {
        reporter.on_skipped(work.len() - pending.len());
    }
    while !pending.is_empty() {
        let jobs = pending.iter().map(|&i| steps_job(&work[i], &work[i].steps[results[i].len()..], budgets)).collect();
        let given = pending.iter().map(|&i| (i, work[i].steps.len() - results[i].len())).collect();
        let finished = reporter.map(|reporter| WorkDone { reporter, given });
        let outcomes = sandbox.run_jobs(jobs, mode, threads, finished.as_ref().map(|f| f as &dyn JobReporter))?;
        let mut next = Vec::new();
        for (&i, outcome) in pending.iter().zip(&outcomes) {
            let remaining = work[i].steps.len() - results[i].len();
            results[i].extend(step_results(outcome, remaining));
            if results[i].len() < work[i].steps.len() {
                next.push(i);
            }
        }
        pending = next;
    }
    Ok(results)
}

/// Runs `task` on every item on `threads` worker threads (named `name-N`, with the stack guest
/// frames need), taking items in order; returns the results in item order, or the first
/// sandbox failure.
fn on_workers<I: Send, T: Send>(
    items: Vec<I>,
    threads: usize,
    name: &str,
    task: impl Fn(I) -> Result<T, SandboxError> + Sync,
) -> Result<Vec<T>, SandboxError> {
    let count = items.len();
    let queue = std::sync::Mutex::new(items.into_iter().enumerate().collect::<std::collections::VecDeque<_>>());
    let results = std::sync::Mutex::new((0..count).map(|_| None).collect::<Vec<Option<T>>>());
    let failures = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.clamp(1, count.max(1)))
            .map(|i| {
                let (queue, results, task) = (&queue, &results, &task);
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .stack_size(crate::sandbox::WORKER_STACK_BYTES)
                    .spawn_scoped(scope, move || -> Result<(), SandboxError> {
                        loop {
                            let Some((index, item)) = queue.lock().unwrap().pop_front() else { return Ok(()) };
                            let result = task(item)?;
                            results.lock().unwrap()[index] = Some(result);
                        }
                    })
                    .expect("spawn a worker thread")
            })
            .collect();
        workers.into_iter().filter_map(|w| w.join().expect("a worker thread panicked").err()).collect::<Vec<_>>()
    });
    if let Some(failure) = failures.into_iter().next() {
        return Err(failure);
    }
    Ok(results.into_inner().unwrap().into_iter().map(|r| r.expect("every item was done")).collect())
}

/// Runs `work` as [`run_steps`] does, except the steps that play an episode as `codegym serve`
/// plays a session (served episodes, serving replays): those are played from the host, a job per
/// call, as serve plays them ([`served`]), each environment's on interpreters of their own.
pub fn run_steps_and_sessions(
    sandbox: &Sandbox,
    work: &[EnvWork],
    budgets: &Budgets,
    mode: ExecMode,
    threads: usize,
) -> Result<Vec<Vec<StepResult>>, SandboxError> {
    let (mut inside, mut sessions, mut from_host) = (Vec::new(), Vec::new(), Vec::new());
    for item in work {
        let episodes: Vec<Option<ServedEpisode>> = item.steps.iter().map(|step| step.as_served(item)).collect();
        let steps = item.steps.iter().zip(&episodes).filter(|(_, e)| e.is_none()).map(|(step, _)| step.clone());
        inside.push(EnvWork { steps: steps.collect(), ..item.clone() });
        from_host.push(episodes.iter().map(Option::is_some).collect::<Vec<bool>>());
        let episodes = episodes.into_iter().flatten().collect();
        sessions.push(ServedWork { env: item.env, tools: &item.tools, seed: item.seed, variant: item.variant, episodes });
    }
    let in_jobs = run_steps(sandbox, &inside, budgets, mode, threads, None)?;
    let played = served::run_served(sandbox, &sessions, budgets.cell, threads)?;
    let merge = |((from_host, in_job), played): ((Vec<bool>, Vec<StepResult>), Vec<StepResult>)| {
        let (mut in_job, mut played) = (in_job.into_iter(), played.into_iter());
        let missing = || StepResult { value: Err("the step did not run".into()), verdict: Verdict::Error, duration_ms: 0 };
        from_host.into_iter().map(|host| if host { played.next() } else { in_job.next() }.unwrap_or_else(missing)).collect()
    };
    Ok(from_host.into_iter().zip(in_jobs).zip(played).map(merge).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(passed: bool, message: &str, last: &str) -> OracleRun {
        OracleRun {
            passed,
            message: message.into(),
            oracle_calls: 2,
            traced_calls: 2,
            tool_calls: BTreeMap::from([("Observe".into(), 1), ("Done".into(), 1)]),
            trajectory: vec![("o".into(), "x".into()), ("d".into(), last.into())],
            ..Default::default()
        }
    }

    #[test]
    fn a_pass_must_show_in_its_trajectory() {
        assert_eq!(run(true, "reward=1", "Done: reward=1").contradiction(), None);
        assert_eq!(run(false, "reward=0", "Done: reward=0").contradiction(), None);
        assert!(run(true, "reward=1", "Done: reward=0").contradiction().unwrap().contains("last observation"));
        assert!(run(true, "reward=0", "Done: reward=1").contradiction().unwrap().contains("passed=true"));
        let mut miscounted = run(true, "reward=1", "reward=1");
        miscounted.traced_calls = 5;
        assert!(miscounted.contradiction().is_some());
    }

    #[test]
    fn served_episodes_and_serving_replays_are_played_from_the_host_the_rest_in_jobs() {
        assert_eq!(spaced_restores(12), [1, 3, 6, 10], "ever longer runs between restores");
        let mut work = EnvWork::new(EnvSource { code: "", name: "E" }, 1);
        work.configs = vec!["E@{}"];
        work.trajectories = vec![vec!["a".into(), "b".into(), "c".into(), "d".into()]];
        let episode = |serve| Step::Episode { config: 0, prefix: (0, 0), actions: vec!["x".into()], serve };
        fn served_as(step: &Step, work: &EnvWork) -> Option<(String, usize, Restore)> {
            step.as_served(work).map(|e| (e.config.to_string(), e.actions.len(), e.restore))
        }
        let restore = |step: &Step| served_as(step, &work);
        assert_eq!(restore(&episode(Serving::Forked)), None);
        assert_eq!(restore(&episode(Serving::Restored)), Some(("E@{}".into(), 1, Restore::Every)));
        assert_eq!(restore(&episode(Serving::Live)), Some(("E@{}".into(), 1, Restore::Never)));
        let spaced = Step::ServeReplay { config: 0, trajectory: 0, spaced: true };
        assert_eq!(restore(&spaced), Some(("E@{}".into(), 4, Restore::At(vec![1, 3]))));
        assert_eq!(restore(&Step::Replay { config: 0, trajectory: 0 }), None, "the determinism check's rerun runs in a job");
    }

    #[test]
    fn what_serve_refuses_never_reaches_the_environment() {
        let tools = ["Observe", "Done"];
        assert_eq!(refusal(r#"{"name": "Observe", "parameters": {}}"#, &tools), None);
        assert_eq!(refusal(r#"{"name": "Observe"}"#, &tools), None, "parameters may be left out");
        assert!(refusal(r#"{"name": "Peek", "parameters": {}}"#, &tools).unwrap().contains("unknown tool `Peek`"));
        for malformed in [r#"{"tool": "Peek"}"#, r#"[{"name": "Observe"}]"#, r#"{"name": "Observe", "parameters": [1]}"#, "7"] {
            assert_eq!(refusal(malformed, &tools).as_deref(), Some(MALFORMED), "{malformed}");
        }
        assert_eq!(refusal(r#"{"name": "Done", "parameters": {"answer": Infinity}}"#, &tools), None, "left to the environment");
    }

    #[test]
    fn more_results_than_steps_discredit_the_job() {
        let partial = |v: serde_json::Value| crate::sandbox::Partial { value: v, duration_ms: 1 };
        let outcome = JobOutcome {
            verdict: Verdict::Ok,
            exit_code: Some(0),
            stdout: String::new(),
            stderr: String::new(),
            result: None,
            partials: vec![partial(json!({"ok": 1})), partial(json!({"ok": 2})), partial(json!({"ok": 3}))],
            detail: None,
            duration_ms: 3,
        };
        let results = step_results(&outcome, 2);
        assert_eq!(results.len(), 2);
        assert!(results.iter().all(|r| r.value.is_err()));
        assert_eq!(step_results(&outcome, 3).iter().filter(|r| r.value.is_ok()).count(), 3);
    }
}
