//! Typed rows of the dataset tables, one struct per table, field names = column names in `schemas/`
//! (the writer checks every row against the schema, so a drift fails loudly). Stages exchange these.

use serde::{Deserialize, Serialize};

/// `environments.status` of an environment not verified yet (imported, or synthesized and past
/// the contract check).
pub const ENV_PENDING: &str = crate::reasons::Reason::Pending.as_str();

/// `environments`: one environment candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentRow {
    pub env_id: String,
    pub problem_id: Option<String>,
    pub source: String,
    pub source_id: String,
    pub env_name: String,
    pub task_text: Option<String>,
    pub env_code: String,
    pub tool_count: i32,
    pub tools: Vec<String>,
    pub tool_docs: String,
    /// JSON array of tool schemas (`tools::schemas_json`), set by verification.
    pub tool_schemas: Option<String>,
    pub status: String,
    pub status_detail: Option<String>,
    pub oracle_candidate: Option<i32>,
    /// The version of the verifier that decided `status` (null while pending).
    pub verifier: Option<String>,
    /// Whether the environment's state survives a pickle round trip, so `codegym serve` can hold
    /// idle sessions host-side (null until probed).
    pub servable: Option<bool>,
    /// Why it does not, when it does not.
    pub serve_detail: Option<String>,
    /// Share of its checked configurations an independent candidate passes (null: it has none).
    pub independent_share: Option<f64>,
}

impl EnvironmentRow {
    /// A new environment, not verified yet: tools, docs and verdicts are filled by `verify`.
    pub fn pending(env_id: String, source: String, source_id: String, env_name: String, env_code: String) -> EnvironmentRow {
        EnvironmentRow {
            env_id,
            problem_id: None,
            source,
            source_id,
            env_name,
            task_text: None,
            env_code,
            tool_count: 0,
            tools: Vec::new(),
            tool_docs: String::new(),
            tool_schemas: None,
            status: ENV_PENDING.into(),
            status_detail: None,
            oracle_candidate: None,
            verifier: None,
            servable: None,
            serve_detail: None,
            independent_share: None,
        }
    }
}

/// `task_configs`: one (environment, configuration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskConfigRow {
    pub config_id: String,
    pub env_id: String,
    pub env_name: String,
    pub config: String,
    pub difficulty: String,
    pub source_index: Option<String>,
    pub ref_answer: Option<String>,
    pub oracle_passed: Option<bool>,
    pub oracle_calls: Option<i32>,
    pub distinct_tools: Option<i32>,
    pub kept: bool,
    pub filter_reason: Option<String>,
    pub source_oracle_calls: Option<i32>,
    pub reference_pass_rate: Option<f64>,
    pub oracle_trajectory: Option<String>,
    /// Whether a candidate written from the task text alone passes (null: there is none).
    pub independent_pass: Option<bool>,
}

impl TaskConfigRow {
    /// A configuration of `env_id`, not verified yet: its id is the hash of environment and
    /// configuration, so the same configuration gets the same id however it arrived.
    pub fn pending(
        env_id: &str,
        env_name: &str,
        config: String,
        difficulty: &str,
        source_index: Option<String>,
    ) -> TaskConfigRow {
        TaskConfigRow {
            config_id: config_id(env_id, &config),
            env_id: env_id.into(),
            env_name: env_name.into(),
            config,
            difficulty: difficulty.into(),
            source_index,
            ref_answer: None,
            oracle_passed: None,
            oracle_calls: None,
            distinct_tools: None,
            kept: false,
            filter_reason: None,
            source_oracle_calls: None,
            reference_pass_rate: None,
            oracle_trajectory: None,
            independent_pass: None,
        }
    }
}

/// The id of configuration `config` of environment `env_id`.
pub fn config_id(env_id: &str, config: &str) -> String {
    crate::ids::content_id("config", &[env_id, config])
}

/// `oracle_candidates`: one candidate `solve` of an environment (candidate 0, the environment's
/// own, is implicit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OracleCandidateRow {
    pub env_id: String,
    pub candidate: i32,
    pub solver: String,
    pub origin: Option<String>,
    pub smoke_test: Option<String>,
}

/// `oracle_runs`: one (oracle candidate, configuration) cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OracleRunRow {
    pub env_id: String,
    pub candidate: i32,
    pub config_id: String,
    pub verdict: String,
    pub oracle_calls: Option<i32>,
    pub duration_ms: i64,
    pub detail: Option<String>,
}

/// `battery_runs`: one run of an environment's exploit battery, and what it found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatteryRunRow {
    pub env_id: String,
    pub run: i32,
    pub config_id: String,
    pub class: String,
    pub policy: String,
    pub actions: String,
    pub from_reset: bool,
    pub final_reward: Option<f64>,
    pub verdict: String,
    pub detail: Option<String>,
}

/// `tool_call_stats`: calls per tool of the chosen oracle on one configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCallStatRow {
    pub config_id: String,
    pub env_id: String,
    pub tool: String,
    pub calls: i32,
}

/// `rejects`: something that did not make it, with the reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectRow {
    pub stage: String,
    pub entity_id: String,
    pub source_id: Option<String>,
    pub reason: String,
    pub detail: Option<String>,
}

/// `problems`: one source problem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProblemRow {
    pub problem_id: String,
    pub source: String,
    pub source_id: String,
    pub question: String,
    pub solution: String,
    pub tests: Option<String>,
    pub test_kind: Option<String>,
    pub entry_point: Option<String>,
    pub license: Option<String>,
    pub difficulty: Option<String>,
    pub preflight: String,
    pub preflight_detail: Option<String>,
}

/// `llm_calls`: one LLM request (its completions and accounting).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmCallRow {
    pub call_id: String,
    pub stage: String,
    pub entity_id: String,
    pub prompt_version: String,
    pub model: String,
    pub prompt: String,
    pub response: String,
    pub responses: Vec<String>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub latency_ms: Option<i64>,
    pub cached: bool,
    pub attempts: i32,
}

/// Where an environment stands in the train/validation split (`splits.split`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Train,
    Validation,
    /// A near-duplicate of environments on both sides: in neither, never exported.
    HeldOut,
}

impl Split {
    /// The sides that are exported.
    pub const ALL: [Split; 2] = [Split::Train, Split::Validation];

    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::HeldOut => "held_out",
        }
    }

    /// The split a stored name stands for (`splits` holds only these names).
    pub fn of(name: &str) -> Split {
        [Split::Validation, Split::HeldOut].into_iter().find(|s| s.name() == name).unwrap_or(Split::Train)
    }
}
