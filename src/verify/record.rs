//! Recording what the sandbox steps found: reference answers, oracle cells and probe findings per
//! configuration, the choice of the oracle among the candidates, and each environment's status.
//! Works on one chunk of environments at a time; knows nothing of files.

use super::curate::checked;
use super::probes::{self, Finding, ProbeReason, Seen};
use super::reasons::{CellVerdict, Filter};
use super::{ConfigResult, STAGE, VERIFIED, VerifySettings};
use crate::harness::{ModuleChecks, OracleRun};
use crate::reasons::Reason;
use crate::sandbox::Verdict;
use crate::tables::{BatteryRunRow, EnvironmentRow, OracleRunRow, RejectRow, TaskConfigRow, ToolCallStatRow};
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
    pub(super) fn label(&self) -> CellVerdict {
        CellVerdict::of(&self.run, self.verdict)
    }

    fn calls(&self) -> Option<i32> {
        self.run.as_ref().ok().and_then(|r| i32::try_from(r.oracle_calls).ok())
    }

    fn detail(&self) -> Option<String> {
        match (&self.run, self.label()) {
            (Ok(run), CellVerdict::Contradiction) => run.contradiction(),
            (Ok(run), CellVerdict::Pass) => run
                .env_calls
                .filter(|&n| n != run.oracle_calls)
                .map(|n| format!("the environment counted {n} calls; {} were made (the count kept)", run.oracle_calls)),
            (Ok(run), _) if !run.refused.is_empty() => Some(format!(
                "called {}, not documented tools: {}",
                run.refused.join(", "),
                run.error.as_deref().unwrap_or(&run.message)
            )),
            (Ok(run), CellVerdict::Error) => run.error.clone(),
            (Ok(run), _) => Some(run.message.clone()),
            (Err(detail), _) => Some(detail.clone()),
        }
    }
}

#[derive(Default)]
pub(super) struct Tables {
    pub(super) oracle_runs: Vec<OracleRunRow>,
    pub(super) tool_calls: Vec<ToolCallStatRow>,
    pub(super) battery_runs: Vec<BatteryRunRow>,
    pub(super) rejects: Vec<RejectRow>,
    /// This chunk's oracle cells by (config_id, candidate).
    pub(super) cells: BTreeMap<(String, i32), Cell>,
    /// Probe findings that make an environment unusable (it rewards wrong answers, its oracle
    /// reads hidden state or depends on the interpreter), first one per environment.
    env_findings: BTreeMap<String, Finding>,
    /// Environments with configurations whose probe could not run, and how many.
    unprobed: BTreeMap<String, usize>,
    /// Per environment whose probes ran: why its state does not survive pickling (None: it does).
    pickle: BTreeMap<String, Option<String>>,
    /// Per environment: the documented equivalences its answer check accepts.
    lenient: BTreeMap<String, Vec<String>>,
    /// Environments the exploit battery could not play, and why.
    unattacked: BTreeMap<String, String>,
}

impl Tables {
    /// A configuration over the size cap: rejected alone, never run.
    pub(super) fn oversized(&mut self, config: &mut TaskConfigRow, cap: usize) {
        config.filter_reason = Some(Filter::ConfigTooLarge.as_str().into());
        config.ref_answer = None;
        config.oracle_passed = None;
        let detail = format!("the configuration holds {} bytes, the cap is {cap}", config.config.len());
        self.reject(&config.config_id, Filter::ConfigTooLarge.as_str(), detail);
    }

