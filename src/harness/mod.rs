//! The environment harness: typed jobs over the Python harness that runs inside the sandbox
//! (`harness.py`, installed as module `codegym_harness` with the `gymnasium` stand-in beside it).
//! Builds the jobs that compute reference answers, run oracles and describe tools, and parses their
//! JSON results. Knows the CodeGym environment contract; knows nothing of tables or the LLM.

use crate::sandbox::{Job, JobOutcome, Limits, Verdict};
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;

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

/// A deterministic per-job seed from the job's identity.
pub fn seed_for(key: &str) -> u64 {
    let hash = blake3::hash(key.as_bytes());
    u64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("8 bytes"))
}

/// Job: the reference answer of `config`.
pub fn ref_answer_job(env: EnvSource, config: &str, limits: Limits) -> Job {
    let args = json!({ "source": env.code, "env_name": env.name, "config": config });
    Job { seed: seed_for(config), ..Job::call("ref_answer", args, limits) }
}

/// Job: run the oracle on `config`; `solver` replaces the environment's own `solve` when given.
pub fn oracle_job(env: EnvSource, config: &str, solver: Option<&str>, limits: Limits) -> Job {
    let args = json!({ "source": env.code, "env_name": env.name, "config": config, "solver": solver });
    Job { seed: seed_for(config), ..Job::call("oracle", args, limits) }
}

/// Job: list the environment's tools and build their agent-facing documentation.
pub fn describe_job(env: EnvSource, limits: Limits) -> Job {
    Job::call("describe", json!({ "source": env.code, "env_name": env.name }), limits)
}

/// The typed result of a finished harness job, or why there is none (the verdict's detail).
pub fn parse<T: serde::de::DeserializeOwned>(outcome: &JobOutcome) -> Result<T, String> {
    match (&outcome.verdict, &outcome.result) {
        (Verdict::Ok, Some(value)) => T::deserialize(value).map_err(|e| format!("unexpected harness result: {e}")),
        _ => Err(outcome.detail.clone().unwrap_or_else(|| format!("job ended with verdict {}", outcome.verdict.as_str()))),
    }
}
