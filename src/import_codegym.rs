//! Import of a released CodeGym dataset: the environment table (`source`, `env_name`, `env_code`)
//! and the task table (`ability = codegym_v1@{source}__{EnvName}@{json}`, `prompt`,
//! `extra_info.solve_fc_round`, ...) become `environments` and `task_configs`, keeping the released
//! oracle count in `source_oracle_calls`. Inputs are Parquet (as the public dataset ships) or JSON
//! Lines. Every input row ends in a table: an environment row, a configuration row, or a reject.
//! An optional solver table (`source`, `env_name`, `solver`: a `def solve(self)` written from the
//! task text and tool docs alone) becomes `oracle_candidates`, numbered from 1 per environment in
//! file order: verification records whether they agree with the environment (`independent_pass`).
//! A numeric `source` or `extra_info.index` is kept as the file spells it (a JSON number is never
//! parsed into a float, a Parquet integer or decimal is printed exactly).

use crate::dataset::{self, Dataset, DatasetError, ShardSelection, Table};
use crate::ids::content_id;
use crate::reasons::Reason;
use crate::tables::{EnvironmentRow, OracleCandidateRow, RejectRow, TaskConfigRow};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

/// The default `source` recorded for imported environments.
pub const SOURCE: &str = "codegym-release";
const STAGE: &str = "import";

#[derive(Debug, Deserialize)]
struct ReleasedEnv {
    /// The environment's `source_id`: text, or a number kept as written.
    #[serde(deserialize_with = "text_as_written")]
    source: String,
    env_name: String,
    env_code: String,
}

/// A solver written for a released environment from its task text and tool docs.
#[derive(Debug, Deserialize)]
struct ReleasedSolver {
    #[serde(deserialize_with = "text_as_written")]
    source: String,
    env_name: String,
    solver: String,
}

/// The files of a release: environments, tasks, and optionally independent solvers.
#[derive(Debug, Clone, Copy)]
pub struct Release<'a> {
    pub envs: &'a Path,
    pub tasks: &'a Path,
    pub solvers: Option<&'a Path>,
}

impl<'a> Release<'a> {
    pub fn new(envs: &'a Path, tasks: &'a Path) -> Release<'a> {
        Release { envs, tasks, solvers: None }
    }
}

#[derive(Debug, Deserialize)]
struct Message {
    role: String,
    content: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ExtraInfo {
    index: Option<Box<RawValue>>,
    solve_fc_round: Option<i64>,
    /// The reference model's pass rate over 4 samples (or 8, for the hard variant).
    #[serde(rename = "qwen32b_Bo4_score")]
    reference_bo4: Option<f64>,
    #[serde(rename = "qwen32b_Bo8_score")]
    reference_bo8: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct ReleasedTask {
    ability: String,
    #[serde(default)]
    prompt: Option<Vec<Message>>,
    #[serde(default)]
    extra_info: Option<ExtraInfo>,
}

/// What an import wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    pub env_rows_in: usize,
    pub task_rows_in: usize,
    pub environments: usize,
    pub task_configs: usize,
    pub solver_rows_in: usize,
    pub oracle_candidates: usize,
    pub rejects: usize,
}

/// `codegym_v1@{source}__{EnvName}@{json}` -> (source, EnvName, `EnvName@{json}`).
fn parse_ability(ability: &str) -> Option<(&str, &str, String)> {
    let rest = ability.split_once('@')?.1;
    let (id, json) = rest.split_once('@')?;
    let (source, env_name) = id.rsplit_once("__")?;
    (!source.is_empty() && !env_name.is_empty()).then(|| (source, env_name, format!("{env_name}@{json}")))
}

/// The task text of a released prompt: the user message after its `Question:` line.
fn task_text(prompt: &[Message]) -> Option<String> {
    let user = prompt.iter().find(|m| m.role == "user")?.content.as_deref()?;
    let text = user.split_once("Question:").map_or(user, |(_, after)| after);
    Some(text.trim().to_string())
}

/// A released index as text: a string's own text; anything else (a number, however large) as
/// written.
fn index_text(raw: &RawValue) -> String {
    serde_json::from_str::<String>(raw.get()).unwrap_or_else(|_| raw.get().to_string())
}

/// A field that a table may hold as text or as a number (an id), as [`index_text`] reads it.
fn text_as_written<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(index_text(&Box::<RawValue>::deserialize(deserializer)?))
}

