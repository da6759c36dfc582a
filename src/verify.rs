//! Verification of environments (stages 4, 7 and 8 of the method for environments that carry their
//! own oracle, as released CodeGym data does): the tools and their agent-facing documentation, the
//! reference answer of every configuration, the oracle on every configuration, then the curation
//! filters. Reads `environments` + `task_configs`, writes them back with results, plus
//! `oracle_runs`, `tool_call_stats` and `rejects`. All guest code runs in the sandbox.

use crate::dataset::{self, DatasetError, Table};
use crate::harness::{
    self, ContractCheck, EnvSource, EnvWork, Finding, OracleRun, ProbeFindings, RefAnswer, SelfTest, Step, ToolDescription,
};
use crate::sandbox::{ExecMode, JobReporter, Limits, Sandbox, SandboxError, Verdict};
use crate::tables::{ENV_PENDING, EnvironmentRow, OracleCandidateRow, OracleRunRow, RejectRow, TaskConfigRow, ToolCallStatRow};
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
    /// Budget of the steps that run the whole module: its self-tests, the contract check (5 s).
    pub module_timeout: Duration,
    /// A kept configuration needs `min_calls <= oracle calls <= max_calls` (10..=256).
    pub min_calls: i32,
    pub max_calls: i32,
    /// A kept environment needs at least this many tools (4).
    pub min_tools: i32,
    /// A kept configuration is solved by the reference model at most this often (25%; the hard
    /// variant 1/8), where its pass rate is known.
    pub max_reference_pass_rate: f64,
    /// Synthesized environments survive the reference-answer check only if at least this share
    /// of their configurations, and at least `min_ref_configs` of them, have a reference answer
    /// (80% and 10); imported environments carry their own curated configurations.
    pub min_ref_share: f64,
    pub min_ref_configs: usize,
    /// Reference-model pass rates to apply before curating: a Parquet or JSON Lines file of
    /// rows with `score` (0..1) and `config_id` or `config` (`EnvName@{json}`).
    pub reference_scores: Option<std::path::PathBuf>,
    /// Near-duplicate threshold and validation share of the train/validation split.
    pub near_duplicates: crate::near_duplicates::NearDuplicateSettings,
    /// `len(str(answer))` must not exceed this (100).
    pub max_answer_chars: usize,
    pub threads: usize,
    pub mode: ExecMode,
    /// Re-verify every environment, not only pending ones (after changing limits, say).
    pub all: bool,
}

impl VerifySettings {
    /// The hard variant for long-reasoning models: up to 512 oracle calls, and configurations
    /// the reference model solves at most 1/8 of the time.
    pub fn hard(self) -> VerifySettings {
        VerifySettings { max_calls: 512, max_reference_pass_rate: 0.125, ..self }
    }
}

