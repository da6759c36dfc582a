//! Verification of environments, the deterministic stages of the method (2, 4, 6, 7 and 8), the
//! same for imported CodeGym data and for our own synthesis output: the contract check and the
//! module's self-tests, the tools and their agent-facing documentation, the reference answer of
//! every configuration, the smoke test of every oracle candidate and the candidate x
//! configuration matrix, the anti-gaming probes, then curation. Reads `environments`,
//! `task_configs` and `oracle_candidates`; writes them back with results, plus `oracle_runs`,
//! `tool_call_stats`, `battery_runs` and `rejects`. All guest code runs in the sandbox.
//!
//! Modules: this one plans the sandbox steps per environment and runs them chunk by chunk, in two
//! rounds: the checks and oracle cells, then, for environments whose own oracle passes, the
//! exploit battery ([`battery`], which answers are compared by value with [`values`]);
//! [`record`] turns step results into rows and statuses (and chooses the oracle); [`curate`]
//! applies the curation filters; [`store`] keeps the tables in between; [`audit`] sums what the
//! battery tried and caught.

pub mod audit;
mod battery;
mod curate;
mod probes;
mod reasons;
mod record;
mod store;
mod values;

use crate::dataset::{self, Dataset, DatasetError, ShardSelection, Table};
use crate::harness::{self, Budgets, EnvSource, EnvWork, ModuleChecks, ProbeEvidence, RefAnswer, SelfTest, Step};
use crate::sandbox::{ExecMode, JobOutcome, JobReporter, Limits, Sandbox, SandboxError, Variant};
use crate::tables::{ENV_PENDING, EnvironmentRow, OracleCandidateRow, TaskConfigRow};
pub(crate) use curate::curate;
use curate::{checked, curate_all};
use record::{Cell, Tables};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use store::Stored;

const STAGE: &str = "verify";

/// `environments.status` of an environment that passed every check.
pub const VERIFIED: &str = crate::reasons::Reason::Verified.as_str();

/// Bumped whenever a check changes what it accepts: part of [`VerifySettings::verifier`], so a
/// rebuild re-verifies what an older verifier passed.
const CHECKS_VERSION: &str = "verify-checks-v6";

/// The first version of the checks whose serving replay decides servability.
const SERVING_REPLAY_SINCE: u32 = 3;

/// Whether an environment stamped with `verifier` was verified by checks that replay a session
/// through its pickled state, as `codegym serve` holds it, and keep it only when that is faithful.
/// An older stamp (or none) did not: `serve` refuses such an environment until it is re-verified.
pub fn replays_serving(verifier: Option<&str>) -> bool {
    let version = verifier.and_then(|v| v.strip_prefix("verify-checks-v")).map(|v| v.split(['+', '-']).next().unwrap_or(""));
    version.and_then(|v| v.parse::<u32>().ok()).is_some_and(|v| v >= SERVING_REPLAY_SINCE)
}

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
    /// An environment survives the reference-answer check only if at least this share of its
    /// configurations have a reference answer (80%), and, when it was synthesized from a problem,
    /// at least `min_ref_configs` of them (10; a release's environments carry their own curated
    /// few).
    pub min_ref_share: f64,
    pub min_ref_configs: usize,
    /// A configuration string longer than this is rejected alone (`config_too_large`) and never
    /// runs, so one huge configuration cannot sink its environment or the host's memory.
    pub max_config_bytes: usize,
    /// Reference-model pass rates to apply before curating: a Parquet or JSON Lines file of
    /// rows with `score` (0..1) and `config_id` or `config` (`EnvName@{json}`).
    pub reference_scores: Option<std::path::PathBuf>,
    /// `len(str(answer))` must not exceed this (100).
    pub max_answer_chars: usize,
    /// The exploit battery plays at least this many configurations of an environment (3) and at
    /// least `battery_share` of them (10%).
    pub battery_configs: usize,
    pub battery_share: f64,
    /// Calls per episode in the battery, as `codegym serve --max-steps` (256).
    pub step_cap: usize,
    /// A state that pickles to more than this cannot be held idle by `codegym serve` (256 KiB).
    pub max_state_bytes: usize,
    /// One call of a documented tool must take at most this (1 s).
    pub tool_budget: Duration,
    /// Curation keeps only configurations that a candidate written from the task text alone
    /// passes (`task_configs.independent_pass`): the reference and the text must agree.
    pub require_independent: bool,
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

    fn battery_limits(&self) -> battery::Limits {
        battery::Limits {
            step_cap: self.step_cap,
            max_state_bytes: self.max_state_bytes as u64,
            tool_budget_ms: self.tool_budget.as_millis() as u64,
        }
    }

    /// The time budgets of the sandbox steps.
    pub fn budgets(&self) -> Budgets {
        Budgets { module: self.module_timeout, ..Budgets::method(self.cell) }
    }

    /// The verifier's version: the checks (the harness and driver sources, the host's judging) and
    /// the settings that decide a status. Stamped on every environment verification decides.
    pub fn verifier(&self) -> String {
        let settings = format!(
            "{:?};{:?};{:?};{};{};{};{};{};{};{};{};{:?}",
            self.cell,
            self.module_timeout,
            self.env_budget,
            self.min_ref_share,
            self.min_ref_configs,
            self.max_config_bytes,
            self.max_answer_chars,
            self.battery_configs,
            self.battery_share,
            self.step_cap,
            self.max_state_bytes,
            self.tool_budget
        );
        let parts = [
            CHECKS_VERSION,
            include_str!("../harness/episode.py"),
            include_str!("../harness/harness.py"),
            // Served episodes are played through the session module's functions.
            include_str!("../harness/session.py"),
            include_str!("../sandbox/driver.py"),
            &settings,
        ];
        format!("{CHECKS_VERSION}+{}", &crate::ids::content_id("verifier", &parts)[..12])
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
            max_config_bytes: 64 << 10,
            reference_scores: None,
            max_answer_chars: 100,
            battery_configs: 3,
            battery_share: 0.1,
            step_cap: 256,
            max_state_bytes: 256 << 10,
            tool_budget: Duration::from_secs(1),
            require_independent: false,
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
    /// Environments this run verified (the others were decided by an earlier run).
    pub ran: usize,
    pub configs: usize,
    pub configs_kept: usize,
    pub oracle_cells: usize,
    pub oracle_passed: usize,
    /// Steps run in the sandbox (module checks, reference answers, oracle cells, probes).
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
    /// The probe's evidence, or why the probe did not finish (it then fails closed).
    probe: Option<Result<ProbeEvidence, String>>,
    /// The environment's own oracle's calls replayed in the alternate interpreter.
    alternate: Option<Result<harness::Played, String>>,
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

/// The work of one environment in the first round: what each step is for, and which environment
/// it is. Its oracle cells are played as agents afterwards ([`run_oracles`]).
struct Plan<'a> {
    work: Vec<EnvWork<'a>>,
    targets: Vec<Vec<Target>>,
    env_of: Vec<usize>,
}

