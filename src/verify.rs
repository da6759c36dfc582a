//! Verification of environments (stages 4, 7 and 8 of the method for environments that carry their
//! own oracle, as released CodeGym data does): the tools and their agent-facing documentation, the
//! reference answer of every configuration, the oracle on every configuration, then the curation
//! filters. Reads `environments` + `task_configs`, writes them back with results, plus
//! `oracle_runs`, `tool_call_stats` and `rejects`. All guest code runs in the sandbox.

use crate::dataset::{self, DatasetError, Table};
use crate::harness::{self, EnvSource, EnvWork, OracleRun, RefAnswer, Step, ToolDescription};
use crate::sandbox::{ExecMode, JobReporter, Limits, Sandbox, SandboxError, Verdict};
use crate::tables::{EnvironmentRow, OracleRunRow, RejectRow, TaskConfigRow, ToolCallStatRow};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const STAGE: &str = "verify";

/// The method's constants, as configurable defaults.
#[derive(Debug, Clone)]
pub struct VerifySettings {
    /// Limits of one reference-answer or oracle cell (3 s, 100 MiB).
    pub cell: Limits,
    /// Oracle time budget per environment, summed over its cells (15 s).
    pub env_budget: Duration,
    /// A kept configuration needs `min_calls <= oracle calls <= max_calls` (10..=256).
    pub min_calls: i32,
    pub max_calls: i32,
    /// A kept environment needs at least this many tools (4).
    pub min_tools: i32,
    /// `len(str(answer))` must not exceed this (100).
    pub max_answer_chars: usize,
    pub threads: usize,
    pub mode: ExecMode,
}

impl Default for VerifySettings {
    fn default() -> Self {
        VerifySettings {
            cell: Limits::default(),
            env_budget: Duration::from_secs(15),
            min_calls: 10,
            max_calls: 256,
            min_tools: 4,
            max_answer_chars: 100,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            mode: ExecMode::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error("{0} holds no environments\n  hint: run `codegym import-codegym` or `codegym build` first")]
    Empty(String),
}

/// Counts of one verification run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VerifySummary {
    pub environments: usize,
    pub verified: usize,
    pub configs: usize,
    pub configs_kept: usize,
    pub oracle_cells: usize,
    pub oracle_passed: usize,
    /// Steps run in the sandbox (describe, reference answers, oracle cells).
    pub steps: usize,
}

/// Results gathered for one configuration.
#[derive(Default)]
struct ConfigResult {
    ref_answer: Option<Result<RefAnswer, String>>,
    oracle: Option<(Result<OracleRun, String>, Verdict, u64)>,
}

/// Per environment: describe, then reference answer and oracle per configuration (configurations
/// in key order). Returns the work and, per environment, the configuration index of each step.
fn plan<'a>(envs: &'a [EnvironmentRow], configs: &[TaskConfigRow]) -> (Vec<EnvWork<'a>>, Vec<Vec<Option<usize>>>) {
    let index: BTreeMap<&str, usize> = envs.iter().enumerate().map(|(i, e)| (e.env_id.as_str(), i)).collect();
    let mut work: Vec<EnvWork> = envs
        .iter()
        .map(|env| EnvWork {
            env: EnvSource { code: &env.env_code, name: &env.env_name },
            steps: vec![Step::Describe],
            seed: harness::seed_for(&env.env_id),
        })
        .collect();
    let mut step_configs: Vec<Vec<Option<usize>>> = vec![vec![None]; envs.len()];
    for (i, config) in configs.iter().enumerate() {
        if let Some(&env) = index.get(config.env_id.as_str()) {
            work[env].steps.push(Step::RefAnswer { config: config.config.clone() });
            work[env].steps.push(Step::Oracle { config: config.config.clone(), solver: None });
            step_configs[env].extend([Some(i), Some(i)]);
        }
    }
    (work, step_configs)
}

fn oracle_verdict(result: &Result<OracleRun, String>, verdict: Verdict) -> &'static str {
    match (verdict, result) {
        (Verdict::Ok, Ok(run)) if run.passed => "pass",
        (Verdict::Ok, Ok(_)) => "wrong",
        (Verdict::Timeout, _) => "timeout",
        (Verdict::Memory, _) => "memory",
        (Verdict::OutputLimit, _) => "output_limit",
        _ => "error",
    }
}

