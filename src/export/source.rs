//! What an export reads, and in which order: the dataset's environments, their splits and task
//! configurations, through `Dataset::scan` only (the dataset module owns the layout).
//!
//! Three streaming passes, none holding a table:
//! 1. [`plan`]: small columns of `environments` (ids, names, status), `splits` and `task_configs`
//!    (env, kept and the curation inputs): which configurations are exported, as one bit per
//!    configuration row, and each exported environment's `code_id`. Memory: about 200 bytes per
//!    environment and one bit per configuration.
//! 2. [`scan_environments`]: the large environment columns (code, tool docs, task text), one
//!    batch at a time, for exported environments only.
//! 3. [`scan_rows`]: the large configuration columns, one batch at a time, exported rows only.
//!
//! Row order is the order the dataset stores `task_configs` (shard by shard, by `config_id` within
//! a shard): deterministic for a dataset, and since shards and ids are hashes, a shuffle, so any
//! prefix of an export is a fair sample of its environments.

use super::ExportError;
use super::settings::ExportSettings;
use crate::dataset::{Dataset, DatasetError, Table};
use crate::naming::{self, Named};
use crate::reasons::Reason;
use crate::tables::{ENV_PENDING, EnvironmentRow, Split, TaskConfigRow};
use crate::verify::{VerifySettings, curate};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int32Type};
use std::collections::{BTreeMap, HashMap};

/// Rows per batch read from the tables.
pub(crate) const BATCH_ROWS: usize = 2048;
/// Environments per batch of the large environment columns (their code is ~10 KB each).
const ENV_BATCH_ROWS: usize = 256;

/// An environment of the dataset, as much of it as every pass needs.
#[derive(Debug, Clone)]
pub(crate) struct EnvMeta {
    /// Position in [`Plan::envs`].
    pub index: u32,
    pub env_id: String,
    pub env_name: String,
    pub source: String,
    pub source_id: String,
    pub problem_id: Option<String>,
    pub verified: bool,
    pub tool_count: i32,
    pub split: Split,
    /// `source_id` made safe for a file name, unique with `env_name` among exported environments.
    pub code_id: String,
    /// Configurations of this environment that are exported.
    pub rows: u64,
}

impl EnvMeta {
    /// `{code_id}__{EnvName}`: the environment file's stem and the id in `ability`.
    pub fn file_stem(&self) -> String {
        naming::long_name(&self.code_id, &self.env_name)
    }
}

/// Counts along the way, for the summary, the card and the plots.
#[derive(Debug, Default, Clone)]
pub(crate) struct PlanStats {
    pub environments: u64,
    pub verified: u64,
    pub configs: u64,
    pub oracle_passed: u64,
    /// Configurations curation keeps (stored, or the hard variant's), whatever their split.
    pub kept: u64,
    /// Exported configurations: oracle calls -> count, per difficulty band.
    pub oracle_calls: BTreeMap<String, BTreeMap<i32, u64>>,
}

/// Which rows an export writes, and the environments they need.
pub(crate) struct Plan {
    /// The dataset read.
    pub data: Dataset,
    pub envs: Vec<EnvMeta>,
    by_id: HashMap<String, u32>,
    /// One bit per `task_configs` row in scan order: exported or not.
    exported: Vec<u64>,
    pub rows: BTreeMap<Split, u64>,
    pub stats: PlanStats,
}

impl Plan {
    pub fn total_rows(&self) -> u64 {
        self.rows.values().sum()
    }

    /// The exported environments, in `env_id` order.
    pub fn exported_envs(&self) -> impl Iterator<Item = &EnvMeta> {
        self.envs.iter().filter(|e| e.rows > 0)
    }

    fn is_exported(&self, row: u64) -> bool {
        self.exported.get((row / 64) as usize).is_some_and(|word| word & (1 << (row % 64)) != 0)
    }
}

const ENV_COLUMNS: [&str; 7] = ["env_id", "env_name", "source", "source_id", "problem_id", "status", "tool_count"];
const SELECT_COLUMNS: [&str; 8] =
    ["env_id", "kept", "difficulty", "oracle_passed", "oracle_calls", "filter_reason", "reference_pass_rate", "independent_pass"];