/// Per environment of `chunk`: the module checks, the smoke test of each extra oracle candidate,
/// then per configuration its reference answer and the probe. Configurations in `skip` (over the
/// size cap) do not run.
fn plan<'a>(
    chunk: &[usize],
    envs: &'a [EnvironmentRow],
    configs: &'a [TaskConfigRow],
    configs_of: &BTreeMap<String, Vec<usize>>,
    candidates: &'a [OracleCandidateRow],
    skip: &dyn Fn(&TaskConfigRow) -> bool,
) -> Plan<'a> {
    let mut plan = Plan { work: Vec::new(), targets: Vec::new(), env_of: Vec::new() };
    for &env_index in chunk {
        let env = &envs[env_index];
        let source = EnvSource { code: &env.env_code, name: &env.env_name };
        let seed = harness::seed_for(&env.env_id);
        let extra: Vec<&OracleCandidateRow> = candidates.iter().filter(|c| c.env_id == env.env_id).collect();
        let mut work = EnvWork::new(source, seed);
        work.solvers = extra.iter().map(|c| c.solver.as_str()).collect();
        let mut targets = vec![Target::Module];
        work.steps.push(Step::Module);
        for (solver, candidate) in extra.iter().enumerate() {
            work.steps.push(Step::SmokeTest { solver });
            targets.push(Target::Smoke(candidate.candidate));
        }
        let own = configs_of.get(&env.env_id).map_or(&[][..], Vec::as_slice);
        for &config in own.iter().filter(|&&c| !skip(&configs[c])) {
            let at = work.configs.len();
            work.configs.push(&configs[config].config);
            work.steps.push(Step::RefAnswer { config: at });
            targets.push(Target::RefAnswer(config));
            work.steps.push(Step::Probe { config: at });
            targets.push(Target::Probe(config));
        }
        plan.work.push(work);
        plan.targets.push(targets);
        plan.env_of.push(env_index);
    }
    plan
}