/// Runs verification over the dataset at `data` and rewrites its tables.
pub fn verify(
    sandbox: &Sandbox,
    data: &Path,
    settings: &VerifySettings,
    reporter: Option<&dyn JobReporter>,
) -> Result<VerifySummary, VerifyError> {
    let mut envs: Vec<EnvironmentRow> = dataset::read_table(data, Table::Environments)?;
    let mut configs: Vec<TaskConfigRow> = dataset::read_table(data, Table::TaskConfigs)?;
    if envs.is_empty() {
        return Err(VerifyError::Empty(data.display().to_string()));
    }
    let (work, step_configs) = plan(&envs, &configs);
    let outcomes = harness::run_steps(sandbox, &work, settings.cell, settings.mode, settings.threads, reporter)?;
    let steps = work.iter().map(|w| w.steps.len()).sum();

    let mut described: Vec<Option<Result<ToolDescription, String>>> = vec![None; envs.len()];
    let mut results: Vec<ConfigResult> = configs.iter().map(|_| ConfigResult::default()).collect();
    for (env, (steps, targets)) in outcomes.iter().zip(&step_configs).enumerate() {
        for ((step, result), target) in work[env].steps.iter().zip(steps).zip(targets) {
            match (step, target) {
                (Step::Describe, _) => described[env] = Some(result.parse()),
                (Step::RefAnswer { .. }, Some(config)) => results[*config].ref_answer = Some(result.parse()),
                (Step::Oracle { .. }, Some(config)) => {
                    results[*config].oracle = Some((result.parse(), result.verdict, result.duration_ms))
                }
                _ => {}
            }
        }
    }
    let mut tables = Tables::default();
    let env_index: BTreeMap<String, usize> = envs.iter().enumerate().map(|(i, e)| (e.env_id.clone(), i)).collect();
    for (config, result) in configs.iter_mut().zip(results) {
        tables.record_config(config, result, settings);
    }
    for (env, description) in envs.iter_mut().zip(described) {
        tables.settle_env(env, description, &configs, settings);
    }
    for config in configs.iter_mut() {
        let env = &envs[env_index[&config.env_id]];
        apply_env_filters(config, env, settings);
    }
    let summary = VerifySummary {
        environments: envs.len(),
        verified: envs.iter().filter(|e| e.status == "verified").count(),
        configs: configs.len(),
        configs_kept: configs.iter().filter(|c| c.kept).count(),
        oracle_cells: tables.oracle_runs.len(),
        oracle_passed: tables.oracle_runs.iter().filter(|r| r.verdict == "pass").count(),
        steps,
    };
    tables.write(data, envs, configs)?;
    Ok(summary)
}

#[derive(Default)]
struct Tables {
    oracle_runs: Vec<OracleRunRow>,
    tool_calls: Vec<ToolCallStatRow>,
    rejects: Vec<RejectRow>,
    /// Oracle time per environment, for the per-environment budget.
    oracle_ms: BTreeMap<String, u64>,
}

impl Tables {
    fn record_config(&mut self, config: &mut TaskConfigRow, result: ConfigResult, settings: &VerifySettings) {
        config.filter_reason = None;
        match result.ref_answer {
            Some(Ok(answer)) => {
                if answer.answer.chars().count() > settings.max_answer_chars {
                    config.filter_reason = Some("ref_answer_too_long".into());
                }
                config.ref_answer = Some(answer.answer);
            }
            Some(Err(detail)) => {
                config.ref_answer = None;
                config.filter_reason = Some("ref_answer_failed".into());
                self.reject(&config.config_id, "ref_answer_failed", detail);
            }
            None => {}
        }
        let Some((run, verdict, duration_ms)) = result.oracle else { return };
        let label = oracle_verdict(&run, verdict);
        *self.oracle_ms.entry(config.env_id.clone()).or_default() += duration_ms;
        let (calls, detail) = match &run {
            Ok(run) => (i32::try_from(run.oracle_calls).ok(), (!run.passed).then(|| run.message.clone())),
            Err(detail) => (None, Some(detail.clone())),
        };
        self.oracle_runs.push(OracleRunRow {
            env_id: config.env_id.clone(),
            candidate: 0,
            config_id: config.config_id.clone(),
            verdict: label.into(),
            oracle_calls: calls,
            duration_ms: duration_ms as i64,
            detail,
        });
        config.oracle_passed = Some(label == "pass");
        config.oracle_calls = calls;
        config.distinct_tools = None;
        if let (Ok(run), "pass") = (&run, label) {
            config.distinct_tools = Some(run.tool_calls.keys().filter(|t| *t != "<malformed>").count() as i32);
            for (tool, calls) in &run.tool_calls {
                self.tool_calls.push(ToolCallStatRow {
                    config_id: config.config_id.clone(),
                    env_id: config.env_id.clone(),
                    tool: tool.clone(),
                    calls: *calls as i32,
                });
            }
        } else if config.filter_reason.is_none() {
            config.filter_reason = Some(format!("oracle_{label}"));
        }
        if config.filter_reason.is_none() {
            config.filter_reason = calls.and_then(|n| {
                if n < settings.min_calls {
                    Some("oracle_calls_below_min".into())
                } else if n > settings.max_calls {
                    Some("oracle_calls_above_max".into())
                } else {
                    None
                }
            });
        }
    }