/// Reads the small columns and decides what is exported. Errors when `data` is not a dataset,
/// holds environments not verified yet, or has not been finalized (its split is not decided).
pub(crate) fn plan(settings: &ExportSettings) -> Result<Plan, ExportError> {
    let data = Dataset::open_existing(&settings.data).map_err(|e| match e {
        DatasetError::NoDataset { .. } => ExportError::NotADataset { data: settings.data.clone() },
        e => e.into(),
    })?;
    if data.shards_with(Table::Environments)?.is_empty() {
        return Err(ExportError::NoEnvironments { data: settings.data.clone() });
    }
    let (mut envs, mut stats) = read_envs(&data, &settings.data)?;
    let by_id: HashMap<String, u32> = envs.iter().enumerate().map(|(i, e)| (e.env_id.clone(), i as u32)).collect();
    let mut plan =
        Plan { data, envs: Vec::new(), by_id, exported: Vec::new(), rows: BTreeMap::new(), stats: PlanStats::default() };
    for split in settings.splits.splits() {
        plan.rows.insert(split, 0);
    }
    select_rows(settings, &mut envs, &mut plan, &mut stats)?;
    assign_code_ids(&mut envs);
    plan.envs = envs;
    plan.stats = stats;
    Ok(plan)
}

/// Every environment's split, from the `splits` table `finalize` writes.
fn read_splits(data: &Dataset) -> Result<HashMap<String, Split>, ExportError> {
    let mut splits = HashMap::new();
    for batch in data.scan(Table::Splits, &["env_id", "split"], BATCH_ROWS)? {
        let batch = batch?;
        let (ids, names) = (batch.column(0).as_string::<i32>(), batch.column(1).as_string::<i32>());
        for row in 0..batch.num_rows() {
            splits.insert(ids.value(row).to_string(), Split::of(names.value(row)));
        }
    }
    Ok(splits)
}

fn read_envs(data: &Dataset, location: &str) -> Result<(Vec<EnvMeta>, PlanStats), ExportError> {
    let splits = read_splits(data)?;
    let mut envs = Vec::new();
    let mut stats = PlanStats::default();
    let (mut pending, mut unsplit) = (0u64, 0u64);
    for batch in data.scan(Table::Environments, &ENV_COLUMNS, BATCH_ROWS)? {
        let batch = batch?;
        let text = |i: usize| batch.column(i).as_string::<i32>().clone();
        let (ids, names, sources, source_ids, problems, statuses) = (text(0), text(1), text(2), text(3), text(4), text(5));
        let tools = batch.column(6).as_primitive::<Int32Type>();
        for row in 0..batch.num_rows() {
            let split = splits.get(ids.value(row)).copied();
            unsplit += u64::from(split.is_none());
            let status = statuses.value(row);
            pending += u64::from(status == ENV_PENDING);
            let verified = status == Reason::Verified.as_str();
            stats.verified += u64::from(verified);
            envs.push(EnvMeta {
                index: envs.len() as u32,
                env_id: ids.value(row).to_string(),
                env_name: names.value(row).to_string(),
                source: sources.value(row).to_string(),
                source_id: source_ids.value(row).to_string(),
                problem_id: problems.is_valid(row).then(|| problems.value(row).to_string()),
                verified,
                tool_count: tools.value(row),
                split: split.unwrap_or(Split::Train),
                code_id: String::new(),
                rows: 0,
            });
        }
    }
    stats.environments = envs.len() as u64;
    if pending > 0 {
        return Err(ExportError::NotVerified { data: location.into(), pending, total: stats.environments });
    }
    if unsplit > 0 {
        return Err(ExportError::NotFinalized { data: location.into(), unsplit, total: stats.environments });
    }
    Ok((envs, stats))
}

/// The curation inputs of one configuration row, as stored.
struct Curation<'a> {
    kept: bool,
    filter_reason: Option<&'a str>,
    oracle_passed: Option<bool>,
    oracle_calls: Option<i32>,
    reference_pass_rate: Option<f64>,
    independent_pass: Option<bool>,
}

/// Whether a configuration is kept: as stored, or re-curated for the hard variant (the same
/// function `verify --hard` applies, on the same stored columns); and, when required, passed by
/// an independent candidate.
fn kept(curation: &Curation, env: &EnvMeta, hard: Option<&VerifySettings>, require_independent: bool) -> bool {
    if require_independent && curation.independent_pass != Some(true) {
        return false;
    }
    let Some(settings) = hard else { return curation.kept };
    let mut config = TaskConfigRow::pending(&env.env_id, &env.env_name, String::new(), "unknown", None);
    config.filter_reason = curation.filter_reason.map(String::from);
    config.oracle_passed = curation.oracle_passed;
    config.oracle_calls = curation.oracle_calls;
    config.reference_pass_rate = curation.reference_pass_rate;
    let mut row = EnvironmentRow::pending(
        env.env_id.clone(),
        env.source.clone(),
        env.source_id.clone(),
        env.env_name.clone(),
        String::new(),
    );
    if env.verified {
        row.status = Reason::Verified.as_str().into();
    }
    row.tool_count = env.tool_count;
    curate(&mut config, &row, settings);
    config.kept
}