/// Plays the oracle cells of `chunk` as agents ([`harness::run_agent_oracles`]): per configuration
/// the environment's own `solve` and every candidate that passed its smoke test. Their results go
/// into `found`; returns how many cells ran.
#[allow(clippy::too_many_arguments)]
fn run_oracles(
    sandbox: &Sandbox,
    chunk: &[usize],
    envs: &[EnvironmentRow],
    configs: &[TaskConfigRow],
    configs_of: &BTreeMap<String, Vec<usize>>,
    candidates: &[OracleCandidateRow],
    found: &mut ChunkResults,
    settings: &VerifySettings,
    skip: &dyn Fn(&TaskConfigRow) -> bool,
) -> Result<usize, SandboxError> {
    let mut cells = Vec::new();
    let mut targets = Vec::new();
    for &env_index in chunk {
        let env = &envs[env_index];
        let source = EnvSource { code: &env.env_code, name: &env.env_name };
        let seed = harness::seed_for(&env.env_id);
        let tools = found.checks.get(&env_index).and_then(|c| c.description.as_ref().ok()).map(|d| d.tools.as_slice());
        let eligible = found.eligible.get(&env_index).map_or(&[0][..], Vec::as_slice);
        let solvers: Vec<(i32, Option<&str>)> = std::iter::once((0, None))
            .chain(
                candidates
                    .iter()
                    .filter(|c| c.env_id == env.env_id && eligible.contains(&c.candidate))
                    .map(|c| (c.candidate, Some(c.solver.as_str()))),
            )
            .collect();
        let own: Vec<usize> =
            configs_of.get(&env.env_id).map_or(&[][..], Vec::as_slice).iter().copied().filter(|&c| !skip(&configs[c])).collect();
        let cell = |config: usize, solver| harness::AgentCell {
            env: source,
            config: &configs[config].config,
            solver,
            tools,
            seed,
            variant: Variant::Primary,
        };
        // The cells of one solver in a row: they share a pair of interpreters.
        for &(candidate, solver) in &solvers {
            for &config in &own {
                cells.push(cell(config, solver));
                targets.push(Target::Oracle(config, candidate));
            }
        }
    }
    let results = harness::run_agent_oracles(sandbox, &cells, settings.cell, settings.threads)?;
    let count = cells.len();
    drop(cells);
    for (target, result) in targets.into_iter().zip(results) {
        *found.step_ms.entry("oracle").or_default() += result.duration_ms;
        found.record_agent(target, result);
    }
    Ok(count)
}

/// Passes an environment's completion on when the last of its work items has finished, so a bar
/// counts environments.
struct EnvironmentsDone<'a> {
    reporter: &'a dyn JobReporter,
    env_of: &'a [usize],
    /// Per environment: its work items with steps that have not finished yet.
    left: BTreeMap<usize, AtomicUsize>,
}

impl<'a> EnvironmentsDone<'a> {
    fn new(reporter: &'a dyn JobReporter, plan: &'a Plan) -> EnvironmentsDone<'a> {
        let mut left: BTreeMap<usize, AtomicUsize> = BTreeMap::new();
        for (_, &env) in plan.work.iter().zip(&plan.env_of).filter(|(work, _)| !work.steps.is_empty()) {
            *left.entry(env).or_default().get_mut() += 1;
        }
        EnvironmentsDone { reporter, env_of: &plan.env_of, left }
    }
}

impl JobReporter for EnvironmentsDone<'_> {
    fn on_job_done(&self, index: usize, outcome: &JobOutcome) {
        let env = self.env_of[index];
        if self.left.get(&env).is_some_and(|left| left.fetch_sub(1, Ordering::AcqRel) == 1) {
            self.reporter.on_job_done(index, outcome);
        }
    }
}

/// Environments verified between two writes of the tables: a killed run loses at most this much
/// work, and the next run resumes with what is still pending.
const CHUNK_ENVS: usize = 64;

/// What the steps of one chunk found, per environment and per configuration.
#[derive(Default)]
struct ChunkResults {
    checks: BTreeMap<usize, ModuleChecks>,
    /// Per environment: the candidates that may be chosen (0 and those that passed their smoke test).
    eligible: BTreeMap<usize, Vec<i32>>,
    smoke: Vec<(String, i32, String)>,
    configs: BTreeMap<usize, ConfigResult>,
    /// Per environment the battery played: what it found.
    battery: BTreeMap<usize, battery::Outcome>,
    step_ms: BTreeMap<&'static str, u64>,
}

impl ChunkResults {
    fn gather(plan: &Plan, outcomes: &[Vec<harness::StepResult>], envs: &[EnvironmentRow]) -> ChunkResults {
        let mut found = ChunkResults::default();
        for (((work, results), targets), &env) in plan.work.iter().zip(outcomes).zip(&plan.targets).zip(&plan.env_of) {
            found.eligible.entry(env).or_insert_with(|| vec![0]);
            for ((step, result), target) in work.steps.iter().zip(results).zip(targets) {
                *found.step_ms.entry(step.kind()).or_default() += result.duration_ms;
                found.record(env, *target, result, envs);
            }
        }
        found
    }

    fn record(&mut self, env: usize, target: Target, result: &harness::StepResult, envs: &[EnvironmentRow]) {
        match target {
            Target::Module => {
                self.checks.insert(env, ModuleChecks::from_result(result));
            }
            Target::Smoke(candidate) => {
                let verdict = match result.parse::<SelfTest>() {
                    Ok(run) if run.smoke_passed() => "pass".to_string(),
                    Ok(run) => format!("exit {}, reward=1 x{}, reward=0 x{}", run.exit_code, run.reward_1, run.reward_0),
                    Err(_) => result.failure().unwrap_or_default(),
                };
                if verdict == "pass" {
                    self.eligible.entry(env).or_default().push(candidate);
                }
                self.smoke.push((envs[env].env_id.clone(), candidate, verdict));
            }
            Target::RefAnswer(config) => self.configs.entry(config).or_default().ref_answer = Some(result.parse()),
            Target::Probe(config) => {
                let evidence = result.parse().map_err(|e| result.failure().unwrap_or(e));
                self.configs.entry(config).or_default().probe = Some(evidence);
            }
            Target::Oracle(..) => unreachable!("oracle cells are played as agents"),
        }
    }