    /// Decides the environment's status from its description and its configurations' oracle runs.
    fn settle_env(
        &mut self,
        env: &mut EnvironmentRow,
        description: Option<Result<ToolDescription, String>>,
        configs: &[TaskConfigRow],
        settings: &VerifySettings,
    ) {
        let mine: Vec<&TaskConfigRow> = configs.iter().filter(|c| c.env_id == env.env_id).collect();
        let spent = self.oracle_ms.get(&env.env_id).copied().unwrap_or(0);
        let (status, detail) = match description {
            Some(Err(detail)) => ("contract_failed", Some(detail)),
            None => ("contract_failed", Some("not described".to_string())),
            Some(Ok(description)) => {
                env.tool_count = description.tools.len() as i32;
                env.tools = description.tools;
                if env.tool_docs.is_empty() {
                    env.tool_docs = description.tool_docs;
                }
                let checked: Vec<&&TaskConfigRow> = mine.iter().filter(|c| c.ref_answer.is_some()).collect();
                if mine.is_empty() {
                    ("no_configs", None)
                } else if checked.is_empty() {
                    ("ref_answer_failed", Some("no configuration has a reference answer".to_string()))
                } else if spent > settings.env_budget.as_millis() as u64 {
                    (
                        "oracle_budget_exceeded",
                        Some(format!(
                            "oracle took {spent} ms over its configurations, budget {} ms",
                            settings.env_budget.as_millis()
                        )),
                    )
                } else if let Some(failed) = checked.iter().find(|c| c.oracle_passed != Some(true)) {
                    ("oracle_failed", Some(format!("oracle failed on {}", failed.config)))
                } else {
                    ("verified", None)
                }
            }
        };
        env.status = status.into();
        env.oracle_candidate = (status == "verified").then_some(0);
        env.status_detail = detail.clone();
        if status != "verified" {
            self.reject(&env.env_id, status, detail.unwrap_or_default());
            self.rejects.last_mut().expect("just pushed").source_id = Some(env.source_id.clone());
        }
    }

    fn reject(&mut self, entity_id: &str, reason: &str, detail: String) {
        self.rejects.push(RejectRow {
            stage: STAGE.into(),
            entity_id: entity_id.into(),
            source_id: None,
            reason: reason.into(),
            detail: Some(detail),
        });
    }

    fn write(self, data: &Path, envs: Vec<EnvironmentRow>, configs: Vec<TaskConfigRow>) -> Result<(), DatasetError> {
        let mut rejects: Vec<RejectRow> = dataset::read_table(data, Table::Rejects)?;
        rejects.retain(|r| r.stage != STAGE);
        rejects.extend(self.rejects);
        dataset::write_table(data, Table::OracleRuns, &self.oracle_runs)?;
        dataset::write_table(data, Table::ToolCallStats, &self.tool_calls)?;
        dataset::write_table(data, Table::Rejects, &rejects)?;
        dataset::write_table(data, Table::TaskConfigs, &configs)?;
        dataset::write_table(data, Table::Environments, &envs)?;
        Ok(())
    }
}

/// Environment-level filters, applied once the environment's status is known.
fn apply_env_filters(config: &mut TaskConfigRow, env: &EnvironmentRow, settings: &VerifySettings) {
    if config.filter_reason.is_none() {
        if env.status != "verified" {
            config.filter_reason = Some("environment_not_verified".into());
        } else if env.tool_count < settings.min_tools {
            config.filter_reason = Some("too_few_tools".into());
        }
    }
    config.kept = config.filter_reason.is_none();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(passed: bool) -> Result<OracleRun, String> {
        Ok(OracleRun { passed, message: String::new(), oracle_calls: 12, tool_calls: Default::default(), trajectory: vec![] })
    }

    #[test]
    fn oracle_verdicts_name_the_limit_that_ended_the_cell() {
        assert_eq!(oracle_verdict(&run(true), Verdict::Ok), "pass");
        assert_eq!(oracle_verdict(&run(false), Verdict::Ok), "wrong");
        assert_eq!(oracle_verdict(&Err("boom".into()), Verdict::Error), "error");
        assert_eq!(oracle_verdict(&Err("slow".into()), Verdict::Timeout), "timeout");
        assert_eq!(oracle_verdict(&Err("big".into()), Verdict::Memory), "memory");
        assert_eq!(oracle_verdict(&Err("loud".into()), Verdict::OutputLimit), "output_limit");
    }
}