impl Default for VerifySettings {
    fn default() -> Self {
        VerifySettings {
            cell: Limits::default(),
            env_budget: Duration::from_secs(15),
            module_timeout: Duration::from_secs(5),
            min_calls: 10,
            max_calls: 256,
            min_tools: 4,
            max_reference_pass_rate: 0.25,
            min_ref_share: 0.8,
            min_ref_configs: 10,
            reference_scores: None,
            near_duplicates: Default::default(),
            max_answer_chars: 100,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            mode: ExecMode::default(),
            all: false,
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
    /// Time spent in each kind of step (`oracle`, `probe`, ...), summed over workers.
    pub step_ms: BTreeMap<&'static str, u64>,
}

/// What the module-wide steps found about one environment.
struct ModuleChecks {
    contract: Result<ContractCheck, String>,
    self_test: Result<SelfTest, String>,
    description: Result<ToolDescription, String>,
}

impl ModuleChecks {
    /// Why the module breaks the contract (stage 2 of the method), if it does: the contract check,
    /// then its own self-tests (exit 0 within the module budget, at least two of them run).
    fn failure(&self) -> Option<(&'static str, String)> {
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

/// Results gathered for one configuration.
#[derive(Default)]
struct ConfigResult {
    ref_answer: Option<Result<RefAnswer, String>>,
    /// One cell per oracle candidate.
    oracles: Vec<Cell>,
    /// What the anti-gaming probe found (none when the probe itself failed: the reference-answer
    /// or oracle cell already says why).
    probe: Option<ProbeFindings>,
}

/// One (candidate, configuration) oracle run.
#[derive(Debug, Clone)]
struct Cell {
    candidate: i32,
    run: Result<OracleRun, String>,
    verdict: Verdict,
    duration_ms: u64,
}

impl Cell {
    fn label(&self) -> &'static str {
        oracle_verdict(&self.run, self.verdict)
    }

    fn calls(&self) -> Option<i32> {
        self.run.as_ref().ok().and_then(|r| i32::try_from(r.oracle_calls).ok())
    }
}

/// What a step's result is for.
#[derive(Debug, Clone, Copy)]
enum Target {
    Module,
    Smoke(i32),
    RefAnswer(usize),
    Oracle(usize, i32),
    Probe(usize),
}

/// Per environment of `chunk`: the contract check, its self-tests, describe, the smoke test of
/// each extra oracle candidate, then per configuration its reference answer, one oracle cell per
/// candidate (0: the environment's own `solve`) and the probe. Returns the work and what each
/// step is for.
fn plan<'a>(
    chunk: &[usize],
    envs: &'a [EnvironmentRow],
    configs: &[TaskConfigRow],
    configs_of: &BTreeMap<String, Vec<usize>>,
    candidates: &'a [OracleCandidateRow],
) -> (Vec<EnvWork<'a>>, Vec<Vec<Target>>) {
    let mut work = Vec::new();
    let mut targets = Vec::new();
    for &env_index in chunk {
        let env = &envs[env_index];
        let extra: Vec<&OracleCandidateRow> = candidates.iter().filter(|c| c.env_id == env.env_id).collect();
        let mut steps = vec![Step::Contract, Step::SelfTest, Step::Describe];
        let mut step_targets = vec![Target::Module; steps.len()];
        for candidate in &extra {
            steps.push(Step::SmokeTest { solver: candidate.solver.clone() });
            step_targets.push(Target::Smoke(candidate.candidate));
        }
        for &config in configs_of.get(&env.env_id).map_or(&[][..], Vec::as_slice) {
            let text = &configs[config].config;
            steps.push(Step::RefAnswer { config: text.clone() });
            step_targets.push(Target::RefAnswer(config));
            steps.push(Step::Oracle { config: text.clone(), solver: None });
            step_targets.push(Target::Oracle(config, 0));
            for candidate in &extra {
                steps.push(Step::Oracle { config: text.clone(), solver: Some(candidate.solver.clone()) });
                step_targets.push(Target::Oracle(config, candidate.candidate));
            }
            steps.push(Step::Probe {
                config: text.clone(),
                task_text: env.task_text.clone().unwrap_or_default(),
                tool_docs: env.tool_docs.clone(),
            });
            step_targets.push(Target::Probe(config));
        }
        let source = EnvSource { code: &env.env_code, name: &env.env_name };
        work.push(EnvWork { env: source, steps, seed: harness::seed_for(&env.env_id) });
        targets.push(step_targets);
    }
    (work, targets)
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

/// Environments verified between two writes of the tables: a killed run loses at most this much
/// work, and the next run resumes with what is still pending.
const CHUNK_ENVS: usize = 64;

/// Runs verification over the dataset at `data`: every environment still pending (or one with a
/// configuration that has no oracle result yet), or all of them with `settings.all`. Tables are
/// rewritten after each chunk of environments.
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
    if let Some(path) = &settings.reference_scores {
        apply_reference_scores(path, &mut configs)?;
    }
    let mut configs_of: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, config) in configs.iter().enumerate() {
        configs_of.entry(config.env_id.clone()).or_default().push(i);
    }
    let unrun = |env: &EnvironmentRow| {
        configs_of.get(&env.env_id).is_some_and(|own| own.iter().any(|&c| configs[c].oracle_passed.is_none()))
    };
    let selected: Vec<usize> =
        (0..envs.len()).filter(|&i| settings.all || envs[i].status == ENV_PENDING || unrun(&envs[i])).collect();
    let mut stored = Stored::read(data)?;
    let mut steps = 0;
    let mut step_ms: BTreeMap<&'static str, u64> = BTreeMap::new();
    for chunk in selected.chunks(CHUNK_ENVS) {
        let (work, targets) = plan(chunk, &envs, &configs, &configs_of, &stored.candidates);
        let outcomes = harness::run_steps(
            sandbox,
            &work,
            settings.cell,
            settings.module_timeout,
            settings.mode,
            settings.threads,
            reporter,
        )?;
        steps += work.iter().map(|w| w.steps.len()).sum::<usize>();
        let mut checks: Vec<ModuleChecks> = Vec::new();
        let mut eligible: Vec<Vec<i32>> = Vec::new();
        let mut smoke: Vec<(String, i32, String)> = Vec::new();
        let mut results: BTreeMap<usize, ConfigResult> = BTreeMap::new();
        for (((env_work, env_results), env_targets), &env) in work.iter().zip(&outcomes).zip(&targets).zip(chunk) {
            // `plan` puts the module-wide steps first: contract, self-test, describe.
            checks.push(ModuleChecks {
                contract: env_results[0].parse(),
                self_test: env_results[1].parse(),
                description: env_results[2].parse(),
            });
            eligible.push(vec![0]);
            for ((step, result), target) in env_work.steps.iter().zip(env_results).zip(env_targets) {
                *step_ms.entry(step.kind()).or_default() += result.duration_ms;
                match *target {
                    Target::Module => {}
                    Target::Smoke(candidate) => {
                        let verdict = match result.parse::<SelfTest>() {
                            Ok(run) if run.smoke_passed() => "pass".to_string(),
                            Ok(run) => format!("exit {}, reward=1 x{}, reward=0 x{}", run.exit_code, run.reward_1, run.reward_0),
                            Err(detail) => detail,
                        };
                        if verdict == "pass" {
                            eligible.last_mut().expect("pushed above").push(candidate);
                        }
                        smoke.push((envs[env].env_id.clone(), candidate, verdict));
                    }
                    Target::RefAnswer(config) => results.entry(config).or_default().ref_answer = Some(result.parse()),
                    Target::Oracle(config, candidate) => results.entry(config).or_default().oracles.push(Cell {
                        candidate,
                        run: result.parse(),
                        verdict: result.verdict,
                        duration_ms: result.duration_ms,
                    }),
                    Target::Probe(config) => results.entry(config).or_default().probe = result.parse().ok(),
                }
            }
        }
        let mut tables = Tables::default();
        for (config, result) in results {
            tables.record_config(&mut configs[config], result, settings);
        }
        for ((&env, checks), eligible) in chunk.iter().zip(checks).zip(&eligible) {
            let own = configs_of.get(&envs[env].env_id).map_or(&[][..], Vec::as_slice);
            let oracle = {
                let own_configs: Vec<&TaskConfigRow> = own.iter().map(|&c| &configs[c]).collect();
                tables.choose_oracle(&checked(&own_configs), eligible, settings)
            };
            for &config in own {
                tables.apply_oracle(&mut configs[config], *oracle.as_ref().unwrap_or(&0));
            }
            let own_configs: Vec<&TaskConfigRow> = own.iter().map(|&c| &configs[c]).collect();
            tables.settle_env(&mut envs[env], checks, &own_configs, oracle, settings);
        }
        stored.record_smoke_tests(smoke);
        stored.replace(chunk.iter().map(|&e| envs[e].env_id.as_str()), tables);
        curate_all(&mut envs, &mut configs, settings);
        stored.write(data, &envs, &configs)?;
    }
    if selected.is_empty() {
        // Nothing to run, but thresholds may have changed: curate what the tables hold.
        curate_all(&mut envs, &mut configs, settings);
        stored.write(data, &envs, &configs)?;
    }
    Ok(VerifySummary {
        environments: envs.len(),
        verified: envs.iter().filter(|e| e.status == "verified").count(),
        configs: configs.len(),
        configs_kept: configs.iter().filter(|c| c.kept).count(),
        oracle_cells: stored.oracle_runs.len(),
        oracle_passed: stored.oracle_runs.iter().filter(|r| r.verdict == "pass").count(),
        steps,
        step_ms,
    })
}

/// The tables verification writes besides `environments` and `task_configs`, as stored.
struct Stored {
    candidates: Vec<OracleCandidateRow>,
    oracle_runs: Vec<OracleRunRow>,
    tool_calls: Vec<ToolCallStatRow>,
    rejects: Vec<RejectRow>,
}

impl Stored {
    fn read(data: &Path) -> Result<Stored, DatasetError> {
        Ok(Stored {
            candidates: dataset::read_table(data, Table::OracleCandidates)?,
            oracle_runs: dataset::read_table(data, Table::OracleRuns)?,
            tool_calls: dataset::read_table(data, Table::ToolCallStats)?,
            rejects: dataset::read_table(data, Table::Rejects)?,
        })
    }

