//! The `hf` format: a Hugging Face dataset repository as a directory. `load_dataset(DIR)` gives the
//! configurations (the default config, rows in the CodeGym release's shape, see
//! [`super::codegym`]), `load_dataset(DIR, "environments")` the environments, one row each (not
//! repeated per configuration), in the column layout of the public copies of the release
//! (`source`, `env_name`, `env_code`) plus ours, so `codegym import-codegym` reads the two back.
//!
//! Files: `data/{split}-NNNNN-of-NNNNN.parquet` and `environments/{split}-NNNNN-of-NNNNN.parquet`,
//! shards under `--max-shard-mb` with row groups of at most 100 MB; `environments/gymnasium.py`,
//! the `gymnasium` stand-in the environments' code imports (as in the `codegym` format);
//! `README.md`, the card ([`super::card`]); `plots/*.svg` ([`super::plots`]).

use super::card::{self, Card, ConfigCard, DatasetFacts, SplitFiles};
use super::plots::{self, Bar};
use super::rows::{self, ParquetFiles};
use super::settings::ExportSettings;
use super::source::{EnvMeta, EnvText, Plan, PlanStats};
use super::{ExportError, FormatWriter};
use crate::tables::Split;
use arrow::array::{ArrayRef, Int32Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Environments buffered before they are written as one batch.
const ENV_BATCH: usize = 128;

fn env_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        rows::utf8("source", false),
        rows::utf8("env_name", false),
        rows::utf8("env_code", false),
        rows::utf8("env_id", false),
        rows::utf8("source_id", false),
        rows::utf8("task_text", false),
        rows::utf8("tool_docs", false),
        rows::utf8("tool_schemas", false),
        Field::new("tool_count", DataType::Int32, false),
        rows::utf8("license", false),
        Field::new("configurations", DataType::Int64, false),
    ]))
}

/// An environment row, owned until its batch is written.
struct EnvRow {
    code_id: String,
    env_name: String,
    env_code: String,
    env_id: String,
    source_id: String,
    task_text: String,
    tool_docs: String,
    tool_schemas: String,
    tool_count: i32,
    license: String,
    configurations: i64,
}

fn env_batch(envs: &[EnvRow]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let text = |f: fn(&EnvRow) -> &str| rows::strings(envs.iter().map(f));
    let columns: Vec<ArrayRef> = vec![
        text(|e| &e.code_id),
        text(|e| &e.env_name),
        text(|e| &e.env_code),
        text(|e| &e.env_id),
        text(|e| &e.source_id),
        text(|e| &e.task_text),
        text(|e| &e.tool_docs),
        text(|e| &e.tool_schemas),
        Arc::new(Int32Array::from_iter_values(envs.iter().map(|e| e.tool_count))),
        text(|e| &e.license),
        rows::int64s(envs.iter().map(|e| e.configurations)),
    ];
    RecordBatch::try_new(env_schema(), columns)
}

/// One config's files of one split.
struct Output {
    files: ParquetFiles,
    split: Split,
}

impl Output {
    fn finish(self) -> Result<SplitFiles, ExportError> {
        let (rows, arrow_bytes) = (self.files.rows, self.files.arrow_bytes);
        let name = self.split.name();
        let paths = self.files.finish(|i, n| format!("{name}-{i:05}-of-{n:05}.parquet"))?;
        let file_bytes = paths
            .iter()
            .map(|p| std::fs::metadata(p).map(|m| m.len()))
            .sum::<std::io::Result<u64>>()
            .map_err(|e| ExportError::io(&paths[0], e))?;
        Ok(SplitFiles { split: self.split, rows, arrow_bytes, file_bytes })
    }
}

pub struct Writer {
    dir: PathBuf,
    settings: ExportSettings,
    configurations: BTreeMap<Split, Output>,
    environments: BTreeMap<Split, Output>,
    pending_envs: BTreeMap<Split, Vec<EnvRow>>,
    licenses: Vec<String>,
    license_counts: BTreeMap<String, (u64, u64)>,
    stats: PlanStats,
    facts: DatasetFacts,
    tools: BTreeMap<i32, u64>,
    exported: u64,
}

impl Writer {
    pub(crate) fn create(dir: &Path, settings: &ExportSettings, plan: &Plan) -> Result<Writer, ExportError> {
        let outputs = |sub: &str, schema: SchemaRef| -> Result<BTreeMap<Split, Output>, ExportError> {
            plan.rows
                .keys()
                .map(|&split| {
                    let files =
                        ParquetFiles::create(&dir.join(sub), split.name(), schema.clone(), Some(settings.max_shard_bytes))?;
                    Ok((split, Output { files, split }))
                })
                .collect()
        };
        let licenses = card::licenses(plan)?;
        super::codegym::write_gymnasium(&dir.join("environments"))?;
        let mut tools: BTreeMap<i32, u64> = BTreeMap::new();
        for env in plan.exported_envs() {
            *tools.entry(env.tool_count).or_default() += 1;
        }
        Ok(Writer {
            dir: dir.to_path_buf(),
            settings: settings.clone(),
            configurations: outputs("data", super::codegym::schema())?,
            environments: outputs("environments", env_schema())?,
            pending_envs: BTreeMap::new(),
            license_counts: card::license_counts(plan.exported_envs(), &licenses),
            licenses,
            stats: plan.stats.clone(),
            facts: card::dataset_facts(&plan.data)?,
            tools,
            exported: plan.total_rows(),
        })
    }

    fn flush_envs(&mut self, split: Split) -> Result<(), ExportError> {
        let Some(envs) = self.pending_envs.get_mut(&split) else { return Ok(()) };
        if envs.is_empty() {
            return Ok(());
        }
        let output = self.environments.get_mut(&split).expect("environments come only from selected splits");
        let batch = env_batch(envs).map_err(|source| ExportError::Arrow { path: "environments".into(), source })?;
        envs.clear();
        output.files.write(&batch)
    }