    /// An oracle cell played as an agent.
    fn record_agent(&mut self, target: Target, result: harness::AgentResult) {
        let harness::AgentResult { run, verdict, duration_ms } = result;
        let Target::Oracle(config, candidate) = target else { unreachable!("only oracle cells are played as agents") };
        self.configs.entry(config).or_default().oracles.push(Cell { candidate, run, verdict, duration_ms });
    }
}

/// Runs verification over the dataset `data`, in the shards `selection` names, one shard at a
/// time under its lease: every environment still pending, one with a configuration that has no
/// oracle result yet, or one an older verifier passed; all of them with `settings.all`. A shard's
/// tables are rewritten after each chunk of its environments; a shard with nothing to verify is
/// rewritten only when curation changes what it keeps.
pub fn verify(
    sandbox: &Sandbox,
    data: &Dataset,
    settings: &VerifySettings,
    selection: ShardSelection,
    reporter: Option<&dyn JobReporter>,
) -> Result<VerifySummary, VerifyError> {
    let shards: Vec<u32> = data.shards_with(Table::Environments)?.into_iter().filter(|&s| selection.includes(s)).collect();
    if shards.is_empty() && data.shards_with(Table::Environments)?.is_empty() {
        return Err(VerifyError::Empty(data.location().to_string()));
    }
    let scores = settings.reference_scores.as_deref().map(reference_scores).transpose()?;
    let mut summary = VerifySummary::default();
    data.each_leased(&shards, STAGE, |shard| -> Result<(), VerifyError> {
        verify_shard(sandbox, data, shard, settings, scores.as_ref(), reporter, &mut summary)
    })?;
    Ok(summary)
}

/// Verifies what is due in one shard, and curates it.
fn verify_shard(
    sandbox: &Sandbox,
    data: &Dataset,
    shard: u32,
    settings: &VerifySettings,
    scores: Option<&BTreeMap<String, f64>>,
    reporter: Option<&dyn JobReporter>,
    summary: &mut VerifySummary,
) -> Result<(), VerifyError> {
    let mut envs: Vec<EnvironmentRow> = data.read_shard(Table::Environments, shard)?;
    let mut configs: Vec<TaskConfigRow> = data.read_shard(Table::TaskConfigs, shard)?;
    let as_read = (envs.clone(), configs.clone());
    if let Some(scores) = scores {
        apply_reference_scores(scores, &mut configs);
    }
    let mut configs_of: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, config) in configs.iter().enumerate() {
        configs_of.entry(config.env_id.clone()).or_default().push(i);
    }
    let verifier = settings.verifier();
    let too_large = |c: &TaskConfigRow| c.config.len() > settings.max_config_bytes;
    let unrun = |env: &EnvironmentRow| {
        configs_of
            .get(&env.env_id)
            .is_some_and(|own| own.iter().any(|&c| configs[c].oracle_passed.is_none() && !too_large(&configs[c])))
    };
    let outdated = |env: &EnvironmentRow| env.status == VERIFIED && env.verifier.as_deref() != Some(verifier.as_str());
    let selected: Vec<usize> = (0..envs.len())
        .filter(|&i| settings.all || envs[i].status == ENV_PENDING || unrun(&envs[i]) || outdated(&envs[i]))
        .collect();
    if let Some(reporter) = reporter {
        reporter.on_skipped(envs.len() - selected.len());
    }
    let mut stored = None;
    for chunk in selected.chunks(CHUNK_ENVS) {
        let stored = match &mut stored {
            Some(stored) => stored,
            None => stored.insert(Stored::read(data, shard)?),
        };
        let plan = plan(chunk, &envs, &configs, &configs_of, &stored.candidates, &too_large);
        let progress = reporter.map(|reporter| EnvironmentsDone::new(reporter, &plan));
        let progress = progress.as_ref().map(|p| p as &dyn JobReporter);
        let outcomes = harness::run_steps(sandbox, &plan.work, &settings.budgets(), settings.mode, settings.threads, progress)?;
        summary.steps += plan.work.iter().map(|w| w.steps.len()).sum::<usize>();
        let mut found = ChunkResults::gather(&plan, &outcomes, &envs);
        drop(outcomes);
        drop(plan);
        let candidates = &stored.candidates;
        summary.steps += run_oracles(sandbox, chunk, &envs, &configs, &configs_of, candidates, &mut found, settings, &too_large)?;
        summary.steps += run_battery(sandbox, chunk, &envs, &configs, &configs_of, &mut found, settings)?;
        for (kind, ms) in std::mem::take(&mut found.step_ms) {
            *summary.step_ms.entry(kind).or_default() += ms;
        }
        let mut tables = Tables::default();
        for &env in chunk {
            settle(&mut tables, &mut found, env, &mut envs, &mut configs, &configs_of, settings, &too_large);
            envs[env].verifier = Some(verifier.clone());
        }
        summary.oracle_cells += tables.oracle_runs.len();
        summary.oracle_passed += tables.oracle_runs.iter().filter(|r| r.verdict == reasons::CellVerdict::Pass.as_str()).count();
        stored.record_smoke_tests(std::mem::take(&mut found.smoke));
        stored.replace(chunk.iter().map(|&e| envs[e].env_id.as_str()), tables);
        curate_all(&envs, &mut configs, settings);
        stored.write(data, &envs, &configs)?;
    }
    if selected.is_empty() {
        // Nothing to run, but thresholds may have changed: curate, and write only what changed.
        curate_all(&envs, &mut configs, settings);
        if configs != as_read.1 {
            data.write_shard(Table::TaskConfigs, shard, &configs)?;
        }
    }
    summary.ran += selected.len();
    summary.environments += envs.len();
    summary.verified += envs.iter().filter(|e| e.status == VERIFIED).count();
    summary.configs += configs.len();
    summary.configs_kept += configs.iter().filter(|c| c.kept).count();
    Ok(())
}