fn tool_docs(prompt: &[Message]) -> Option<String> {
    prompt.iter().find(|m| m.role == "system")?.content.clone()
}

fn reject(entity_id: String, source_id: Option<&str>, reason: Reason, detail: String) -> RejectRow {
    RejectRow {
        stage: STAGE.into(),
        entity_id,
        source_id: source_id.map(String::from),
        reason: reason.as_str().into(),
        detail: Some(detail),
    }
}

/// What an import routes to one shard.
#[derive(Default)]
struct ShardRows {
    environments: Vec<EnvironmentRow>,
    configs: Vec<TaskConfigRow>,
    candidates: Vec<OracleCandidateRow>,
    rejects: Vec<RejectRow>,
}

/// The independent solvers of `path` as candidates of the environments they name (by source and
/// name), numbered from 1 per environment in file order; rows that name no environment, hold no
/// `def solve(self)` or repeat one go to `rejects`.
fn solvers(
    path: &Path,
    environments: &BTreeMap<(String, String), EnvironmentRow>,
    rejects: &mut Vec<RejectRow>,
) -> Result<(usize, Vec<OracleCandidateRow>), DatasetError> {
    let rows: Vec<ReleasedSolver> = dataset::read_rows_file(path)?;
    let mut candidates: Vec<OracleCandidateRow> = Vec::new();
    for (row, released) in rows.iter().enumerate() {
        let id = content_id("released-solver", &[&released.source, &released.env_name, &released.solver]);
        let at = format!("{}: row {row}", path.display());
        let Some(env) = environments.get(&(released.source.clone(), released.env_name.clone())) else {
            let detail = format!("{at}: no environment ({}, {}) was imported", released.source, released.env_name);
            rejects.push(reject(id, Some(&released.source), Reason::UnknownEnvironment, detail));
            continue;
        };
        let Some(solver) = crate::synthesis::parse::solver(&released.solver) else {
            let detail = format!("{at}: column `solver` holds no `def solve(self)` with a body");
            rejects.push(reject(id, Some(&released.source), Reason::SolverUnparseable, detail));
            continue;
        };
        let own: Vec<&OracleCandidateRow> = candidates.iter().filter(|c| c.env_id == env.env_id).collect();
        if own.iter().any(|c| c.solver == solver) {
            let detail = format!("{at} repeats an earlier solver of {}", released.env_name);
            rejects.push(reject(id, Some(&released.source), Reason::SolverDuplicate, detail));
            continue;
        }
        let candidate = own.len() as i32 + 1;
        let origin = Some(at);
        candidates.push(OracleCandidateRow { env_id: env.env_id.clone(), candidate, solver, origin, smoke_test: None });
    }
    Ok((rows.len(), candidates))
}

