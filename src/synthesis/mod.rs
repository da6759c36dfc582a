//! The LLM stages of the method (1, 3 and 5): environment synthesis, task configurations and
//! oracle candidates, with the extraction and contract check (stage 2) between them. Reads
//! `problems`; writes `environments` (status `pending` when ready for `verify`), `task_configs`
//! (with their difficulty band), `oracle_candidates`, `llm_calls` and `rejects`. Each stage works
//! on what the tables do not hold yet, so a rerun or a resumed run asks nothing twice.
//!
//! Modules: [`prompts`] renders the versioned prompt files; [`parse`] reads answers.

pub mod parse;
pub mod prompts;

use crate::dataset::{Dataset, DatasetError, ShardSelection, Table};
use crate::harness::{self, Budgets, EnvSource, EnvWork, ModuleChecks, Step, StepResult};
use crate::ids::content_id;
use crate::llm::{Call, ChatRequest, Client, LlmError, Sampling};
use crate::reasons::Reason;
use crate::report::{JobProgress, Printer};
use crate::sandbox::{ExecMode, Limits, Sandbox, SandboxError};
use crate::tables::{ENV_PENDING, EnvironmentRow, LlmCallRow, OracleCandidateRow, ProblemRow, RejectRow, TaskConfigRow};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

/// The stage names, as in `llm_calls.stage` and `rejects.stage`.
pub const ENVIRONMENT: &str = "environment";
pub const EXTRACT: &str = "extract";
pub const CONFIGS: &str = "configs";
pub const ORACLE: &str = "oracle";

/// Requests built and answered at a time: bounds the memory held by prompts and answers, and
/// keeps many times the usual in-flight limit going between two batches.
const REQUEST_BATCH: usize = 1024;

/// Reject reasons of requests worth asking again on the next run.
const TRANSIENT: [Reason; 1] = [Reason::LlmFailed];

#[derive(Debug, Clone)]
pub struct SynthesisSettings {
    pub sampling: Sampling,
    /// Configuration answers per environment (2), each of 15 lines.
    pub config_samples: u32,
    /// Solver candidates per environment (K = 10).
    pub oracle_samples: u32,
    /// Budget of the module-wide checks (5 s) and limits of the other sandbox steps.
    pub module_timeout: Duration,
    pub limits: Limits,
    pub threads: usize,
    pub mode: ExecMode,
}