fn select_rows(
    settings: &ExportSettings,
    envs: &mut [EnvMeta],
    plan: &mut Plan,
    stats: &mut PlanStats,
) -> Result<(), ExportError> {
    let hard = settings.hard.then(|| VerifySettings::default().hard());
    let mut row = 0u64;
    for batch in plan.data.scan(Table::TaskConfigs, &SELECT_COLUMNS, BATCH_ROWS)? {
        let batch = batch?;
        let env_ids = batch.column(0).as_string::<i32>();
        let kept_column = batch.column(1).as_boolean();
        let difficulty = batch.column(2).as_string::<i32>();
        let passed = batch.column(3).as_boolean();
        let calls = batch.column(4).as_primitive::<Int32Type>();
        let reasons = batch.column(5).as_string::<i32>();
        let rates = batch.column(6).as_primitive::<Float64Type>();
        let independent = batch.column(7).as_boolean();
        for i in 0..batch.num_rows() {
            stats.configs += 1;
            let oracle_passed = passed.is_valid(i).then(|| passed.value(i));
            stats.oracle_passed += u64::from(oracle_passed == Some(true));
            let Some(&env_index) = plan.by_id.get(env_ids.value(i)) else {
                row += 1;
                continue;
            };
            let env = &mut envs[env_index as usize];
            let curation = Curation {
                kept: kept_column.value(i),
                filter_reason: reasons.is_valid(i).then(|| reasons.value(i)),
                oracle_passed,
                oracle_calls: calls.is_valid(i).then(|| calls.value(i)),
                reference_pass_rate: rates.is_valid(i).then(|| rates.value(i)),
                independent_pass: independent.is_valid(i).then(|| independent.value(i)),
            };
            if kept(&curation, env, hard.as_ref(), settings.require_independent) {
                stats.kept += 1;
                if settings.splits.includes(env.split) {
                    env.rows += 1;
                    *plan.rows.entry(env.split).or_default() += 1;
                    let band = stats.oracle_calls.entry(difficulty.value(i).to_string()).or_default();
                    *band.entry(curation.oracle_calls.unwrap_or(0)).or_default() += 1;
                    mark(&mut plan.exported, row);
                }
            }
            row += 1;
        }
    }
    Ok(())
}

fn mark(bits: &mut Vec<u64>, row: u64) {
    let word = (row / 64) as usize;
    if bits.len() <= word {
        bits.resize(word + 1, 0);
    }
    bits[word] |= 1 << (row % 64);
}

/// Gives every environment its `code_id` ([`crate::naming`]), named among every environment of
/// the dataset, as `codegym serve` names them, whatever is exported.
fn assign_code_ids(envs: &mut [EnvMeta]) {
    let named = envs.iter().map(|e| Named { env_id: &e.env_id, source_id: &e.source_id, env_name: &e.env_name });
    let ids = naming::code_ids(named);
    for env in envs.iter_mut() {
        env.code_id = ids[&env.env_id].clone();
    }
}

/// The large columns of one exported environment.
pub(crate) struct EnvText<'a> {
    pub env_code: &'a str,
    pub tool_docs: &'a str,
    pub task_text: &'a str,
    /// `environments.tool_schemas`, or computed from the tool docs for an environment verified
    /// before the column existed.
    pub tool_schemas: std::borrow::Cow<'a, str>,
}

/// Calls `visit` for every exported environment, in `env_id` order, with its large columns; the
/// code (~10 KB an environment) is read only `with_code`, and is empty otherwise.
pub(crate) fn scan_environments(
    plan: &Plan,
    with_code: bool,
    mut visit: impl FnMut(&EnvMeta, &EnvText<'_>) -> Result<(), ExportError>,
) -> Result<(), ExportError> {
    let columns = ["env_id", "tool_docs", "task_text", "tool_schemas", "env_code"];
    let columns = if with_code { &columns[..] } else { &columns[..4] };
    for batch in plan.data.scan(Table::Environments, columns, ENV_BATCH_ROWS)? {
        let batch = batch?;
        let text = |i: usize| batch.column(i).as_string::<i32>();
        let (ids, docs, tasks, schemas) = (text(0), text(1), text(2), text(3));
        let code = |row: usize| if with_code { text(4).value(row) } else { "" };
        for row in 0..batch.num_rows() {
            let Some(env) = plan.by_id.get(ids.value(row)).map(|&i| &plan.envs[i as usize]) else { continue };
            if env.rows == 0 {
                continue;
            }
            let tool_docs = docs.value(row);
            let tool_schemas = crate::tools::stored_or_computed(schemas.is_valid(row).then(|| schemas.value(row)), tool_docs);
            let task_text = if tasks.is_valid(row) { tasks.value(row) } else { "" };
            visit(env, &EnvText { env_code: code(row), tool_docs, task_text, tool_schemas })?;
        }
    }
    Ok(())
}

/// One exported configuration, borrowed from the batch it was read in.
#[derive(Clone)]
pub(crate) struct ConfigRow<'a> {
    pub env: &'a EnvMeta,
    /// 0-based position among the exported rows of its split.
    pub index: u64,
    pub config_id: &'a str,
    /// `EnvName@{json}`.
    pub config: &'a str,
    pub difficulty: &'a str,
    pub source_index: Option<&'a str>,
    pub oracle_calls: i64,
    pub reference_pass_rate: Option<f64>,
    /// The oracle's `[[action, observation], ...]` as stored.
    pub oracle_trajectory: Option<&'a str>,
}