    /// The plots, written under `plots/`: (file, title) for the card.
    fn write_plots(&self) -> Result<Vec<(String, String)>, ExportError> {
        let plots_dir = self.dir.join("plots");
        std::fs::create_dir_all(&plots_dir).map_err(|e| ExportError::io(&plots_dir, e))?;
        let stats = &self.stats;
        let facts = &self.facts;
        let funnel: Vec<Bar> = [
            ("problems", facts.problems),
            ("problems passing their own tests", facts.preflight_passed),
            ("environments", stats.environments),
            ("environments verified", stats.verified),
            ("configurations", stats.configs),
            ("configurations the oracle solved", stats.oracle_passed),
            ("configurations kept", stats.kept),
            ("configurations exported", self.exported),
        ]
        .into_iter()
        .map(|(label, value)| Bar { label: label.into(), value })
        .collect();
        let bands: Vec<(String, BTreeMap<i32, u64>)> = ["easy", "medium", "hard", "unknown"]
            .into_iter()
            .filter_map(|band| stats.oracle_calls.get(band).map(|counts| (band.to_string(), counts.clone())))
            .collect();
        let plots = [
            (
                "funnel.svg",
                "Yield funnel",
                plots::horizontal_bars(
                    "Yield funnel: what each stage kept",
                    "count, log scale (problems, environments or configurations, as labelled)",
                    "stage",
                    &funnel,
                    plots::Scale::Log,
                ),
            ),
            (
                "oracle_calls.svg",
                "Oracle tool calls by difficulty band",
                plots::box_plots(
                    "Oracle tool calls per exported configuration, by difficulty band",
                    "difficulty band (n = configurations)",
                    "oracle tool calls per configuration",
                    &bands,
                ),
            ),
            (
                "tools.svg",
                "Tools per environment",
                plots::integer_histogram(
                    "Tools per exported environment",
                    "tools per environment (count)",
                    "environments",
                    &self.tools,
                ),
            ),
            (
                "rejects.svg",
                "Reject reasons",
                plots::horizontal_bars(
                    "Reject reasons (stage / reason)",
                    "rejects (count)",
                    "stage / reason",
                    &reject_bars(&facts.rejects),
                    plots::Scale::Linear,
                ),
            ),
        ];
        let mut written = Vec::new();
        for (file, title, svg) in plots {
            let svg = svg.map_err(|e| ExportError::io(plots_dir.join(file), std::io::Error::other(e)))?;
            let path = plots_dir.join(file);
            std::fs::write(&path, svg).map_err(|e| ExportError::io(&path, e))?;
            written.push((format!("plots/{file}"), title.to_string()));
        }
        Ok(written)
    }
}

/// The most frequent reject reasons, the rest summed into one bar.
fn reject_bars(rejects: &BTreeMap<String, u64>) -> Vec<Bar> {
    const SHOWN: usize = 15;
    let mut sorted: Vec<(&String, &u64)> = rejects.iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let mut bars: Vec<Bar> =
        sorted.iter().take(SHOWN).map(|(label, value)| Bar { label: label.to_string(), value: **value }).collect();
    if sorted.len() > SHOWN {
        let rest = &sorted[SHOWN..];
        bars.push(Bar { label: format!("{} other reasons", rest.len()), value: rest.iter().map(|(_, n)| **n).sum() });
    }
    bars
}

impl FormatWriter for Writer {
    fn prompt(&self, _env: &EnvMeta, text: &EnvText<'_>) -> (String, String) {
        super::codegym::prompt(text)
    }

    fn environment(&mut self, env: &EnvMeta, text: &EnvText<'_>) -> Result<(), ExportError> {
        self.pending_envs.entry(env.split).or_default().push(EnvRow {
            code_id: env.code_id.clone(),
            env_name: env.env_name.clone(),
            env_code: text.env_code.to_string(),
            env_id: env.env_id.clone(),
            source_id: env.source_id.clone(),
            task_text: text.task_text.to_string(),
            tool_docs: text.tool_docs.to_string(),
            tool_schemas: text.tool_schemas.to_string(),
            tool_count: env.tool_count,
            license: self.licenses[env.index as usize].clone(),
            configurations: env.rows as i64,
        });
        if self.pending_envs[&env.split].len() >= ENV_BATCH {
            self.flush_envs(env.split)?;
        }
        Ok(())
    }

    fn rows(&mut self, batches: Vec<(Split, RecordBatch)>) -> Result<(), ExportError> {
        for (split, batch) in batches {
            self.configurations.get_mut(&split).expect("rows come only from selected splits").files.write(&batch)?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<(), ExportError> {
        for split in Split::ALL {
            self.flush_envs(split)?;
        }
        let configurations =
            std::mem::take(&mut self.configurations).into_values().map(Output::finish).collect::<Result<Vec<_>, _>>()?;
        let environments =
            std::mem::take(&mut self.environments).into_values().map(Output::finish).collect::<Result<Vec<_>, _>>()?;
        let plots = self.write_plots()?;
        let (config_schema, env_schema) = (super::codegym::schema(), env_schema());
        let card = Card {
            settings: &self.settings,
            stats: &self.stats,
            facts: &self.facts,
            licenses: self.license_counts.clone(),
            configs: vec![
                ConfigCard { name: "configurations", dir: "data", fields: config_schema.fields(), splits: configurations },
                ConfigCard { name: "environments", dir: "environments", fields: env_schema.fields(), splits: environments },
            ],
            plots,
        };
        let path = self.dir.join("README.md");
        std::fs::write(&path, card::render(&card)).map_err(|e| ExportError::io(&path, e))
    }
}