    /// Replaces everything verification recorded about `env_ids` with `fresh`.
    fn replace<'a>(&mut self, env_ids: impl Iterator<Item = &'a str>, fresh: Tables) {
        let envs: std::collections::HashSet<&str> = env_ids.collect();
        let entities: std::collections::HashSet<&str> =
            self.oracle_runs.iter().filter(|r| envs.contains(r.env_id.as_str())).map(|r| r.config_id.as_str()).collect();
        let stale =
            |r: &RejectRow| r.stage == STAGE && (envs.contains(r.entity_id.as_str()) || entities.contains(r.entity_id.as_str()));
        let rejects: Vec<RejectRow> = self.rejects.iter().filter(|r| !stale(r)).cloned().collect();
        self.rejects = rejects;
        self.oracle_runs.retain(|r| !envs.contains(r.env_id.as_str()));
        self.tool_calls.retain(|r| !envs.contains(r.env_id.as_str()));
        self.oracle_runs.extend(fresh.oracle_runs);
        self.tool_calls.extend(fresh.tool_calls);
        self.rejects.extend(fresh.rejects);
    }

    /// Records the smoke test of each (environment, candidate): "pass" or why not.
    fn record_smoke_tests(&mut self, results: Vec<(String, i32, String)>) {
        for (env_id, candidate, verdict) in results {
            if let Some(row) = self.candidates.iter_mut().find(|c| c.env_id == env_id && c.candidate == candidate) {
                row.smoke_test = Some(verdict);
            }
        }
    }