impl ConfigRow<'_> {
    /// `{code_id}__{EnvName}@{json}`: what `codegym serve` starts an episode from.
    pub fn env_str(&self) -> String {
        naming::env_str(&self.env.code_id, &self.env.env_name, self.config)
    }
}

const ROW_COLUMNS: [&str; 8] =
    ["config_id", "env_id", "config", "difficulty", "source_index", "oracle_calls", "reference_pass_rate", "oracle_trajectory"];

/// Calls `visit` with the exported rows of each batch of `task_configs`, in scan order. The
/// rows borrow the batch, so `visit` copies what it keeps.
pub(crate) fn scan_rows(
    plan: &Plan,
    mut visit: impl FnMut(&[ConfigRow<'_>]) -> Result<(), ExportError>,
) -> Result<(), ExportError> {
    let mut next_index: BTreeMap<Split, u64> = BTreeMap::new();
    let mut row = 0u64;
    for batch in plan.data.scan(Table::TaskConfigs, &ROW_COLUMNS, BATCH_ROWS)? {
        let batch: RecordBatch = batch?;
        let text = |i: usize| batch.column(i).as_string::<i32>();
        let (ids, env_ids, configs, bands, source_index, trajectories) = (text(0), text(1), text(2), text(3), text(4), text(7));
        let calls = batch.column(5).as_primitive::<Int32Type>();
        let rates = batch.column(6).as_primitive::<Float64Type>();
        let mut rows = Vec::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            let exported = plan.is_exported(row);
            row += 1;
            if !exported {
                continue;
            }
            let env = &plan.envs[plan.by_id[env_ids.value(i)] as usize];
            let index = next_index.entry(env.split).or_default();
            rows.push(ConfigRow {
                env,
                index: *index,
                config_id: ids.value(i),
                config: configs.value(i),
                difficulty: bands.value(i),
                source_index: source_index.is_valid(i).then(|| source_index.value(i)),
                oracle_calls: i64::from(calls.value(i)),
                reference_pass_rate: rates.is_valid(i).then(|| rates.value(i)),
                oracle_trajectory: trajectories.is_valid(i).then(|| trajectories.value(i)),
            });
            *index += 1;
        }
        if !rows.is_empty() {
            visit(&rows)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(id: &str, source_id: &str, name: &str) -> EnvMeta {
        EnvMeta {
            index: 0,
            env_id: id.into(),
            env_name: name.into(),
            source: "s".into(),
            source_id: source_id.into(),
            problem_id: None,
            verified: true,
            tool_count: 5,
            split: Split::Train,
            code_id: String::new(),
            rows: 1,
        }
    }

    #[test]
    fn code_ids_are_file_safe_and_suffixed_only_where_they_clash() {
        let mut envs = vec![
            env("aaaaaaaa11111111", "lc/1 two-sum", "TwoSumEnv"),
            env("bbbbbbbb22222222", "lc/1:two-sum", "TwoSumEnv"),
            env("cccccccc33333333", "lc/1 two-sum", "OtherEnv"),
            env("dddddddd44444444", "..hidden@x", "HiddenEnv"),
            env("eeeeeeee55555555", "", "EmptyEnv"),
            EnvMeta { rows: 0, ..env("ffffffff66666666", "lc/2", "TwoSumEnv") },
        ];
        assign_code_ids(&mut envs);
        let ids: Vec<&str> = envs.iter().map(|e| e.code_id.as_str()).collect();
        assert_eq!(ids, ["lc_1_two-sum_aaaaaaaa", "lc_1_two-sum_bbbbbbbb", "lc_1_two-sum", "_.hidden_x", "env", "lc_2"]);
    }

    #[test]
    fn rows_know_their_serve_keys() {
        let mut e = env("aaaaaaaa", "p1", "AddEnv");
        e.code_id = "p1".into();
        let row = ConfigRow {
            env: &e,
            index: 0,
            config_id: "c",
            config: r#"AddEnv@{"a": "x@y"}"#,
            difficulty: "easy",
            source_index: None,
            oracle_calls: 12,
            reference_pass_rate: None,
            oracle_trajectory: None,
        };
        assert_eq!(row.env_str(), r#"p1__AddEnv@{"a": "x@y"}"#, "only the first @ separates the name");
    }
}