/// The second round, in the alternate variant, one job per environment of `chunk`: the
/// determinism check's reruns (every configuration's own oracle calls replayed), then the exploit
/// battery where it can be played (the module checks hold, and the own oracle passes
/// configurations with a JSON reference answer). What they find goes into `found`. Returns the
/// steps it ran.
fn run_battery(
    sandbox: &Sandbox,
    chunk: &[usize],
    envs: &[EnvironmentRow],
    configs: &[TaskConfigRow],
    configs_of: &BTreeMap<String, Vec<usize>>,
    found: &mut ChunkResults,
    settings: &VerifySettings,
) -> Result<usize, SandboxError> {
    let limits = settings.battery_limits();
    let subjects: BTreeMap<usize, battery::Subject> =
        chunk.iter().filter_map(|&env| subject(env, envs, configs, configs_of, found, settings).map(|s| (env, s))).collect();
    let (mut plans, mut work) = (Vec::new(), Vec::new());
    for &env in chunk {
        let battery = subjects.get(&env).map(|subject| battery::Battery::plan(subject, &limits));
        let row = &envs[env];
        let mut env_work = match &battery {
            Some(battery) => battery.work.clone(),
            None => battery::work(EnvSource { code: &row.env_code, name: &row.env_name }, harness::seed_for(&row.env_id)),
        };
        let own = configs_of.get(&row.env_id).map_or(&[][..], Vec::as_slice);
        let reruns = plan_reruns(&mut env_work, env, own, configs, found);
        if !env_work.steps.is_empty() {
            plans.push((env, reruns, battery));
            work.push(env_work);
        }
    }
    let results = harness::run_steps_and_sessions(sandbox, &work, &settings.budgets(), settings.mode, settings.threads)?;
    let steps = work.iter().map(|w| w.steps.len()).sum();
    let (mut replays, mut outcomes, mut step_ms) = (Vec::new(), Vec::new(), BTreeMap::<&'static str, u64>::new());
    for (((env, reruns, battery), env_work), results) in plans.iter().zip(&work).zip(&results) {
        for (step, result) in env_work.steps.iter().zip(results) {
            *step_ms.entry(step.kind()).or_default() += result.duration_ms;
        }
        let (rerun, rest) = results.split_at(reruns.len());
        for (&config, result) in reruns.iter().zip(rerun) {
            replays.push((config, result.parse().map_err(|e| result.failure().unwrap_or(e))));
        }
        if let (Some(battery), Some(subject)) = (battery, subjects.get(env)) {
            outcomes.push((*env, battery.judge(subject, rest, &limits)));
        }
    }
    drop((plans, work, subjects));
    for (config, replay) in replays {
        found.configs.entry(config).or_default().alternate = Some(replay);
    }
    found.battery.extend(outcomes);
    for (kind, ms) in step_ms {
        *found.step_ms.entry(kind).or_default() += ms;
    }
    Ok(steps)
}

/// Puts the determinism check's reruns of environment `env` first in `work`: per configuration
/// whose own oracle ran, its calls replayed. Returns the configurations, in step order.
fn plan_reruns<'a>(
    work: &mut EnvWork<'a>,
    env: usize,
    own: &[usize],
    configs: &'a [TaskConfigRow],
    found: &ChunkResults,
) -> Vec<usize> {
    let Some(tools) = found.checks.get(&env).and_then(|c| c.description.as_ref().ok()).map(|d| &d.tools) else {
        return Vec::new();
    };
    if work.tools.is_empty() {
        work.tools = tools.clone();
    }
    let (mut reruns, mut steps) = (Vec::new(), Vec::new());
    for &config in own {
        let run = found.configs.get(&config).and_then(|r| r.oracles.iter().find(|cell| cell.candidate == 0));
        let Some(Ok(run)) = run.map(|cell| &cell.run) else { continue };
        let calls = &run.trajectory[..run.trajectory.len().min(harness::TRAJECTORY_LIMIT)];
        let at = work.configs.len();
        work.configs.push(&configs[config].config);
        work.trajectories.push(calls.iter().map(|(action, _)| action.clone()).collect());
        steps.push(Step::Replay { config: at, trajectory: work.trajectories.len() - 1 });
        reruns.push(config);
    }
    work.steps.splice(0..0, steps);
    reruns
}

