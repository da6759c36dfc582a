//! Verification of environments, the deterministic stages of the method (2, 4, 6, 7 and 8), the
//! same for imported CodeGym data and for our own synthesis output: the contract check and the
//! module's self-tests, the tools and their agent-facing documentation, the reference answer of
//! every configuration, the smoke test of every oracle candidate and the candidate x
//! configuration matrix, the anti-gaming probes, then curation. Reads `environments`,
//! `task_configs` and `oracle_candidates`; writes them back with results, plus `oracle_runs`,
//! `tool_call_stats` and `rejects`. All guest code runs in the sandbox.
//!
//! Modules: this one plans the sandbox steps per environment and runs them chunk by chunk;
//! [`record`] turns step results into rows and statuses (and chooses the oracle); [`curate`]
//! applies the curation filters; [`store`] keeps the tables in between.

mod curate;
mod record;
mod store;

use crate::dataset::{self, DatasetError, Table};
use crate::harness::{self, EnvSource, EnvWork, ModuleChecks, ProbeFindings, RefAnswer, SelfTest, Step};
use crate::sandbox::{ExecMode, JobReporter, Limits, Sandbox, SandboxError};
use crate::tables::{ENV_PENDING, EnvironmentRow, OracleCandidateRow, TaskConfigRow};
pub(crate) use curate::curate;
use curate::{checked, curate_all};
use record::{Cell, Tables};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use store::Stored;

const STAGE: &str = "verify";

/// How the harness marks the oracle cells of a candidate that failed its smoke test (not run,
/// not recorded).
const SKIPPED: &str = "skipped:";

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
    /// (80% and 10); imported environments (no `problem_id`) carry their own curated configurations.
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
        let mut steps = ModuleChecks::STEPS.to_vec();
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
            // `plan` puts the module-wide steps first.
            checks.push(ModuleChecks::from_results(env_results));
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
                    Target::Oracle(_, _) if result.value.as_ref().is_err_and(|e| e.starts_with(SKIPPED)) => {}
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

#[cfg(test)]
mod tests {
    use super::curate::curate;
    use super::record::oracle_verdict;
    use super::*;
    use crate::harness::{ContractCheck, OracleRun, SelfTest, ToolDescription};
    use crate::sandbox::Verdict;

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
        let mut synthesized = EnvironmentRow { problem_id: Some("p".into()), ..env("synthesis") };
        Tables::default().settle_env(&mut synthesized, passing_checks(), &mine, Ok(0), &VerifySettings::default());
        assert_eq!(synthesized.status, "ref_answer_survival", "{:?}", synthesized.status_detail);
        let mut imported = env("codegym-release");
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
