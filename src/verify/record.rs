//! Recording what the sandbox steps found: reference answers, probe findings and oracle cells
//! per configuration, the choice of the oracle among the candidates, and each environment's
//! status. Works on one chunk of environments at a time; knows nothing of files.

use super::curate::checked;
use super::{ConfigResult, STAGE, VerifySettings};
use crate::harness::ModuleChecks;
use crate::harness::{Finding, OracleRun};
use crate::sandbox::Verdict;
use crate::tables::{EnvironmentRow, OracleRunRow, RejectRow, TaskConfigRow, ToolCallStatRow};
use std::collections::BTreeMap;

/// One (candidate, configuration) oracle run.
#[derive(Debug, Clone)]
pub(super) struct Cell {
    pub(super) candidate: i32,
    pub(super) run: Result<OracleRun, String>,
    pub(super) verdict: Verdict,
    pub(super) duration_ms: u64,
}

impl Cell {
    fn label(&self) -> &'static str {
        oracle_verdict(&self.run, self.verdict)
    }

    fn calls(&self) -> Option<i32> {
        self.run.as_ref().ok().and_then(|r| i32::try_from(r.oracle_calls).ok())
    }
}

pub(super) fn oracle_verdict(result: &Result<OracleRun, String>, verdict: Verdict) -> &'static str {
    match (verdict, result) {
        (Verdict::Ok, Ok(run)) if run.passed => "pass",
        (Verdict::Ok, Ok(_)) => "wrong",
        (Verdict::Timeout, _) => "timeout",
        (Verdict::Memory, _) => "memory",
        (Verdict::OutputLimit, _) => "output_limit",
        _ => "error",
    }
}

#[derive(Default)]
pub(super) struct Tables {
    pub(super) oracle_runs: Vec<OracleRunRow>,
    pub(super) tool_calls: Vec<ToolCallStatRow>,
    pub(super) rejects: Vec<RejectRow>,
    /// This chunk's oracle cells by (config_id, candidate).
    pub(super) cells: BTreeMap<(String, i32), Cell>,
    /// Probe findings that make an environment unusable (it rewards wrong answers, its oracle
    /// reads hidden state or depends on the seed), first one per environment.
    env_findings: BTreeMap<String, Finding>,
}