/// What the battery needs of one environment, when it can be played: the module checks hold, and
/// a sample of the configurations on which its own oracle passed with a JSON reference answer
/// (chosen by a hash of each configuration, so the sample does not follow the input's order).
fn subject<'a>(
    env: usize,
    envs: &'a [EnvironmentRow],
    configs: &'a [TaskConfigRow],
    configs_of: &BTreeMap<String, Vec<usize>>,
    found: &'a ChunkResults,
    settings: &VerifySettings,
) -> Option<battery::Subject<'a>> {
    let row = &envs[env];
    let checks = found.checks.get(&env)?;
    let description = checks.description.as_ref().ok().filter(|_| checks.failure().is_none())?;
    let own = configs_of.get(&row.env_id).map_or(&[][..], Vec::as_slice);
    let mut samples: Vec<battery::Sample> = own
        .iter()
        .filter_map(|&c| {
            let result = found.configs.get(&c)?;
            let answer = result.ref_answer.as_ref()?.as_ref().ok()?;
            let right = serde_json::from_str(answer.answer_json.as_deref()?).ok()?;
            let cell = result.oracles.iter().find(|cell| cell.candidate == 0 && cell.label() == reasons::CellVerdict::Pass)?;
            let run = cell.run.as_ref().ok()?;
            let config = configs[c].config.as_str();
            Some(battery::Sample { config, options: crate::naming::options(config), right, answer: &answer.answer, run })
        })
        .collect();
    if samples.is_empty() {
        return None;
    }
    samples.sort_by_cached_key(|s| blake3::hash(s.config.as_bytes()).to_hex().to_string());
    samples.truncate(battery::sample_size(own.len(), settings.battery_configs, settings.battery_share));
    let docs = if row.tool_docs.is_empty() { description.tool_docs.as_str() } else { row.tool_docs.as_str() };
    Some(battery::Subject {
        source: EnvSource { code: &row.env_code, name: &row.env_name },
        seed: harness::seed_for(&row.env_id),
        task_text: row.task_text.as_deref().unwrap_or(""),
        tools: description.tools.clone(),
        schemas: crate::tools::parse_tool_docs(docs),
        samples,
    })
}

/// Records one environment of a chunk: its configurations' cells and findings, its oracle, its
/// status.
#[allow(clippy::too_many_arguments)]
fn settle(
    tables: &mut Tables,
    found: &mut ChunkResults,
    env: usize,
    envs: &mut [EnvironmentRow],
    configs: &mut [TaskConfigRow],
    configs_of: &BTreeMap<String, Vec<usize>>,
    settings: &VerifySettings,
    too_large: &dyn Fn(&TaskConfigRow) -> bool,
) {
    let own = configs_of.get(&envs[env].env_id).map_or(&[][..], Vec::as_slice);
    let oversized: Vec<usize> = own.iter().copied().filter(|&c| too_large(&configs[c])).collect();
    for config in oversized {
        tables.oversized(&mut configs[config], settings.max_config_bytes);
    }
    let results: Vec<(usize, ConfigResult)> = own.iter().filter_map(|&c| found.configs.remove(&c).map(|r| (c, r))).collect();
    tables.record_configs(&envs[env], configs, results, settings);
    match found.battery.remove(&env) {
        Some(outcome) if outcome.runs.is_empty() => tables.not_attacked(&envs[env], "the own oracle never answered"),
        Some(outcome) => tables.record_battery(&envs[env], outcome),
        None => tables.not_attacked(
            &envs[env],
            "no configuration that the own oracle passes has a reference answer an agent can send (JSON)",
        ),
    }
    let checks = found.checks.remove(&env).expect("every planned environment has its module checks");
    let eligible = found.eligible.remove(&env).unwrap_or_else(|| vec![0]);
    let own_configs: Vec<&TaskConfigRow> = own.iter().map(|&c| &configs[c]).collect();
    let oracle = tables.choose_oracle(&checked(&own_configs), &eligible, settings);
    for &config in own {
        tables.apply_oracle(&mut configs[config], *oracle.as_ref().unwrap_or(&0));
    }
    let has_independent = found.smoke.iter().any(|(id, ..)| *id == envs[env].env_id);
    tables.record_independence(&mut envs[env], configs, own, has_independent);
    // A configuration over the size cap is rejected alone: it does not count against its environment.
    let own_configs: Vec<&TaskConfigRow> = own.iter().map(|&c| &configs[c]).filter(|c| !too_large(c)).collect();
    tables.settle_env(&mut envs[env], checks, &own_configs, oracle, settings);
}

#[derive(serde::Deserialize)]
struct ReferenceScore {
    config_id: Option<String>,
    config: Option<String>,
    score: f64,
}

/// Reference-model pass rates from a scores file, by `config_id` or `config`.
fn reference_scores(path: &Path) -> Result<BTreeMap<String, f64>, DatasetError> {
    let scores: Vec<ReferenceScore> = dataset::read_rows_file(path)?;
    Ok(scores.into_iter().filter_map(|s| s.config_id.or(s.config).map(|key| (key, s.score))).collect())
}