/// Imports a release into the dataset `data`: the rows of the shards `selection` names (an
/// environment's shard is a hash of its `env_id`; its configurations, candidates and rejects
/// follow it). Rows a shard already holds (same content, hence same id; for candidates, the same
/// environment and number) are left as they are, with their verification results, so a nightly
/// re-import followed by `verify` only verifies what is new.
pub fn import(release: &Release, data: &Dataset, source: &str, selection: ShardSelection) -> Result<ImportSummary, DatasetError> {
    let (envs, tasks) = (release.envs, release.tasks);
    let released_envs: Vec<ReleasedEnv> = dataset::read_rows_file(envs)?;
    let released_tasks: Vec<ReleasedTask> = dataset::read_rows_file(tasks)?;
    let mut summary =
        ImportSummary { env_rows_in: released_envs.len(), task_rows_in: released_tasks.len(), ..Default::default() };
    let mut rejects = Vec::new();
    let mut environments: BTreeMap<(String, String), EnvironmentRow> = BTreeMap::new();
    for (row, env) in released_envs.into_iter().enumerate() {
        let env_id = content_id("env", &[&env.source, &env.env_name, &env.env_code]);
        let key = (env.source.clone(), env.env_name.clone());
        if env.env_code.trim().is_empty() || env.env_name.trim().is_empty() {
            rejects.push(reject(
                env_id,
                Some(&env.source),
                Reason::EmptyField,
                format!("{}: row {row}: env_name or env_code is empty", envs.display()),
            ));
        } else if let Some(first) = environments.get(&key) {
            let reason = if first.env_id == env_id { Reason::DuplicateEnvironment } else { Reason::ConflictingEnvironment };
            rejects.push(reject(
                env_id,
                Some(&env.source),
                reason,
                format!("{}: row {row} repeats ({}, {})", envs.display(), env.source, env.env_name),
            ));
        } else {
            environments.insert(key, EnvironmentRow::pending(env_id, source.into(), env.source, env.env_name, env.env_code));
        }
    }
    let mut configs: BTreeMap<String, TaskConfigRow> = BTreeMap::new();
    for (row, task) in released_tasks.into_iter().enumerate() {
        let task_id = content_id("released-task", &[&task.ability]);
        let Some((source, env_name, config)) = parse_ability(&task.ability) else {
            rejects.push(reject(
                task_id,
                None,
                Reason::MalformedAbility,
                format!("{}: row {row}: ability {:?} is not codegym_v1@SOURCE__ENV@JSON", tasks.display(), task.ability),
            ));
            continue;
        };
        let Some(env) = environments.get_mut(&(source.to_string(), env_name.to_string())) else {
            rejects.push(reject(
                task_id,
                Some(source),
                Reason::UnknownEnvironment,
                format!("{}: row {row}: no environment ({source}, {env_name}) in {}", tasks.display(), envs.display()),
            ));
            continue;
        };
        if let Some(prompt) = &task.prompt {
            if env.task_text.is_none() {
                env.task_text = task_text(prompt);
            }
            if env.tool_docs.is_empty() {
                env.tool_docs = tool_docs(prompt).unwrap_or_default();
            }
        }
        let config_id = crate::tables::config_id(&env.env_id, &config);
        if configs.contains_key(&config_id) {
            rejects.push(reject(
                config_id,
                Some(source),
                Reason::ConfigDuplicate,
                format!("{}: row {row} repeats configuration {config}", tasks.display()),
            ));
            continue;
        }
        let extra = task.extra_info.unwrap_or_default();
        let source_index = extra.index.as_deref().map(index_text);
        configs.insert(
            config_id.clone(),
            TaskConfigRow {
                source_oracle_calls: extra.solve_fc_round.and_then(|n| i32::try_from(n).ok()),
                reference_pass_rate: extra.reference_bo4.or(extra.reference_bo8),
                ..TaskConfigRow::pending(&env.env_id, env_name, config, "unknown", source_index)
            },
        );
    }
    let (solver_rows_in, candidates) = match release.solvers {
        Some(path) => solvers(path, &environments, &mut rejects)?,
        None => (0, Vec::new()),
    };
    summary.solver_rows_in = solver_rows_in;
    let shard_of_env: std::collections::HashMap<String, u32> =
        environments.values().map(|e| (e.env_id.clone(), data.shard_of(&e.env_id))).collect();
    let mut shards: BTreeMap<u32, ShardRows> = BTreeMap::new();
    for config in configs.into_values() {
        shards.entry(shard_of_env[config.env_id.as_str()]).or_default().configs.push(config);
    }
    for candidate in candidates {
        shards.entry(shard_of_env[candidate.env_id.as_str()]).or_default().candidates.push(candidate);
    }
    for reject in rejects {
        // An environment's reject goes to its shard; anything else by its own id.
        let shard = shard_of_env.get(&reject.entity_id).copied().unwrap_or_else(|| data.shard_of(&reject.entity_id));
        shards.entry(shard).or_default().rejects.push(reject);
    }
    for env in environments.into_values() {
        shards.entry(data.shard_of(&env.env_id)).or_default().environments.push(env);
    }
    let selected: Vec<u32> = shards.keys().copied().filter(|&s| selection.includes(s)).collect();
    data.each_leased(&selected, STAGE, |shard| -> Result<(), DatasetError> {
        let rows = shards.remove(&shard).expect("a selected shard has rows");
        summary.environments += rows.environments.len();
        summary.task_configs += rows.configs.len();
        summary.rejects += rows.rejects.len();
        summary.oracle_candidates += rows.candidates.len();
        // Rows the shard already holds (same content, same id) keep their verification results.
        let known_envs: HashSet<String> =
            data.read_shard::<EnvironmentRow>(Table::Environments, shard)?.into_iter().map(|e| e.env_id).collect();
        let known_configs: HashSet<String> =
            data.read_shard::<TaskConfigRow>(Table::TaskConfigs, shard)?.into_iter().map(|c| c.config_id).collect();
        let environments: Vec<EnvironmentRow> =
            rows.environments.into_iter().filter(|e| !known_envs.contains(&e.env_id)).collect();
        let configs: Vec<TaskConfigRow> = rows.configs.into_iter().filter(|c| !known_configs.contains(&c.config_id)).collect();
        let known_candidates: HashSet<(String, i32)> = data
            .read_shard::<OracleCandidateRow>(Table::OracleCandidates, shard)?
            .into_iter()
            .map(|c| (c.env_id, c.candidate))
            .collect();
        let candidates: Vec<OracleCandidateRow> =
            rows.candidates.into_iter().filter(|c| !known_candidates.contains(&(c.env_id.clone(), c.candidate))).collect();
        data.upsert_shard(Table::Environments, shard, &environments)?;
        data.upsert_shard(Table::TaskConfigs, shard, &configs)?;
        data.upsert_shard(Table::OracleCandidates, shard, &candidates)?;
        data.upsert_shard(Table::Rejects, shard, &rows.rejects)?;
        Ok(())
    })?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abilities_split_into_source_env_and_config() {
        let (source, env, config) = parse_ability(r#"codegym_v1@Leetcode_1_I__TwoSumEnv@{"a": [1, 2]}"#).unwrap();
        assert_eq!((source, env), ("Leetcode_1_I", "TwoSumEnv"));
        assert_eq!(config, r#"TwoSumEnv@{"a": [1, 2]}"#);
        assert!(parse_ability("codegym_v1@nounderscores@{}").is_none());
        assert!(parse_ability("garbage").is_none());
    }

    #[test]
    fn indexes_keep_their_spelling() {
        let index = |line: &str| {
            let task: ReleasedTask = serde_json::from_str(line).unwrap();
            task.extra_info.unwrap().index.as_deref().map(index_text)
        };
        let line = |index: &str| format!(r#"{{"ability": "a", "extra_info": {{"index": {index}}}}}"#);
        assert_eq!(index(&line("12345678901234567890123")).as_deref(), Some("12345678901234567890123"));
        assert_eq!(index(&line("1.50")).as_deref(), Some("1.50"));
        assert_eq!(index(&line(r#""q-7""#)).as_deref(), Some("q-7"));
        assert_eq!(index(&line("null")), None);
        let env: ReleasedEnv =
            serde_json::from_str(r#"{"source": 12345678901234567890123, "env_name": "E", "env_code": "x"}"#).unwrap();
        assert_eq!(env.source, "12345678901234567890123");
    }

    #[test]
    fn task_text_is_what_follows_the_question_line() {
        let prompt = vec![
            Message { role: "system".into(), content: Some("def Observe():".into()) },
            Message { role: "user".into(), content: Some("Rules...\nQuestion:\n  Find the max.\n".into()) },
        ];
        assert_eq!(task_text(&prompt).as_deref(), Some("Find the max."));
        assert_eq!(tool_docs(&prompt).as_deref(), Some("def Observe():"));
    }
}