impl Default for SynthesisSettings {
    fn default() -> Self {
        SynthesisSettings {
            sampling: Sampling::default(),
            config_samples: 2,
            oracle_samples: 10,
            module_timeout: Duration::from_secs(5),
            limits: Limits::default(),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            mode: ExecMode::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SynthesisError {
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error(transparent)]
    Llm(#[from] LlmError),
}

/// Counts per stage of one run: items in, items out, rejects by reason.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct StageCounts {
    pub requests: usize,
    pub produced: usize,
    pub rejects: BTreeMap<String, usize>,
}

impl StageCounts {
    fn add(&mut self, other: StageCounts) {
        self.requests += other.requests;
        self.produced += other.produced;
        for (reason, n) in other.rejects {
            *self.rejects.entry(reason).or_default() += n;
        }
    }
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct SynthesisSummary {
    /// Problems whose reference solution passed preflight (the only ones synthesized from).
    pub eligible_problems: usize,
    pub stages: BTreeMap<&'static str, StageCounts>,
    /// Requests answered live and from a recording.
    pub live_calls: usize,
    pub recorded_calls: usize,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
}

impl SynthesisSummary {
    /// Adds one shard's counts of `stage`.
    fn add(&mut self, stage: &'static str, counts: StageCounts) {
        self.stages.entry(stage).or_default().add(counts);
    }
}

/// The rows of one shard as read, to write back only the tables a stage changed.
struct Stored {
    envs: Vec<EnvironmentRow>,
    configs: Vec<TaskConfigRow>,
    candidates: Vec<OracleCandidateRow>,
    rejects: Vec<RejectRow>,
    calls: usize,
}

/// The tables of one shard that synthesis reads and writes, held in memory while it works on it.
struct State {
    shard: u32,
    stored: Stored,
    problems: Vec<ProblemRow>,
    envs: Vec<EnvironmentRow>,
    configs: Vec<TaskConfigRow>,
    candidates: Vec<OracleCandidateRow>,
    rejects: Vec<RejectRow>,
    calls: Vec<LlmCallRow>,
    /// The ids in `calls`.
    call_ids: HashSet<String>,
}

impl State {
    /// The tables as stored. Requests that failed for want of an answer (the endpoint kept
    /// failing) are forgotten, so this run asks again; every other reject is final.
    fn read(data: &Dataset, shard: u32) -> Result<State, DatasetError> {
        let stored = Stored {
            envs: data.read_shard(Table::Environments, shard)?,
            configs: data.read_shard(Table::TaskConfigs, shard)?,
            candidates: data.read_shard(Table::OracleCandidates, shard)?,
            rejects: data.read_shard(Table::Rejects, shard)?,
            calls: 0,
        };
        let mut rejects = stored.rejects.clone();
        rejects.retain(|r| !TRANSIENT.iter().any(|t| t.as_str() == r.reason));
        let calls: Vec<LlmCallRow> = data.read_shard(Table::LlmCalls, shard)?;
        let (envs, configs, candidates) = (stored.envs.clone(), stored.configs.clone(), stored.candidates.clone());
        Ok(State {
            shard,
            stored: Stored { calls: calls.len(), ..stored },
            problems: data.read_shard(Table::Problems, shard)?,
            envs,
            configs,
            candidates,
            rejects,
            call_ids: calls.iter().map(|c| c.call_id.clone()).collect(),
            calls,
        })
    }

    /// Writes the tables of the shard that changed since they were read (environments last: their
    /// status is what a rerun looks at).
    fn write(&mut self, data: &Dataset) -> Result<(), DatasetError> {
        if self.calls.len() != self.stored.calls {
            data.write_shard(Table::LlmCalls, self.shard, &self.calls)?;
            self.stored.calls = self.calls.len();
        }
        if self.candidates != self.stored.candidates {
            data.write_shard(Table::OracleCandidates, self.shard, &self.candidates)?;
            self.stored.candidates = self.candidates.clone();
        }
        if self.configs != self.stored.configs {
            data.write_shard(Table::TaskConfigs, self.shard, &self.configs)?;
            self.stored.configs = self.configs.clone();
        }
        if self.rejects != self.stored.rejects {
            data.write_shard(Table::Rejects, self.shard, &self.rejects)?;
            self.stored.rejects = self.rejects.clone();
        }
        if self.envs != self.stored.envs {
            data.write_shard(Table::Environments, self.shard, &self.envs)?;
            self.stored.envs = self.envs.clone();
        }
        Ok(())
    }

    fn rejected(&self, stage: &str) -> HashSet<&str> {
        self.rejects.iter().filter(|r| r.stage == stage).map(|r| r.entity_id.as_str()).collect()
    }

    fn reject(
        &mut self,
        counts: &mut StageCounts,
        stage: &str,
        entity_id: String,
        source_id: &str,
        reason: Reason,
        detail: String,
    ) {
        *counts.rejects.entry(reason.as_str().to_string()).or_default() += 1;
        let detail = Some(truncate(&detail, 2000));
        self.rejects.push(RejectRow {
            stage: stage.into(),
            entity_id,
            source_id: Some(source_id.into()),
            reason: reason.as_str().into(),
            detail,
        });
    }

    /// Adds the configuration lines of `answers` for `env` (strictly JSON, the right class, not
    /// seen before in any answer) and rejects the others; returns how many it added.
    fn add_configs(&mut self, counts: &mut StageCounts, env: &EnvironmentRow, answers: &[String]) -> usize {
        let mut seen = BTreeSet::new();
        let mut kept = 0;
        for (sample, answer) in answers.iter().enumerate() {
            for line in parse::configs(answer, &env.env_name) {
                let line_id = || content_id("config-line", &[&env.env_id, &sample.to_string(), &line.position.to_string()]);
                let config = match line.config {
                    Ok(config) => config,
                    Err((reason, text)) => {
                        self.reject(counts, CONFIGS, line_id(), &env.source_id, reason, text);
                        continue;
                    }
                };
                if !seen.insert(parse::config_key(&config)) {
                    self.reject(counts, CONFIGS, line_id(), &env.source_id, Reason::ConfigDuplicate, config);
                    continue;
                }
                let origin = format!("sample {} line {}", sample + 1, line.position);
                let difficulty = parse::difficulty(line.position);
                self.configs.push(TaskConfigRow::pending(&env.env_id, &env.env_name, config, difficulty, Some(origin)));
                kept += 1;
            }
        }
        kept
    }

    /// The call of an answered request (stored in `llm_calls`), or `None` after recording why the
    /// request failed as a reject of `entity_id`.
    fn answered(
        &mut self,
        answer: Result<Call, LlmError>,
        counts: &mut StageCounts,
        summary: &mut SynthesisSummary,
        (stage, entity_id, source_id): (&str, &str, &str),
    ) -> Option<Call> {
        match answer {
            Ok(call) => {
                self.record_call(&call, summary);
                Some(call)
            }
            Err(e) => {
                self.reject(counts, stage, entity_id.into(), source_id, e.reason(), e.to_string());
                None
            }
        }
    }

    /// Stores a call in `llm_calls` (the first time it is seen: a later replay of a paid call does
    /// not overwrite its latency) and counts it.
    fn record_call(&mut self, call: &Call, summary: &mut SynthesisSummary) {
        if call.cached {
            summary.recorded_calls += 1;
        } else {
            summary.live_calls += 1;
        }
        summary.prompt_tokens += call.completion.prompt_tokens.unwrap_or(0);
        summary.completion_tokens += call.completion.completion_tokens.unwrap_or(0);
        if !self.call_ids.insert(call.call_id.clone()) {
            return;
        }
        let completion = &call.completion;
        self.calls.push(LlmCallRow {
            call_id: call.call_id.clone(),
            stage: call.request.stage.clone(),
            entity_id: call.request.entity_id.clone(),
            prompt_version: call.request.prompt_version.clone(),
            model: call.request.sampling.model.clone(),
            prompt: serde_json::to_string(&call.request.messages).expect("messages serialize"),
            response: completion.choices.first().cloned().unwrap_or_default(),
            responses: completion.choices.clone(),
            prompt_tokens: completion.prompt_tokens,
            completion_tokens: completion.completion_tokens,
            latency_ms: completion.latency_ms,
            cached: call.cached,
            attempts: completion.attempts as i32,
        });
    }
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

/// Everything synthesis needs besides the dataset.
pub struct Synthesizer<'a> {
    pub sandbox: &'a Sandbox,
    pub client: &'a Client,
    pub runtime: &'a tokio::runtime::Runtime,
    pub settings: &'a SynthesisSettings,
    /// Progress bars (one per batch of requests or sandbox jobs) and their policy.
    pub printer: Printer,
}

impl Synthesizer<'_> {
    /// Runs the three LLM stages (and the checks between them) on what `data` does not hold yet,
    /// in the shards `selection` names, one shard at a time under its lease. A shard's tables are
    /// written after each stage that changed them.
    pub fn run(&self, data: &Dataset, selection: ShardSelection) -> Result<SynthesisSummary, SynthesisError> {
        let mut summary = SynthesisSummary::default();
        let shards: Vec<u32> = data.shards_with(Table::Problems)?.into_iter().filter(|&s| selection.includes(s)).collect();
        data.each_leased(&shards, "synthesis", |shard| -> Result<(), SynthesisError> {
            self.client.record_shard(shard);
            let mut state = State::read(data, shard)?;
            summary.eligible_problems += state.problems.iter().filter(|p| p.preflight == "pass").count();
            self.environments(&mut state, &mut summary)?;
            state.write(data)?;
            self.contract(&mut state, &mut summary)?;
            state.write(data)?;
            self.task_configs(&mut state, &mut summary)?;
            state.write(data)?;
            self.oracles(&mut state, &mut summary)?;
            state.write(data)?;
            Ok(())
        })?;
        Ok(summary)
    }

    fn ask(&self, requests: Vec<ChatRequest>, progress: &JobProgress) -> Result<Vec<Result<Call, LlmError>>, LlmError> {
        self.runtime.block_on(self.client.complete_all(requests, Some(progress)))
    }

    /// Asks `stage`'s request of each environment in `todo` (indices into `state.envs`), in
    /// batches, and hands every answered call to `handle`; failed requests become rejects.
    fn ask_per_env(
        &self,
        state: &mut State,
        summary: &mut SynthesisSummary,
        stage: &'static str,
        todo: &[usize],
        request: impl Fn(&EnvironmentRow) -> ChatRequest,
        mut handle: impl FnMut(&mut State, &mut StageCounts, usize, Call),
    ) -> Result<StageCounts, LlmError> {
        let mut counts = StageCounts { requests: todo.len(), ..StageCounts::default() };
        let progress = self.printer.progress(stage, todo.len(), "requests");
        for batch in todo.chunks(REQUEST_BATCH) {
            let answers = self.ask(batch.iter().map(|&i| request(&state.envs[i])).collect(), &progress)?;
            for (&i, answer) in batch.iter().zip(answers) {
                let (env_id, source_id) = (state.envs[i].env_id.clone(), state.envs[i].source_id.clone());
                if let Some(call) = state.answered(answer, &mut counts, summary, (stage, &env_id, &source_id)) {
                    handle(state, &mut counts, i, call);
                }
            }
        }
        Ok(counts)
    }

    fn run_steps(&self, label: &str, work: &[EnvWork]) -> Result<Vec<Vec<StepResult>>, SandboxError> {
        let s = self.settings;
        let progress = self.printer.progress(label, work.len(), "environments");
        let budgets = Budgets { module: s.module_timeout, ..Budgets::method(s.limits) };
        harness::run_steps(self.sandbox, work, &budgets, s.mode, s.threads, Some(&progress))
    }

    fn request(
        &self,
        stage: &str,
        prompt: prompts::Prompt,
        entity_id: &str,
        label: &str,
        values: &[(&str, &str)],
        n: u32,
    ) -> ChatRequest {
        ChatRequest {
            stage: stage.into(),
            prompt_version: prompt.version.into(),
            entity_id: entity_id.into(),
            label: label.into(),
            messages: prompt.render(values),
            sampling: self.settings.sampling.clone(),
            n,
        }
    }

    /// Stage 1 and the extraction half of stage 2: one environment answer per eligible problem
    /// that has no environment (or reject) yet; its tags parsed, its class found by parsing the
    /// module in the sandbox.
    fn environments(&self, state: &mut State, summary: &mut SynthesisSummary) -> Result<(), SynthesisError> {
        let done: HashSet<&str> = state.envs.iter().filter_map(|e| e.problem_id.as_deref()).collect();
        let rejected = state.rejected(ENVIRONMENT);
        let todo: Vec<usize> = (0..state.problems.len())
            .filter(|&i| {
                let p = &state.problems[i];
                p.preflight == "pass" && !done.contains(p.problem_id.as_str()) && !rejected.contains(p.problem_id.as_str())
            })
            .collect();
        let mut counts = StageCounts { requests: todo.len(), ..StageCounts::default() };
        let progress = self.printer.progress(ENVIRONMENT, todo.len(), "requests");
        for batch in todo.chunks(REQUEST_BATCH) {
            self.environment_batch(state, summary, &mut counts, batch, &progress)?;
        }
        summary.add(ENVIRONMENT, counts);
        Ok(())
    }

    /// One batch of [`Self::environments`]: the requests of `batch` (problem indices), their
    /// answers parsed, their classes found.
    fn environment_batch(
        &self,
        state: &mut State,
        summary: &mut SynthesisSummary,
        counts: &mut StageCounts,
        batch: &[usize],
        progress: &JobProgress,
    ) -> Result<(), SynthesisError> {
        let requests = batch
            .iter()
            .map(|&i| {
                let p = &state.problems[i];
                let values = [("question", p.question.as_str()), ("solution", p.solution.as_str())];
                self.request(ENVIRONMENT, prompts::ENVIRONMENT, &p.problem_id, &p.source_id, &values, 1)
            })
            .collect();
        let answers = self.ask(requests, progress)?;
        let mut drafts = Vec::new();
        for (&i, answer) in batch.iter().zip(answers) {
            let (problem_id, source_id) = (state.problems[i].problem_id.clone(), state.problems[i].source_id.clone());
            let Some(call) = state.answered(answer, counts, summary, (ENVIRONMENT, &problem_id, &source_id)) else {
                continue;
            };
            match parse::environment(call.completion.choices.first().map_or("", String::as_str)) {
                Ok(draft) => drafts.push((i, draft)),
                Err((reason, detail)) => state.reject(counts, ENVIRONMENT, problem_id, &source_id, reason, detail),
            }
        }
        let work: Vec<EnvWork> = drafts
            .iter()
            .map(|(i, d)| EnvWork {
                steps: vec![Step::Classes],
                ..EnvWork::new(EnvSource { code: &d.code, name: "" }, harness::seed_for(&state.problems[*i].problem_id))
            })
            .collect();
        let results = self.run_steps("extract", &work)?;
        for ((i, draft), result) in drafts.into_iter().zip(results) {
            let problem = &state.problems[i];
            let (problem_id, source_id) = (problem.problem_id.clone(), problem.source_id.clone());
            let name = match env_class(&result[0]) {
                Ok(name) => name,
                Err((reason, detail)) => {
                    state.reject(counts, ENVIRONMENT, problem_id, &source_id, reason, detail);
                    continue;
                }
            };
            // The problem is part of the id: two problems answered with the same code keep
            // an environment each.
            let env_id = content_id("synthesized-env", &[&problem_id, &name, &draft.code]);
            let mut env = EnvironmentRow::pending(env_id, problem.source.clone(), source_id, name, draft.code);
            env.problem_id = Some(problem_id);
            env.task_text = Some(draft.task_text);
            state.envs.push(env);
            counts.produced += 1;
        }
        Ok(())
    }

    /// Stage 2: the contract check and the module's self-tests, before any configuration is asked
    /// for; an environment that passes gets its tools and agent-facing docs.
    fn contract(&self, state: &mut State, summary: &mut SynthesisSummary) -> Result<(), SynthesisError> {
        let todo: Vec<usize> = (0..state.envs.len()).filter(|&i| awaiting_contract(&state.envs[i])).collect();
        let work: Vec<EnvWork> = todo
            .iter()
            .map(|&i| {
                let env = &state.envs[i];
                let source = EnvSource { code: &env.env_code, name: &env.env_name };
                EnvWork { steps: vec![Step::Module], ..EnvWork::new(source, harness::seed_for(&env.env_id)) }
            })
            .collect();
        let results = self.run_steps("contract", &work)?;
        let mut counts = StageCounts { requests: todo.len(), ..StageCounts::default() };
        for (&i, result) in todo.iter().zip(results) {
            let checks = ModuleChecks::from_result(&result[0]);
            let failure =
                checks.failure().or_else(|| checks.description.as_ref().err().map(|e| (Reason::ContractFailed, e.clone())));
            let env = &mut state.envs[i];
            match (failure, checks.description) {
                (None, Ok(description)) => {
                    env.tool_count = description.tools.len() as i32;
                    env.tools = description.tools;
                    env.tool_docs = description.tool_docs;
                    counts.produced += 1;
                }
                (failure, _) => {
                    let (reason, detail) = failure.expect("a failure when there is no description");
                    env.status = reason.as_str().into();
                    env.status_detail = Some(detail.clone());
                    let (env_id, source_id) = (env.env_id.clone(), env.source_id.clone());
                    state.reject(&mut counts, EXTRACT, env_id, &source_id, reason, detail);
                }
            }
        }
        summary.add(EXTRACT, counts);
        Ok(())
    }

    /// Stage 3: `config_samples` answers of 15 configuration lines per environment past the
    /// contract check that has none yet; lines kept when strictly JSON for the right class,
    /// deduplicated, each with its difficulty band from its position.
    fn task_configs(&self, state: &mut State, summary: &mut SynthesisSummary) -> Result<(), SynthesisError> {
        let has_configs: HashSet<&str> = state.configs.iter().map(|c| c.env_id.as_str()).collect();
        let rejected = state.rejected(CONFIGS);
        let todo: Vec<usize> = (0..state.envs.len())
            .filter(|&i| {
                let env = &state.envs[i];
                ready(env) && !has_configs.contains(env.env_id.as_str()) && !rejected.contains(env.env_id.as_str())
            })
            .collect();
        let request = |env: &EnvironmentRow| {
            let values = [
                ("task_text", env.task_text.as_deref().unwrap_or("")),
                ("env_name", env.env_name.as_str()),
                ("env_code", env.env_code.trim_end()),
            ];
            self.request(CONFIGS, prompts::CONFIGS, &env.env_id, &env.source_id, &values, self.settings.config_samples)
        };
        let counts = self.ask_per_env(state, summary, CONFIGS, &todo, request, |state, counts, i, call| {
            let kept = state.add_configs(counts, &state.envs[i].clone(), &call.completion.choices);
            counts.produced += kept;
            if kept == 0 {
                let detail = format!("{} answers held no usable configuration line", call.completion.choices.len());
                let (env_id, source_id) = (state.envs[i].env_id.clone(), state.envs[i].source_id.clone());
                state.reject(counts, CONFIGS, env_id, &source_id, Reason::NoConfigs, detail.clone());
                let env = &mut state.envs[i];
                env.status = Reason::NoConfigs.as_str().into();
                env.status_detail = Some(detail);
            }
        })?;
        summary.add(CONFIGS, counts);
        Ok(())
    }

    /// Stage 5: `oracle_samples` solver answers per environment with configurations and no
    /// candidates yet, written from the agent's view only (task text and tool docs).
    fn oracles(&self, state: &mut State, summary: &mut SynthesisSummary) -> Result<(), SynthesisError> {
        let has_configs: HashSet<&str> = state.configs.iter().map(|c| c.env_id.as_str()).collect();
        let has_candidates: HashSet<&str> = state.candidates.iter().map(|c| c.env_id.as_str()).collect();
        let rejected = state.rejected(ORACLE);
        let todo: Vec<usize> = (0..state.envs.len())
            .filter(|&i| {
                let id = state.envs[i].env_id.as_str();
                ready(&state.envs[i]) && has_configs.contains(id) && !has_candidates.contains(id) && !rejected.contains(id)
            })
            .collect();
        let request = |env: &EnvironmentRow| {
            let values = [
                ("env_name", env.env_name.as_str()),
                ("task_text", env.task_text.as_deref().unwrap_or("")),
                ("tool_docs", env.tool_docs.as_str()),
            ];
            self.request(ORACLE, prompts::ORACLE, &env.env_id, &env.source_id, &values, self.settings.oracle_samples)
        };
        let counts = self.ask_per_env(state, summary, ORACLE, &todo, request, |state, counts, i, call| {
            let (env_id, source_id) = (state.envs[i].env_id.clone(), state.envs[i].source_id.clone());
            let mut seen = HashSet::new();
            for (sample, choice) in call.completion.choices.iter().enumerate() {
                let solver_id = || content_id("solver", &[&env_id, &sample.to_string()]);
                match parse::solver(choice) {
                    None => {
                        let detail = format!("answer {} holds no `def solve(self)` with a body", sample + 1);
                        state.reject(counts, ORACLE, solver_id(), &source_id, Reason::SolverUnparseable, detail);
                    }
                    Some(solver) if !seen.insert(solver.clone()) => {
                        let detail = format!("answer {} repeats an earlier solver", sample + 1);
                        state.reject(counts, ORACLE, solver_id(), &source_id, Reason::SolverDuplicate, detail);
                    }
                    Some(solver) => {
                        state.candidates.push(OracleCandidateRow {
                            env_id: env_id.clone(),
                            candidate: seen.len() as i32,
                            solver,
                            origin: Some(format!("{}#{}", call.call_id, sample)),
                            smoke_test: None,
                        });
                        counts.produced += 1;
                    }
                }
            }
        })?;
        summary.add(ORACLE, counts);
        Ok(())
    }
}

/// The one class of a module that defines `from_env_str` (found by parsing it), or the reject
/// reason and detail.
fn env_class(classes: &StepResult) -> Result<String, (Reason, String)> {
    let classes = classes.parse::<Vec<String>>().map_err(|detail| (Reason::EnvSyntaxError, detail))?;
    match classes.as_slice() {
        [name] => Ok(name.clone()),
        [] => Err((Reason::EnvNoClass, "no class of the module defines from_env_str".into())),
        _ => Err((Reason::EnvAmbiguousClass, format!("several classes define from_env_str: {}", classes.join(", ")))),
    }
}

/// A synthesized environment waiting for its contract check.
fn awaiting_contract(env: &EnvironmentRow) -> bool {
    env.problem_id.is_some() && env.status == ENV_PENDING && env.tools.is_empty()
}

/// A synthesized environment past its contract check, not failed since.
fn ready(env: &EnvironmentRow) -> bool {
    env.problem_id.is_some() && env.status == ENV_PENDING && !env.tools.is_empty()
}