    /// Records the configurations of `env` (indices into `configs`) and what their steps found.
    /// `filter_reason` keeps what the cells found (a failed reference-answer check, a probe
    /// finding), for curation to build on.
    pub(super) fn record_configs(
        &mut self,
        env: &EnvironmentRow,
        configs: &mut [TaskConfigRow],
        results: Vec<(usize, ConfigResult)>,
        settings: &VerifySettings,
    ) {
        let mut observed: Vec<(usize, Option<String>)> = Vec::new();
        for (index, result) in results {
            let config = &mut configs[index];
            self.record_ref_answer(config, result.ref_answer, settings);
            let own = result.oracles.iter().find(|cell| cell.candidate == 0).map(|cell| cell.run.clone());
            let task_text = env.task_text.as_deref().unwrap_or("");
            let mut findings = result.probe.as_ref().map(|p| probes::judge(p, task_text)).unwrap_or_default();
            findings.extend(own.as_ref().and_then(probes::reward_read));
            if let (Some(primary), Some(alternate)) = (&own, &result.alternate) {
                findings.extend(probes::compare_replay(primary, alternate));
            }
            let evidence = result.probe.as_ref().and_then(|p| p.as_ref().ok());
            if let Some(evidence) = evidence {
                let failure = self.pickle.entry(env.env_id.clone()).or_default();
                if failure.is_none() {
                    *failure = evidence.pickle.clone();
                }
            }
            let observe = evidence.and_then(|p| p.observe.clone());
            if let Some(answer) = config.ref_answer.clone() {
                let seen = Seen {
                    answer: &answer,
                    config: &config.config,
                    task_text,
                    tool_docs: &env.tool_docs,
                    observe: observe.as_deref(),
                };
                findings.extend(probes::leaks(&seen));
            }
            observed.push((index, observe));
            for finding in findings {
                self.apply_finding(config, finding);
            }
            for cell in result.oracles {
                self.record_cell(config, cell);
            }
        }
        let answers: Vec<(usize, String, Option<String>)> = observed
            .into_iter()
            .filter_map(|(index, observe)| configs[index].ref_answer.clone().map(|answer| (index, answer, observe)))
            .collect();
        let seen: Vec<Seen> = answers
            .iter()
            .map(|(index, answer, observe)| Seen {
                answer,
                config: &configs[*index].config,
                task_text: "",
                tool_docs: "",
                observe: observe.as_deref(),
            })
            .collect();
        for (position, finding) in probes::observe_leaks(&seen) {
            let index = answers[position].0;
            if configs[index].filter_reason.as_deref() != Some(ProbeReason::AnswerInObserve.as_str()) {
                self.apply_finding(&mut configs[index], finding);
            }
        }
    }

    fn record_ref_answer(
        &mut self,
        config: &mut TaskConfigRow,
        answer: Option<Result<crate::harness::RefAnswer, String>>,
        settings: &VerifySettings,
    ) {
        config.filter_reason = None;
        match answer {
            Some(Ok(answer)) => {
                if answer.answer.chars().count() > settings.max_answer_chars {
                    config.filter_reason = Some(Filter::RefAnswerTooLong.as_str().into());
                } else if answer.answer_json.is_none() {
                    // An agent can only send JSON: an answer it cannot write can never be matched.
                    config.filter_reason = Some(Filter::RefAnswerNotJson.as_str().into());
                }
                config.ref_answer = Some(answer.answer);
            }
            Some(Err(detail)) => {
                config.ref_answer = None;
                config.filter_reason = Some(Filter::RefAnswerFailed.as_str().into());
                self.reject(&config.config_id, Filter::RefAnswerFailed.as_str(), detail);
            }
            None => {}
        }
    }

    /// An environment the exploit battery could not play (`why`): it is not verified, whatever
    /// else it passed.
    pub(super) fn not_attacked(&mut self, env: &EnvironmentRow, why: &str) {
        self.unattacked.insert(env.env_id.clone(), format!("the exploit battery played no configuration: {why}"));
    }

    /// What the exploit battery found: every run a row of the audit, every finding a reject row
    /// (they disqualify the environment; the first one is its status), the equivalences it accepts
    /// kept for its status detail.
    pub(super) fn record_battery(&mut self, env: &EnvironmentRow, outcome: super::battery::Outcome) {
        for (number, run) in outcome.runs.into_iter().enumerate() {
            self.battery_runs.push(BatteryRunRow {
                env_id: env.env_id.clone(),
                run: number as i32,
                config_id: crate::tables::config_id(&env.env_id, &run.config),
                class: run.class.as_str().into(),
                policy: run.policy,
                actions: serde_json::to_string(&run.actions).expect("text serializes"),
                from_reset: run.from_reset,
                final_reward: run.final_reward,
                verdict: run.verdict.as_str().into(),
                detail: run.detail,
            });
        }
        for finding in outcome.findings {
            self.reject(&env.env_id, finding.reason.as_str(), finding.detail.clone());
            self.env_findings.entry(env.env_id.clone()).or_insert(finding);
        }
        if !outcome.lenient.is_empty() {
            self.lenient.insert(env.env_id.clone(), outcome.lenient);
        }
    }