impl Tables {
    /// Records one configuration's cells; `filter_reason` keeps what the cells found (a failed
    /// reference-answer check, an oracle that did not pass), for [`curate`] to build on.
    pub(super) fn record_config(&mut self, config: &mut TaskConfigRow, result: ConfigResult, settings: &VerifySettings) {
        config.filter_reason = None;
        match result.ref_answer {
            Some(Ok(answer)) => {
                if answer.answer.chars().count() > settings.max_answer_chars {
                    config.filter_reason = Some("ref_answer_too_long".into());
                } else if answer.answer_json.is_none() {
                    // An agent can only send JSON: an answer it cannot write can never be matched.
                    config.filter_reason = Some("ref_answer_not_json".into());
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
        for finding in result.probe.map(|p| p.findings).unwrap_or_default() {
            self.reject(&config.config_id, &finding.reason, finding.detail.clone());
            if finding.reason.starts_with("answer_in_") {
                config.filter_reason.get_or_insert(finding.reason);
            } else {
                self.env_findings.entry(config.env_id.clone()).or_insert(finding);
            }
        }
        for cell in result.oracles {
            let detail = match &cell.run {
                Ok(run) => (!run.passed).then(|| run.message.clone()),
                Err(detail) => Some(detail.clone()),
            };
            self.oracle_runs.push(OracleRunRow {
                env_id: config.env_id.clone(),
                candidate: cell.candidate,
                config_id: config.config_id.clone(),
                verdict: cell.label().into(),
                oracle_calls: cell.calls(),
                duration_ms: cell.duration_ms as i64,
                detail,
            });
            self.cells.insert((config.config_id.clone(), cell.candidate), cell);
        }
    }

    /// The oracle: among the eligible candidates (the environment's own `solve`, and those that
    /// passed their smoke test), the one that passes every checked configuration within the
    /// environment's time budget with the fewest calls in all (ties: the lowest number). When
    /// none does, the status and detail saying why.
    pub(super) fn choose_oracle(
        &self,
        checked: &[&TaskConfigRow],
        eligible: &[i32],
        settings: &VerifySettings,
    ) -> Result<i32, (&'static str, String)> {
        let budget = settings.env_budget.as_millis() as u64;
        let mut best: Option<(i64, i32)> = None;
        let mut over_budget = None;
        for &candidate in eligible {
            let cells: Option<Vec<&Cell>> = checked
                .iter()
                .map(|c| self.cells.get(&(c.config_id.clone(), candidate)).filter(|cell| cell.label() == "pass"))
                .collect();
            let Some(cells) = cells else { continue };
            let spent: u64 = cells.iter().map(|c| c.duration_ms).sum();
            if spent > budget {
                over_budget.get_or_insert((candidate, spent));
                continue;
            }
            let calls: i64 = cells.iter().map(|c| i64::from(c.calls().unwrap_or(0))).sum();
            if best.is_none_or(|b| (calls, candidate) < b) {
                best = Some((calls, candidate));
            }
        }
        match (best, over_budget) {
            (Some((_, candidate)), _) => Ok(candidate),
            (None, Some((candidate, spent))) => Err((
                "oracle_budget_exceeded",
                format!("candidate {candidate} passes every configuration in {spent} ms, over the budget of {budget} ms"),
            )),
            (None, None) => {
                let failed =
                    checked.iter().find(|c| self.cells.get(&(c.config_id.clone(), 0)).is_none_or(|cell| cell.label() != "pass"));
                let example = failed.map_or(String::new(), |c| format!("; the environment's own solve fails on {}", c.config));
                Err(("oracle_failed", format!("no candidate of {} passes every configuration{example}", eligible.len())))
            }
        }
    }

    /// Sets a configuration's oracle columns from `candidate`'s cell (the chosen oracle, or the
    /// environment's own `solve` when none was chosen).
    pub(super) fn apply_oracle(&mut self, config: &mut TaskConfigRow, candidate: i32) {
        let Some(cell) = self.cells.get(&(config.config_id.clone(), candidate)) else { return };
        let label = cell.label();
        config.oracle_passed = Some(label == "pass");
        config.oracle_calls = cell.calls();
        config.distinct_tools = None;
        config.oracle_trajectory = None;
        match (&cell.run, label) {
            (Ok(run), "pass") => {
                config.distinct_tools = Some(run.tool_calls.keys().filter(|t| *t != "<malformed>").count() as i32);
                config.oracle_trajectory = serde_json::to_string(&run.trajectory).ok();
                for (tool, calls) in &run.tool_calls {
                    self.tool_calls.push(ToolCallStatRow {
                        config_id: config.config_id.clone(),
                        env_id: config.env_id.clone(),
                        tool: tool.clone(),
                        calls: *calls as i32,
                    });
                }
            }
            _ => {
                config.filter_reason.get_or_insert(format!("oracle_{label}"));
            }
        }
    }

    /// Decides the environment's status: the module-wide checks first, then its configurations'
    /// reference answers and oracle runs.
    pub(super) fn settle_env(
        &mut self,
        env: &mut EnvironmentRow,
        checks: ModuleChecks,
        mine: &[&TaskConfigRow],
        oracle: Result<i32, (&'static str, String)>,
        settings: &VerifySettings,
    ) {
        let failure = checks.failure();
        if let Ok(description) = &checks.description {
            env.tool_count = description.tools.len() as i32;
            env.tools = description.tools.clone();
            if env.tool_docs.is_empty() {
                env.tool_docs = description.tool_docs.clone();
            }
            env.tool_schemas = Some(crate::tools::schemas_json(&env.tool_docs));
        }
        let checked = checked(mine);
        let (status, detail) = if let Some((status, detail)) = failure {
            (status, Some(detail))
        } else if let Some(finding) = self.env_findings.get(&env.env_id) {
            // Probe reasons are static strings of the harness; keep ours 'static too.
            (probe_status(&finding.reason), Some(finding.detail.clone()))
        } else if let Err(detail) = checks.description {
            ("contract_failed", Some(detail))
        } else if mine.is_empty() {
            ("no_configs", None)
        } else if checked.is_empty() {
            ("ref_answer_failed", Some("no configuration has a reference answer".to_string()))
        } else if env.problem_id.is_some()
            && ((checked.len() as f64) < settings.min_ref_share * mine.len() as f64 || checked.len() < settings.min_ref_configs)
        {
            let share = format!("{} of {} configurations have a reference answer", checked.len(), mine.len());
            (
                "ref_answer_survival",
                Some(format!(
                    "{share}; at least {:.0}% and {} are required",
                    settings.min_ref_share * 100.0,
                    settings.min_ref_configs
                )),
            )
        } else if let Err((status, detail)) = &oracle {
            (*status, Some(detail.clone()))
        } else {
            ("verified", None)
        };
        env.status = status.into();
        env.oracle_candidate = oracle.ok().filter(|_| status == "verified");
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
}

/// The environment status of a probe finding that disqualifies the environment.
fn probe_status(reason: &str) -> &'static str {
    match reason {
        "wrong_answer_rewarded" => "wrong_answer_rewarded",
        "empty_answer_rewarded" => "empty_answer_rewarded",
        "oracle_reads_state" => "oracle_reads_state",
        "nondeterministic_trajectory" => "nondeterministic_trajectory",
        _ => "probe_failed",
    }
}
