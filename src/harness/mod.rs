//! The environment harness: typed jobs over the Python harness that runs inside the sandbox
//! (`harness.py`, installed as module `codegym_harness` with the `gymnasium` stand-in beside it).
//! Builds many-step jobs on one environment (describe its tools, run its own self-tests, compute
//! reference answers, run oracles or candidate solvers), runs them to completion across limits
//! ([`run_steps`]), and parses their JSON results. Knows the CodeGym environment contract; knows
//! nothing of tables or the LLM.

use crate::sandbox::{ExecMode, Job, JobOutcome, JobReporter, Limits, Sandbox, SandboxError, Verdict};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

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
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct OracleRun {
    /// Whether the message `solve()` returned contains `reward=1`.
    pub passed: bool,
    pub message: String,
    /// The environment's `step_count` after `solve()`: every `step()` call, malformed ones too.
    pub oracle_calls: i64,
    /// Calls per tool name (`<malformed>` for actions that are not JSON with a string `name`).
    pub tool_calls: BTreeMap<String, i64>,
    /// The (action, observation) pairs, in order.
    pub trajectory: Vec<(String, String)>,
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
}

impl SelfTest {
    /// The method's smoke test: exit 0, `reward=1` at least twice, `reward=0` never.
    pub fn smoke_passed(&self) -> bool {
        self.exit_code == 0 && self.reward_1 >= 2 && self.reward_0 == 0
    }
}

/// What the module-wide steps found about one environment: stage 2 of the method.
#[derive(Debug, Clone)]
pub struct ModuleChecks {
    pub contract: Result<ContractCheck, String>,
    pub self_test: Result<SelfTest, String>,
    pub description: Result<ToolDescription, String>,
}

impl ModuleChecks {
    /// The steps that produce the checks, in the order [`ModuleChecks::from_results`] reads them.
    pub const STEPS: [Step; 3] = [Step::Contract, Step::SelfTest, Step::Describe];

    pub fn from_results(results: &[StepResult]) -> ModuleChecks {
        ModuleChecks { contract: results[0].parse(), self_test: results[1].parse(), description: results[2].parse() }
    }

    /// Why the module breaks the contract, if it does: the contract check, then its own
    /// self-tests (exit 0 within the module budget, at least two of them run).
    pub fn failure(&self) -> Option<(&'static str, String)> {
        match (&self.contract, &self.self_test) {
            (Err(detail), _) => Some(("contract_failed", detail.clone())),
            (Ok(check), _) if !check.problems.is_empty() => Some(("contract_failed", check.problems.join("; "))),
            (_, Err(detail)) => Some(("self_test_failed", detail.clone())),
            (_, Ok(run)) if run.exit_code != 0 => Some((
                "self_test_failed",
                format!("the __main__ block exited with status {}: {}", run.exit_code, run.error.as_deref().unwrap_or("")),
            )),
            (_, Ok(run)) if run.reward_1 + run.reward_0 < 2 => Some((
                "self_test_failed",
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

/// One step of a many-step job on one environment.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Step {
    /// List the tools and build their agent-facing documentation ([`ToolDescription`]).
    Describe,
    /// The reference answer of a configuration ([`RefAnswer`]).
    RefAnswer { config: String },
    /// Run an oracle on a configuration ([`OracleRun`]); `solver` replaces the environment's own
    /// `solve` when given.
    Oracle { config: String, solver: Option<String> },
    /// Run the module as `__main__`: its own self-tests ([`SelfTest`]).
    SelfTest,
    /// The module's self-tests with a candidate `solve` spliced in ([`SelfTest`]): the smoke test
    /// of an oracle candidate.
    SmokeTest { solver: String },
    /// The static half of the environment contract ([`ContractCheck`]).
    Contract,
    /// The classes, found by parsing the module, that define `from_env_str` (a list of names).
    Classes,
    /// Checks that the environment cannot be gamed on a configuration ([`ProbeFindings`]): wrong
    /// and empty answers rewarded, the answer shown in `task_text`, `tool_docs` or Observe, an
    /// oracle reading hidden state, a trajectory that depends on the random seed.
    Probe { config: String, task_text: String, tool_docs: String },
}

impl Step {
    /// The step's name, as in `harness.py` (`describe`, `oracle`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Describe => "describe",
            Step::RefAnswer { .. } => "ref_answer",
            Step::Oracle { .. } => "oracle",
            Step::SelfTest => "self_test",
            Step::SmokeTest { .. } => "smoke_test",
            Step::Contract => "contract",
            Step::Classes => "classes",
            Step::Probe { .. } => "probe",
        }
    }

    /// Steps that run the whole module, or several oracle runs, get the module's budget (the
    /// method's 5 s); the others the per-cell budget.
    fn runs_module(&self) -> bool {
        matches!(self, Step::SelfTest | Step::SmokeTest { .. } | Step::Contract | Step::Classes | Step::Probe { .. })
    }
}

/// What [`Step::Probe`] found; empty when nothing.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ProbeFindings {
    pub findings: Vec<Finding>,
}

/// One problem a probe found, with the reason that names it (`wrong_answer_rewarded`,
/// `empty_answer_rewarded`, `answer_in_task_text`, `answer_in_tool_docs`, `answer_in_observe`,
/// `oracle_reads_state`, `nondeterministic_trajectory`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Finding {
    pub reason: String,
    pub detail: String,
}