    /// A probe finding: a reject row, and either the configuration's filter reason or (for a
    /// finding that disqualifies the environment) the environment's.
    fn apply_finding(&mut self, config: &mut TaskConfigRow, finding: Finding) {
        self.reject(&config.config_id, finding.reason.as_str(), finding.detail.clone());
        if finding.reason.disqualifies_environment() {
            self.env_findings.entry(config.env_id.clone()).or_insert(finding);
            return;
        }
        if finding.reason == ProbeReason::ProbeFailed {
            *self.unprobed.entry(config.env_id.clone()).or_default() += 1;
        }
        config.filter_reason.get_or_insert_with(|| Filter::Probe(finding.reason).as_str().into());
    }

    fn record_cell(&mut self, config: &TaskConfigRow, cell: Cell) {
        let label = cell.label();
        if label == CellVerdict::Contradiction {
            self.reject(&config.config_id, Reason::VerdictContradiction.as_str(), cell.detail().unwrap_or_default());
        }
        self.oracle_runs.push(OracleRunRow {
            env_id: config.env_id.clone(),
            candidate: cell.candidate,
            config_id: config.config_id.clone(),
            verdict: label.as_str().into(),
            oracle_calls: cell.calls(),
            duration_ms: cell.duration_ms as i64,
            detail: cell.detail(),
        });
        self.cells.insert((config.config_id.clone(), cell.candidate), cell);
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
    ) -> Result<i32, (Reason, String)> {
        let budget = settings.env_budget.as_millis() as u64;
        let mut best: Option<(i64, i32)> = None;
        let mut over_budget = None;
        for &candidate in eligible {
            let cells: Option<Vec<&Cell>> = checked
                .iter()
                .map(|c| self.cells.get(&(c.config_id.clone(), candidate)).filter(|cell| cell.label() == CellVerdict::Pass))
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
                Reason::OracleBudgetExceeded,
                format!("candidate {candidate} passes every configuration in {spent} ms, over the budget of {budget} ms"),
            )),
            (None, None) => {
                let refused: Vec<&str> = checked
                    .iter()
                    .filter_map(|c| self.cells.get(&(c.config_id.clone(), 0)))
                    .filter_map(|cell| cell.run.as_ref().ok())
                    .flat_map(|run| run.refused.iter().map(String::as_str))
                    .collect();
                if let Some(name) = refused.first() {
                    let detail = format!("the environment's own solve calls {name}, which is not one of its tools");
                    return Err((Reason::UndocumentedTool, detail));
                }
                let own_fails = |c: &&&TaskConfigRow| {
                    self.cells.get(&(c.config_id.clone(), 0)).is_none_or(|cell| cell.label() != CellVerdict::Pass)
                };
                let failed = checked.iter().find(own_fails);
                let example = failed.map_or(String::new(), |c| format!("; the environment's own solve fails on {}", c.config));
                Err((Reason::OracleFailed, format!("no candidate of {} passes every configuration{example}", eligible.len())))
            }
        }
    }

    /// Sets a configuration's oracle columns from `candidate`'s cell (the chosen oracle, or the
    /// environment's own `solve` when none was chosen).
    pub(super) fn apply_oracle(&mut self, config: &mut TaskConfigRow, candidate: i32) {
        let Some(cell) = self.cells.get(&(config.config_id.clone(), candidate)) else { return };
        let label = cell.label();
        config.oracle_passed = Some(label == CellVerdict::Pass);
        config.oracle_calls = cell.calls();
        config.distinct_tools = None;
        config.oracle_trajectory = None;
        match (&cell.run, label) {
            (Ok(run), CellVerdict::Pass) => {
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
                config.filter_reason.get_or_insert_with(|| Filter::Oracle(label).as_str().into());
            }
        }
    }

    /// Whether a candidate written from the task text alone (any but the environment's own
    /// `solve`, candidate 0) passes each configuration its own `solve` ran on, and the share of
    /// those it passes: all null when the environment has no such candidate.
    pub(super) fn record_independence(
        &self,
        env: &mut EnvironmentRow,
        configs: &mut [TaskConfigRow],
        own: &[usize],
        has_independent: bool,
    ) {
        let (mut ran, mut passed) = (0usize, 0usize);
        for &index in own {
            let config = &mut configs[index];
            let id = config.config_id.clone();
            let played = has_independent && self.cells.contains_key(&(id.clone(), 0));
            config.independent_pass = played.then(|| {
                let mut others = self.cells.range((id.clone(), 1)..=(id, i32::MAX));
                others.any(|(_, cell)| cell.label() == CellVerdict::Pass)
            });
            ran += usize::from(played);
            passed += usize::from(config.independent_pass == Some(true));
        }
        env.independent_share = (ran > 0).then(|| passed as f64 / ran as f64);
    }

    /// Decides the environment's status: the module-wide checks first, then what the probes
    /// found, then its configurations' reference answers and oracle runs.
    pub(super) fn settle_env(
        &mut self,
        env: &mut EnvironmentRow,
        checks: ModuleChecks,
        mine: &[&TaskConfigRow],
        oracle: Result<i32, (Reason, String)>,
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
        let pickle = self.pickle.get(&env.env_id);
        env.servable = pickle.map(Option::is_none);
        env.serve_detail = pickle.cloned().flatten();
        if let Some(finding) = self.env_findings.get(&env.env_id).filter(|f| f.reason.decides_servability()) {
            env.servable = Some(false);
            env.serve_detail = Some(finding.detail.clone());
        }
        let unpicklable = env.serve_detail.clone().filter(|_| env.servable == Some(false));
        let checked = checked(mine);
        let unprobed = self.unprobed.get(&env.env_id).copied().unwrap_or(0);
        let (status, detail) = if let Some((status, detail)) = failure {
            (status.as_str(), Some(detail))
        } else if let Some(finding) = self.env_findings.get(&env.env_id) {
            (finding.reason.as_str(), Some(finding.detail.clone()))
        } else if let Some(detail) = unpicklable {
            (ProbeReason::NotServable.as_str(), Some(format!("its state does not survive pickling: {detail}")))
        } else if let Err(detail) = checks.description {
            (Reason::ContractFailed.as_str(), Some(detail))
        } else if mine.is_empty() {
            (Reason::NoConfigs.as_str(), None)
        } else if checked.is_empty() {
            (Reason::RefAnswerFailed.as_str(), Some("no configuration has a reference answer".to_string()))
        } else if let Some(detail) = survival_failure(env, checked.len(), mine.len(), settings) {
            (Reason::RefAnswerSurvival.as_str(), Some(detail))
        } else if unprobed == checked.len() {
            (ProbeReason::ProbeFailed.as_str(), Some(format!("the probes of all {unprobed} configurations could not run")))
        } else if let Err((status, detail)) = &oracle {
            (status.as_str(), Some(detail.clone()))
        } else if let Some(detail) = self.unattacked.get(&env.env_id) {
            (ProbeReason::NotAttacked.as_str(), Some(detail.clone()))
        } else {
            (VERIFIED, None)
        };
        env.status = status.into();
        env.oracle_candidate = oracle.ok().filter(|_| status == VERIFIED);
        let lenient = self.lenient.get(&env.env_id).filter(|_| status == VERIFIED);
        env.status_detail = detail.clone().or_else(|| lenient.map(|l| format!("lenient_matching: {}", l.join("; "))));
        if status != VERIFIED {
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

/// The reference-answer survival rule: at least `min_ref_share` of every environment's
/// configurations have a reference answer, and at least `min_ref_configs` of a synthesized one's.
fn survival_failure(env: &EnvironmentRow, checked: usize, total: usize, settings: &VerifySettings) -> Option<String> {
    let share_ok = checked as f64 >= settings.min_ref_share * total as f64;
    let count_ok = env.problem_id.is_none() || checked >= settings.min_ref_configs;
    if share_ok && count_ok {
        return None;
    }
    let rule = if env.problem_id.is_some() {
        format!("at least {:.0}% and {} are required", settings.min_ref_share * 100.0, settings.min_ref_configs)
    } else {
        format!("at least {:.0}% are required", settings.min_ref_share * 100.0)
    };
    Some(format!("{checked} of {total} configurations have a reference answer; {rule}"))
}