/// Sets `reference_pass_rate` from the scores; scores matching no configuration are ignored.
fn apply_reference_scores(by_key: &BTreeMap<String, f64>, configs: &mut [TaskConfigRow]) {
    for config in configs.iter_mut() {
        if let Some(&score) = by_key.get(&config.config_id).or_else(|| by_key.get(&config.config)) {
            config.reference_pass_rate = Some(score);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::curate::curate;
    use super::reasons::CellVerdict;
    use super::*;
    use crate::harness::{ContractCheck, OracleRun, SelfTest, ToolDescription};
    use crate::sandbox::Verdict;

    fn run(passed: bool) -> Result<OracleRun, String> {
        let reward = if passed { "reward=1" } else { "reward=0" };
        Ok(OracleRun {
            passed,
            message: reward.into(),
            oracle_calls: 12,
            traced_calls: 0,
            tool_calls: Default::default(),
            trajectory: vec![("Done".into(), reward.into())],
            ..Default::default()
        })
    }

    fn env(source: &str) -> EnvironmentRow {
        EnvironmentRow::pending("e".into(), source.into(), "s".into(), "XEnv".into(), String::new())
    }

    fn config(i: usize, ref_answer: Option<&str>) -> TaskConfigRow {
        TaskConfigRow {
            ref_answer: ref_answer.map(String::from),
            oracle_passed: Some(true),
            oracle_calls: Some(12),
            distinct_tools: Some(4),
            ..TaskConfigRow::pending("e", "XEnv", format!("XEnv@{{\"i\": {i}}}"), "easy", None)
        }
    }

    fn self_test(reward_1: usize) -> Result<SelfTest, String> {
        Ok(SelfTest { exit_code: 0, error: None, reward_1, reward_0: 0, stdout: String::new(), unsupported: vec![] })
    }

    fn passing_checks() -> ModuleChecks {
        ModuleChecks {
            contract: Ok(ContractCheck { classes: vec!["XEnv".into()], problems: vec![] }),
            self_test: self_test(2),
            description: Ok(ToolDescription { tools: vec!["Observe".into(); 5], tool_docs: "docs".into() }),
        }
    }

    #[test]
    fn every_environment_needs_most_reference_answers_and_a_synthesized_one_ten() {
        let configs: Vec<TaskConfigRow> = (0..10).map(|i| config(i, (i < 7).then_some("3"))).collect();
        let mine: Vec<&TaskConfigRow> = configs.iter().collect();
        let settings = VerifySettings::default();
        let mut synthesized = EnvironmentRow { problem_id: Some("p".into()), ..env("synthesis") };
        Tables::default().settle_env(&mut synthesized, passing_checks(), &mine, Ok(0), &settings);
        assert_eq!(synthesized.status, "ref_answer_survival", "{:?}", synthesized.status_detail);
        let mut imported = env("codegym-release");
        Tables::default().settle_env(&mut imported, passing_checks(), &mine, Ok(0), &settings);
        assert_eq!(imported.status, "ref_answer_survival", "70% is under the 80% rule for imported environments too");
        let configs: Vec<TaskConfigRow> = (0..3).map(|i| config(i, Some("3"))).collect();
        let few: Vec<&TaskConfigRow> = configs.iter().collect();
        Tables::default().settle_env(&mut imported, passing_checks(), &few, Ok(0), &settings);
        assert_eq!(imported.status, VERIFIED, "a release carries its own few configurations");
    }

    #[test]
    fn a_failing_self_test_or_contract_decides_the_status_first() {
        let configs = [config(0, Some("3"))];
        let mine: Vec<&TaskConfigRow> = configs.iter().collect();
        let mut checks = passing_checks();
        checks.self_test = self_test(1);
        let mut row = env("synthesis");
        Tables::default().settle_env(&mut row, checks, &mine, Ok(0), &VerifySettings::default());
        assert_eq!(row.status, "self_test_failed");
        let mut checks = passing_checks();
        checks.contract = Ok(ContractCheck { classes: vec![], problems: vec!["func_mapping has no Done".into()] });
        Tables::default().settle_env(&mut row, checks, &mine, Ok(0), &VerifySettings::default());
        assert_eq!((row.status.as_str(), row.status_detail.as_deref()), ("contract_failed", Some("func_mapping has no Done")));
        let mut checks = passing_checks();
        checks.self_test = Ok(SelfTest {
            exit_code: 1,
            error: Some("OSError: [Errno 58] Not supported".into()),
            reward_1: 0,
            reward_0: 0,
            stdout: String::new(),
            unsupported: vec!["asyncio".into()],
        });
        Tables::default().settle_env(&mut row, checks, &mine, Ok(0), &VerifySettings::default());
        assert_eq!(row.status, "unsupported_in_sandbox");
        assert!(row.status_detail.as_deref().unwrap().contains("asyncio"), "{:?}", row.status_detail);
    }

    #[test]
    fn configurations_the_reference_model_solves_too_often_are_dropped() {
        let answer = RefAnswer { answer: "3".into(), answer_repr: "3".into(), answer_json: Some("3".into()) };
        let mut row = TaskConfigRow { reference_pass_rate: Some(0.25), ..config(0, None) };
        let mut ran = run(true).unwrap();
        ran.oracle_calls = 40;
        let verified = EnvironmentRow { status: VERIFIED.into(), tool_count: 5, ..env("synthesis") };
        let mut tables = Tables::default();
        let cell = Cell { candidate: 0, run: Ok(ran), verdict: Verdict::Ok, duration_ms: 5 };
        let result = ConfigResult { ref_answer: Some(Ok(answer.clone())), oracles: vec![cell], ..Default::default() };
        let mut rows = vec![row.clone()];
        tables.record_configs(&verified, &mut rows, vec![(0, result)], &VerifySettings::default());
        tables.apply_oracle(&mut rows[0], 0);
        row = rows.remove(0);
        curate(&mut row, &verified, &VerifySettings::default());
        assert_eq!((row.filter_reason.as_deref(), row.kept), (None, true), "25% is allowed");
        curate(&mut row, &verified, &VerifySettings::default().hard());
        assert_eq!(row.filter_reason.as_deref(), Some("reference_model_solves"), "the hard variant allows 1/8");
        curate(&mut row, &EnvironmentRow { tool_count: 3, ..verified.clone() }, &VerifySettings::default());
        assert_eq!(row.filter_reason.as_deref(), Some("too_few_tools"), "re-curation replaces earlier filter reasons");
        let unjson = ConfigResult { ref_answer: Some(Ok(RefAnswer { answer_json: None, ..answer })), ..Default::default() };
        let mut rows = vec![row];
        Tables::default().record_configs(&verified, &mut rows, vec![(0, unjson)], &VerifySettings::default());
        assert_eq!(rows[0].filter_reason.as_deref(), Some("ref_answer_not_json"));
    }

    #[test]
    fn the_oracle_is_the_eligible_candidate_passing_everything_with_the_fewest_calls() {
        let configs = [config(0, Some("3")), config(1, Some("4"))];
        let checked: Vec<&TaskConfigRow> = configs.iter().collect();
        let mut tables = Tables::default();
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
            let mut ran = run(passed).unwrap();
            ran.oracle_calls = calls;
            let key = (configs[i % 2].config_id.clone(), candidate);
            tables.cells.insert(key, Cell { candidate, run: Ok(ran), verdict: Verdict::Ok, duration_ms: ms });
        }
        let settings = VerifySettings::default();
        assert_eq!(tables.choose_oracle(&checked, &[0, 1, 2, 3], &settings), Ok(2), "1 fails a configuration, 3 is over budget");
        assert_eq!(tables.choose_oracle(&checked, &[0, 1, 3], &settings), Ok(0), "2 failed its smoke test");
        let (status, _) = tables.choose_oracle(&checked, &[1, 3], &settings).unwrap_err();
        assert_eq!(status, crate::reasons::Reason::OracleBudgetExceeded);
    }

    #[test]
    fn oracle_verdicts_name_the_limit_that_ended_the_cell_and_contradictions() {
        assert_eq!(CellVerdict::of(&run(true), Verdict::Ok), CellVerdict::Pass);
        assert_eq!(CellVerdict::of(&run(false), Verdict::Ok), CellVerdict::Wrong);
        assert_eq!(CellVerdict::of(&Err("boom".into()), Verdict::Error), CellVerdict::Error);
        assert_eq!(CellVerdict::of(&Err("slow".into()), Verdict::Timeout), CellVerdict::Timeout);
        assert_eq!(CellVerdict::of(&Err("big".into()), Verdict::Memory), CellVerdict::Memory);
        assert_eq!(CellVerdict::of(&Err("loud".into()), Verdict::OutputLimit), CellVerdict::OutputLimit);
        let mut forged = run(true).unwrap();
        forged.trajectory = vec![("Done".into(), "reward=0".into())];
        assert_eq!(CellVerdict::of(&Ok(forged), Verdict::Ok), CellVerdict::Contradiction);
    }

    #[test]
    fn only_a_verifier_that_replays_sessions_decides_servability() {
        assert!(replays_serving(Some(&VerifySettings::default().verifier())));
        assert!(replays_serving(Some("verify-checks-v12+abc")));
        assert!(!replays_serving(Some("verify-checks-v2+abc")));
        assert!(!replays_serving(Some("something else")));
        assert!(!replays_serving(None));
    }

    #[test]
    fn a_verifier_version_changes_with_the_settings_that_decide_a_status() {
        let settings = VerifySettings::default();
        assert_eq!(settings.verifier(), VerifySettings::default().verifier());
        assert_ne!(settings.verifier(), VerifySettings { min_ref_share: 0.5, ..Default::default() }.verifier());
        assert_eq!(
            settings.verifier(),
            VerifySettings::default().hard().verifier(),
            "curation thresholds re-curate, never re-verify"
        );
    }
}