/// The static half of the environment contract.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ContractCheck {
    /// Classes defining `from_env_str`, found by parsing the module.
    pub classes: Vec<String>,
    /// What breaks the contract; empty when it holds.
    pub problems: Vec<String>,
}

/// Job: run `steps` on one environment in one interpreter visit. Each step's result comes back as a
/// partial result; `limits.timeout` bounds each step (`module_timeout` those that run the whole
/// module); a failing step does not stop the others. The oracle cells of the candidates in
/// `failed_smoke` (their smoke test failed earlier) are skipped.
pub fn steps_job(
    env: EnvSource,
    steps: &[Step],
    limits: Limits,
    module_timeout: Duration,
    seed: u64,
    failed_smoke: &[&str],
) -> Job {
    let args = json!({ "source": env.code, "env_name": env.name, "steps": steps, "failed_smoke": failed_smoke });
    let step_timeouts = steps.iter().map(|s| if s.runs_module() { module_timeout } else { limits.timeout }).collect();
    Job { seed, step_timeouts, ..Job::call("run_steps", args, limits) }
}

/// The candidates among `steps` whose smoke test has a result in `results` and failed it.
fn failed_smoke_tests<'a>(steps: &'a [Step], results: &[StepResult]) -> Vec<&'a str> {
    steps
        .iter()
        .zip(results)
        .filter_map(|(step, result)| match step {
            Step::SmokeTest { solver } if !result.parse::<SelfTest>().is_ok_and(|run| run.smoke_passed()) => {
                Some(solver.as_str())
            }
            _ => None,
        })
        .collect()
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
}

/// The results of the steps a [`steps_job`] finished, and, when it ended early, the result of the
/// step it was running (its limit verdict). Steps after that one did not run.
pub fn step_results(outcome: &JobOutcome, steps: usize) -> Vec<StepResult> {
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

/// Steps to run on one environment.
#[derive(Debug, Clone)]
pub struct EnvWork<'a> {
    pub env: EnvSource<'a>,
    pub steps: Vec<Step>,
    pub seed: u64,
}

/// Runs every environment's steps (one job per environment), resuming after a step that a limit
/// ended with a new job for the steps after it, until every step has a result. Returns the results
/// per environment, one per step, in step order.
pub fn run_steps(
    sandbox: &Sandbox,
    work: &[EnvWork],
    limits: Limits,
    module_timeout: Duration,
    mode: ExecMode,
    threads: usize,
    reporter: Option<&dyn JobReporter>,
) -> Result<Vec<Vec<StepResult>>, SandboxError> {
    let mut results: Vec<Vec<StepResult>> = work.iter().map(|w| Vec::with_capacity(w.steps.len())).collect();
    let mut pending: Vec<usize> = (0..work.len()).filter(|&i| !work[i].steps.is_empty()).collect();
    while !pending.is_empty() {
        let jobs = pending
            .iter()
            .map(|&i| {
                let (done, steps) = (&results[i], &work[i].steps);
                let failed = failed_smoke_tests(steps, done);
                steps_job(work[i].env, &steps[done.len()..], limits, module_timeout, work[i].seed, &failed)
            })
            .collect();
        let outcomes = sandbox.run_jobs(jobs, mode, threads, reporter)?;
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