    fn write(&self, data: &Path, envs: &[EnvironmentRow], configs: &[TaskConfigRow]) -> Result<(), DatasetError> {
        if !self.candidates.is_empty() {
            dataset::write_table(data, Table::OracleCandidates, &self.candidates)?;
        }
        dataset::write_table(data, Table::OracleRuns, &self.oracle_runs)?;
        dataset::write_table(data, Table::ToolCallStats, &self.tool_calls)?;
        dataset::write_table(data, Table::Rejects, &self.rejects)?;
        dataset::write_table(data, Table::TaskConfigs, configs)?;
        dataset::write_table(data, Table::Environments, envs)?;
        Ok(())
    }
}

#[derive(Default)]
struct Tables {
    oracle_runs: Vec<OracleRunRow>,
    tool_calls: Vec<ToolCallStatRow>,
    rejects: Vec<RejectRow>,
    /// This chunk's oracle cells by (config_id, candidate).
    cells: BTreeMap<(String, i32), Cell>,
    /// Probe findings that make an environment unusable (it rewards wrong answers, its oracle
    /// reads hidden state or depends on the seed), first one per environment.
    env_findings: BTreeMap<String, Finding>,
}

impl Tables {
    /// Records one configuration's cells; `filter_reason` keeps what the cells found (a failed
    /// reference-answer check, an oracle that did not pass), for [`curate`] to build on.
    fn record_config(&mut self, config: &mut TaskConfigRow, result: ConfigResult, settings: &VerifySettings) {
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
    fn choose_oracle(
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
    fn apply_oracle(&mut self, config: &mut TaskConfigRow, candidate: i32) {
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
    fn settle_env(
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
        } else if env.source != crate::import_codegym::SOURCE
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

#[derive(serde::Deserialize)]
struct ReferenceScore {
    config_id: Option<String>,
    config: Option<String>,
    score: f64,
}

/// Sets `reference_pass_rate` from a scores file; rows matching no configuration are ignored.
fn apply_reference_scores(path: &Path, configs: &mut [TaskConfigRow]) -> Result<(), DatasetError> {
    let scores: Vec<ReferenceScore> = dataset::read_rows_file(path)?;
    let mut by_key: BTreeMap<&str, f64> = BTreeMap::new();
    for score in &scores {
        if let Some(key) = score.config_id.as_deref().or(score.config.as_deref()) {
            by_key.insert(key, score.score);
        }
    }
    for config in configs.iter_mut() {
        if let Some(&score) = by_key.get(config.config_id.as_str()).or_else(|| by_key.get(config.config.as_str())) {
            config.reference_pass_rate = Some(score);
        }
    }
    Ok(())
}

/// Configurations that passed the reference-answer check (it ran, the answer is short enough and
/// JSON): the ones an oracle must pass.
fn checked<'a>(configs: &[&'a TaskConfigRow]) -> Vec<&'a TaskConfigRow> {
    let ref_failed = |c: &TaskConfigRow| c.filter_reason.as_deref().is_some_and(|r| r.starts_with("ref_answer"));
    configs.iter().copied().filter(|c| c.ref_answer.is_some() && !ref_failed(c)).collect()
}

fn curate_all(envs: &mut [EnvironmentRow], configs: &mut [TaskConfigRow], settings: &VerifySettings) {
    crate::near_duplicates::assign(envs, settings.near_duplicates);
    let by_id: BTreeMap<&str, &EnvironmentRow> = envs.iter().map(|e| (e.env_id.as_str(), e)).collect();
    for config in configs.iter_mut() {
        if let Some(env) = by_id.get(config.env_id.as_str()) {
            curate(config, env, settings);
        }
    }
}

/// Reasons `record_config` derives from a configuration's own cells; curation keeps them.
fn is_cell_reason(reason: &str) -> bool {
    reason.starts_with("ref_answer")
        || reason.starts_with("answer_in_")
        || (reason.starts_with("oracle_") && !reason.starts_with("oracle_calls"))
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

/// The curation filters (stage 8), from what the tables hold: the cells' own findings, then the
/// oracle call range, the environment's status and tool count, the reference model's pass rate.
/// A pure function of stored columns, so changing a threshold (`--hard`) re-curates every
/// configuration without running anything.
fn curate(config: &mut TaskConfigRow, env: &EnvironmentRow, settings: &VerifySettings) {
    let cell_reason = config.filter_reason.take().filter(|r| is_cell_reason(r));
    config.filter_reason = cell_reason.or_else(|| {
        let calls = config.oracle_calls.unwrap_or(0);
        let reason = if config.oracle_passed != Some(true) {
            "oracle_not_run"
        } else if calls < settings.min_calls {
            "oracle_calls_below_min"
        } else if calls > settings.max_calls {
            "oracle_calls_above_max"
        } else if env.status != "verified" {
            "environment_not_verified"
        } else if env.tool_count < settings.min_tools {
            "too_few_tools"
        } else if config.reference_pass_rate.is_some_and(|rate| rate > settings.max_reference_pass_rate) {
            "reference_model_solves"
        } else {
            return None;
        };
        Some(reason.to_string())
    });
    config.kept = config.filter_reason.is_none();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(passed: bool) -> Result<OracleRun, String> {
        Ok(OracleRun { passed, message: String::new(), oracle_calls: 12, tool_calls: Default::default(), trajectory: vec![] })
    }

    fn env(source: &str) -> EnvironmentRow {
        EnvironmentRow::pending("e".into(), source.into(), "s".into(), "XEnv".into(), String::new())
    }

    fn config(i: usize, ref_answer: Option<&str>) -> TaskConfigRow {
        TaskConfigRow {
            config_id: format!("c{i}"),
            env_id: "e".into(),
            env_name: "XEnv".into(),
            config: format!("XEnv@{{\"i\": {i}}}"),
            difficulty: "easy".into(),
            source_index: None,
            ref_answer: ref_answer.map(String::from),
            oracle_passed: Some(true),
            oracle_calls: Some(12),
            distinct_tools: Some(4),
            kept: false,
            filter_reason: None,
            source_oracle_calls: None,
            reference_pass_rate: None,
            oracle_trajectory: None,
        }
    }

    fn passing_checks() -> ModuleChecks {
        ModuleChecks {
            contract: Ok(ContractCheck { classes: vec!["XEnv".into()], problems: vec![] }),
            self_test: Ok(SelfTest { exit_code: 0, error: None, reward_1: 2, reward_0: 0, stdout: String::new() }),
            description: Ok(ToolDescription { tools: vec!["Observe".into(); 5], tool_docs: "docs".into() }),
        }
    }

    #[test]
    fn synthesized_environments_need_most_reference_answers_to_survive() {
        let configs: Vec<TaskConfigRow> = (0..10).map(|i| config(i, (i < 7).then_some("3"))).collect();
        let mine: Vec<&TaskConfigRow> = configs.iter().collect();
        let mut synthesized = env("synthesis");
        Tables::default().settle_env(&mut synthesized, passing_checks(), &mine, Ok(0), &VerifySettings::default());
        assert_eq!(synthesized.status, "ref_answer_survival", "{:?}", synthesized.status_detail);
        let mut imported = env(crate::import_codegym::SOURCE);
        Tables::default().settle_env(&mut imported, passing_checks(), &mine, Ok(0), &VerifySettings::default());
        assert_eq!(imported.status, "verified");
    }

    #[test]
    fn a_failing_self_test_or_contract_decides_the_status_first() {
        let configs = [config(0, Some("3"))];
        let mine: Vec<&TaskConfigRow> = configs.iter().collect();
        let mut checks = passing_checks();
        checks.self_test = Ok(SelfTest { exit_code: 0, error: None, reward_1: 1, reward_0: 0, stdout: String::new() });
        let mut row = env("synthesis");
        Tables::default().settle_env(&mut row, checks, &mine, Ok(0), &VerifySettings::default());
        assert_eq!(row.status, "self_test_failed");
        let mut checks = passing_checks();
        checks.contract = Ok(ContractCheck { classes: vec![], problems: vec!["func_mapping has no Done".into()] });
        Tables::default().settle_env(&mut row, checks, &mine, Ok(0), &VerifySettings::default());
        assert_eq!((row.status.as_str(), row.status_detail.as_deref()), ("contract_failed", Some("func_mapping has no Done")));
    }

    #[test]
    fn configurations_the_reference_model_solves_too_often_are_dropped() {
        let run = OracleRun {
            passed: true,
            message: String::new(),
            oracle_calls: 40,
            tool_calls: Default::default(),
            trajectory: vec![],
        };
        let answer = RefAnswer { answer: "3".into(), answer_repr: "3".into(), answer_json: Some("3".into()) };
        let cell = || ConfigResult {
            ref_answer: Some(Ok(answer.clone())),
            oracles: vec![Cell { candidate: 0, run: Ok(run.clone()), verdict: Verdict::Ok, duration_ms: 5 }],
            probe: None,
        };
        let mut row = TaskConfigRow { reference_pass_rate: Some(0.25), ..config(0, None) };
        let verified = EnvironmentRow { status: "verified".into(), tool_count: 5, ..env("synthesis") };
        Tables::default().record_config(&mut row, cell(), &VerifySettings::default());
        curate(&mut row, &verified, &VerifySettings::default());
        assert_eq!((row.filter_reason.as_deref(), row.kept), (None, true), "25% is allowed");
        curate(&mut row, &verified, &VerifySettings::default().hard());
        assert_eq!(row.filter_reason.as_deref(), Some("reference_model_solves"), "the hard variant allows 1/8");
        curate(&mut row, &EnvironmentRow { tool_count: 3, ..verified.clone() }, &VerifySettings::default());
        assert_eq!(row.filter_reason.as_deref(), Some("too_few_tools"), "re-curation replaces earlier filter reasons");
        let unjson = || ConfigResult {
            ref_answer: Some(Ok(RefAnswer { answer_json: None, ..answer.clone() })),
            oracles: vec![],
            probe: None,
        };
        Tables::default().record_config(&mut row, unjson(), &VerifySettings::default());
        assert_eq!(row.filter_reason.as_deref(), Some("ref_answer_not_json"));
    }

    #[test]
    fn the_oracle_is_the_eligible_candidate_passing_everything_with_the_fewest_calls() {
        let configs = [config(0, Some("3")), config(1, Some("4"))];
        let checked: Vec<&TaskConfigRow> = configs.iter().collect();
        let mut tables = Tables::default();
        let run = |calls: i64, passed: bool| OracleRun {
            passed,
            message: String::new(),
            oracle_calls: calls,
            tool_calls: Default::default(),
            trajectory: vec![],
        };
        let cells = [
            (0, 30, true, 30),
            (0, 30, true, 1),
            (1, 12, true, 1),
            (1, 12, false, 1),
            (2, 11, true, 1),
            (2, 11, true, 1),
            (3, 5, true, 9_000),
            (3, 5, true, 9_000),
        ];
        for (i, &(candidate, calls, passed, ms)) in cells.iter().enumerate() {
            let config = format!("c{}", i % 2);
            tables.cells.insert(
                (config, candidate),
                Cell { candidate, run: Ok(run(calls, passed)), verdict: Verdict::Ok, duration_ms: ms },
            );
        }
        let settings = VerifySettings::default();
        assert_eq!(tables.choose_oracle(&checked, &[0, 1, 2, 3], &settings), Ok(2), "1 fails a configuration, 3 is over budget");
        assert_eq!(tables.choose_oracle(&checked, &[0, 1, 3], &settings), Ok(0), "2 failed its smoke test");
        let (status, _) = tables.choose_oracle(&checked, &[1, 3], &settings).unwrap_err();
        assert_eq!(status, "oracle_budget_exceeded");
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
